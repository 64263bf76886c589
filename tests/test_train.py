"""Training: fit on the notebook's data and digits, resume, divergence, early stopping."""

import dataclasses
import functools
import math
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close, compiled_programs, prepared, train_only

from jaxnet import checkpoint as ckpt
from jaxnet import fitting, optim, train
from jaxnet.config import TrainConfig
from jaxnet.fitting import fit
from jaxnet.train import (
    dims_for,
    evaluate,
    init_train_state,
    make_epoch,
    make_optimizer,
    make_train_step,
)

SMALL = {"hidden": (16,), "epochs": 4, "lr_schedule": "step", "lr_decay": 0.9}  # quick runs


@pytest.fixture(scope="module")
def digits():
    return prepared(TrainConfig())


@pytest.fixture(scope="module")
def digits64():
    return prepared(TrainConfig(dtype="float64"))


def _best_epoch(history):
    """The epoch with the best val accuracy, ties going to the lower val loss (then the first)."""
    return max(history, key=lambda row: (row["val_accuracy"], -row["val_loss"]))["epoch"]


def _epochs_since_improvement(history):
    """Epochs since the last one that set a new best (val accuracy, then loss) or lowered
    the val loss below every earlier epoch's by train.LOSS_TOLERANCE."""
    last = 0
    for i, row in enumerate(history):
        earlier = history[:i]
        best = max(earlier, key=lambda r: (r["val_accuracy"], -r["val_loss"]), default=None)
        lowest = min((r["val_loss"] for r in earlier), default=math.inf)
        if (best is None or (row["val_accuracy"], -row["val_loss"])
                > (best["val_accuracy"], -best["val_loss"])
                or row["val_loss"] < lowest - train.LOSS_TOLERANCE):
            last = row["epoch"]
    return len(history) - last


# ------------------------------------------------------------------ learning at all


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, lr", [("momentum", 3e-2), ("adam", 1e-3)])
def test_overfits_the_notebooks_50_random_examples(optimizer, lr):
    """The notebook's sanity check: the 5-layer net memorises 50 random examples."""
    config = TrainConfig(dataset="random", optimizer=optimizer, lr=lr, dropout=0.0,
                         batch_size=25, epochs=15)
    assert config.hidden == (100, 100, 100, 100)
    result = fit(config)
    assert result.metrics["train_accuracy"] == 1.0, [r["train_accuracy"] for r in result.history]
    assert result.history[-1]["train_accuracy"] == 1.0
    assert result.metrics["val_accuracy"] is None and result.metrics["test_accuracy"] is None


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, lr", [
    ("sgd", 1e-1), ("momentum", 3e-2), ("nesterov", 3e-2), ("rmsprop", 3e-3), ("adam", 1e-2),
    ("adamw", 1e-2),
])
def test_every_optimizer_lowers_the_loss_on_digits(digits, optimizer, lr):
    data = train_only(digits)
    config = TrainConfig(hidden=(32,), optimizer=optimizer, lr=lr, epochs=2, dropout=0.0)
    p0, s0 = init_train_state(config, dims_for(config, data), make_optimizer(config, 1))[:2]
    loss0 = float(evaluate(p0, s0, data.x_train, data.y_train, config=config)[0])
    assert loss0 == pytest.approx(math.log(10), abs=0.3)  # chance level at initialisation
    result = fit(config, data)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.6 * loss0, (loss0, losses)
    assert result.metrics["train_accuracy"] > 0.8


def _shuffle(shuffle_key, n, batch):
    """An epoch's example order by its definition, from `jax.random.permutation` (not from
    jaxnet): a shuffle of all n examples, the last batch filled up from a second shuffle."""
    first, fill = jax.random.split(shuffle_key)
    steps = math.ceil(n / batch)
    extra = jax.random.permutation(fill, n)[: steps * batch - n]
    return jnp.concatenate([jax.random.permutation(first, n), extra]).reshape(steps, batch)


