"""The first layer trained in the span of the inputs (jaxnet.input_span): the gradient of the
first product, and sweeps that give the same numbers as with the (H1, D) weights."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnet import input_span, model
from jaxnet.config import TrainConfig
from jaxnet.data import Dataset
from jaxnet.errors import ConfigError
from jaxnet.sweep import sweep

pytestmark = pytest.mark.x64  # trajectories compared tightly in float64

REPO = pathlib.Path(__file__).resolve().parents[1]


def _wide(n_train=40, d=120, n_eval=15, classes=3, seed=0):
    """Few wide examples, as the span form wants them: 40 training examples of 120 values."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d))

    def split(n):
        y = rng.integers(0, classes, n).astype(np.int32)
        return centers[y] + 2.0 * rng.normal(size=(n, d)), y

    (xt, yt), (xv, yv), (xs, ys) = split(n_train), split(n_eval), split(n_eval)
    return Dataset(name="wide", x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs,
                   y_test=ys, classes=classes)


CONFIG = TrainConfig(dataset="random", hidden=(12, 7), epochs=4, init="normal", reg=0.0,
                     dtype="float64")


@pytest.mark.parametrize("n", [20, 130])  # batch-major and feature-major layouts
@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_the_first_products_gradient_gives_the_first_layers_weight_gradient(n, grad):
    dims = (30, 9, 8, 4)
    params, state = model.init(jax.random.PRNGKey(0), dims, dtype=jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (n, dims[0]), jnp.float64)
    y = jax.random.randint(jax.random.PRNGKey(2), (n,), 0, dims[-1])
    key = jax.random.PRNGKey(3)
    kwargs = {"key": key, "train": True, "dropout": 0.3}
    # Both jitted: compiled whole, each runs ~2x faster than op by op (the eager paths are
    # tests/test_model.py's).
    (want_loss, want_state), want = jax.jit(
        jax.value_and_grad(model.loss, has_aux=True), static_argnames="train")(
        params, state, x, y, **kwargs)
    (loss, new_state), grads = jax.jit(
        model.value_and_grad_from_first, static_argnames=("train", "grad"))(
        params, state, x @ params[0]["w"].T, y, grad=grad, **kwargs)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    assert grads[0]["w"].shape == (n, dims[1])
    np.testing.assert_allclose(grads[0]["w"].T @ x, want[0]["w"], rtol=1e-9, atol=1e-12)
    first = [{k: v for k, v in g[0].items() if k != "w"} for g in (grads, want)]
    chex.assert_tree_all_finite((loss, new_state, grads))
    chex.assert_trees_all_close((first[0], *grads[1:], new_state),
                                (first[1], *want[1:], want_state), rtol=1e-9, atol=1e-12)


def _same(a, b):
    assert a.in_span and not b.in_span
    assert [r["diverged"] for r in a.runs] == [r["diverged"] for r in b.runs]
    np.testing.assert_allclose(a.loss_curves, b.loss_curves, rtol=1e-9)
    for ra, rb in zip(a.runs + a.settings, b.runs + b.settings, strict=True):
        assert ra.keys() == rb.keys()
        for k, v in rb.items():
            if isinstance(v, float):
                np.testing.assert_allclose(ra[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
            else:
                assert ra[k] == v, k
    assert a.best == pytest.approx(b.best, rel=1e-9)
    assert a.rungs == b.rungs


@pytest.mark.slow
@pytest.mark.parametrize("changes, axes, options", [
    # The notebook's case: plain SGD on the full batch, lr and weight_scale swept.
    ({"optimizer": "sgd", "batch_size": 40, "dropout": 0.0}, {"lr": [0.05, 0.3, 1.0],
                                                         "weight_scale": [0.05, 0.1, 0.2]}, {}),
    # Shuffled minibatches (the last one filled up: repeated examples), dropout, autodiff,
    # momentum swept, a step schedule.
    ({"optimizer": "momentum", "batch_size": 16, "dropout": 0.3, "grad": "autodiff",
          "lr_schedule": "step", "lr_decay": 0.8},
     {"lr": [0.02, 0.1, 0.2], "momentum": [0.5, 0.9, 0.8]}, {"seeds": 2}),
    # Nesterov, dropout swept, successive halving (runs continue from their carried state).
    ({"optimizer": "nesterov", "batch_size": 13, "epochs": 6},
     {"lr": [0.01, 0.05, 0.1, 0.2], "dropout": [0.0, 0.2, 0.1, 0.4]}, {"halving": 2}),
])
def test_a_sweep_in_the_span_equals_the_sweep_with_the_weights(changes, axes, options):
    config = dataclasses.replace(CONFIG, **changes)
    data = _wide()
    settings = [dict(zip(axes, v, strict=True)) for v in zip(*axes.values(), strict=True)]
    in_span = sweep(config, data, settings, **options)  # chosen by itself
    _same(in_span, sweep(config, data, settings, in_span=False, **options))
    assert in_span.criterion == "val_accuracy"


def test_why_not_names_what_keeps_a_sweep_out_of_the_span():
    ok = dataclasses.replace(CONFIG, optimizer="momentum")
    assert input_span.why_not(ok, {"lr", "momentum"}, 40, 120) is None
    assert "optimizer 'adam'" in input_span.why_not(dataclasses.replace(ok, optimizer="adam"), set(),
                                              40, 120)
    assert "reg" in input_span.why_not(dataclasses.replace(ok, reg=1e-3), set(), 40, 120)
    assert "reg" in input_span.why_not(ok, {"reg"}, 40, 120)
    assert "half as many" in input_span.why_not(ok, set(), 61, 120)
    assert "Gram" in input_span.why_not(ok, set(), input_span.MAX_EXAMPLES + 1, 10 * input_span.MAX_EXAMPLES)


@pytest.mark.slow
def test_sweeps_outside_the_span_train_the_weights_and_refuse_in_span_true():
    data = _wide()
    config = dataclasses.replace(CONFIG, optimizer="adam", batch_size=40, epochs=1)
    assert not sweep(config, data, [{"lr": 1e-3}]).in_span
    with pytest.raises(ConfigError, match="in_span=True cannot .* optimizer 'adam'"):
        sweep(config, data, [{"lr": 1e-3}], in_span=True)
    narrow = dataclasses.replace(data, x_train=data.x_train[:, :60], x_val=data.x_val[:, :60],
                                 x_test=data.x_test[:, :60])
    assert not sweep(dataclasses.replace(config, optimizer="sgd"), narrow, [{"lr": 1e-3}]).in_span


_SHARDED = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from jaxnet.config import TrainConfig
from jaxnet.data import random_data
from jaxnet.sweep import sweep

config = TrainConfig(**json.loads(sys.argv[1]))
settings = [{"lr": v} for v in (1e-3, 1e-2, 0.1, 0.3, 1.0)]
mesh = jax.make_mesh((4,), ("settings",), axis_types=(jax.sharding.AxisType.Auto,))
sharded = sweep(config, random_data(dtype=np.float64), settings, mesh=mesh, chunk=3)
alone = sweep(config, random_data(dtype=np.float64), settings)
assert sharded.in_span and alone.in_span
print(json.dumps(float(np.max(np.abs(sharded.loss_curves - alone.loss_curves)))))
"""


@pytest.mark.slow
def test_a_sweep_in_the_span_shards_over_devices_with_the_same_results():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    config = dataclasses.replace(CONFIG, optimizer="momentum", batch_size=20, dropout=0.1,
                                 epochs=3)
    proc = subprocess.run([sys.executable, "-c", _SHARDED, json.dumps(config.to_dict())],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) < 1e-12
