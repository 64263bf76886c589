"""Successive halving inside the vmapped sweep: rungs, survivors continuing exactly, the
record of where each run stopped; and the sweep's chunk and group layout (what it compiles:
tests/test_sweep_compiles.py)."""

import dataclasses

import chex
import jax
import numpy as np
import pytest
from conftest import prepared

from jaxnet import fitting
from jaxnet.config import TrainConfig
from jaxnet.errors import ConfigError
from jaxnet.fitting import load_data
from jaxnet.sweep import chunks, default_group, halving_rungs, runs, sweep
from jaxnet.train import dims_for, make_optimizer

pytestmark = pytest.mark.x64  # survivors are compared with lone runs to float64 round-off

# A small float64 net on digits, 10 steps per epoch; a constant learning rate, so a run
# stopped at a rung also equals the same setting trained alone for that many epochs.
CONFIG = TrainConfig(hidden=(8,), epochs=4, batch_size=128, optimizer="momentum", init="normal",
                     dtype="float64", grad="autodiff", standardize=False, dropout=0.1)
# Six settings, ETA 2, rungs at 1, 2 and 4 epochs: 6 settings, then 3, then 1.
SETTINGS = [{"lr": lr, "reg": reg} for lr in (3e-3, 0.05, 0.5) for reg in (0.0, 1e-2)]
RUNGS = [1, 2, 4]


@pytest.fixture(scope="module")
def digits():
    return prepared(dataclasses.replace(CONFIG, standardize=True))


@pytest.fixture(scope="module")
def halved(digits):
    # Groups of 2, in every rung the first rung's 3: rung 1 leaves one idle, rung 2 two.
    return sweep(CONFIG, digits, SETTINGS, group=2, halving=2, min_epochs=1)


# ------------------------------------------------------------------------------- rungs


@pytest.mark.parametrize(("epochs", "eta", "min_epochs", "expected"), [
    (27, 3, 1, [1, 3, 9, 27]),
    (4, 2, 1, [1, 2, 4]),
    (9, 2, 1, [1, 2, 4, 9]),
    (10, 3, 1, [1, 3, 10]),  # not 1, 3, 9, 10: every rung at least ETA times the one before
    (5, 3, 2, [2, 5]),  # ... but the first is always R
    (10, 3, 10, [10]),
    (27, 3, None, [1, 3, 9, 27]),  # default: ceil(epochs / eta**3), at most four rungs
    (30, 3, None, [2, 6, 30]),
    (100, 2, None, [13, 26, 100]),
    (2, 3, None, [1, 2]),
])
def test_halving_rungs(epochs, eta, min_epochs, expected):
    assert halving_rungs(epochs, eta, min_epochs) == expected


@pytest.mark.slow
def test_rungs_keep_the_best_half_and_record_where_each_run_stopped(halved):
    assert [r["epochs"] for r in halved.rungs] == RUNGS
    assert [len(r["settings"]) for r in halved.rungs] == [6, 3, 1]
    assert halved.rungs[0]["settings"] == list(range(6))
    for rung, following in zip(halved.rungs, halved.rungs[1:], strict=False):
        assert rung["kept"] == following["settings"]
        scores = dict(zip(rung["settings"], rung["scores"], strict=True))
        kept = {s: scores[s] for s in rung["kept"]}
        cut = {s: v for s, v in scores.items() if s not in kept}
        assert min(kept.values()) >= max(cut.values())  # the best by val accuracy go on
    assert halved.rungs[-1]["kept"] == []
    stopped_at = {s: k for k, rung in enumerate(halved.rungs) for s in rung["settings"]}
    for i, (run, row) in enumerate(zip(halved.runs, halved.settings, strict=True)):
        assert run["rung"] == row["rung"] == stopped_at[i]
        assert run["epochs_trained"] == row["epochs_trained"] == RUNGS[stopped_at[i]]
        steps = 10 * run["epochs_trained"]
        curve = halved.loss_curves[i]
        assert np.all(np.isfinite(curve[:steps])) and np.all(np.isnan(curve[steps:]))
        assert run["final_loss"] == curve[steps - 1]
    assert halved.epochs_spent == 6 * 1 + 3 * 1 + 1 * 2  # 6 x 1 epoch, 3 x 1 more, 1 x 2 more
    assert halved.best is halved.settings[halved.rungs[-1]["settings"][0]]
    assert halved.best["epochs_trained"] == CONFIG.epochs


