"""Vmapped sweeps: each run equals training that setting alone; divergence, chunks, seeds,
sharding over devices, and the expansion of value lists into settings."""

import dataclasses
import inspect
import json
import math
import textwrap

import numpy as np
import pytest
from conftest import prepared, run_python

from jaxnet.config import TrainConfig
from jaxnet.fitting import fit, load_data
from jaxnet.sweep import make_settings, sweep, train_seeds

pytestmark = pytest.mark.x64  # tight gradient and trajectory checks in float64

# A small float64 net on digits: 1257 train examples, batch 128 -> 10 steps per epoch (the
# last one filled up). The fixtures standardise the data once, so fit is told not to.
CONFIG = TrainConfig(hidden=(8,), epochs=3, batch_size=128, optimizer="momentum",
                     init="normal", dtype="float64", grad="autodiff", standardize=False)
# Every sweepable kind of value varies. Settings 1 and 3 peak at epoch 2 of 3, so the sweep
# must keep the best epoch's parameters (by val accuracy) the way fit does.
SETTINGS = [
    {"lr": 0.05, "reg": 1e-3, "dropout": 0.1, "weight_scale": 0.05, "momentum": 0.9},
    {"lr": 0.5, "reg": 0.0, "dropout": 0.0, "weight_scale": 0.3, "momentum": 0.95},
    {"lr": 2.0, "reg": 1e-2, "dropout": 0.3, "weight_scale": 0.01, "momentum": 0.5},
    {"lr": 1.5, "reg": 0.0, "dropout": 0.5, "weight_scale": 1.0, "momentum": 0.99},
    {"lr": 3e-3, "reg": 3e-2, "dropout": 0.2, "weight_scale": 0.1, "momentum": 0.0},
]
METRICS = [f"{split}_{what}" for split in ("train", "val", "test") for what in ("loss", "accuracy")]
# The notebook's random data (50 examples, train split only): one full-batch step per epoch.
# float32 as in the notebook: lr=1e30 overflows at step 2 (float64 would only reach 1e56).
RANDOM = TrainConfig(dataset="random", hidden=(8,), epochs=2, batch_size=50, optimizer="sgd",
                     dropout=0.0, reg=0.0, dtype="float32")


@pytest.fixture(scope="module")
def digits():
    return prepared(dataclasses.replace(CONFIG, standardize=True))


@pytest.fixture(scope="module")
def swept(digits):
    """All SETTINGS in one vmapped call (shared: chunked, seeded and sharded runs compare to it)."""
    return sweep(CONFIG, digits, SETTINGS)


@pytest.fixture(scope="module")
def random_data():
    return load_data(RANDOM)


