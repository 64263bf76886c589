"""Seed ensembles as models: `fit_ensemble`, `jaxnet.load`, export, the CLI and the estimator."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from conftest import assert_trees_close, one_line_error
from safetensors import safe_open
from sklearn.base import clone
from sklearn.datasets import load_iris

import jaxnet
from jaxnet import checkpoint as ckpt
from jaxnet import export, fitting, train
from jaxnet.cli import main
from jaxnet.config import TrainConfig
from jaxnet.ensemble import EnsembleModel
from jaxnet.errors import ConfigError
from jaxnet.predict import TrainedModel
from jaxnet.sweep import sweep

CONFIG = TrainConfig(hidden=(16, 8), epochs=3, dropout=0.1, dtype="float64")
SEEDS = 3


@pytest.fixture(scope="module")
def raw():
    return fitting.load_data(CONFIG)


@pytest.fixture(scope="module")
def ens_dir(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble")
    with jax.enable_x64(True):
        fitting.fit_ensemble(CONFIG, SEEDS, raw, out_dir=out)
    return out


@pytest.fixture(scope="module")
def member_dirs(raw, tmp_path_factory):
    """Each member trained alone by `fit` (seed k, the same data) and saved as a normal run."""
    dirs = []
    with jax.enable_x64(True):
        for k in range(SEEDS):
            out = tmp_path_factory.mktemp(f"member{k}")
            fitting.fit(dataclasses.replace(CONFIG, seed=CONFIG.seed + k), raw, out_dir=out)
            dirs.append(out)
    return dirs


def _labels(raw, split):
    return getattr(raw, f"x_{split}"), raw.classes[getattr(raw, f"y_{split}")]


@pytest.fixture(scope="module")
def exported(ens_dir, raw, tmp_path_factory):
    """The ensemble loaded, its PyTorch export (safetensors) and the test inputs: what the
    export tests below share."""
    with jax.enable_x64(True):
        model = jaxnet.load(ens_dir)
        path = export.export_run(ens_dir, tmp_path_factory.mktemp("export") / "ens.safetensors")
    return model, path, _labels(raw, "test")[0]


@pytest.mark.slow
@pytest.mark.x64
def test_predict_proba_is_the_mean_of_the_members_loaded_one_by_one(ens_dir, member_dirs, raw):
    model = jaxnet.load(ens_dir)
    assert isinstance(model, EnsembleModel) and model.n_members == SEEDS
    alone = [jaxnet.load(d) for d in member_dirs]
    x, y = _labels(raw, "test")
    for member, single in zip(model.members, alone, strict=True):
        assert isinstance(member, TrainedModel) and member.config == single.config
        assert_trees_close((member.params, member.bn_state), (single.params, single.bn_state),
                           rtol=1e-10, atol=1e-10)
    assert list(model.best_epochs) == [
        ckpt.load_metadata(d)["best_epoch"] for d in member_dirs]
    mean = np.mean([m.predict_proba(x) for m in alone], axis=0)
    np.testing.assert_allclose(model.predict_proba(x), mean, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.exp(model.log_proba(x)), mean, rtol=1e-10)
    np.testing.assert_array_equal(model.predict(x), raw.classes[np.argmax(mean, axis=1)])
    report = model.evaluate(x, y)
    assert report["accuracy"] == np.mean(model.predict(x) == y)
    assert [m["accuracy"] for m in report["members"]] == [s.evaluate(x, y)["accuracy"]
                                                         for s in alone]
    assert [m["seed"] for m in report["members"]] == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.x64
def test_the_folder_holds_one_checkpoint_with_the_members_and_the_preprocessing(ens_dir, raw):
    meta = ckpt.load_metadata(ens_dir)
    assert meta["ensemble"]["members"] == SEEDS and meta["ensemble"]["seeds"] == [0, 1, 2]
    assert "own best epoch by validation" in meta["ensemble"]["early_stopping"]
    assert meta["data_fingerprint"] == fitting.fingerprint(raw)
    _, prep = fitting.prepare(CONFIG, raw)
    assert meta["preprocessing"] == prep.to_json()
    model = jaxnet.load(ens_dir)
    np.testing.assert_array_equal(model.preprocessing.mean, prep.mean)
    assert model.params[0]["w"].shape == (SEEDS, 16, 64) and model.params[0]["w"].dtype == np.float64
    metrics = json.loads((ens_dir / fitting.METRICS_FILE).read_text())
    for split in ("train", "val", "test"):  # the saved ensemble's scores are the reported ones
        x, y = _labels(raw, split)
        scored = model.evaluate(x, y)
        assert metrics["ensemble"][f"{split}_accuracy"] == scored["accuracy"]
        np.testing.assert_allclose([m["accuracy"] for m in scored["members"]],
                                   metrics[f"{split}_accuracy_per_seed"], rtol=1e-6)
    # A re-save round-trips every array and the header's facts.
    again = ens_dir.parent / "again"
    from jaxnet import ensemble

    ensemble.save(model, again)
    back = jaxnet.load(again)
    assert_trees_close((back.params, back.bn_state), (model.params, model.bn_state), rtol=0)
    assert (back.seeds, back.best_epochs, back.config) == (model.seeds, model.best_epochs,
                                                          model.config)


def _numpy_logits(tensors, prefix, n_hidden, eps, x):
    h = x
    for i in range(n_hidden):
        lin, bn = f"{prefix}{4 * i}", f"{prefix}{4 * i + 1}"
        h = h @ tensors[f"{lin}.weight"].T + tensors[f"{lin}.bias"]
        h = ((h - tensors[f"{bn}.running_mean"]) / np.sqrt(tensors[f"{bn}.running_var"] + eps)
             * tensors[f"{bn}.weight"] + tensors[f"{bn}.bias"])
        h = np.maximum(h, 0)
    last = f"{prefix}{4 * n_hidden}"
    return h @ tensors[f"{last}.weight"].T + tensors[f"{last}.bias"]


@pytest.mark.slow
@pytest.mark.x64
def test_pytorch_export_holds_each_member_under_its_prefix(exported):
    model, path, x = exported
    head = export.load_header(path)
    assert head["ensemble"]["members"] == SEEDS and head["ensemble"]["seeds"] == [0, 1, 2]
    assert head["ensemble"]["combine"] == export.COMBINE
    with safe_open(path, framework="numpy") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    for k, member in enumerate(model.members):
        single = export.to_torch_state_dict(member)
        assert {n for n in tensors if n.startswith(f"members.{k}.")} == {
            f"members.{k}.{n}" for n in single}
        for name, array in single.items():
            np.testing.assert_array_equal(tensors[f"members.{k}.{name}"], array)
    assert len(tensors) == SEEDS * len(export.to_torch_state_dict(model.members[0]))
    # A numpy forward of the file alone (header preprocessing, members' softmax averaged)
    # reproduces predict_proba.
    prep = head["preprocessing"]
    z = (x - np.asarray(prep["mean"])) / np.asarray(prep["scale"])
    probs = [jax.nn.softmax(_numpy_logits(tensors, f"members.{k}.", 2, CONFIG.bn_eps, z))
             for k in range(SEEDS)]
    np.testing.assert_allclose(np.mean(probs, axis=0), model.predict_proba(x), rtol=1e-10,
                               atol=1e-14)


@pytest.mark.slow
@pytest.mark.x64
def test_torch_module_averages_the_members(exported):
    torch = pytest.importorskip("torch")
    model, path, x = exported
    module = export.torch_module(path)
    prep = export.load_header(path)["preprocessing"]
    z = (x - np.asarray(prep["mean"])) / np.asarray(prep["scale"])
    with torch.no_grad():
        probs = module(torch.tensor(z, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(probs, model.predict_proba(x), rtol=1e-10, atol=1e-14)


@pytest.mark.slow
@pytest.mark.x64
def test_onnx_graph_averages_the_members_probabilities(exported, ens_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, _, x = exported
    path = export.export_run(ens_dir, tmp_path / "ens.onnx")
    probabilities, label = ort.InferenceSession(str(path)).run(None, {"x": x})
    np.testing.assert_allclose(probabilities, model.predict_proba(x), rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(label, model.predict(x))


@pytest.mark.slow
@pytest.mark.parametrize("halving", [None, 2])
def test_sweep_keeps_the_params_its_numbers_come_from(halving):
    config = TrainConfig(hidden=(8,), epochs=4)
    data, _ = fitting.prepare(config, fitting.load_data(config))
    settings = [{"lr": v} for v in (1e-3, 1e-2, 3e-2, 1e-1)]
    result = sweep(config, data, settings, seeds=2, halving=halving,
                   min_epochs=halving and 1, keep_params=True)
    assert result.params["params"][0]["w"].shape == (8, 8, 64)
    for i, row in enumerate(result.runs):
        kept = jax.tree.map(lambda a, i=i: a[i], result.params)
        loss, acc = train.evaluate(kept["params"], kept["bn_state"], data.x_test,
                                   data.y_test, config=config)
        assert float(acc) == row["test_accuracy"]
        np.testing.assert_allclose(float(loss), row["test_loss"], rtol=1e-5)
        assert 1 <= result.best_epochs[i] <= row["epochs_trained"]
    if halving:  # the runs cut early keep what they had when they stopped
        assert {r["epochs_trained"] for r in result.runs} == {1, 2, 4}
    plain = sweep(config, data, settings, seeds=2, halving=halving, min_epochs=halving and 1)
    assert plain.params is None and plain.best_epochs is None
    assert plain.runs == result.runs  # keeping the params changes no number


@pytest.mark.slow
def test_cli_train_seeds_then_predict_evaluate_export(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--seeds", "2", "--epochs", "2", "--layers", "2", "--hidden", "8",
                 "--quiet", "--out", "ens"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert out.startswith("2 seeds of (8,) on digits, 2 epochs each: test accuracy ")
    assert metrics["seeds"] == 2
    assert f"test accuracy {metrics['ensemble']['test_accuracy']:.4f}" in out
    model = jaxnet.load(tmp_path / "ens")
    raw = fitting.load_data(model.config)
    np.save(tmp_path / "x.npy", raw.x_test[:7])
    assert main(["predict", "ens", "--data", "x.npy", "--out", "p.csv"]) == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == model.predict(raw.x_test[:7]).tolist()
    capsys.readouterr()
    assert main(["evaluate", "ens"]) == 0
    text = capsys.readouterr().out
    report = json.loads((tmp_path / "ens" / "evaluation.json").read_text())
    assert report["accuracy"] == metrics["ensemble"]["test_accuracy"]
    assert f"digits test: ensemble accuracy {100 * report['accuracy']:.2f}%" in text
    for k, m in enumerate(report["members"]):
        assert f"member {k} (seed {k}, best epoch {m['best_epoch']}): accuracy " \
               f"{100 * m['accuracy']:.2f}%" in text
    assert main(["export", "ens", "ens.safetensors"]) == 0
    assert "2 members under members.K." in capsys.readouterr().out
    # An ensemble cannot be resumed: refused before any work.
    assert main(["train", "--resume", "ens", "--epochs", "4"]) == 2
    assert "holds an ensemble of 2 seeds" in one_line_error(capsys)
    assert main(["train", "--resume", "ens", "--seeds", "2"]) == 2
    assert "--seeds cannot be given with it" in one_line_error(capsys)


def test_ensemble_refusals_come_before_any_work(tmp_path):
    config = dataclasses.replace(CONFIG, dtype="float32")
    with pytest.raises(ConfigError, match="stops one run early"):
        fitting.fit_ensemble(dataclasses.replace(config, patience=3), 2, out_dir=tmp_path / "x")
    with pytest.raises(ConfigError, match="expected an integer >= 1"):
        fitting.fit_ensemble(config, 0)
    assert not (tmp_path / "x").exists()
    X, y = load_iris(return_X_y=True)
    for params, message in [({"n_members": 0}, "expected an integer >= 1"),
                            ({"n_members": True}, "expected an integer >= 1"),
                            ({"n_members": 2, "patience": 3}, "stops one run early"),
                            ({"n_members": 2, "max_epochs": 50}, "set epochs instead")]:
        with pytest.raises(ValueError, match=message):
            jaxnet.MLPClassifier(**params).fit(X, y)


@pytest.mark.slow
def test_estimator_n_members_averages_its_members():
    X, y = load_iris(return_X_y=True)
    y = np.array(["setosa", "versicolor", "virginica"])[y]
    est = jaxnet.MLPClassifier(hidden=(8,), epochs=3, n_members=3, random_state=0).fit(X, y)
    assert isinstance(est.model_, EnsembleModel) and est.model_.seeds == (0, 1, 2)
    members = np.mean([m.predict_proba(X) for m in est.model_.members], axis=0)
    np.testing.assert_allclose(est.predict_proba(X), members, rtol=1e-5)
    assert set(est.predict(X)) <= set(est.classes_)
    assert len(est.best_epoch_) == 3 and len(est.loss_curve_) == est.n_iter_ == 3
    again = clone(est).fit(X, y)  # the same random_state: the same ensemble
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    one = jaxnet.MLPClassifier(hidden=(8,), epochs=3, random_state=0).fit(X, y)
    assert isinstance(one.model_, TrainedModel)  # n_members=1: today's estimator


@pytest.mark.slow
@pytest.mark.parametrize("check", ["check_fit_idempotent", "check_estimators_pickle"])
def test_scikit_learn_checks_with_members(check):
    """A few of scikit-learn's estimator checks with n_members=2 (test_estimator runs them
    all on the default, n_members=1)."""
    from sklearn.utils import estimator_checks

    estimator = jaxnet.MLPClassifier(hidden=(8,), epochs=5, n_members=2, random_state=0)
    getattr(estimator_checks, check)(type(estimator).__name__, estimator)