@pytest.mark.parametrize("n, batch", [(12, 4), (10, 3), (1000, 64)])
def test_an_epochs_order_is_the_shuffle_its_key_draws(n, batch):
    key = jax.random.PRNGKey(7)
    ts = train.TrainState(None, None, None, jnp.zeros((), jnp.int32), key, {})
    _, _, order = train.epoch_plan(ts, n, batch)
    _, shuffle_key, _ = jax.random.split(key, 3)
    expected = _shuffle(shuffle_key, n, batch)
    np.testing.assert_array_equal(order, expected)
    # The reference is a shuffle: every example once in the first n, not in their order.
    np.testing.assert_array_equal(np.sort(np.ravel(expected)[:n]), np.arange(n))
    assert not np.array_equal(np.ravel(expected)[:n], np.arange(n))


@pytest.mark.x64
@pytest.mark.parametrize("batch", [32, 100, 160, 300])  # batch-major, feature-major, full batch
def test_an_epoch_takes_the_steps_of_its_shuffled_minibatches_in_order(digits64, batch):
    n = 300  # 100 -> 3 steps; 160 -> 2 (the last filled up); 300 -> the full batch
    x, y = jnp.asarray(digits64.x_train[:n]), jnp.asarray(digits64.y_train[:n])
    config = TrainConfig(hidden=(16,), dtype="float64", dropout=0.2, optimizer="momentum",
                         batch_size=batch, lr=0.05)
    opt = make_optimizer(config, n)
    ts = init_train_state(config, dims_for(config, digits64), opt)
    got, losses = jax.jit(make_epoch(config, opt, n, keep_finite=False))(ts, x, y)
    # The same steps by hand: the epoch's key split, its order, one step per minibatch.
    key, shuffle_key, dropout_key = jax.random.split(ts.key, 3)
    step = jax.jit(make_train_step(config, opt))
    want, expected = ts._replace(key=key), []
    order = _shuffle(shuffle_key, n, batch)
    keys = jax.random.split(dropout_key, len(order))
    for idx, k in zip(order, keys, strict=True):
        want, metrics = step(want, (x, y) if batch == n else (x[idx], y[idx]), k)
        expected.append(float(metrics["loss"]))
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.x64
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_manual_and_autodiff_gradients_give_the_same_trajectory(digits64, dropout):
    n_steps, batch = 20, 32
    x, y = jnp.asarray(digits64.x_train), jnp.asarray(digits64.y_train)
    keys = jax.random.split(jax.random.PRNGKey(3), n_steps)
    runs = {}
    for grad in ("manual", "autodiff"):
        config = TrainConfig(hidden=(32, 16), dtype="float64", grad=grad, dropout=dropout,
                             optimizer="adam", lr=1e-2)
        opt = make_optimizer(config, len(x))
        ts = init_train_state(config, dims_for(config, digits64), opt)
        step = jax.jit(make_train_step(config, opt))
        losses = []
        for i in range(n_steps):
            sl = slice(i * batch, (i + 1) * batch)
            ts, metrics = step(ts, (x[sl], y[sl]), keys[i])
            losses.append(float(metrics["loss"]))
        runs[grad] = ts, np.array(losses)
    (ts_m, loss_m), (ts_a, loss_a) = runs["manual"], runs["autodiff"]
    assert loss_m[-1] < loss_m[0]  # it did train
    np.testing.assert_allclose(loss_m, loss_a, rtol=1e-10)
    # atol: the first layer's bias has a zero gradient (batchnorm subtracts it right away), so
    # both runs hold only rounding noise (~1e-11) there.
    chex.assert_trees_all_close(ts_m.params, ts_a.params, rtol=1e-9, atol=1e-9)
    # Scaled by each leaf's largest entry: batchnorm means near 0 differ by ~2e-11 absolute.
    assert_trees_close(ts_m.bn_state, ts_a.bn_state, rtol=1e-9)
    assert_trees_close(ts_m.opt_state, ts_a.opt_state, rtol=1e-8, atol=1e-12)
    assert ts_m.params[0]["w"].dtype == jnp.float64