def assert_runs_equal(actual, expected, *, rtol=1e-12):
    """Same rows: identical hyperparameters, seeds and flags; numbers to `rtol`."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a.keys() == e.keys()
        for k, v in e.items():
            if isinstance(v, float) and not isinstance(v, bool):
                np.testing.assert_allclose(a[k], v, rtol=rtol, atol=0, err_msg=k)
            else:
                assert a[k] == v, k


# ---------------------------------------------------------------- equal to training alone


@pytest.mark.slow
def test_sweep_result_layout(swept):
    n_steps = CONFIG.epochs * math.ceil(1257 / CONFIG.batch_size)
    assert swept.loss_curves.shape == (len(SETTINGS), n_steps)
    assert swept.criterion == "val_accuracy"
    assert [{k: r[k] for k in s} for r, s in zip(swept.runs, SETTINGS, strict=True)] == SETTINGS
    assert [r["seed"] for r in swept.runs] == [CONFIG.seed] * len(SETTINGS)
    for r, curve in zip(swept.runs, swept.loss_curves, strict=True):
        assert not r["diverged"]
        assert r["final_loss"] == curve[-1]  # the loss of the last step (minibatch, train mode)
        assert set(METRICS) <= r.keys()
    best = max(swept.settings, key=lambda s: (s["val_accuracy"], -s["final_loss"]))
    assert swept.best is best  # the summary row itself
    values = {k: best[k] for k in ("lr", "weight_scale", "reg", "dropout", "momentum")}
    assert repr(swept) == (  # one line, not every run and curve
        "SweepResult(settings=5, runs=5, swept=('lr', 'weight_scale', 'reg', 'dropout', "
        f"'momentum'), diverged=0, rungs=1, criterion='val_accuracy', best={values}, "
        f"best_val_accuracy={best['val_accuracy']})")


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1, 3])
def test_each_run_equals_the_setting_trained_alone(swept, digits, index):
    setting = SETTINGS[index]
    config = dataclasses.replace(CONFIG, **setting)
    run, curve = swept.runs[index], swept.loss_curves[index]

    # The same setting as the config's own values, swept alone.
    alone = sweep(config, digits, [{}])
    np.testing.assert_allclose(curve, alone.loss_curves[0], rtol=1e-12, atol=0)
    assert_runs_equal([{k: v for k, v in run.items() if k not in setting}], alone.runs)

    # fit: its history holds each epoch's mean minibatch loss, and its metrics the
    # accuracies of the parameters of the best epoch by val accuracy.
    result = fit(config, digits)
    history = result.history
    per_epoch = curve.reshape(CONFIG.epochs, -1).mean(axis=1)
    np.testing.assert_allclose(per_epoch, [h["loss"] for h in history], rtol=1e-12, atol=0)
    np.testing.assert_allclose(per_epoch[-1], result.metrics["final_loss"], rtol=1e-12)
    best = history[result.metrics["best_epoch"] - 1]
    for split in ("train", "val", "test"):
        assert run[f"{split}_accuracy"] == result.metrics[f"{split}_accuracy"]
        # Eval-mode loss of those same parameters.
        np.testing.assert_allclose(run[f"{split}_loss"], result.metrics[f"{split}_loss"],
                                   rtol=1e-6)
    assert "test_accuracy" not in best  # the test score is reported once, for the kept epoch
    for split in ("train", "val"):  # ... which is the best epoch of the history
        assert run[f"{split}_accuracy"] == best[f"{split}_accuracy"]
        np.testing.assert_allclose(run[f"{split}_loss"], best[f"{split}_loss"], rtol=1e-6)
    if index in (1, 3):
        assert result.metrics["best_epoch"] < CONFIG.epochs  # the best-epoch bookkeeping ran


# ------------------------------------------------------------------------- chunks, seeds


@pytest.mark.slow
def test_chunked_sweep_equals_one_call(swept, digits):
    calls = []
    chunked = sweep(CONFIG, digits, SETTINGS, chunk=3, on_chunk=lambda *a: calls.append(a))
    assert calls == [(1, 2), (2, 2)]
    # The last chunk (runs 4, 5) is padded with a copy of run 5; no padding may leak out.
    assert chunked.loss_curves.shape == swept.loss_curves.shape
    np.testing.assert_allclose(chunked.loss_curves, swept.loss_curves, rtol=1e-12, atol=0)
    assert_runs_equal(chunked.runs, swept.runs)
    assert_runs_equal(chunked.settings, swept.settings)
    assert_runs_equal([chunked.best], [swept.best])


@pytest.mark.slow
@pytest.mark.skipif("group" not in inspect.signature(sweep).parameters,
                    reason="sweep has no group argument")
def test_grouped_sweep_equals_one_vmap(swept, digits):
    # Groups of 2 under lax.map: 5 runs are padded to 3 equal groups (one compiled body).
    grouped = sweep(CONFIG, digits, SETTINGS, group=2)
    np.testing.assert_allclose(grouped.loss_curves, swept.loss_curves, rtol=1e-12, atol=0)
    assert_runs_equal(grouped.runs, swept.runs)
    assert_runs_equal([grouped.best], [swept.best])


@pytest.mark.slow
def test_seeds_give_k_runs_per_setting_with_mean_and_std(swept, digits):
    picked = [SETTINGS[0], SETTINGS[2]]
    result = sweep(CONFIG, digits, picked, seeds=3)
    assert [r["seed"] for r in result.runs] == [0, 1, 2, 0, 1, 2]
    assert result.loss_curves.shape[0] == 6
    # Seed config.seed is the single-seed run.
    assert_runs_equal([result.runs[0], result.runs[3]], [swept.runs[0], swept.runs[2]])
    # The seeds really differ (init, shuffles, dropout).
    assert len({r["final_loss"] for r in result.runs[:3]}) == 3
    for s_idx, row in enumerate(result.settings):
        group = result.runs[3 * s_idx:3 * s_idx + 3]
        assert row["seeds"] == 3 and not row["diverged"]
        assert {k: row[k] for k in picked[s_idx]} == picked[s_idx]
        for k in ("final_loss", *METRICS):
            values = [r[k] for r in group]
            np.testing.assert_allclose(row[k], np.mean(values), rtol=1e-12)
            np.testing.assert_allclose(row[f"{k}_std"], np.std(values), rtol=1e-9, atol=1e-15)
    assert result.best is max(result.settings, key=lambda s: (s["val_accuracy"], -s["final_loss"]))

    # train_seeds: seeds config.seed, config.seed + 1, ...: here 1 and 2 of the sweep above.
    config = dataclasses.replace(CONFIG, **SETTINGS[0], seed=1)
    metrics = train_seeds(config, digits, 2)
    assert metrics["seeds"] == 2 and metrics["diverged"] is False
    for name in ("train_accuracy", "val_accuracy", "test_accuracy", "final_loss"):
        expected = [result.runs[1][name], result.runs[2][name]]
        np.testing.assert_allclose(metrics[f"{name}_per_seed"], expected, rtol=1e-12)
        np.testing.assert_allclose(metrics[f"{name}_mean"], np.mean(expected), rtol=1e-12)
        np.testing.assert_allclose(metrics[f"{name}_std"], np.std(expected), rtol=1e-9, atol=1e-15)
    assert metrics["config"]["seed"] == 1
    json.dumps(metrics, allow_nan=False)  # metrics.json material


# --------------------------------------------------------------------------- divergence


@pytest.mark.slow
def test_diverged_runs_are_flagged_reported_as_none_and_never_best(random_data):
    result = sweep(RANDOM, random_data, [{"lr": 1e30}, {"lr": 1e-3}, {"lr": 1e25}])
    assert result.criterion == "final_loss"  # the random data has no validation split
    assert [r["diverged"] for r in result.runs] == [True, False, True]
    for r in (result.runs[0], result.runs[2]):
        assert r["final_loss"] is None and r["train_loss"] is None and r["train_accuracy"] is None
    for s in (result.settings[0], result.settings[2]):
        assert s["diverged"] and s["final_loss"] is None and s["final_loss_std"] is None
    ok = result.runs[1]
    assert np.isfinite([ok["final_loss"], ok["train_loss"], ok["train_accuracy"]]).all()
    assert result.best["lr"] == 1e-3 and not result.best["diverged"]
    assert not np.all(np.isfinite(result.loss_curves[0]))  # the raw curves keep the evidence

    every = sweep(RANDOM, random_data, [{"lr": 1e30}, {"lr": 1e25}], seeds=2)
    assert every.best is None
    assert all(r["diverged"] and r["final_loss"] is None for r in every.runs)
    assert all(s["diverged"] and s["train_accuracy"] is None for s in every.settings)


@pytest.mark.slow
def test_a_run_that_blows_up_on_its_last_step_is_diverged(random_data):
    config = dataclasses.replace(RANDOM, epochs=1)
    result = sweep(config, random_data, [{"lr": 1e30}, {"lr": 1e-3}])
    for r in result.runs:
        assert r["diverged"] or np.isfinite([r[k] for k in ("final_loss", "train_loss",
                                                            "train_accuracy")]).all(), r
    assert result.runs[0]["diverged"]
    assert result.best["lr"] == 1e-3


# ---------------------------------------------------------------------- sharded settings

_SHARDED = """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from jaxnet.sweep import sweep
    from jaxnet.config import TrainConfig
    import dataclasses
    from jaxnet import fitting
    from jaxnet.fitting import load_data

    assert jax.device_count() == 4, jax.devices()
    config = TrainConfig(**json.loads(sys.argv[1]))
    settings = json.loads(sys.argv[2])
    mesh = jax.make_mesh((4,), ("settings",), axis_types=(jax.sharding.AxisType.Auto,))
    # chunk=3 rounds up to 4 runs, one per device: two chunks, the last padded with 3 copies.
    calls = []
    data = fitting.prepare(dataclasses.replace(config, standardize=True), load_data(config))[0]
    result = sweep(config, data, settings, chunk=3, mesh=mesh,
                   on_chunk=lambda *a: calls.append(a))
    np.save(sys.argv[3] + "/curves.npy", result.loss_curves)
    with open(sys.argv[3] + "/result.json", "w") as f:
        json.dump({"runs": result.runs, "settings": result.settings, "best": result.best,
                   "calls": calls}, f)
