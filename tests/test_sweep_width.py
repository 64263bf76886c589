"""Width sweeps: a run zero-padded to the widest network of its program is exactly the
narrower network (the step, the sweep against `fit`, halving across widths and depths), the
grouping of architectures into programs, and the CLI's --hidden/--layers lists, results and
`jaxnet train --config best.json`."""

import contextlib
import csv
import dataclasses
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import prepared

from jaxnet import cli, model, train
from jaxnet.config import TrainConfig
from jaxnet.errors import ConfigError
from jaxnet.fitting import fit
from jaxnet.sweep import arch_groups, make_settings, sweep

D, C = 6, 3
SMALL, PADDED = (D, 3, 5, C), (D, 7, 8, C)  # a 3-5 network inside a 7-8 one


def corner(a, shape):
    return np.asarray(a)[tuple(slice(0, n) for n in shape)]


def outside(a, shape):
    """The entries of `a` outside its leading corner of `shape` (the padding)."""
    rest = np.asarray(a).copy()
    rest[tuple(slice(0, n) for n in shape)] = 0
    return rest


def padded_init(init="normal"):
    return jax.jit(lambda w: model.init(jax.random.PRNGKey(1), PADDED, init=init,
                                        dtype=jnp.float64, widths=w))(jnp.array([3, 5]))


# ------------------------------------------------------------------- the padded network


@pytest.mark.x64
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("shape, size", [((5, 8), (5, 3)), ((8, 7), (3, 7)), ((6, 6), (1, 6))])
def test_draws_within_a_padded_array_are_jax_randoms_own(dtype, shape, size):
    from jaxnet import rng

    key = jax.random.PRNGKey(3)
    draw = jax.jit(lambda s: rng.uniform_within(key, shape, dtype, s))(jnp.array(size))
    np.testing.assert_array_equal(corner(draw, size), jax.random.uniform(key, size, dtype))


@pytest.mark.x64
@pytest.mark.parametrize("init", ["normal", "he"])
def test_padded_init_is_the_narrow_init_zero_padded(init):
    params, state = model.init(jax.random.PRNGKey(1), SMALL, init=init, dtype=jnp.float64)
    pparams, pstate = padded_init(init)
    for small, big in zip((*params, *state), (*pparams, *pstate), strict=True):
        for name, value in small.items():
            np.testing.assert_array_equal(corner(big[name], value.shape), value)
            assert not outside(big[name], value.shape).any(), name  # gamma, var too: zero


@pytest.mark.x64
def test_narrow_takes_the_network_out_of_its_padding():
    params, state = model.init(jax.random.PRNGKey(1), SMALL, dtype=jnp.float64)
    narrowed = model.narrow(*padded_init(), (3, 5))
    jax.tree.map(np.testing.assert_array_equal, narrowed, (params, state))
    with pytest.raises(ValueError, match="hidden layers"):
        model.narrow(*padded_init(), (3,))


@pytest.mark.x64
@pytest.mark.parametrize("grad", ["manual", "autodiff"])
@pytest.mark.parametrize("n", [10, 130])  # batch-major and feature-major layouts
def test_padded_loss_and_gradients_are_the_narrow_networks_with_dropout(grad, n):
    x = jax.random.normal(jax.random.PRNGKey(2), (n, D), jnp.float64)
    y = jnp.arange(n) % C
    fn = (model.manual_value_and_grad if grad == "manual"
          else jax.value_and_grad(model.loss, has_aux=True))
    kwargs = {"key": jax.random.PRNGKey(5), "dropout": 0.3, "reg": 1e-2}
    params, state = model.init(jax.random.PRNGKey(1), SMALL, dtype=jnp.float64)
    (loss, new_state), grads = fn(params, state, x, y, **kwargs)
    pparams, pstate = padded_init()
    (ploss, pnew_state), pgrads = jax.jit(
        lambda p, s, w: fn(p, s, x, y, widths=w, **kwargs))(pparams, pstate, jnp.array([3, 5]))
    np.testing.assert_allclose(ploss, loss, rtol=1e-12)
    for small, big in zip((*grads, *new_state), (*pgrads, *pnew_state), strict=True):
        for name, value in small.items():
            np.testing.assert_allclose(corner(big[name], value.shape), value, rtol=1e-10,
                                       atol=1e-14, err_msg=name)
            # Nothing reaches the padding: zero gradients, batchnorm statistics left at 0.
            assert not outside(big[name], value.shape).any(), name


