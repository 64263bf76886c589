"""Every hand-written backward equals jax.vjp of its forward and passes check_grads."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close
from jax.test_util import check_grads

from jaxnet import layers

N, D, H, C = 7, 5, 6, 4


def _normal(seed, shape, scale=1.0):
    return scale * jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float64)


def _affine():
    x, w, b = _normal(1, (N, 2, 3)), _normal(2, (H, 6)), _normal(3, (H,))

    def backward(res, dout):
        return layers.affine_backward(res, dout)

    return layers.affine_forward, backward, (x, w, b), lambda dx, dw, db: (dx.reshape(x.shape), dw, db)


def _relu():
    # Keep inputs away from the kink at 0, where the derivative is undefined.
    x = _normal(4, (N, H))
    x = jnp.where(jnp.abs(x) < 0.1, 0.5, x)
    return layers.relu_forward, lambda res, d: (layers.relu_backward(res, d),), (x,), lambda dx: (dx,)


def _bn_train():
    args = (_normal(5, (N, H), 3.0) + 1.0, _normal(6, (H,)) + 1.5, _normal(7, (H,)))
    fwd = functools.partial(layers.batchnorm_train_forward, eps=1e-5)
    return fwd, layers.batchnorm_train_backward, args, lambda *g: g


def _bn_eval():
    mean, var = _normal(8, (H,)), jnp.exp(_normal(9, (H,)))
    args = (_normal(10, (N, H)), _normal(11, (H,)) + 1.5, _normal(12, (H,)))

    def fwd(x, gamma, beta):
        return layers.batchnorm_eval_forward(x, gamma, beta, mean, var, 1e-5)

    return fwd, layers.batchnorm_eval_backward, args, lambda *g: g


def _dropout():
    key = jax.random.PRNGKey(13)

    def fwd(x):
        return layers.dropout_forward(x, 0.4, key)

    return fwd, lambda res, d: (layers.dropout_backward(res, d),), (_normal(14, (N, H)),), lambda dx: (dx,)


def _xent():
    labels = jnp.arange(N) % C

    def fwd(logits):
        return layers.softmax_xent_forward(logits, labels)

    return fwd, lambda res, d: (layers.softmax_xent_backward(res, d),), (_normal(15, (N, C), 4.0),), lambda d: (d,)


LAYERS = {"affine": _affine, "relu": _relu, "batchnorm_train": _bn_train,
          "batchnorm_eval": _bn_eval, "dropout": _dropout, "softmax_xent": _xent}


@pytest.mark.parametrize("name", LAYERS)
def test_backward_equals_vjp(name):
    forward, backward, args, reshape = LAYERS[name]()
    out, res = forward(*args)
    dout = _normal(99, jnp.shape(out)) if jnp.ndim(out) else jnp.asarray(1.7)
    manual = reshape(*backward(res, dout))
    _, vjp = jax.vjp(lambda *a: forward(*a)[0], *args)
    assert_trees_close(manual, vjp(dout), rtol=1e-10)


@pytest.mark.parametrize("name", LAYERS)
def test_backward_passes_check_grads(name):
    forward, _, args, _ = LAYERS[name]()
    check_grads(lambda *a: forward(*a)[0], args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_affine_backward_can_skip_input_gradient():
    x, w, b = _normal(1, (N, D)), _normal(2, (H, D)), _normal(3, (H,))
    _, res = layers.affine_forward(x, w, b)
    dx, dw, db = layers.affine_backward(res, jnp.ones((N, H)), compute_dx=False)
    assert dx is None
    assert dw.shape == (H, D) and db.shape == (H,)


def test_softmax_xent_is_stable_for_huge_logits():
    logits = jnp.array([[1e30, -1e30, 0.0], [0.0, 1e4, -1e4]], jnp.float32)
    loss, res = layers.softmax_xent_forward(logits, jnp.array([1, 2]))
    assert np.isfinite(float(loss)) and float(loss) > 1e4
    assert np.all(np.isfinite(layers.softmax_xent_backward(res)))


def test_dropout_residual_scales_kept_units():
    x = jnp.ones((2000, 50))
    out, mask = layers.dropout_forward(x, 0.25, jax.random.PRNGKey(3))
    kept = np.asarray(mask) > 0
    np.testing.assert_allclose(np.asarray(out)[kept], 1 / 0.75, rtol=1e-12)
    np.testing.assert_allclose(kept.mean(), 0.75, atol=0.01)
