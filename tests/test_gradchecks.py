"""gradcheck: users' checks of the hand-written backward pass, and that they catch its bugs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnet import layers, model
from jaxnet.gradchecks import (
    AUTODIFF_TOLERANCES,
    check_layer,
    gradcheck,
    gradcheck_network,
    relative_error,
)

# Layer 2 alone has width 8, so a test can break exactly that layer by its shape.
DIMS = (12, 10, 8, 10, 5)
LABELS = ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2",
          "W3", "b3", "gamma3", "beta3", "W4", "b4"]


def _network(dims=DIMS, n=6, seed=0, dtype=jnp.float32):
    params, state = model.init(jax.random.PRNGKey(seed), dims, dtype=dtype)
    kx, ky = jax.random.split(jax.random.PRNGKey(seed + 1))
    x = jax.random.normal(kx, (n, dims[0]), dtype)
    y = jax.random.randint(ky, (n,), 0, dims[-1])
    return params, state, x, y


def test_relative_error_uses_the_larger_magnitude_and_the_floor():
    np.testing.assert_allclose(relative_error([1.0, 2.0], [1.1, 2.0], floor=1e-5), 0.1 / 1.1)
    # Two would-be zeros differing by rounding noise are divided by the floor, not by ~0.
    np.testing.assert_allclose(relative_error([0.0], [1e-9], floor=1e-5), 1e-4)
    assert relative_error(np.zeros(3), np.zeros(3), floor=1e-5) == 0.0
    assert relative_error([np.nan], [1.0], floor=1e-5) == np.inf
    with pytest.raises(ValueError, match="equal shapes"):
        relative_error(np.zeros(3), np.zeros(4), floor=1e-5)


# Most tests share one configuration (DIMS, batch 6, dropout 0.3, reg 0.1), so the reference
# computations compile once.
@pytest.mark.parametrize("train", [True, False])
def test_network_check_passes_in_float32_without_global_x64(train):
    report = gradcheck_network(DIMS, batch=6, train=train, dropout=0.3, reg=0.1)
    assert report.passed, str(report)
    assert [row.label for row in report.rows] == LABELS
    assert report.autodiff_dtype == "float32"
    assert (report.rtol_autodiff, report.floor_autodiff) == AUTODIFF_TOLERANCES["float32"]
    assert report.rows[4].layer == 1 and report.rows[4].name == "w"
    assert report.rows[4].shape == (8, 10)
    assert all(row.numeric_error <= report.rtol_numeric for row in report.rows)
    # The float64 check ran under a local enable_x64: the user's session is still float32.
    assert not jax.config.jax_enable_x64
    assert jnp.ones(1).dtype == jnp.float32


def test_report_table():
    report = gradcheck_network(DIMS, batch=6, dropout=0.3, reg=0.1)
    lines = str(report).splitlines()
    assert lines[0] == ("gradient check of network 12-10-8-10-5, batch 6, train mode, dropout 0.3, "
                        "reg 0.1, seed 0")
    assert "10 entries per tensor" in lines[3]
    table = {line.split()[0]: line for line in lines if " relative error:" in line}
    assert list(table) == LABELS
    for row in report.rows:
        assert table[row.label].split()[-2:] == [f"{row.autodiff_error:.1e}",
                                                 f"{row.numeric_error:.1e}"]
    assert lines[-1] == "PASS: every tensor within tolerance (14 checked)"
    assert str(report) == report.format()


def _notebook_dgamma(res, batch_axis):
    """The notebook's dgamma: sum(xhat * gamma) over the batch, where it should be
    sum(xhat * dout)."""
    gamma = res.gamma if batch_axis == 0 else res.gamma[:, None]
    return jnp.sum(res.xhat * gamma, axis=batch_axis)


def test_notebook_dgamma_bug_fails_exactly_gamma2(monkeypatch):
    correct = layers.batchnorm_train_backward

    def notebook_bug(res, dout, *, batch_axis=0):
        dx, dgamma, dbeta = correct(res, dout, batch_axis=batch_axis)
        if res.gamma.shape == (DIMS[2],):  # the batchnorm of layer 2 only
            dgamma = _notebook_dgamma(res, batch_axis)
        return dx, dgamma, dbeta

    monkeypatch.setattr(layers, "batchnorm_train_backward", notebook_bug)
    report = gradcheck_network(DIMS, batch=6, dropout=0.3, reg=0.1)
    assert not report.passed
    assert [row.label for row in report.failures] == ["gamma2"]
    (row,) = report.failures
    assert (row.layer, row.name, row.shape) == (1, "gamma", (DIMS[2],))
    assert row.autodiff_error > 0.1 and row.numeric_error > 0.1
    lines = str(report).splitlines()
    assert lines[-1] == "FAIL: gamma2"
    assert [line.split()[0] for line in lines if line.endswith("FAIL")] == ["gamma2"]


def test_wrong_last_layer_db_passed_as_value_and_grad_fails_exactly_b4():
    def db_without_mean(params, state, x, y, **kw):
        # A classic bug: the last bias gradient sums the batch but forgets the 1/N of the
        # mean loss.
        (value, new_state), grads = model.manual_value_and_grad(params, state, x, y, **kw)
        last = {**grads[-1], "b": grads[-1]["b"] * x.shape[0]}
        return (value, new_state), (*grads[:-1], last)

    params, state, x, y = _network()
    report = gradcheck(params, state, x, y, key=jax.random.PRNGKey(2), dropout=0.3, reg=0.1,
                       value_and_grad=db_without_mean)
    assert [row.label for row in report.failures] == ["b4"]
    assert report.failures[0].layer == len(params) - 1
    assert str(report).splitlines()[-1] == "FAIL: b4"


# A gradient 0.2% off is within float32's autodiff tolerance (1e-2: the two sum the same terms
# in other orders), so only the float64 finite differences (tolerance 1e-4) can see it.
SLIGHTLY_OFF = 1 + 2e-3


def test_a_gradient_slightly_off_fails_only_the_finite_difference_column():
    def w2_slightly_off(params, state, x, y, **kw):
        (value, new_state), grads = model.manual_value_and_grad(params, state, x, y, **kw)
        layer2 = {**grads[1], "w": grads[1]["w"] * SLIGHTLY_OFF}
        return (value, new_state), (grads[0], layer2, *grads[2:])

    params, state, x, y = _network()
    report = gradcheck(params, state, x, y, key=jax.random.PRNGKey(2), dropout=0.3, reg=0.1,
                       value_and_grad=w2_slightly_off)
    assert [row.label for row in report.failures] == ["W2"], str(report)
    (row,) = report.failures
    assert row.autodiff_error <= report.rtol_autodiff  # the float32 column alone would pass it
    assert row.numeric_error > report.rtol_numeric
    np.testing.assert_allclose(row.numeric_error, 1 - 1 / SLIGHTLY_OFF, rtol=0.05)
    assert str(report).splitlines()[-1] == "FAIL: W2"


def test_a_layer_gradient_slightly_off_fails_only_the_finite_difference_column():
    def dw_slightly_off(res, dout, **kw):
        dx, dw, db = layers.affine_backward(res, dout, **kw)
        return dx, dw * SLIGHTLY_OFF, db

    kx, kw, kb = jax.random.split(jax.random.PRNGKey(4), 3)
    x, w, b = (jax.random.normal(kx, (6, 5)), jax.random.normal(kw, (4, 5)),
               jax.random.normal(kb, (4,)))
    report = check_layer(layers.affine_forward, dw_slightly_off, x, w, b)
    assert report.autodiff_dtype == "float32"
    assert [row.label for row in report.failures] == ["w"], str(report)
    (row,) = report.failures
    assert row.autodiff_error <= report.rtol_autodiff  # the float32 column alone would pass it
    assert row.numeric_error > report.rtol_numeric
    np.testing.assert_allclose(row.numeric_error, 1 - 1 / SLIGHTLY_OFF, rtol=0.05)


def test_manual_gradient_equals_autodiff_in_float32():
    params, state, x, y = _network()
    kw = {"key": jax.random.PRNGKey(3), "dropout": 0.3, "reg": 0.1}
    (value, new_state), manual = model.manual_value_and_grad(params, state, x, y, **kw)
    (auto_value, auto_state), auto = jax.value_and_grad(model.loss, has_aux=True)(
        params, state, x, y, **kw)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((value, new_state, manual)))
    np.testing.assert_allclose(value, auto_value, rtol=1e-6)
    chex.assert_trees_all_close(new_state, auto_state, rtol=1e-6)
    # Biases feeding batchnorm have a zero gradient, computed as float32 noise ~1e-7.
    chex.assert_trees_all_close(manual, auto, rtol=1e-5, atol=1e-6)
    report = gradcheck(params, state, x, y, **kw, rtol_autodiff=1e-2, floor_autodiff=1e-3)
    assert report.passed and report.autodiff_dtype == "float32", str(report)


@pytest.mark.slow  # differences every entry
@pytest.mark.x64
@pytest.mark.parametrize("train, dropout, reg", [(True, 0.3, 0.1), (False, 0.0, 0.0)])
def test_float64_network_check_of_every_entry_is_tight(train, dropout, reg):
    report = gradcheck_network(DIMS, batch=6, train=train, dropout=dropout, reg=reg,
                               dtype=jnp.float64, samples=None, rtol_autodiff=1e-10,
                               rtol_numeric=1e-5)
    assert report.passed, str(report)
    assert report.autodiff_dtype == "float64" and report.samples is None
    assert "every entry" in str(report)


@pytest.mark.x64
def test_manual_network_gradient_passes_check_grads(monkeypatch):
    # JAX differentiates `loss` with the hand-written backward, so check_grads compares that
    # backward (not JAX's autodiff) with finite differences.
    params, state, x, y = _network(dtype=jnp.float64)
    kw = {"key": jax.random.PRNGKey(2), "dropout": 0.3, "reg": 0.1}

    @jax.custom_vjp
    def loss(params):
        return model.loss(params, state, x, y, **kw)[0]

    def loss_fwd(params):
        (value, _), grads = model.manual_value_and_grad(params, state, x, y, **kw)
        return value, grads

    def loss_bwd(grads, g):
        return (jax.tree.map(lambda d: g * d, grads),)

    loss.defvjp(loss_fwd, loss_bwd)
    # check_grads steps along a random direction that moves every unit at once; its default
    # step (1e-4) lets some cross a ReLU kink, so take a smaller one.
    check_grads(loss, (params,), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)

    correct = layers.batchnorm_train_backward

    def dgamma_bug(res, dout, *, batch_axis=0):
        dx, _, dbeta = correct(res, dout, batch_axis=batch_axis)
        return dx, _notebook_dgamma(res, batch_axis), dbeta

    monkeypatch.setattr(layers, "batchnorm_train_backward", dgamma_bug)
    with pytest.raises(AssertionError):
        check_grads(loss, (params,), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


@pytest.mark.slow
def test_default_network_check_passes():
    # The notebook's network, as `jaxnet gradcheck` checks it by default.
    report = gradcheck_network((3072, 100, 100, 100, 100, 10), batch=20, dropout=0.2, reg=1e-3)
    assert report.passed, str(report)
    assert len(report.rows) == 18
    assert [row.label for row in report.rows[-2:]] == ["W5", "b5"]
    assert report.rows[0].shape == (100, 3072)


def test_vmapped_manual_gradients_equal_per_network_gradients():
    # One network per key, as sweeps build them; each gets its own dropout key.
    n_nets = 3
    params, state = jax.vmap(lambda k: model.init(k, DIMS))(
        jax.random.split(jax.random.PRNGKey(0), n_nets))
    _, _, x, y = _network()
    drop_keys = jax.random.split(jax.random.PRNGKey(9), n_nets)
    kw = {"dropout": 0.3, "reg": 0.1}
    batched = jax.jit(jax.vmap(
        lambda p, s, k: model.manual_value_and_grad(p, s, x, y, key=k, **kw)
    ))(params, state, drop_keys)
    for i in range(n_nets):
        p_i, s_i = jax.tree.map(lambda a, i=i: a[i], (params, state))
        single = model.manual_value_and_grad(p_i, s_i, x, y, key=drop_keys[i], **kw)
        chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], batched), single,
                           rtol=1e-5, atol=1e-6)  # atol: zero-gradient biases
    # And the per-network gradient is itself right.
    p_0, s_0 = jax.tree.map(lambda a: a[0], (params, state))
    report = gradcheck(p_0, s_0, x, y, key=drop_keys[0], **kw)
    assert report.passed, str(report)


@pytest.mark.parametrize("samples", [0, -1, 2.5, True])
def test_bad_samples(samples):
    params, state, x, y = _network()
    with pytest.raises(ValueError, match="samples must be a positive int"):
        gradcheck(params, state, x, y, samples=samples)


def test_bad_step_and_batch():
    params, state, x, y = _network()
    with pytest.raises(ValueError, match="step must be positive"):
        gradcheck(params, state, x, y, step=0.0)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        gradcheck_network(DIMS, batch=0)


def test_low_precision_params_need_explicit_tolerances():
    params, state, x, y = _network()
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    with pytest.raises(ValueError, match="no default autodiff tolerance for bfloat16"):
        gradcheck(params, state, x, y)


def test_model_errors_pass_through():
    params, state, x, y = _network()
    with pytest.raises(ValueError, match="needs a PRNG key"):
        gradcheck(params, state, x, y, dropout=0.5)