@pytest.mark.x64
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop"])
def test_adam_steps_leave_the_padding_and_its_optimizer_state_at_zero(optimizer):
    config = TrainConfig(hidden=(3, 5), optimizer=optimizer, dropout=0.3, reg=1e-2,
                         dtype="float64", weight_decay=0.1)
    x = jax.random.normal(jax.random.PRNGKey(2), (20, D), jnp.float64)
    y = jnp.arange(20) % C
    optimizer = train.make_optimizer(config, 20)
    step = jax.jit(train.make_train_step(config, optimizer))

    def three_steps(ts):
        for i in range(3):
            ts, _ = step(ts, (x, y), jax.random.PRNGKey(10 + i))
        return ts

    params, state = model.init(jax.random.PRNGKey(1), SMALL, dtype=jnp.float64)
    alone = three_steps(train.init_train_state(config, SMALL, optimizer, params=params,
                                               bn_state=state))
    pparams, pstate = padded_init()
    ts = train.init_train_state(config, PADDED, optimizer, params=pparams, bn_state=pstate)
    padded = three_steps(ts._replace(hyper={"widths": jnp.array([3, 5], jnp.int32)}))
    for small, big in zip(jax.tree.leaves((alone.params, alone.bn_state, alone.opt_state)),
                          jax.tree.leaves((padded.params, padded.bn_state, padded.opt_state)),
                          strict=True):
        # atol: the first layer's bias feeds batchnorm, so its gradient is rounding noise
        # (~1e-12), which RMSprop's and Adam's normalised steps carry into the weights.
        np.testing.assert_allclose(corner(big, small.shape), small, rtol=1e-10, atol=1e-10)
        assert not outside(big, small.shape).any()


# ----------------------------------------------------------------- sweeps against fit

CONFIG = TrainConfig(hidden=(8,), epochs=2, batch_size=128, optimizer="adam", dropout=0.3,
                     reg=1e-3, lr=1e-2, dtype="float64", standardize=False)


@pytest.fixture(scope="module")
def digits():
    return prepared(dataclasses.replace(CONFIG, standardize=True))


@pytest.mark.slow
@pytest.mark.x64
@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_each_width_of_a_sweep_equals_fit_of_that_width(digits, grad):
    config = dataclasses.replace(CONFIG, grad=grad)
    settings = [{"hidden": h} for h in [(3,), (8,), (5, 4), (2, 6)]]
    assert [h for h, _ in arch_groups(settings, config.hidden)] == [(8,), (5, 6)]  # padded
    result = sweep(config, digits, settings)
    for i, s in enumerate(settings):
        alone = fit(dataclasses.replace(config, hidden=s["hidden"]), digits)
        per_epoch = result.loss_curves[i].reshape(config.epochs, -1).mean(axis=1)
        np.testing.assert_allclose(per_epoch, [h["loss"] for h in alone.history], rtol=1e-10)
        for split in ("train", "val", "test"):
            assert result.runs[i][f"{split}_accuracy"] == alone.metrics[f"{split}_accuracy"]
            np.testing.assert_allclose(result.runs[i][f"{split}_loss"],
                                       alone.metrics[f"{split}_loss"], rtol=1e-10)


@pytest.mark.slow
@pytest.mark.x64
def test_halving_across_widths_and_depths(digits):
    config = dataclasses.replace(CONFIG, epochs=4, dropout=0.0)
    settings = make_settings({"hidden": [(4,), (16,), (4, 4), (16, 16)], "lr": [1e-3, 3e-2]})
    result = sweep(config, digits, settings, halving=2, min_epochs=1)
    assert [r["epochs"] for r in result.rungs] == [1, 2, 4]
    assert [len(r["settings"]) for r in result.rungs] == [8, 4, 2]
    assert all(isinstance(r["hidden"], tuple) for r in result.runs + result.settings)
    assert [s["hidden"] for s in result.settings] == [s["hidden"] for s in settings]
    best = result.best
    assert best["rung"] == 2 and best["hidden"] in {s["hidden"] for s in settings}
    # The survivor that won went on from its own padded state: it is the run trained alone.
    alone = sweep(dataclasses.replace(config, hidden=best["hidden"], lr=best["lr"]), digits,
                  [{}], seeds=1)
    np.testing.assert_allclose(best["final_loss"], alone.settings[0]["final_loss"], rtol=1e-10)
    assert best["val_accuracy"] == alone.settings[0]["val_accuracy"]


