"""Optimizers by name: schedules, injected hyperparameters, CS231n's update rules."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnet import optim
from jaxnet.config import TrainConfig
from jaxnet.train import init_train_state, make_optimizer, make_train_step


def _make(name, *, learning_rate, schedule="constant", lr_decay=1.0, steps_per_epoch=1,
          total_steps=1, **hyper):
    """optim.make_optimizer with TrainConfig's defaults for the hyperparameters not given."""
    c = TrainConfig()
    values = {"momentum": c.momentum, "beta1": c.beta1, "beta2": c.beta2, "eps": c.eps,
              "rms_decay": c.rms_decay, "weight_decay": c.weight_decay, **hyper}
    return optim.make_optimizer(name, learning_rate=learning_rate, schedule_name=schedule,
                                lr_decay=lr_decay, steps_per_epoch=steps_per_epoch,
                                total_steps=total_steps, **values)


def _apply(opt, params, grads_seq):
    """Runs `opt` over a sequence of gradients; returns the params after each step."""
    state = opt.init(params)
    out = []
    for g in grads_seq:
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out, state


# ------------------------------------------------------------------ schedules


def test_constant_schedule_has_no_factor():
    assert optim.schedule("constant", steps_per_epoch=10, total_steps=100, lr_decay=0.95) is None


def test_step_schedule_decays_once_per_epoch():
    f = optim.schedule("step", steps_per_epoch=3, total_steps=30, lr_decay=0.5)
    got = [float(f(jnp.asarray(s))) for s in range(10)]
    # Epoch 0 (steps 0-2) runs at the base rate, epoch 1 at 0.5, epoch 2 at 0.25, ...
    assert got == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]