@pytest.mark.slow
def test_digits_with_the_defaults_reaches_96_percent(default_run):
    result, _ = default_run
    # One seed on 360 test digits: 0.975 on Zen 3 and Zen 5 VMs, 0.967 on a Zen 4 (the same
    # code; float32 round-off differs with the CPU's kernels and moves a few predictions).
    # Over seeds and splits jaxnet reaches 97.9 +- 0.6% (README, "Your own data").
    assert result.metrics["test_accuracy"] >= 0.96, result.metrics["test_accuracy"]
    assert not result.diverged and result.message.startswith("early stopping after epoch")
    # epochs=None: until neither the val accuracy nor the val loss improves for 10 epochs
    assert result.metrics["epochs_run"] == len(result.history) <= TrainConfig().max_epochs
    assert _epochs_since_improvement(result.history) == 10
    assert result.metrics["best_epoch"] == _best_epoch(result.history)
    assert result.metrics["examples_per_second"] > 0
    assert result.final.params[0]["w"].dtype == jnp.float32


@pytest.mark.slow
def test_fit_compiles_the_epoch_once(default_run):
    result, traces = default_run
    assert len(result.history) > 10
    assert traces == {"epoch": 1, "compiled epochs": 1}, (
        f"the epoch function was traced {traces['epoch']} times and compiled "
        f"{traces['compiled epochs']} times")


@pytest.fixture(scope="module")
def default_run():
    """`fit(TrainConfig())`, counting how often the epoch function is traced."""
    traces = {"epoch": 0}
    real = train.make_epoch

    def counting_make_epoch(*args, **kwargs):
        epoch = real(*args, **kwargs)

        @functools.wraps(epoch)  # compiled as jit(epoch)
        def counted(ts, x, y):
            traces["epoch"] += 1  # Python side effect: runs once per trace
            return epoch(ts, x, y)

        return counted

    with pytest.MonkeyPatch.context() as mp, compiled_programs() as compiled:
        mp.setattr(train, "make_epoch", counting_make_epoch)
        result = fit(TrainConfig())
    # On small data (digits) fit runs its epochs in chunks (`train.make_epochs`, "epochs"),
    # the one epoch function traced inside; one epoch per call elsewhere ("epoch").
    traces["compiled epochs"] = compiled.count("epoch") + compiled.count("epochs")
    return result, traces


# ------------------------------------------------------------------ resume


@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory):
    """A small run of SMALL["epochs"] epochs in one go, with its checkpoint folder."""
    out = tmp_path_factory.mktemp("uninterrupted")
    config = TrainConfig(**SMALL)
    return config, fit(config, digits, out_dir=out), out


@pytest.mark.slow
def test_resume_equals_the_uninterrupted_run(digits, uninterrupted, tmp_path):
    config, full, _ = uninterrupted
    first = fit(dataclasses.replace(config, epochs=2), digits, out_dir=tmp_path)
    assert len(first.history) == 2
    with compiled_programs() as compiled:
        resumed = fit(config, digits, out_dir=tmp_path, resume=True)
    # The uninterrupted run compiled this config's programs; resuming reuses them all.
    assert compiled == [], f"resuming compiled {compiled} again"
    chex.assert_trees_all_equal(resumed.final, full.final)  # params, bn, optimizer state, step, key
    chex.assert_trees_all_equal(resumed.params, full.params)
    assert resumed.history == full.history
    assert resumed.metrics["best_epoch"] == full.metrics["best_epoch"]
    assert resumed.metrics["test_accuracy"] == full.metrics["test_accuracy"]
    assert ckpt.load_metadata(tmp_path)["epoch"] == config.epochs