"""


@pytest.mark.slow
def test_sharding_settings_over_four_devices_gives_the_same_results(swept, tmp_path):
    proc = run_python(["-c", textwrap.dedent(_SHARDED), json.dumps(CONFIG.to_dict()),
                       json.dumps(SETTINGS), tmp_path], devices=4, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharded = json.loads((tmp_path / "result.json").read_text())
    assert sharded["calls"] == [[1, 2], [2, 2]]
    curves = np.load(tmp_path / "curves.npy")
    assert curves.shape == swept.loss_curves.shape
    np.testing.assert_allclose(curves, swept.loss_curves, rtol=1e-12, atol=0)
    assert_runs_equal(sharded["runs"], swept.runs)
    assert_runs_equal(sharded["settings"], swept.settings)
    assert_runs_equal([sharded["best"]], [swept.best])


# ------------------------------------------------------------------------ make_settings


def test_make_settings_zip_pairs_values():
    assert make_settings({"lr": [1e-3, 1e-2], "weight_scale": [0.1, 0.2]}, "zip") == [
        {"lr": 1e-3, "weight_scale": 0.1}, {"lr": 1e-2, "weight_scale": 0.2}]


def test_make_settings_grid_takes_every_combination():
    settings = make_settings({"lr": [1e-3, 1e-2], "reg": [0, 1e-4, 1e-3]})  # grid: default
    assert len(settings) == 6
    assert settings[:3] == [{"lr": 1e-3, "reg": 0.0}, {"lr": 1e-3, "reg": 1e-4},
                            {"lr": 1e-3, "reg": 1e-3}]
    assert {(s["lr"], s["reg"]) for s in settings} == {
        (lr, reg) for lr in (1e-3, 1e-2) for reg in (0.0, 1e-4, 1e-3)}
    assert all(type(v) is float for s in settings for v in s.values())


def test_make_settings_random_is_log_uniform_within_bounds_and_reproducible():
    axes = {"lr": (1e-4, 1e-1), "dropout": (0.1, 0.5)}
    settings = make_settings(axes, "random", n_random=3000, seed=7)
    assert len(settings) == 3000
    lr = np.array([s["lr"] for s in settings])
    dropout = np.array([s["dropout"] for s in settings])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    assert dropout.min() >= 0.1 and dropout.max() <= 0.5
    # Log-uniform: each of the three decades holds about a third of the draws.
    for lo in (1e-4, 1e-3, 1e-2):
        assert abs(np.mean((lr >= lo) & (lr < 10 * lo)) - 1 / 3) < 0.04
    # Uniform on a linear axis: mean near the middle.
    assert abs(dropout.mean() - 0.3) < 0.01
    assert make_settings(axes, "random", n_random=3000, seed=7) == settings
    assert make_settings(axes, "random", n_random=5, seed=8) != settings[:5]


@pytest.mark.parametrize(("axes", "mode", "kwargs", "match"), [
    ({"lr": [1e-3, 1e-2], "reg": [0.0]}, "zip", {}, "equal lengths"),
    ({"lr": []}, "grid", {}, "zero settings"),
    ({"lr": [1e-3], "reg": []}, "zip", {}, "zero settings"),
    ({"batch_size": [32, 64]}, "grid", {}, "cannot sweep"),
    ({"lr": [1e-3]}, "spiral", {}, "mode"),
    ({"lr": (1e-4, 1e-1)}, "random", {"n_random": 0}, "positive number"),
])
def test_make_settings_rejects_bad_input(axes, mode, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_settings(axes, mode, **kwargs)


@pytest.mark.filterwarnings("ignore:.*encountered in log:RuntimeWarning")
@pytest.mark.parametrize("low", [0.0, -1.0])
def test_make_settings_random_rejects_non_positive_log_bounds(low):
    try:
        make_settings({"reg": (low, 1e-3)}, "random", n_random=3)
    except ValueError as err:
        assert "positive" in str(err)
    except Exception as err:
        raise AssertionError(f"{type(err).__name__}: {err}") from err
    else:
        raise AssertionError("accepted a non-positive bound on a log axis")


def test_sweep_rejects_bad_settings_before_training(random_data):
    with pytest.raises(ValueError, match="zero settings"):
        sweep(RANDOM, random_data, [])
    with pytest.raises(ValueError, match="no 'momentum'"):
        sweep(RANDOM, random_data, [{"momentum": 0.5}])  # plain SGD has no momentum
    with pytest.raises(ValueError, match=r"lr=-1.0 is invalid: expected a finite number > 0"):
        sweep(RANDOM, random_data, [{"lr": -1.0}])
    with pytest.raises(ValueError, match="dropout"):
        sweep(RANDOM, random_data, [{"dropout": 1.0}])
    with pytest.raises(ValueError, match="seeds"):
        sweep(RANDOM, random_data, [{}], seeds=0)
