"""Every hand-written backward equals jax.vjp of its forward and matches finite differences."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from jaxnet import layers
from jaxnet.gradchecks import AUTODIFF_TOLERANCES, check_layer, with_manual_vjp

N, D, H, C = 7, 5, 6, 4
EPS = 1e-5


def _normal(seed, shape, dtype, scale=1.0):
    return scale * jax.random.normal(jax.random.PRNGKey(seed), shape, dtype)


# Each case: (forward, backward, every positional input of forward, names of the inputs the
# backward's gradients belong to). Non-differentiable inputs (eps, rate, key, labels,
# running statistics) sit among the inputs, as check_layer takes them.
def _affine(dtype):
    inputs = (_normal(1, (N, 2, 3), dtype), _normal(2, (H, 6), dtype), _normal(3, (H,), dtype))
    return layers.affine_forward, layers.affine_backward, inputs, ["x", "w", "b"]


def _relu(dtype):
    # Keep inputs away from the kink at 0, where the derivative is undefined.
    x = _normal(4, (N, H), dtype)
    x = jnp.where(jnp.abs(x) < 0.1, jnp.asarray(0.5, dtype), x)
    return layers.relu_forward, layers.relu_backward, (x,), ["x"]


def _bn_train(dtype):
    inputs = (_normal(5, (N, H), dtype, 3.0) + 1.0, _normal(6, (H,), dtype) + 1.5,
              _normal(7, (H,), dtype), EPS)
    return (layers.batchnorm_train_forward, layers.batchnorm_train_backward, inputs,
            ["x", "gamma", "beta"])


def _bn_eval(dtype):
    mean, var = _normal(8, (H,), dtype), jnp.exp(_normal(9, (H,), dtype))
    inputs = (_normal(10, (N, H), dtype), _normal(11, (H,), dtype) + 1.5,
              _normal(12, (H,), dtype), mean, var, EPS)
    return (layers.batchnorm_eval_forward, layers.batchnorm_eval_backward, inputs,
            ["x", "gamma", "beta"])


def _dropout(dtype):
    inputs = (_normal(14, (N, H), dtype), 0.4, jax.random.PRNGKey(13))
    return layers.dropout_forward, layers.dropout_backward, inputs, ["x"]


def _xent(dtype):
    inputs = (_normal(15, (N, C), dtype, 4.0), jnp.arange(N) % C)
    return layers.softmax_xent_forward, layers.softmax_xent_backward, inputs, ["logits"]


LAYERS = {"affine": _affine, "relu": _relu, "batchnorm_train": _bn_train,
          "batchnorm_eval": _bn_eval, "dropout": _dropout, "softmax_xent": _xent}
FLOAT32_AND_64 = ["float32", pytest.param("float64", marks=pytest.mark.x64)]


def _grads(backward, res, dout):
    grads = backward(res, dout)
    return tuple(grads) if isinstance(grads, tuple) else (grads,)


def _feature_major(name, dtype):
    """LAYERS[name] in the feature-major layout (batch_axis=1): x transposed to (H, N)."""
    forward, backward, inputs, wrt = LAYERS[name](dtype)
    x = inputs[0].reshape(N, -1)
    return (functools.partial(forward, batch_axis=1), functools.partial(backward, batch_axis=1),
            (x.T, *inputs[1:]), wrt)


# relu and dropout are elementwise: they have no layout.
FEATURE_MAJOR = [name for name in LAYERS if name not in ("relu", "dropout")]


def _assert_backward_equals_vjp(forward, backward, inputs, wrt, variant=lambda f: f):
    """The hand-written backward, both passes run through `variant` (jitted or not), equals
    jax.vjp of the forward run eagerly."""
    argnums = tuple(range(len(wrt)))
    out, res = variant(forward)(*inputs)
    dout = _normal(99, jnp.shape(out), jnp.float64)
    manual = _grads(variant(backward), res, dout)
    manual = tuple(g.reshape(jnp.shape(inputs[i])) for i, g in zip(argnums, manual, strict=True))

    def out_of(*diff):
        return forward(*diff, *inputs[len(diff):])[0]

    want_out, vjp = jax.vjp(out_of, *inputs[:len(argnums)])
    want = vjp(dout)
    chex.assert_tree_all_finite((out, manual))
    chex.assert_trees_all_close(out, want_out, rtol=1e-12)
    chex.assert_trees_all_close(manual, want, rtol=1e-10, atol=1e-12)


@pytest.mark.x64
class TestBackwardEqualsVjpJittedOrNot(chex.TestCase):
    """Every layer pair, in both layouts, run eagerly and under jit (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*LAYERS)
    def test_backward_equals_vjp_in_float64(self, name):
        _assert_backward_equals_vjp(*LAYERS[name](jnp.float64), variant=self.variant)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*FEATURE_MAJOR)
    def test_feature_major_backward_equals_vjp_in_float64(self, name):
        _assert_backward_equals_vjp(*_feature_major(name, jnp.float64), variant=self.variant)