# ------------------------------------------------------------------- settings, groups


def test_arch_groups_split_depths_and_distant_widths():
    settings = [{"hidden": h, "lr": lr} for h in [(32,), (64, 16), (256,), (64,), (16, 64)]
                for lr in (1e-3, 1e-2)]
    groups = arch_groups(settings, (100,), max_ratio=4)
    assert groups == [((64,), [0, 1, 6, 7]), ((256,), [4, 5]), ((64, 64), [2, 3, 8, 9])]
    assert arch_groups([{"lr": 1.0}], (100, 100)) == [((100, 100), [0])]


def test_make_settings_takes_architectures():
    settings = make_settings({"hidden": [64, (32, 32), [16]], "lr": [1e-3, 1e-2]})
    assert [s["hidden"] for s in settings] == [(64,), (64,), (32, 32), (32, 32), (16,), (16,)]
    drawn = make_settings({"hidden": [(8,), (16,)], "lr": (1e-3, 1e-1)}, "random", n_random=20)
    assert {s["hidden"] for s in drawn} == {(8,), (16,)}


@pytest.mark.parametrize("value", [0, (64, -1), (1.5,), "64"])
def test_bad_architectures_are_refused(value):
    with pytest.raises(ConfigError, match="hidden"):
        make_settings({"hidden": [value]})


# --------------------------------------------------------------------------------- CLI


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv, message", [
    (["--hidden", "64x32", "--layers", "2,3"], "sets the depth"),
    (["--hidden", "64x32", "--layers", "4"], "sets the depth"),
    (["--hidden", "8,16,32", "--layers", "2,3", "--zip"], "equal lengths"),
    (["--hidden", "8", "--layers", "1,2"], "--layers 1 is a network without hidden layers"),
    (["--hidden", "8,abc"], "--hidden expects"),
    (["--layers", "0,2"], "--layers expects"),
])
def test_sweep_refuses_unclear_architectures(argv, message, tmp_path):
    code, _, stderr = run(["sweep", *argv, "--lr", "1e-3,1e-2", "--out", str(tmp_path / "o")])
    assert code == 2 and message in stderr, stderr
    assert not (tmp_path / "o").exists()


def test_train_refuses_a_config_file_without_a_config(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"criterion": "val_accuracy", "best": None,
                                                 "config": None}))
    for path, message in [(tmp_path / "x.json", "every one diverged"),
                          (tmp_path / "missing.json", "cannot read it")]:
        code, _, stderr = run(["train", "--config", str(path), "--out", str(tmp_path / "o")])
        assert code == 2 and message in stderr, stderr


@pytest.mark.slow
def test_cli_width_sweep_writes_widths_and_train_config_retrains_the_best(tmp_path):
    out = tmp_path / "sweep"
    code, stdout, stderr = run(["sweep", "--hidden", "8,16", "--layers", "2,3", "--lr",
                                "1e-3,1e-2", "--epochs", "2", "--halving", "2", "--batch-size",
                                "256", "--quiet", "--out", str(out)])
    assert code == 0, stderr
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["hidden"], r["layers"]) for r in rows][::2] == [
        ("8", "2"), ("8x8", "3"), ("16", "2"), ("16x16", "3")]
    best = json.loads((out / "best.json").read_text())
    assert best["config"]["hidden"] == best["best"]["hidden"]
    assert best["config"]["lr"] == best["best"]["lr"] and best["config"]["epochs"] == 2
    assert f"jaxnet train --config {out / 'best.json'}" in stdout
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, _, stderr = run(["train", "--config", str(out / "best.json"), "--quiet",
                           "--out", str(tmp_path / "best")])
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert metrics["config"] == best["config"]
    # The sweep's run of that setting is the run trained alone (equal up to float32 sums).
    np.testing.assert_allclose(metrics["val_accuracy"], best["best"]["val_accuracy"], atol=0.02)

    code, _, stderr = run(["train", "--config", str(out / "best.json"), "--epochs", "1",
                           "--hidden", "4", "--layers", "2", "--quiet",
                           "--out", str(tmp_path / "over")])
    assert code == 0, stderr
    config = json.loads((tmp_path / "over" / "metrics.json").read_text())["config"]
    assert (config["epochs"], config["hidden"]) == (1, [4])  # flags given win
    assert config["lr"] == best["config"]["lr"]