# `fitting._jitted` keys fit's programs on `program_config`: the lr lives in the optimizer
# state and the step and constant schedules never read the epoch count, so neither (nor the
# seed) compiles the epoch, the evaluation or the initial state again.
@pytest.mark.slow
@pytest.mark.parametrize("field, value", [("epochs", 6), ("lr", 1e-2), ("seed", 3)])
def test_another_lr_or_epoch_count_reuses_the_compiled_epoch(digits, uninterrupted, field,
                                                             value):
    config, _, _ = uninterrupted
    with compiled_programs() as compiled:
        result = fit(dataclasses.replace(config, **{field: value}), digits)
    assert compiled == [], f"fit with {field}={value} compiled {compiled}"
    lr = value if field == "lr" else config.lr
    assert float(optim.get_hyperparams(result.final.opt_state)["learning_rate"]) == np.float32(lr)


@pytest.mark.slow
def test_a_fit_that_shares_a_program_takes_the_steps_of_its_own_config(digits):
    # The shared program runs with the fit's own lr in the optimizer state: the same steps
    # as an epoch built for that lr alone.
    config = TrainConfig(**SMALL, lr=3e-3, seed=1, standardize=False)
    fit(dataclasses.replace(config, lr=1e-1, seed=2), digits)  # compiles the shared program
    result = fit(config, digits)
    n = len(digits.x_train)
    opt = make_optimizer(config, n)
    ts = init_train_state(config, dims_for(config, digits), opt)
    epoch = jax.jit(make_epoch(config, opt, n))
    x, y = jnp.asarray(digits.x_train, jnp.float32), jnp.asarray(digits.y_train, jnp.int32)
    for _ in range(config.epochs):
        ts, _ = epoch(ts, x, y)
    chex.assert_trees_all_equal(result.final, ts)


@pytest.mark.slow
def test_interrupted_checkpoint_write_keeps_the_previous_one(uninterrupted, tmp_path,
                                                            monkeypatch):
    """The next epoch's save dies halfway: fit's last checkpoint is still whole and loads."""
    _, full, out = uninterrupted
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    template = {"train_state": full.final, "best": {"params": full.params, "bn_state": full.bn_state},
                "preprocessing": full.preprocessing.to_arrays()}
    tree, meta = ckpt.load_checkpoint(tmp_path, template)
    blown = jax.tree.map(lambda a: np.full_like(a, 7), tree)
    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", disk_full)  # dies after writing, before the rename
    with pytest.raises(ckpt.CheckpointError, match="no space left on device"):
        ckpt.save_checkpoint(tmp_path, blown, {**meta, "epoch": meta["epoch"] + 1})
    monkeypatch.undo()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # no temp file left behind
    again, meta_again = ckpt.load_checkpoint(tmp_path, template)  # the hash still checks out
    assert meta_again == meta
    chex.assert_trees_all_equal(again, tree)
    chex.assert_trees_all_equal(again["train_state"].params, full.final.params)