@pytest.mark.x64
@pytest.mark.parametrize("name", FEATURE_MAJOR)
def test_feature_major_layout_is_the_transpose(name):
    # Same numbers in both layouts: outputs and input gradients transposed, parameter
    # gradients equal.
    forward, backward, inputs, _ = LAYERS[name](jnp.float64)
    fm_forward, fm_backward, fm_inputs, _ = _feature_major(name, jnp.float64)
    out, res = forward(*inputs)
    fm_out, fm_res = fm_forward(*fm_inputs)
    dout = _normal(98, jnp.shape(out), jnp.float64)
    grads = _grads(backward, res, dout)
    fm_grads = _grads(fm_backward, fm_res, dout.T if jnp.ndim(out) else dout)
    np.testing.assert_allclose(fm_out.T if jnp.ndim(out) else fm_out, out, rtol=1e-12)
    np.testing.assert_allclose(fm_grads[0].T, grads[0].reshape(N, -1), rtol=1e-12, atol=1e-15)
    for g, fm_g in zip(grads[1:], fm_grads[1:], strict=True):
        np.testing.assert_allclose(fm_g, g, rtol=1e-12, atol=1e-15)


@pytest.mark.x64
@pytest.mark.parametrize("name", LAYERS)
def test_hand_written_backward_passes_check_grads(name):
    # check_grads differentiates `fn`, whose VJP is the hand-written backward: this compares
    # the backward itself with finite differences, not just JAX's autodiff of the forward.
    forward, backward, inputs, _ = LAYERS[name](jnp.float64)
    fn, primals = with_manual_vjp(forward, backward, *inputs)
    check_grads(fn, primals, order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.x64
def test_check_grads_through_with_manual_vjp_catches_a_broken_backward():
    forward, _, inputs, _ = _bn_train(jnp.float64)

    def notebook_bug(res, dout):
        dx, _, dbeta = layers.batchnorm_train_backward(res, dout)
        return dx, jnp.sum(res.xhat * res.gamma, axis=0), dbeta  # should be xhat * dout

    fn, primals = with_manual_vjp(forward, notebook_bug, *inputs)
    with pytest.raises(AssertionError):
        check_grads(fn, primals, order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", FLOAT32_AND_64)
@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_pair_passes_check_layer(name, dtype):
    forward, backward, inputs, wrt = LAYERS[name](jnp.dtype(dtype))
    report = check_layer(forward, backward, *inputs)
    assert report.passed, str(report)
    assert [row.label for row in report.rows] == wrt
    assert report.autodiff_dtype == dtype
    assert (report.rtol_autodiff, report.floor_autodiff) == AUTODIFF_TOLERANCES[dtype]
    assert report.samples is None  # layers are small: every entry is differenced
    assert all(row.numeric_error < 1e-5 for row in report.rows), str(report)
    assert jax.config.jax_enable_x64 == (dtype == "float64")  # check_layer left x64 as it was


def test_check_layer_names_the_broken_gradient():
    forward, _, inputs, _ = _bn_train(jnp.float32)

    def notebook_bug(res, dout):
        dx, _, dbeta = layers.batchnorm_train_backward(res, dout)
        return dx, jnp.sum(res.xhat * res.gamma, axis=0), dbeta  # should be xhat * dout

    report = check_layer(forward, notebook_bug, *inputs)
    assert [row.label for row in report.failures] == ["gamma"]
    assert str(report).splitlines()[-1] == "FAIL: gamma"


def test_check_layer_catches_a_bias_gradient_averaged_instead_of_summed():
    forward, _, inputs, _ = _affine(jnp.float32)

    def mean_db(res, dout):
        dx, dw, _ = layers.affine_backward(res, dout)
        return dx, dw, jnp.mean(dout, axis=0)

    report = check_layer(forward, mean_db, *inputs)
    assert [row.label for row in report.failures] == ["b"]


def test_check_layer_skips_gradients_that_are_not_computed_and_samples_entries():
    forward, _, inputs, _ = _affine(jnp.float32)

    def no_dx(res, dout):
        return layers.affine_backward(res, dout, compute_dx=False)

    report = check_layer(forward, no_dx, *inputs, samples=4, dout=jnp.ones((N, H)))
    assert report.passed, str(report)
    assert [row.label for row in report.rows] == ["w", "b"]
    assert "4 entries per tensor" in str(report)


def test_check_layer_rejects_mismatched_gradients():
    x, w, b = _affine(jnp.float32)[2]
    with pytest.raises(ValueError, match="argnums"):
        check_layer(layers.affine_forward, layers.affine_backward, x, w, b, argnums=(1, 2))

    def wrong_shape(res, dout):
        dx, dw, db = layers.affine_backward(res, dout)
        return dx, dw[:, :-1], db

    with pytest.raises(ValueError, match="gradient for 'w' has shape"):
        check_layer(layers.affine_forward, wrong_shape, x, w, b)


def test_affine_backward_can_skip_input_gradient():
    x, w, b = (_normal(1, (N, D), jnp.float32), _normal(2, (H, D), jnp.float32),
               _normal(3, (H,), jnp.float32))
    _, res = layers.affine_forward(x, w, b)
    dx, dw, db = layers.affine_backward(res, jnp.ones((N, H)), compute_dx=False)
    assert dx is None
    assert dw.shape == (H, D) and db.shape == (H,)


def test_softmax_xent_is_stable_for_huge_logits():
    logits = jnp.array([[1e30, -1e30, 0.0], [0.0, 1e4, -1e4]], jnp.float32)
    loss, res = layers.softmax_xent_forward(logits, jnp.array([1, 2]))
    assert float(loss) > 1e4
    chex.assert_tree_all_finite((loss, res, layers.softmax_xent_backward(res)))


def test_dropout_residual_scales_kept_units():
    x = jnp.ones((2000, 50))
    out, mask = layers.dropout_forward(x, 0.25, jax.random.PRNGKey(3))
    assert out.dtype == mask.dtype == jnp.float32
    kept = np.asarray(mask) > 0
    np.testing.assert_allclose(np.asarray(out)[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_allclose(kept.mean(), 0.75, atol=0.01)


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.6, 0.8, 0.9])
def test_inverted_dropout_scales_by_one_over_keep_probability_at_every_rate(rate):
    # Above 0.5 too: a scale of 1/rate, or 1/max(rate, 1 - rate), would agree with 1/(1 - rate)
    # at 0.5 (and the latter below it) but not here.
    x = 0.5 + jnp.abs(jax.random.normal(jax.random.PRNGKey(5), (2000, 50)))
    out, mask = layers.dropout_forward(x, rate, jax.random.PRNGKey(6))
    x, out, mask = np.asarray(x), np.asarray(out), np.asarray(mask)
    kept = mask > 0
    np.testing.assert_allclose(mask[kept], 1 / (1 - rate), rtol=1e-6)
    np.testing.assert_array_equal(out[~kept], 0)
    np.testing.assert_allclose(out[kept], x[kept] / (1 - rate), rtol=1e-6)
    np.testing.assert_allclose(kept.mean(), 1 - rate, atol=0.01)
    np.testing.assert_allclose(out.mean(), x.mean(), rtol=0.05)  # the expectation is kept
    np.testing.assert_allclose(layers.dropout_backward(mask, np.ones_like(x)), mask)
