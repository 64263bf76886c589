"""Class-weighted loss (`class_weight`): the layer and the network's hand-written backward
against jax.grad, gradcheck, scikit-learn's balanced weights, the weights as an argument of
shared compiled programs, and every mode: fit, resume, sweep and seeds, data-parallel, the
CLI and the estimator."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close, run_jaxnet
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score, recall_score
from sklearn.utils.class_weight import compute_class_weight

import jaxnet
from jaxnet import fitting, gradchecks, layers, model, train
from jaxnet.cli import main
from jaxnet.config import TrainConfig
from jaxnet.data import Dataset
from jaxnet.errors import ConfigError
from jaxnet.estimator import MLPClassifier
from jaxnet.sweep import sweep

LABELS = np.array([0, 0, 0, 0, 0, 1, 1, 2, 3])  # class 0 common, 3 rare
WEIGHTS = np.array([0.3, 1.5, 2.0, 4.0])
# A small net whose fits compile in a few seconds; the data is imbalanced 20:4:1.
SMALL = TrainConfig(hidden=(8,), epochs=2, batch_size=16, dropout=0.2, dtype="float64",
                    class_weight="balanced", standardize=False)


def _imbalanced(seed=0, counts=(100, 20, 5), features=6) -> Dataset:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    x = rng.normal(size=(len(y), features)) + y[:, None]
    order = rng.permutation(len(y))
    x, y = x[order], y[order].astype(np.int32)
    n_val = len(y) // 5
    return Dataset("imbalanced", x[n_val:], y[n_val:], x[:n_val], y[:n_val], None, None,
                   len(counts))


def _nll_weighted_mean(logits, labels, weights):
    """What PyTorch's CrossEntropyLoss(weight=w) computes, in numpy."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    w = weights[labels]
    return -(w * log_probs[np.arange(len(labels)), labels]).sum() / w.sum()


# ---------------------------------------------------------------------------- the layer


@pytest.mark.x64
@pytest.mark.parametrize("batch_axis", [0, 1])
def test_weighted_cross_entropy_and_its_backward_equal_autodiff(batch_axis):
    logits = np.random.default_rng(0).normal(size=(len(LABELS), 4))
    y = jnp.asarray(LABELS)
    laid = jnp.asarray(logits if batch_axis == 0 else logits.T)

    def forward(z, w):
        return layers.softmax_xent_forward(z, y, class_weight=w, batch_axis=batch_axis)

    loss, res = forward(laid, jnp.asarray(WEIGHTS))
    np.testing.assert_allclose(loss, _nll_weighted_mean(logits, LABELS, WEIGHTS), rtol=1e-13)
    manual = layers.softmax_xent_backward(res, 0.7, batch_axis=batch_axis)
    auto = jax.grad(lambda z: 0.7 * forward(z, jnp.asarray(WEIGHTS))[0])(laid)
    np.testing.assert_allclose(manual, auto, rtol=1e-12, atol=1e-15)

    # Equal weights are the plain mean, whatever their size.
    plain, plain_res = layers.softmax_xent_forward(laid, y, batch_axis=batch_axis)
    same, same_res = forward(laid, jnp.full(4, 2.5))
    np.testing.assert_allclose(same, plain, rtol=1e-14)
    np.testing.assert_allclose(layers.softmax_xent_backward(same_res, batch_axis=batch_axis),
                               layers.softmax_xent_backward(plain_res, batch_axis=batch_axis),
                               rtol=1e-13, atol=1e-16)

    # Finite differences of the hand-written backward itself (gradchecks.check_layer).
    report = gradchecks.check_layer(lambda z: forward(z, jnp.asarray(WEIGHTS)),
                                    layers.softmax_xent_backward if batch_axis == 0 else
                                    lambda r, d: layers.softmax_xent_backward(r, d, batch_axis=1),
                                    laid, dout=jnp.asarray(1.3))
    assert report.passed, report


# -------------------------------------------------------------------------- the network