@pytest.mark.slow
def test_a_survivor_equals_its_setting_trained_alone(halved, digits):
    index = halved.rungs[-1]["settings"][0]
    config = dataclasses.replace(CONFIG, **SETTINGS[index])
    alone = sweep(config, digits, [{}])
    np.testing.assert_allclose(halved.loss_curves[index], alone.loss_curves[0], rtol=1e-12, atol=0)
    run = halved.runs[index]
    for k, v in alone.runs[0].items():
        if isinstance(v, float):
            np.testing.assert_allclose(run[k], v, rtol=1e-12, atol=0, err_msg=k)
    # fit agrees too: per-epoch mean losses and the best epoch's accuracies.
    result = fitting.fit(config, digits)
    np.testing.assert_allclose(halved.loss_curves[index].reshape(CONFIG.epochs, -1).mean(axis=1),
                               [h["loss"] for h in result.history], rtol=1e-12)
    for split in ("train", "val", "test"):
        assert run[f"{split}_accuracy"] == result.metrics[f"{split}_accuracy"]


@pytest.mark.slow
def test_a_run_cut_early_equals_its_setting_trained_alone_for_its_epochs(halved, digits):
    cut = next(i for i, r in enumerate(halved.runs) if r["rung"] == 1)
    config = dataclasses.replace(CONFIG, epochs=RUNGS[1], **SETTINGS[cut])
    alone = sweep(config, digits, [{}])
    steps = 10 * RUNGS[1]
    np.testing.assert_allclose(halved.loss_curves[cut][:steps], alone.loss_curves[0],
                               rtol=1e-12, atol=0)
    for k in ("val_accuracy", "test_accuracy", "val_loss", "train_loss"):
        np.testing.assert_allclose(halved.runs[cut][k], alone.runs[0][k], rtol=1e-12, err_msg=k)


@pytest.mark.slow
def test_continuing_a_run_gives_the_same_state_as_one_long_segment(digits):
    """The carry after 1 + 3 epochs (params, batchnorm and optimizer state, best params)
    equals the carry after one 4-epoch segment: every epoch splits its keys from the state;
    so does a segment program told at run time how many epochs to train."""
    n_train = len(digits.x_train)
    optimizer = make_optimizer(CONFIG, n_train)
    init = runs._init_fn(CONFIG, dims_for(CONFIG, digits), optimizer, None)
    ts = init(np.stack([np.asarray(jax.random.PRNGKey(s)) for s in (0, 1)]),
              {"lr": np.array([0.05, 0.5]), "dropout": np.array([0.0, 0.3])})
    splits = jax.device_put({"train": (digits.x_train, digits.y_train.astype(np.int32)),
                             "val": (digits.x_val, digits.y_val.astype(np.int32))})

    def segment(epochs):
        one = runs._segment_fn(CONFIG, optimizer, n_train, True, epochs, keep_state=True)
        return jax.jit(jax.vmap(one, in_axes=(0, None)))

    carry, first = segment(1)(ts, splits)
    carry, rest = segment(3)(jax.device_get(carry), splits)  # through the host, as the sweep does
    whole_carry, whole = segment(4)(ts, splits)
    chex.assert_trees_all_close(carry, whole_carry, rtol=1e-12)
    np.testing.assert_allclose(np.concatenate([first["loss_curve"], rest["loss_curve"]], axis=1),
                               whole["loss_curve"], rtol=1e-12)

    # As the sweep runs it: one program of up to 4 epochs, told how many to train (1, 0, 3).
    one = runs._segment_fn(CONFIG, optimizer, n_train, True, 4, keep_state=True)
    program = jax.jit(jax.vmap(one, in_axes=(0, None, None)))
    fresh = jax.vmap(lambda run: runs._fresh_carry(run, True, CONFIG.dtype))(ts)
    carry, first = program(fresh, splits, 1)
    idle, nothing = program(jax.device_get(carry), splits, 0)
    chex.assert_trees_all_equal(idle, carry)  # 0 epochs: the carry as it was, nothing evaluated
    assert not np.any(nothing["loss_curve"]) and not np.any(nothing["val_accuracy"])
    carry, rest = program(jax.device_get(idle), splits, 3)
    chex.assert_trees_all_close(carry, whole_carry, rtol=1e-12)
    np.testing.assert_allclose(np.concatenate([first["loss_curve"][:, :10],
                                               rest["loss_curve"][:, :30]], axis=1),
                               whole["loss_curve"], rtol=1e-12)
    assert not np.any(first["loss_curve"][:, 10:]) and not np.any(rest["loss_curve"][:, 30:])
    for name in whole.keys() - {"loss_curve"}:  # the best epoch's scores, the divergence rule
        np.testing.assert_allclose(rest[name], whole[name], rtol=1e-12, err_msg=name)


