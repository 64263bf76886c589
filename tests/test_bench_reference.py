"""The benchmark's reference implementations agree with jaxnet and optax."""

import itertools
import math
import pathlib
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_close

import jaxnet

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
import bench_reference as ref

pytestmark = pytest.mark.x64  # tight gradient and trajectory checks in float64

DIMS = (12, 10, 8, 5)


def _net_and_data(dims=DIMS, n=9):
    # Built with NumPy (eager JAX ops are slow to dispatch); perturbed gamma, beta and state
    # make every term of the backward pass non-trivial.
    rng = np.random.default_rng(0)
    params = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        layer = {"w": math.sqrt(2 / fan_in) * rng.standard_normal((fan_out, fan_in)),
                 "b": 0.1 * rng.standard_normal(fan_out)}
        if i < len(dims) - 2:
            layer.update(gamma=1 + 0.1 * rng.standard_normal(fan_out),
                         beta=0.1 * rng.standard_normal(fan_out))
        params.append(layer)
    state = tuple({"mean": np.full(h, 0.1), "var": np.full(h, 1.5)} for h in dims[1:-1])
    x = rng.standard_normal((n, dims[0]))
    y = rng.integers(0, dims[-1], n)
    return tuple(params), state, x, y


def test_numpy_net_equals_manual_value_and_grad():
    params, state, x, y = _net_and_data()
    (loss, new_state), grads = jax.jit(jaxnet.manual_value_and_grad)(params, state, x, y,
                                                                     reg=0.5)
    net = ref.NumpyNet.from_jaxnet(params, state, reg=0.5)
    assert net.dtype == np.float64
    assert_trees_close(net.to_jaxnet(), params, rtol=0.0)
    np_loss, np_grads = net.loss_and_grads(np.asarray(x), np.asarray(y))
    np.testing.assert_allclose(np_loss, loss, rtol=1e-12)
    # Biases right before batchnorm have an exactly-zero gradient: the floor covers them.
    assert_trees_close(net.to_jaxnet(np_grads), grads, rtol=1e-8, atol=1e-13)
    assert_trees_close(net.running_to_jaxnet(), new_state, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_numpy_net_keeps_its_dtype(dtype, optimizer):
    net = ref.NumpyNet(DIMS, dtype=dtype, dropout=0.5, reg=0.1)
    opt = ref.NumpyOptimizer(optimizer, np.float64(1e-2))  # a NumPy scalar must not promote
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((9, DIMS[0])), rng.integers(0, DIMS[-1], 9)
    for _ in range(2):
        loss, grads = net.loss_and_grads(x, y)
        opt.update(net.params, grads)
    assert np.isfinite(loss)
    arrays = [*grads.values(), *net.params.values(), *net.running.values()]
    assert {a.dtype for a in arrays} == {np.dtype(dtype)}


@pytest.mark.parametrize("name, make", [
    ("momentum", lambda lr: optax.sgd(lr, momentum=0.9)),
    ("adam", optax.adam),
])
def test_numpy_optimizer_equals_optax(name, make):
    lr = 0.05
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((4, 3)), "b1": rng.standard_normal(3)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(3)]
    tx = make(lr)
    jax_params = jax.tree.map(jnp.asarray, params)
    opt_state = tx.init(jax_params)
    opt = ref.NumpyOptimizer(name, lr)
    for g in grads:
        with jax.numpy_dtype_promotion("standard"):  # optax mixes its int32 count and floats
            updates, opt_state = tx.update(jax.tree.map(jnp.asarray, g), opt_state, jax_params)
        jax_params = optax.apply_updates(jax_params, updates)
        opt.update(params, g)
        assert_trees_close(params, jax_params, rtol=1e-12)


def test_notebook_sweep_finite_and_divergent_without_raising():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
    dims = (6, 5, 4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow must not even warn
        losses = ref.numpy_notebook_sweep(x, y, [1e-2, 1e-1, 1e5], [5e-2, 8e-2, 5e-2], 2, dims,
                                          np.float64)
        overflow = ref.numpy_notebook_sweep(x, y, [1e38], [5e-2], 3, dims, np.float32)
    assert losses.shape == (3,)
    assert np.all(np.isfinite(losses[:2])) and np.all(losses[:2] < 2 * math.log(3))
    # lr=1e5 diverges: a non-finite loss, or one far above the untrained log(C).
    assert not np.isfinite(losses[2]) or losses[2] > 1e3 * math.log(3)
    assert not np.isfinite(overflow[0])


def test_notebook_sweep_first_iteration_is_the_initial_loss():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
    losses = ref.numpy_notebook_sweep(x, y, [1e-3, 10.0], [5e-2, 5e-2], 1, (6, 5, 3),
                                      np.float64)
    assert losses[0] == losses[1]  # same seed and scale, and the update comes after the loss


def test_numpy_step_seconds():
    times = ref.numpy_step_seconds(DIMS, 6, "adam", 0.2, np.float32, steps=3, warmup=1)
    assert len(times) == 3 and all(t > 0 for t in times)


@pytest.mark.skipif(not ref.torch_available(), reason="PyTorch is not installed")
def test_torch_step_seconds_and_sweep():
    assert ref.torch_version()
    times = ref.torch_step_seconds(DIMS, 6, "momentum", 0.2, np.float32, steps=4, warmup=1)
    assert len(times) == 4 and all(t > 0 for t in times)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
    losses = ref.torch_notebook_sweep(x, y, [1e-2, 1e-1], [5e-2, 8e-2], 2, (6, 5, 4, 3),
                                      np.float32)
    assert losses.shape == (2,) and np.all(np.isfinite(losses))


def test_gemm_bound_lists_every_product():
    result = ref.gemm_bound_step_seconds((6, 5, 3), 8, jnp.float32, repeats=2)
    names = [p["name"] for p in result["per_product"]]
    assert len(names) == 2 * 2 + 1  # no input gradient for the first layer
    assert result["seconds"] == pytest.approx(sum(p["seconds"] for p in result["per_product"]))
    assert result["flops"] == 2 * 8 * (6 * 5 * 2 + 5 * 3 * 3)
    assert all(p["seconds"] > 0 and p["gflops"] > 0 for p in result["per_product"])
    assert ref.matmul_gflops(64, repeats=2) > 0