@pytest.mark.x64
@pytest.mark.parametrize("train_mode", [True, False])
@pytest.mark.parametrize("vmapped_runs", [False, True])
def test_network_manual_gradient_equals_jax_grad(train_mode, vmapped_runs):
    key = jax.random.PRNGKey(1)
    params, state = model.init(key, (5, 7, 6, 4), weight_scale=1.0, dtype=jnp.float64)
    state = jax.tree.map(lambda a: a + 0.1, state)  # running statistics that matter in eval
    x = jax.random.normal(jax.random.PRNGKey(2), (len(LABELS), 5), jnp.float64)
    options = {"key": key, "train": train_mode, "dropout": 0.3, "reg": 0.01,
               "vmapped_runs": vmapped_runs, "class_weight": jnp.asarray(WEIGHTS)}
    (value, new_state), grads = model.manual_value_and_grad(params, state, x, LABELS, **options)
    (value_ad, state_ad), grads_ad = jax.value_and_grad(model.loss, has_aux=True)(
        params, state, x, LABELS, **options)
    np.testing.assert_allclose(value, value_ad, rtol=1e-13)
    assert_trees_close(grads, grads_ad, rtol=1e-10, atol=1e-13)
    assert_trees_close(new_state, state_ad, rtol=1e-13)
    unweighted = model.loss(params, state, x, LABELS, **{**options, "class_weight": None})[0]
    assert abs(float(unweighted) - float(value)) > 1e-3  # the weights change the loss

    if not train_mode or vmapped_runs:
        return
    # Traced weights (vmapped, as sweeps hold them) give each weight vector's own result.
    both = jnp.stack([jnp.asarray(WEIGHTS), jnp.ones(4)])
    batched = jax.jit(jax.vmap(lambda w: model.manual_value_and_grad(
        params, state, x, LABELS, **{**options, "class_weight": w})))(both)
    np.testing.assert_allclose(batched[0][0][0], value, rtol=1e-13)
    np.testing.assert_allclose(batched[0][0][1], model.loss(
        params, state, x, LABELS, **{**options, "class_weight": jnp.ones(4)})[0], rtol=1e-13)


def test_class_weight_of_the_wrong_length_is_refused():
    params, state = model.init(jax.random.PRNGKey(0), (5, 4, 4))
    x = jnp.zeros((len(LABELS), 5))
    with pytest.raises(ValueError, match=r"class_weight must have shape \(4,\)"):
        model.loss(params, state, x, LABELS, class_weight=jnp.ones(3))


def test_gradcheck_covers_the_weighted_loss():
    options = {"batch": 12, "dropout": 0.2, "reg": 0.01, "samples": 4}
    report = gradchecks.gradcheck_network((6, 8, 8, 4), class_weight="balanced", **options)
    assert report.passed, report
    assert "class weights" in report.description

    def ignores_the_weights(*args, class_weight, **kwargs):  # a backward that drops them
        del class_weight
        return model.manual_value_and_grad(*args, **kwargs)

    wrong = gradchecks.gradcheck_network((6, 8, 8, 4), class_weight=[1, 9, 1, 1],
                                         value_and_grad=ignores_the_weights, **options)
    assert not wrong.passed


# ----------------------------------------------------------------- weights and the config


def test_balanced_weights_are_scikit_learns_on_the_training_split():
    data = _imbalanced()
    weights = train.class_weights(SMALL, data.y_train, data.num_classes)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=data.y_train)
    np.testing.assert_allclose(weights, expected, rtol=1e-15)
    np.testing.assert_allclose(weights, len(data.y_train) / (3 * np.bincount(data.y_train)))
    assert train.class_weights(dataclasses.replace(SMALL, class_weight=None), data.y_train,
                               3) is None
    # a class the training split lacks is never used; it weighs 1
    np.testing.assert_allclose(train.class_weights(SMALL, np.array([0, 0, 2]), 3),
                               [0.75, 1.0, 1.5])
    listed = dataclasses.replace(SMALL, class_weight=(1.0, 2.0, 3.0))
    np.testing.assert_array_equal(train.class_weights(listed, data.y_train, 3), [1, 2, 3])
    with pytest.raises(ConfigError, match="lists 3 weights but the data has 4 classes"):
        train.class_weights(listed, data.y_train, 4)


@pytest.mark.parametrize("bad", ["Balanced", "inverse", (), (1.0, 0.0), (1.0, float("inf")),
                                 {0: 1.0}])
def test_config_refuses_bad_class_weights(bad):
    with pytest.raises(ConfigError, match="class_weight=.* is invalid: expected None, "
                                          "'balanced', or one finite weight > 0 per class"):
        TrainConfig(class_weight=bad).validate()