def test_cosine_schedule_goes_from_one_to_zero():
    total = 40
    f = optim.schedule("cosine", steps_per_epoch=4, total_steps=total, lr_decay=0.95)
    for s in (0, 1, 10, 20, 33, 40, 55):
        expected = 0.5 * (1 + math.cos(math.pi * min(s / total, 1.0)))
        assert float(f(jnp.asarray(s))) == pytest.approx(expected, abs=1e-6)
    assert float(f(jnp.asarray(0))) == 1.0
    assert float(f(jnp.asarray(total // 2))) == pytest.approx(0.5, abs=1e-6)
    assert float(f(jnp.asarray(total))) == pytest.approx(0.0, abs=1e-6)


def test_unknown_schedule_and_optimizer_are_clear_errors():
    with pytest.raises(ValueError, match="lr schedule must be one of"):
        optim.schedule("linear", steps_per_epoch=1, total_steps=1, lr_decay=0.95)
    with pytest.raises(ValueError, match=r"optimizer must be one of .*sgd.*got 'adagrad'"):
        _make("adagrad", learning_rate=0.1)


@pytest.mark.x64
@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_learning_rate_actually_applied_follows_the_schedule(schedule):
    """Plain SGD with gradient 1: each step moves the parameter by exactly -lr * factor."""
    lr, spe, total = 0.1, 2, 8
    opt = _make("sgd", learning_rate=lr, schedule=schedule, lr_decay=0.5,
                               steps_per_epoch=spe, total_steps=total)
    params = {"w": jnp.zeros((), jnp.float64)}
    steps, _ = _apply(opt, params, [{"w": jnp.ones((), jnp.float64)}] * total)
    moved = -np.diff([0.0] + [float(p["w"]) for p in steps])
    factor = optim.schedule(schedule, steps_per_epoch=spe, total_steps=total, lr_decay=0.5)
    expected = [lr * float(factor(jnp.asarray(s))) for s in range(total)]
    np.testing.assert_allclose(moved, expected, rtol=1e-6)
    if schedule == "step":
        np.testing.assert_allclose(moved, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125],
                                   rtol=1e-6)


@pytest.mark.x64
def test_train_make_optimizer_lays_the_schedule_over_epochs():
    """train.make_optimizer: steps_per_epoch = ceil(n_train / batch_size), total from epochs."""
    config = TrainConfig(optimizer="sgd", lr=1.0, lr_schedule="step", lr_decay=0.5,
                         batch_size=4, epochs=3)
    opt = make_optimizer(config, n_train=10)  # 3 batches per epoch, the last one filled up
    params = {"w": jnp.zeros((), jnp.float64)}
    steps, _ = _apply(opt, params, [{"w": jnp.ones((), jnp.float64)}] * 7)
    moved = -np.diff([0.0] + [float(p["w"]) for p in steps])
    np.testing.assert_allclose(moved, [1, 1, 1, 0.5, 0.5, 0.5, 0.25], rtol=1e-6)


# ------------------------------------------------------------------ injected hyperparameters


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_get_and_set_hyperparams(name):
    opt = _make(name, learning_rate=0.1, schedule="cosine", total_steps=10)
    state = opt.init({"w": jnp.zeros(3)})
    hyper = optim.get_hyperparams(state)
    assert set(hyper) == set(optim.INJECTED[name])
    assert float(hyper["learning_rate"]) == pytest.approx(0.1)
    new = optim.set_hyperparams(state, learning_rate=0.5)
    assert float(optim.get_hyperparams(new)["learning_rate"]) == pytest.approx(0.5)
    assert float(optim.get_hyperparams(state)["learning_rate"]) == pytest.approx(0.1)  # pure
    assert jax.tree.structure(new) == jax.tree.structure(state)
    with pytest.raises(ValueError, match="no hyperparameter \\['nope'\\]"):
        optim.set_hyperparams(state, nope=1.0)


@pytest.mark.parametrize("x64", [False, True])
def test_set_hyperparams_converts_host_values_as_jax_does(x64):
    # Numbers and NumPy arrays are converted by NumPy (no program compiled), traced values
    # by JAX: each gives the array `jnp.asarray(value, dtype)` gives, dtype and bits.
    with jax.enable_x64(x64):
        state = _make("adam", learning_rate=0.1).init({"w": jnp.zeros(3)})
        for value in (0.1, 3e-4, 1 / 3, 7, np.float64(0.2), np.array(1e-3), jnp.asarray(0.3)):
            new = optim.get_hyperparams(optim.set_hyperparams(state, learning_rate=value))
            expected = jnp.asarray(value, dtype=optim.get_hyperparams(state)["learning_rate"].dtype)
            assert new["learning_rate"].dtype == expected.dtype and not new["learning_rate"].weak_type
            np.testing.assert_array_equal(new["learning_rate"], expected)
        traced = jax.jit(lambda lr: optim.get_hyperparams(
            optim.set_hyperparams(state, learning_rate=lr))["learning_rate"])(0.25)
        assert float(traced) == 0.25


@pytest.mark.x64
def test_changing_learning_rate_does_not_recompile_the_step():
    traces = []
    config = TrainConfig(hidden=(8,), optimizer="momentum", lr=0.1, dropout=0.1, dtype="float64")
    opt = make_optimizer(config, n_train=16)
    raw_step = make_train_step(config, opt)

    def counted(ts, batch, key):
        traces.append(1)  # runs only while tracing
        return raw_step(ts, batch, key)

    step = jax.jit(counted)
    ts0 = init_train_state(config, (5, 8, 3), opt, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    batch = (jnp.asarray(rng.normal(size=(16, 5))), jnp.asarray(rng.integers(0, 3, 16), jnp.int32))
    key = jax.random.PRNGKey(1)
    moves = []
    for lr in (0.1, 0.01, 0.0):
        ts = ts0._replace(opt_state=optim.set_hyperparams(ts0.opt_state, learning_rate=lr))
        new, _ = step(ts, batch, key)
        moves.append(float(jnp.max(jnp.abs(new.params[0]["w"] - ts0.params[0]["w"]))))
    assert len(traces) == 1, f"the step was traced {len(traces)} times"
    # The new rates were really used: the first step moves the weights by lr * grad.
    assert moves[0] > 0
    assert moves[1] == pytest.approx(moves[0] / 10, rel=1e-6)
    assert moves[2] == 0.0


# ------------------------------------------------------------------ update rules


def test_rmsprop_matches_cs231n_for_two_steps():
    """CS231n: cache = d * cache + (1 - d) * g**2; w -= lr * g / (sqrt(cache) + eps)."""
    lr, decay, eps = 1e-2, 0.99, 1e-3  # a large eps, so inside vs outside the sqrt differs
    opt = _make("rmsprop", learning_rate=lr, rms_decay=decay, eps=eps)
    assert float(optim.get_hyperparams(opt.init({"w": jnp.zeros(1)}))["decay"]) == pytest.approx(0.99)
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) * 1e-2, rng.normal(size=(3, 4)) * 1e-2]
    steps, _ = _apply(opt, {"w": jnp.asarray(w0)}, [{"w": jnp.asarray(g)} for g in grads])

    w, cache = w0.copy(), np.zeros_like(w0)
    for g, got in zip(grads, steps, strict=True):
        cache = decay * cache + (1 - decay) * g**2
        w = w - lr * g / (np.sqrt(cache) + eps)
        np.testing.assert_allclose(np.asarray(got["w"]), w, rtol=1e-6, atol=1e-9)
    # ... and differs from eps inside the square root by far more than that tolerance.
    inside = w0 - lr * grads[0] / np.sqrt((1 - decay) * grads[0] ** 2 + eps)
    assert np.max(np.abs(inside - np.asarray(steps[0]["w"]))) > 1e-3


def test_momentum_matches_cs231n_at_a_constant_rate():
    """optax's v = m * v + g; p -= lr * v equals CS231n's v = m * v - lr * g; p += v."""
    lr, mu = 0.1, 0.9
    opt = _make("momentum", learning_rate=lr, momentum=mu)
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=5)
    grads = [rng.normal(size=5) for _ in range(3)]
    steps, _ = _apply(opt, {"w": jnp.asarray(w0)}, [{"w": jnp.asarray(g)} for g in grads])
    w, v = w0.copy(), np.zeros_like(w0)
    for g, got in zip(grads, steps, strict=True):
        v = mu * v - lr * g
        w = w + v
        np.testing.assert_allclose(np.asarray(got["w"]), w, rtol=1e-6)


def test_adam_matches_cs231n_for_two_steps():
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    opt = _make("adam", learning_rate=lr, beta1=b1, beta2=b2, eps=eps)
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=4)
    grads = [rng.normal(size=4), rng.normal(size=4)]
    steps, _ = _apply(opt, {"w": jnp.asarray(w0)}, [{"w": jnp.asarray(g)} for g in grads])
    w, m, v = w0.copy(), np.zeros(4), np.zeros(4)
    for t, (g, got) in enumerate(zip(grads, steps, strict=True), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        np.testing.assert_allclose(np.asarray(got["w"]), w, rtol=1e-6)
