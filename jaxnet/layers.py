"""Hand-written forward/backward pairs for every layer of the network."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Each `*_forward` returns `(out, residuals)`: `residuals` holds exactly what the
# matching `*_backward(residuals, dout)` needs. None of these functions calls autodiff.


class AffineResiduals(NamedTuple):
    x: jax.Array  # (N, D_in) input, already flattened
    w: jax.Array  # (D_out, D_in)


def affine_forward(x, w, b):
    """Affine layer `x @ w.T + b`.

    Args:
      x: (N, d1, ..., dk) input; flattened to (N, D_in) with D_in = d1 * ... * dk.
      w: (D_out, D_in) weights. The `(out, in)` layout makes both backward products
        (`dout @ w` and `dout.T @ x`) plain row-major GEMMs, which XLA's CPU backend runs
        faster than the `x.T @ dout` that an `(in, out)` layout needs.
      b: (D_out,) bias.

    Returns:
      out: (N, D_out), and the residuals for `affine_backward`.
    """
    x = x.reshape(x.shape[0], -1)
    out = jnp.dot(x, w.T) + b
    return out, AffineResiduals(x, w)


def affine_backward(res: AffineResiduals, dout, *, compute_dx: bool = True):
    """Backward of `affine_forward`.

    Args:
      res: residuals from `affine_forward`.
      dout: (N, D_out) upstream gradient.
      compute_dx: False skips the input gradient (the first layer never needs it).

    Returns:
      dx: (N, D_in), or None when `compute_dx` is False; dw: (D_out, D_in); db: (D_out,).
    """
    dx = jnp.dot(dout, res.w) if compute_dx else None
    dw = jnp.dot(dout.T, res.x)
    db = jnp.sum(dout, axis=0)
    return dx, dw, db


def relu_forward(x):
    """ReLU `max(x, 0)`; the residual is the boolean mask `x > 0`."""
    mask = x > 0
    return jnp.where(mask, x, 0), mask


def relu_backward(mask, dout):
    """Backward of `relu_forward`: passes `dout` where the input was positive."""
    return jnp.where(mask, dout, 0)


class BatchNormResiduals(NamedTuple):
    xhat: jax.Array  # (N, H) normalised input
    gamma: jax.Array  # (H,)
    inv_std: jax.Array  # (H,) 1 / sqrt(var + eps)
    mean: jax.Array  # (H,) batch mean (train) or running mean (eval)
    var: jax.Array  # (H,) biased batch variance (train) or running variance (eval)


def batchnorm_train_forward(x, gamma, beta, eps):
    """Batch normalisation with the statistics of this batch.

    Args:
      x: (N, H) input, N >= 2.
      gamma, beta: (H,) scale and shift.
      eps: added to the variance before the square root.

    Returns:
      out: (N, H) `gamma * (x - mean) / sqrt(var + eps) + beta`, with the batch mean and
      the biased batch variance (divided by N), and the residuals, which also carry
      `mean` and `var` for the running averages.
    """
    mean = jnp.mean(x, axis=0)
    centred = x - mean
    var = jnp.mean(centred * centred, axis=0)
    inv_std = jax.lax.rsqrt(var + eps)
    xhat = centred * inv_std
    return gamma * xhat + beta, BatchNormResiduals(xhat, gamma, inv_std, mean, var)


def batchnorm_train_backward(res: BatchNormResiduals, dout):
    """Backward of `batchnorm_train_forward` (the compact one-line formula).

    Returns:
      dx: (N, H), dgamma: (H,), dbeta: (H,).
    """
    n = dout.shape[0]
    dbeta = jnp.sum(dout, axis=0)
    dgamma = jnp.sum(dout * res.xhat, axis=0)
    dx = (res.gamma * res.inv_std / n) * (n * dout - dbeta - res.xhat * dgamma)
    return dx, dgamma, dbeta


def batchnorm_eval_forward(x, gamma, beta, mean, var, eps):
    """Batch normalisation with fixed (running) statistics `mean`, `var` of shape (H,)."""
    inv_std = jax.lax.rsqrt(var + eps)
    xhat = (x - mean) * inv_std
    return gamma * xhat + beta, BatchNormResiduals(xhat, gamma, inv_std, mean, var)


def batchnorm_eval_backward(res: BatchNormResiduals, dout):
    """Backward of `batchnorm_eval_forward` (the statistics are constants).

    Returns:
      dx: (N, H), dgamma: (H,), dbeta: (H,).
    """
    dx = dout * (res.gamma * res.inv_std)
    return dx, jnp.sum(dout * res.xhat, axis=0), jnp.sum(dout, axis=0)


def dropout_forward(x, rate, key):
    """Inverted dropout: zeroes each entry with probability `rate`, scales the rest.

    Args:
      x: (N, H) input.
      rate: drop probability in [0, 1); may be a traced value (vmapped sweeps).
      key: PRNG key for the mask.

    Returns:
      out: (N, H) `x * mask`, and the residual `mask` (0 or `1 / (1 - rate)`).
    """
    keep = jax.random.uniform(key, x.shape, dtype=x.dtype) >= rate
    mask = jnp.where(keep, 1 / (1 - jnp.asarray(rate, x.dtype)), 0).astype(x.dtype)
    return x * mask, mask


def dropout_backward(mask, dout):
    """Backward of `dropout_forward`."""
    return dout * mask


class SoftmaxResiduals(NamedTuple):
    probs: jax.Array  # (N, C) softmax of the logits
    labels: jax.Array  # (N,) integer labels


def softmax_xent_forward(logits, labels):
    """Mean softmax cross-entropy, computed with log-sum-exp (never log(0)).

    Args:
      logits: (N, C) scores.
      labels: (N,) integer class labels.

    Returns:
      The scalar mean loss, and the residuals for `softmax_xent_backward`.
    """
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))
    log_norm = jnp.log(jnp.sum(jnp.exp(shifted), axis=1, keepdims=True))
    log_probs = shifted - log_norm
    picked = jnp.take_along_axis(log_probs, labels[:, None], axis=1)
    return -jnp.mean(picked), SoftmaxResiduals(jnp.exp(log_probs), labels)


def softmax_xent_backward(res: SoftmaxResiduals, dloss=1.0):
    """Backward of `softmax_xent_forward`: `(softmax - onehot) * dloss / N`, shape (N, C)."""
    n, c = res.probs.shape
    onehot = res.labels[:, None] == jnp.arange(c, dtype=res.labels.dtype)
    return (res.probs - onehot.astype(res.probs.dtype)) * (dloss / n)