def test_config_round_trips_and_old_configs_load():
    for value in (None, "balanced", (1.0, 2.5)):
        config = TrainConfig(class_weight=value).validate()
        saved = json.loads(json.dumps(config.to_dict()))
        assert TrainConfig.from_dict(saved) == config
    old = TrainConfig().to_dict()
    del old["class_weight"]  # a checkpoint written before the field existed
    assert TrainConfig.from_dict(old).class_weight is None


def test_weighted_scores_are_balanced_accuracy_and_the_weighted_loss():
    data = _imbalanced()
    params, state = model.init(jax.random.PRNGKey(0), (6, 8, 3), weight_scale=1.0)
    x, y = jnp.asarray(data.x_train, jnp.float32), jnp.asarray(data.y_train)
    weights = train.class_weights(dataclasses.replace(SMALL, dtype="float32"), y, 3)
    loss, accuracy = train.evaluate(params, state, x, y, config=SMALL, class_weight=weights)
    logits = np.asarray(model.apply(params, state, x, train=False)[0], np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(accuracy, balanced_accuracy_score(y, probs.argmax(axis=1)),
                               rtol=1e-6)
    np.testing.assert_allclose(loss, _nll_weighted_mean(logits, np.asarray(y), weights),
                               rtol=1e-5)
    _, plain_accuracy = train.evaluate(params, state, x, y, config=SMALL)
    np.testing.assert_allclose(plain_accuracy, np.mean(probs.argmax(axis=1) == np.asarray(y)),
                               rtol=1e-6)
    assert plain_accuracy != accuracy


# ------------------------------------------------------------------------------- fitting


@pytest.mark.slow
@pytest.mark.x64
def test_fits_share_compiled_programs_but_each_uses_its_own_weights():
    a, b = _imbalanced(0, (100, 20, 5)), _imbalanced(1, (5, 20, 100))
    fitting._jitted.cache_clear()
    first = fitting.fit(SMALL, a)
    hits = fitting._jitted.cache_info().hits
    second = fitting.fit(SMALL, b)
    assert fitting._jitted.cache_info().hits == hits + 1  # b reused a's compiled epoch
    np.testing.assert_allclose(second.metrics["class_weights"],
                               compute_class_weight("balanced", classes=np.arange(3),
                                                    y=b.y_train))
    assert first.metrics["class_weights"] != second.metrics["class_weights"]
    fitting._jitted.cache_clear()
    alone = fitting.fit(SMALL, b)  # b with programs compiled for it alone
    assert [h["loss"] for h in second.history] == [h["loss"] for h in alone.history]
    assert_trees_close(second.params, alone.params, rtol=0)


@pytest.mark.slow
def test_balanced_weighting_raises_the_rare_class_recall():
    rng = np.random.default_rng(0)

    def blobs(n0, n1, n2):
        x = np.concatenate([rng.normal([0, 0], 1.0, (n0, 2)), rng.normal([1.5, 0], 1.0, (n1, 2)),
                            rng.normal([0, 1.5], 1.0, (n2, 2))])
        return x, np.repeat([0, 1, 2], [n0, n1, n2])

    (x_train, y_train), (x_test, y_test) = blobs(30, 600, 600), blobs(300, 300, 300)
    scores = {}
    for weighting in (None, "balanced"):
        estimator = MLPClassifier(hidden=(16,), epochs=20, lr=0.01, dropout=0.0,
                                  class_weight=weighting, random_state=0)
        predicted = estimator.fit(x_train, y_train).predict(x_test)
        scores[weighting] = (recall_score(y_test, predicted, average=None)[0],
                             balanced_accuracy_score(y_test, predicted))
    # measured: rare-class recall 0.00 -> 0.42, balanced accuracy 0.57 -> 0.66
    assert scores["balanced"][0] > scores[None][0] + 0.2
    assert scores["balanced"][1] > scores[None][1] + 0.04


@pytest.mark.slow
@pytest.mark.x64
def test_sweeps_and_seeds_train_the_weighted_loss_as_fit_does():
    data = _imbalanced()
    config = dataclasses.replace(SMALL, optimizer="momentum", lr=0.05, reg=0.0)
    result = fitting.fit(config, data)
    swept = sweep(config, data, [{}], seeds=2, in_span=False)  # what `train --seeds 2` runs
    per_epoch = swept.loss_curves[0].reshape(config.epochs, -1).mean(axis=1)
    np.testing.assert_allclose(per_epoch, [h["loss"] for h in result.history], rtol=1e-12)
    assert swept.runs[0]["val_accuracy"] == result.metrics["val_accuracy"]
    # the first layer in the span of wide inputs: the same numbers up to round-off
    wide = _imbalanced(counts=(20, 6, 4), features=80)
    spanned = sweep(config, wide, [{}], in_span=True)
    np.testing.assert_allclose(spanned.loss_curves, sweep(config, wide, [{}], in_span=False)
                               .loss_curves, rtol=1e-9)


# ------------------------------------------------------------- CLI, resume, devices, load


@pytest.fixture
def npz_file(tmp_path):
    data = _imbalanced(counts=(200, 40, 10))
    path = tmp_path / "imbalanced.npz"
    np.savez(path, x=np.concatenate([data.x_train, data.x_val]).astype(np.float32),
             y=np.concatenate([data.y_train, data.y_val]))
    return path


TRAIN = ["train", "--layers", "2", "--hidden", "8", "--batch-size", "16",
         "--class-weight", "balanced", "--quiet"]


@pytest.mark.slow
def test_cli_trains_resumes_and_loads_a_weighted_run(tmp_path, npz_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--data", str(npz_file), "--epochs", "1", "--out", "run"]) == 0
    assert main(["train", "--resume", "run", "--epochs", "2", "--quiet"]) == 0
    assert main([*TRAIN, "--data", str(npz_file), "--epochs", "2", "--out", "whole"]) == 0
    resumed, whole = (json.loads((tmp_path / d / "metrics.json").read_text())
                      for d in ("run", "whole"))
    assert resumed["config"]["class_weight"] == "balanced"
    assert resumed["class_weights"] == whole["class_weights"]
    assert resumed["class_weights"][2] > resumed["class_weights"][0]  # the rare class weighs more
    np.testing.assert_allclose([h["loss"] for h in resumed["history"]],
                               [h["loss"] for h in whole["history"]], rtol=1e-6)
    loaded = jaxnet.load(tmp_path / "run")
    assert loaded.config.class_weight == "balanced"


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_cli_refuses_an_unknown_class_weight(command, capsys):
    assert main([command, "--class-weight", "inverse"]) == 2
    err = capsys.readouterr().err
    assert "--class-weight: invalid choice: 'inverse' (choose from 'balanced')" in err


def test_sweep_flag_reaches_the_config():
    from jaxnet.cli import build_parser, common

    args = build_parser().parse_args(["sweep", "--class-weight", "balanced"])
    assert common.config_from_args(args).class_weight == "balanced"


@pytest.mark.slow
@pytest.mark.x64
def test_data_parallel_run_matches_one_device(tmp_path, npz_file):
    argv = [*TRAIN, "--data", str(npz_file), "--epochs", "2", "--dtype", "float64",
            "--dropout", "0.5"]
    run_jaxnet([*argv, "--out", str(tmp_path / "two"), "--devices", "2"], devices=2)
    config = TrainConfig(hidden=(8,), batch_size=16, class_weight="balanced", epochs=2,
                         dtype="float64", dropout=0.5, data_path=str(npz_file))
    one = fitting.fit(config)
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["devices"] == 2
    np.testing.assert_allclose([h["loss"] for h in two["history"]],
                               [h["loss"] for h in one.history], rtol=1e-9)
    assert two["class_weights"] == one.metrics["class_weights"]


# ------------------------------------------------------------------------- the estimator


def test_estimator_parameter_round_trips_through_clone_and_set_params():
    estimator = MLPClassifier(class_weight="balanced")
    assert MLPClassifier().get_params()["class_weight"] is None
    assert clone(estimator).get_params()["class_weight"] == "balanced"
    assert estimator.set_params(class_weight=None).train_config().class_weight is None
    by_label = MLPClassifier(class_weight={"b": 3, "c": 0.5})
    assert clone(by_label).get_params()["class_weight"] == {"b": 3, "c": 0.5}
    assert by_label.train_config(classes=np.array(["a", "b", "c"])).class_weight == (1.0, 3.0,
                                                                                      0.5)


@pytest.mark.parametrize("bad, match", [
    ("inverse", "class_weight='inverse' is invalid"),
    ({"z": 2.0}, "class_weight names labels that are not in y"),
    ({0: -1.0}, r"class_weight=\(-1.0, 1.0\) is invalid"),
])
def test_estimator_refuses_bad_class_weights_before_training(bad, match):
    with pytest.raises(ValueError, match=match):
        MLPClassifier(class_weight=bad).fit(np.zeros((6, 2)), [0, 1, 0, 1, 0, 1])