@pytest.mark.slow
def test_seeds_go_on_together_ranked_by_their_mean(digits):
    result = sweep(CONFIG, digits, SETTINGS[:4], seeds=2, halving=2, min_epochs=2)
    first = result.rungs[0]
    assert [len(r["settings"]) for r in result.rungs] == [4, 2]
    assert [r["seed"] for r in result.runs] == [0, 1] * 4
    for s, score in zip(first["settings"], first["scores"], strict=True):
        both = result.runs[2 * s:2 * s + 2]
        assert [r["rung"] for r in both] == [result.settings[s]["rung"]] * 2  # seeds go on together
        if s not in first["kept"]:  # its numbers after rung 0 are its final ones
            np.testing.assert_allclose(score, np.mean([r["val_accuracy"] for r in both]),
                                       rtol=1e-12)
    scores = dict(zip(first["settings"], first["scores"], strict=True))
    assert min(scores[s] for s in first["kept"]) >= max(
        v for s, v in scores.items() if s not in first["kept"])


@pytest.mark.slow
def test_diverged_settings_go_out_first_and_never_continue():
    config = TrainConfig(dataset="random", hidden=(8,), epochs=3, batch_size=50, optimizer="sgd",
                         dropout=0.0, reg=0.0, dtype="float64")
    data = load_data(config)
    # 1e300 overflows float64 at once; four settings, ETA 2: two places in rung 1.
    settings = [{"lr": 1e300}, {"lr": 1e-2}, {"lr": 1e301}, {"lr": 1e302}]
    result = sweep(config, data, settings, halving=2, min_epochs=1)
    assert result.criterion == "final_loss"
    assert [r["diverged"] for r in result.settings] == [True, False, True, True]
    assert result.rungs[0]["kept"] == [1]  # the one finite setting, not a diverged one
    assert [len(r["settings"]) for r in result.rungs] == [4, 1]
    assert result.best["lr"] == 1e-2 and result.best["epochs_trained"] == 3
    assert result.epochs_spent == 4 + 2

    every = sweep(config, data, [{"lr": 1e300}, {"lr": 1e301}], halving=2, min_epochs=1)
    assert every.best is None and len(every.rungs) == 1  # nothing went on
    assert all(r["epochs_trained"] == 1 and r["final_loss"] is None for r in every.runs)


# ------------------------------------------------------------------- chunks, groups


@pytest.mark.parametrize(("n_runs", "chunk", "n_dev", "group", "expected"), [
    (101, 100, 1, None, (2, 51, None)),  # two balanced chunks, not 100 + a padded 100
    (101, 100, 4, None, (2, 52, None)),  # a multiple of the devices
    (101, 100, 1, 5, (2, 51, 3)),  # groups of a size near 5 that divides the chunk
    (101, None, 1, 5, (1, 105, 5)),  # none does: 21 groups of 5, 4 runs of padding
    (100, None, 1, 5, (1, 100, 5)),
    (5, None, 1, 2, (1, 6, 2)),  # an explicit small group is kept, padded
    (4, None, 1, 5, (1, 4, None)),  # a group as large as the chunk: one vmap
    (5, 3, 1, None, (2, 3, None)),
])
def test_chunk_layout(n_runs, chunk, n_dev, group, expected):
    assert chunks._chunk_layout(n_runs, chunk, n_dev, group) == expected


def test_default_group_follows_the_backend():
    assert default_group("cpu") == chunks.CPU_GROUP
    assert default_group("gpu") is None and default_group("tpu") is None
    assert default_group() == (chunks.CPU_GROUP if jax.default_backend() == "cpu" else None)


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "settings", "match"), [
    ({"halving": 1}, None, "integer ETA >= 2"),
    ({"halving": 2.5}, None, "integer ETA >= 2"),
    ({"min_epochs": 2}, None, "pass halving=ETA"),
    ({"halving": 2, "min_epochs": 5}, None, r"expected an integer in \[1, epochs=4\]"),
    ({"halving": 2, "min_epochs": 0}, None, r"expected an integer in \[1, epochs=4\]"),
    ({"group": 0}, None, "group must be"),
    ({"group": "all"}, None, "group must be"),
    ({}, [{"lr": 0.1, "reg": 0.0}, {"lr": 0.2}], r"settings\[1\] sets \['lr'\] but settings\[0\] "
                                                  r"sets \['lr', 'reg'\]"),
])
def test_bad_options_are_config_errors(digits, kwargs, settings, match):
    with pytest.raises(ConfigError, match=match):
        sweep(CONFIG, digits, settings or SETTINGS, **kwargs)


def test_he_init_refuses_a_swept_weight_scale(digits):
    config = dataclasses.replace(CONFIG, init="he")
    with pytest.raises(ConfigError, match="init='he' .* ignores weight_scale"):
        sweep(config, digits, [{"weight_scale": 0.1}, {"weight_scale": 0.2}])
