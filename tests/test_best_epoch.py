"""One best-epoch rule (`train.improves`): `fit`, `--seeds`, sweeps and successive halving
all pick the same epoch, and the same parameters, on runs whose val accuracy ties."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close

from jaxnet import fitting
from jaxnet.config import TrainConfig
from jaxnet.sweep import halving, runs, sweep
from jaxnet.train import dims_for, improves, make_optimizer, steps_per_epoch

pytestmark = pytest.mark.x64  # the runs are compared with each other to float64 round-off

# A small float64 net on digits with 36 validation examples, whose accuracy moves in steps
# of 1/36 and ties often. Both seeds tie at their best val accuracy (0.9444):
#   seed 0: epochs 4-8, val loss .277 .270 .127 .229 .283: best 6 (the first: 4)
#   seed 1: epochs 6-8, val loss .144 .177 .113: best 8 (the first: 6)
# so the old sweep rule (the first strictly better accuracy) picked other epochs, and epochs
# tied after the best with a higher loss (seed 0: 7 and 8; seed 1: 7) must not replace it.
CONFIG = TrainConfig(hidden=(8,), epochs=8, batch_size=128, optimizer="momentum", lr=0.2,
                     init="normal", dropout=0.0, dtype="float64", grad="autodiff",
                     val_fraction=0.02, standardize=False)
SEEDS = (0, 1)
SPLITS = ("train", "val", "test")
METRICS = [f"{split}_{what}" for split in SPLITS for what in ("loss", "accuracy")]


@pytest.fixture(scope="module")
def digits():
    config = dataclasses.replace(CONFIG, standardize=True)
    return fitting.prepare(config, fitting.load_data(config))[0]


@pytest.fixture(scope="module")
def fits(digits):
    """`fit` of each seed: the reference every other path is compared with."""
    return [fitting.fit(dataclasses.replace(CONFIG, seed=s), digits) for s in SEEDS]


def _ties(history):
    """The epochs (1-based) at the best val accuracy."""
    top = max(h["val_accuracy"] for h in history)
    return [h["epoch"] for h in history if h["val_accuracy"] == top]


def assert_same_epoch(row, result, *, rtol=1e-12):
    """`row` (a sweep run) reports the parameters of `result`'s (a fit's) best epoch."""
    history, best = result.history, result.metrics["best_epoch"]
    for name in METRICS:
        np.testing.assert_allclose(row[name], result.metrics[name], rtol=rtol, err_msg=name)
    # ... and not those of another epoch tied with it.
    for epoch in _ties(history):
        if epoch != best:
            assert not math.isclose(row["val_loss"], history[epoch - 1]["val_loss"], rel_tol=1e-6)


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(("acc", "loss", "best_acc", "best_loss", "expected"), [
    (0.9, 0.5, 0.8, 0.1, True),  # higher accuracy wins, whatever the loss
    (0.7, 0.1, 0.8, 0.5, False),  # lower accuracy loses, whatever the loss
    (0.8, 0.4, 0.8, 0.5, True),  # a tie goes to the lower loss
    (0.8, 0.6, 0.8, 0.5, False),
    (0.8, 0.5, 0.8, 0.5, False),  # a tie in both keeps the earlier epoch
    (0.0, 9.0, -math.inf, math.inf, True),  # the first epoch beats the start
    (math.nan, 0.1, -math.inf, math.inf, False),  # NaN never improves
    (0.8, math.nan, 0.8, 0.5, False),
])
def test_improves_on_python_floats_and_traced_scalars(acc, loss, best_acc, best_loss, expected):
    assert improves(acc, loss, best_acc, best_loss) is expected
    args = [jnp.asarray(v, jnp.float32) for v in (acc, loss, best_acc, best_loss)]
    assert bool(jax.jit(improves)(*args)) is expected
    batched = jax.vmap(improves)(*(jnp.stack([a, a]) for a in args))
    assert batched.tolist() == [expected, expected]


def test_the_runs_tie_where_the_old_sweep_rule_chose_otherwise(fits):
    # Guards the scenario the tests below rely on.
    for result in fits:
        history, best = result.history, result.metrics["best_epoch"]
        ties = _ties(history)
        assert ties[0] < best  # the old sweep rule's pick was another epoch
        assert best == min(ties, key=lambda e: history[e - 1]["val_loss"])  # fit: the lowest loss
        # A tie after a better one, with a higher loss: a rule that let any tie in would take it.
        assert any(history[e - 1]["val_loss"] > min(history[t - 1]["val_loss"] for t in ties
                                                    if t < e) for e in ties[1:])
    assert [r.metrics["best_epoch"] for r in fits] == [6, 8]
    history = fits[0].history  # seed 0: such ties after the best epoch too (7 and 8)
    assert all(history[e - 1]["val_loss"] > history[5]["val_loss"] for e in (7, 8))
    assert {7, 8} <= set(_ties(history))


# --------------------------------------------------------------------- every path agrees


def test_a_sweep_of_one_setting_and_its_seeds_pick_fits_epoch(fits, digits):
    # One setting under two seeds, as train_seeds (`--seeds`) runs it: per seed, fit's epoch.
    seeded = sweep(CONFIG, digits, [{}], seeds=len(SEEDS))
    for row, result in zip(seeded.runs, fits, strict=True):
        assert_same_epoch(row, result)
    # fit_seeds (through train_seeds) reports those same runs.
    metrics = fitting.fit_seeds(CONFIG, len(SEEDS), digits)
    for name in ("train_accuracy", "val_accuracy", "test_accuracy"):
        np.testing.assert_allclose(metrics[f"{name}_per_seed"], [r.metrics[name] for r in fits],
                                   rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(metrics[f"{name}_per_seed"], [r[name] for r in seeded.runs],
                                   rtol=0, err_msg=name)


def test_halving_carries_the_best_accuracy_and_loss_across_rungs(fits, digits):
    # Rungs at 6 and 8 epochs: seed 0's best, epoch 6, is carried over the cut, where ties
    # with a higher loss (epochs 7 and 8) must not replace it.
    slow = {"lr": 1e-3}  # far behind: cut first
    halved = sweep(CONFIG, digits, [slow, {"lr": CONFIG.lr}], seeds=len(SEEDS), halving=2,
                   min_epochs=6)
    assert [r["epochs"] for r in halved.rungs] == [6, CONFIG.epochs]
    assert halved.rungs[0]["kept"] == [1]
    for row, result in zip(halved.runs[len(SEEDS):], fits, strict=True):
        assert row["epochs_trained"] == CONFIG.epochs
        assert_same_epoch(row, result)


@pytest.mark.parametrize("segments", [(8,), (7, 1)])
def test_sweep_segments_carry_fits_best_parameters(fits, digits, segments):
    """The parameters themselves: the best (params, bn_state) in the sweep's carry after
    `segments` epochs (through the host between segments, as halving does) are fit's."""
    n_train = len(digits.x_train)
    optimizer = make_optimizer(CONFIG, n_train)
    init = runs._init_fn(CONFIG, dims_for(CONFIG, digits), optimizer, None)
    carry = init(np.stack([np.asarray(jax.random.PRNGKey(s)) for s in SEEDS]), {})
    splits = jax.device_put({name: (getattr(digits, f"x_{name}"),
                                    getattr(digits, f"y_{name}").astype(np.int32))
                             for name in SPLITS})
    for epochs in segments:
        one = runs._segment_fn(CONFIG, optimizer, n_train, True, epochs, keep_state=True)
        carry, _ = jax.jit(jax.vmap(one, in_axes=(0, None)))(carry, splits)
        carry = jax.device_get(carry)
    _, best, best_acc, best_loss = carry
    for k, result in enumerate(fits):
        chosen = result.history[result.metrics["best_epoch"] - 1]
        assert best_acc[k] == chosen["val_accuracy"]
        np.testing.assert_allclose(best_loss[k], chosen["val_loss"], rtol=1e-12)
        assert_trees_close(jax.tree.map(lambda a, k=k: a[k], best[:2]),
                           (result.params, result.bn_state), rtol=1e-12)
        assert best[2][k] == result.metrics["best_epoch"] * steps_per_epoch(CONFIG, n_train)


# ----------------------------------------------------------------- ranking settings


def test_settings_rank_by_val_accuracy_then_final_loss_then_their_order():
    """Ranking settings (not epochs): halving's cuts and the best setting use one order."""
    def row(acc, final, diverged=False):
        return {"val_accuracy": acc, "final_loss": final, "diverged": diverged, "rung": 0}

    rows = [row(0.9, 0.1), row(0.95, 0.5), row(0.95, 0.2), row(0.95, 0.2), row(None, None, True)]
    assert halving._ranked(rows, "val_accuracy") == [2, 3, 1, 0]  # 2 and 3 tie: the earlier first
    assert halving._best(rows, "val_accuracy") is rows[2]
    assert halving._kept(rows, "val_accuracy", 2).tolist() == [2, 3]
    assert halving._kept(rows, "val_accuracy", 5).tolist() == [0, 1, 2, 3]  # never the diverged one
    assert halving._ranked(rows, "final_loss") == [0, 2, 3, 1]
    assert halving._best(rows, "final_loss") is rows[0]
    assert halving._best([rows[-1]], "val_accuracy") is None