@pytest.mark.slow
def test_resume_from_a_corrupt_checkpoint_is_a_clear_error(digits, uninterrupted, tmp_path):
    config, _, out = uninterrupted
    data = (out / ckpt.CHECKPOINT_FILE).read_bytes()
    (tmp_path / ckpt.CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        fit(config, digits, out_dir=tmp_path, resume=True)
    (tmp_path / ckpt.CHECKPOINT_FILE).write_bytes(b"not a checkpoint at all")
    with pytest.raises(ckpt.CheckpointError, match="corrupt or not a jaxnet checkpoint"):
        fit(config, digits, out_dir=tmp_path, resume=True)


@pytest.mark.slow
def test_resume_with_another_architecture_or_settings_is_a_clear_error(digits, uninterrupted):
    config, _, out = uninterrupted
    with pytest.raises(ValueError, match=r"different config \(hidden: saved \(16,\), now \(32,\)"):
        fit(dataclasses.replace(config, hidden=(32,)), digits, out_dir=out, resume=True)
    with pytest.raises(ValueError, match=r"lr: saved 0\.001, now 0\.1.*only epochs may change"):
        fit(dataclasses.replace(config, lr=0.1), digits, out_dir=out, resume=True)
    with pytest.raises(ValueError, match="already holds 4 epochs but epochs=2"):
        fit(dataclasses.replace(config, epochs=2), digits, out_dir=out, resume=True)


def test_resume_needs_a_checkpoint(digits, tmp_path):
    with pytest.raises(ValueError, match="needs out_dir"):
        fit(TrainConfig(**SMALL), digits, resume=True)
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint found"):
        fit(TrainConfig(**SMALL), digits, out_dir=tmp_path / "nothing", resume=True)


# ------------------------------------------------------------------ divergence


@pytest.mark.slow
def test_a_huge_learning_rate_stops_with_diverged(digits, tmp_path):
    config = TrainConfig(hidden=(16,), optimizer="sgd", lr=1e30, epochs=3, lr_schedule="cosine")
    result = fit(config, train_only(digits), out_dir=tmp_path)
    assert result.diverged and result.metrics["diverged"]
    msg = result.message
    assert "diverged" in msg and "step 2 (epoch 1)" in msg, msg
    # The learning rate applied at that step: the base rate times the schedule's factor.
    factor = float(optim.schedule("cosine", steps_per_epoch=20, total_steps=60, lr_decay=1.0)(1))
    assert f"learning rate {1e30 * factor:g} (base 1e+30, cosine schedule)" in msg, msg
    assert "lower the learning rate" in msg and "lr=1e+29" in msg
    assert result.history == [] and result.metrics["epochs_run"] == 0
    # The kept parameters are those before the diverging epoch: here the initial ones.
    chex.assert_tree_all_finite((result.final, result.params))
    p0 = init_train_state(config, dims_for(config, digits), make_optimizer(config, 1)).params
    chex.assert_trees_all_equal(result.final.params, p0)
    assert not (tmp_path / ckpt.CHECKPOINT_FILE).exists()  # no finite epoch to save


@pytest.mark.slow
# lr=1e39 is the point: NumPy warns as it casts it to float32's inf
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_blow_up_in_the_last_update_is_diverged():
    # One full-batch step: its loss (taken before the update) is finite, the update is not.
    from jaxnet.data import random_data

    # lr=1e39 overflows float32, so the first update makes the weights non-finite.
    config = TrainConfig(dataset="random", hidden=(16,), optimizer="sgd", lr=1e39, epochs=2,
                         batch_size=50, dropout=0.0)
    result = fit(config, random_data(d=32))
    assert result.diverged, result.metrics
    assert ("the parameters, batchnorm statistics or optimizer state became non-finite at step 1 "
            "(epoch 1)") in result.message, result.message
    assert "lr=1e+38" in result.message  # a tenth of the base rate (float32 holds it as inf)
    chex.assert_tree_all_finite((result.final.params, result.params))


def test_a_diverging_epoch_returns_the_state_from_before_it(digits):
    """make_epoch(keep_finite=True): a non-finite loss keeps the last finite state."""
    config = TrainConfig(hidden=(16,), optimizer="sgd", lr=0.1, dropout=0.0)
    n = 256
    x, y = jnp.asarray(digits.x_train[:n]), jnp.asarray(digits.y_train[:n])
    opt = make_optimizer(config, n)
    epoch = jax.jit(make_epoch(config, opt, n))
    ts0 = init_train_state(config, dims_for(config, digits), opt)
    ts1, losses1 = epoch(ts0, x, y)
    assert np.all(np.isfinite(losses1)) and int(ts1.step) == 4
    blown = ts1._replace(opt_state=optim.set_hyperparams(ts1.opt_state, learning_rate=1e30))
    ts2, losses2 = epoch(blown, x, y)  # same compiled function: lr is injected
    assert not np.all(np.isfinite(losses2))
    chex.assert_trees_all_equal((ts2.params, ts2.bn_state, ts2.step), (ts1.params, ts1.bn_state, ts1.step))
    assert not np.array_equal(ts2.key, ts1.key)  # the next epoch still gets fresh randomness
    assert epoch._cache_size() == 1


# ------------------------------------------------------------------ early stopping


@pytest.mark.slow
def test_early_stopping_keeps_the_best_params_with_their_batchnorm_statistics(digits):
    config = TrainConfig(hidden=(32,), lr=1e-2, epochs=40, patience=2)
    result = fit(config, digits)
    m = result.metrics
    assert m["epochs_run"] < config.epochs, "never stopped early"
    assert "early stopping" in result.message
    assert _epochs_since_improvement(result.history) == config.patience
    vals = [row["val_accuracy"] for row in result.history]
    assert m["best_epoch"] == _best_epoch(result.history)
    assert vals[m["best_epoch"] - 1] == max(vals)
    assert m["val_accuracy"] == pytest.approx(max(vals), abs=1e-9)
    # The returned params and bn_state evaluate to that val accuracy ...
    _, acc = evaluate(result.params, result.bn_state, digits.x_val, digits.y_val, config=config)
    assert float(acc) == pytest.approx(max(vals), abs=1e-9)
    _, test_acc = evaluate(result.params, result.bn_state, digits.x_test, digits.y_test,
                           config=config)
    assert float(test_acc) == pytest.approx(m["test_accuracy"], abs=1e-9)
    # ... and are not the last epoch's (training went on for `patience` epochs).
    assert not np.array_equal(result.params[0]["w"], result.final.params[0]["w"])
    assert not np.array_equal(result.bn_state[0]["mean"], result.final.bn_state[0]["mean"])


def test_patience_without_a_validation_set_is_an_error(digits):
    with pytest.raises(ValueError, match=r"no validation set.*val_fraction"):
        fit(TrainConfig(hidden=(16,), patience=3), train_only(digits))


# ------------------------------------------------------------------ validation before work


@pytest.mark.parametrize("field, value, expected", [
    ("dropout", 1.5, "drop probability"),
    ("lr", -1.0, "finite number > 0"),
    ("lr", float("nan"), "finite number > 0"),
    ("batch_size", 1, "integer >= 2"),
    ("epochs", 0, "integer >= 1"),
    ("epochs", 2.5, "integer >= 1"),
    ("hidden", (100, -5), "positive integer widths"),
    ("hidden", (0,), "positive integer widths"),
    ("optimizer", "adagrad", "one of sgd, momentum"),
    ("lr_schedule", "linear", "one of constant, step, cosine"),
    ("dataset", "mnist", "one of digits, random"),
    ("val_fraction", 1.2, "fraction in"),
    ("test_fraction", 0.95, r"val_fraction \+ test_fraction < 1"),
    ("momentum", 1.0, r"in \[0, 1\)"),
    ("reg", -1e-3, "finite number >= 0"),
    ("patience", 0, "None or an integer >= 1"),
    ("seed", 1.5, "an integer"),
    ("grad", "numeric", "one of manual, autodiff"),
])
def test_bad_config_values_fail_before_any_work(monkeypatch, field, value, expected):
    def no_work(*args, **kwargs):
        raise AssertionError("fit did work before validating the config")

    monkeypatch.setattr(fitting, "load_data", no_work)
    monkeypatch.setattr(train, "make_optimizer", no_work)
    config = dataclasses.replace(TrainConfig(), **{field: value})
    with pytest.raises(ValueError, match=expected) as err:
        fit(config)
    assert f"{field}=" in str(err.value)


def test_config_round_trips_through_a_dict():
    config = TrainConfig(hidden=[8, 4], patience=3, data_path=None)
    assert config.hidden == (8, 4)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({**config.to_dict(), "unknown_future_field": 1}) == config
