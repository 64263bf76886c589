"""Hand-written forward/backward pairs for every layer of the network."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnet import rng

# Each `*_forward` returns `(out, residuals)`: `residuals` holds exactly what the
# matching `*_backward(residuals, dout)` needs. None of these functions calls autodiff.
#
# `batch_axis` says where the examples are: 0 (the default) is the usual (N, H) layout, 1
# the feature-major (H, N) one, where every product is `w @ x` with the (out, in) weights
# as the left operand and batchnorm reduces along rows. Per-feature vectors (b, gamma, beta,
# statistics) are (H,) in both layouts. Which layout a batch runs in is `jaxnet.layout`'s
# choice, made for speed; the numbers are the same in both.


def _per_feature(v, batch_axis):
    """An (H,) vector shaped to broadcast against (N, H) or, for batch_axis=1, (H, N)."""
    return v if batch_axis == 0 else jnp.expand_dims(v, -1)


class AffineResiduals(NamedTuple):
    x: jax.Array  # (N, D_in) input, already flattened
    w: jax.Array  # (D_out, D_in)


def affine_forward(x, w, b, *, batch_axis=0):
    """Affine layer `x @ w.T + b`, or `w @ x + b` feature-major.

    Args:
      x: (N, d1, ..., dk) input, flattened to (N, D_in) with D_in = d1 * ... * dk; for
        batch_axis=1, (D_in, N).
      w: (D_out, D_in) weights.
      b: (D_out,) bias.
      batch_axis: 0, or 1 for the feature-major layout (see the module comment).

    Returns:
      out: (N, D_out), or (D_out, N) for batch_axis=1, and the residuals for
      `affine_backward`.
    """
    if batch_axis == 0:
        x = x.reshape(x.shape[0], -1)
        out = jnp.dot(x, w.T)
    else:
        out = jnp.dot(w, x)
    return out + _per_feature(b, batch_axis), AffineResiduals(x, w)


def affine_backward(res: AffineResiduals, dout, *, compute_dx: bool = True, batch_axis=0):
    """Backward of `affine_forward`.

    Args:
      res: residuals from `affine_forward`.
      dout: (N, D_out) upstream gradient; (D_out, N) for batch_axis=1.
      compute_dx: False skips the input gradient (the first layer never needs it).
      batch_axis: as given to `affine_forward`.

    Returns:
      dx: like the forward's input, or None when `compute_dx` is False; dw: (D_out, D_in);
      db: (D_out,).
    """
    if batch_axis == 0:
        dx = jnp.dot(dout, res.w) if compute_dx else None
        dw = jnp.dot(dout.T, res.x)
    else:
        dx = jnp.dot(res.w.T, dout) if compute_dx else None
        dw = jnp.dot(dout, res.x.T)
    return dx, dw, jnp.sum(dout, axis=batch_axis)


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


def batchnorm_train_forward(x, gamma, beta, eps, *, batch_axis=0):
    """Batch normalisation with the statistics of this batch.

    Args:
      x: (N, H) input, N >= 2; (H, N) for batch_axis=1.
      gamma, beta: (H,) scale and shift.
      eps: added to the variance before the square root.
      batch_axis: 0, or 1 for the feature-major layout.

    Returns:
      out: (N, H) `gamma * (x - mean) / sqrt(var + eps) + beta`, with the batch mean and
      the biased batch variance (divided by N), and the residuals, which also carry
      `mean` and `var` for the running averages.
    """
    mean = jnp.mean(x, axis=batch_axis)
    centred = x - _per_feature(mean, batch_axis)
    var = jnp.mean(centred * centred, axis=batch_axis)
    inv_std = jax.lax.rsqrt(var + eps)
    xhat = centred * _per_feature(inv_std, batch_axis)
    out = _per_feature(gamma, batch_axis) * xhat + _per_feature(beta, batch_axis)
    return out, BatchNormResiduals(xhat, gamma, inv_std, mean, var)


def batchnorm_train_backward(res: BatchNormResiduals, dout, *, batch_axis=0):
    """Backward of `batchnorm_train_forward` (the compact one-line formula).

    Returns:
      dx: like `dout`, dgamma: (H,), dbeta: (H,).
    """
    n = dout.shape[batch_axis]
    dbeta = jnp.sum(dout, axis=batch_axis)
    dgamma = jnp.sum(dout * res.xhat, axis=batch_axis)
    scale = _per_feature(res.gamma * res.inv_std / n, batch_axis)
    dx = scale * (n * dout - _per_feature(dbeta, batch_axis)
                  - res.xhat * _per_feature(dgamma, batch_axis))
    return dx, dgamma, dbeta


def batchnorm_eval_forward(x, gamma, beta, mean, var, eps, *, batch_axis=0):
    """Batch normalisation with fixed (running) statistics `mean`, `var` of shape (H,);
    x is (N, H), or (H, N) for batch_axis=1."""
    inv_std = jax.lax.rsqrt(var + eps)
    xhat = (x - _per_feature(mean, batch_axis)) * _per_feature(inv_std, batch_axis)
    out = _per_feature(gamma, batch_axis) * xhat + _per_feature(beta, batch_axis)
    return out, BatchNormResiduals(xhat, gamma, inv_std, mean, var)


def batchnorm_eval_backward(res: BatchNormResiduals, dout, *, batch_axis=0):
    """Backward of `batchnorm_eval_forward` (the statistics are constants).

    Returns:
      dx: like `dout`, dgamma: (H,), dbeta: (H,).
    """
    dx = dout * _per_feature(res.gamma * res.inv_std, batch_axis)
    return (dx, jnp.sum(dout * res.xhat, axis=batch_axis),
            jnp.sum(dout, axis=batch_axis))


def dropout_forward(x, rate, key, *, size=None):
    """Inverted dropout: zeroes each entry with probability `rate`, scales the rest.

    Elementwise, so it has no `batch_axis`: the mask is drawn in x's own shape, and one key
    gives different masks for (N, H) and (H, N) inputs (in the feature-major layout,
    drawing an (N, H) mask and transposing it cost up to 10% of a step).

    Args:
      x: (N, H) or (H, N) input.
      rate: drop probability in [0, 1); may be a traced value (vmapped sweeps).
      key: PRNG key for the mask.
      size: None, or the shape (may be traced) of the narrower layer that x holds zero-
        padded (width sweeps): its entries then get the mask that layer draws alone
        (`rng.uniform_within`).

    Returns:
      out: `x * mask`, and the residual `mask` (0 or `1 / (1 - rate)`), both shaped like x.
    """
    draws = (rng.uniform(key, x.shape, x.dtype) if size is None
             else rng.uniform_within(key, x.shape, x.dtype, size))
    keep = draws >= rate
    mask = jnp.where(keep, 1 / (1 - jnp.asarray(rate, x.dtype)), 0).astype(x.dtype)
    return x * mask, mask


def dropout_backward(mask, dout):
    """Backward of `dropout_forward`."""
    return dout * mask


class SoftmaxResiduals(NamedTuple):
    probs: jax.Array  # (N, C) softmax of the logits
    labels: jax.Array  # (N,) integer labels
    # (N,) w[y_i] / sum_j w[y_j], each example's share of a class-weighted loss; None: 1 / N
    example_scale: jax.Array | None = None


def _onehot(labels, num_classes, batch_axis):
    classes = jnp.arange(num_classes, dtype=labels.dtype)
    if batch_axis == 0:
        return labels[:, None] == classes
    return classes[:, None] == labels


def softmax_xent_forward(logits, labels, *, class_weight=None, batch_axis=0):
    """Mean softmax cross-entropy, computed with log-sum-exp (never log(0)).

    Args:
      logits: (N, C) scores, or (C, N) for batch_axis=1.
      labels: (N,) integer class labels.
      class_weight: None, or (C,) positive per-class weights w: the loss is then the
        weighted mean `sum_i w[y_i] * nll_i / sum_i w[y_i]`, as PyTorch's
        `CrossEntropyLoss(weight=w)` computes it (reduction="mean"). May be traced.
      batch_axis: 0, or 1 for the feature-major layout.

    Returns:
      The scalar mean loss, and the residuals for `softmax_xent_backward`.
    """
    class_axis = 1 - batch_axis
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=class_axis, keepdims=True))
    log_norm = jnp.log(jnp.sum(jnp.exp(shifted), axis=class_axis, keepdims=True))
    log_probs = shifted - log_norm
    onehot = _onehot(labels, logits.shape[class_axis], batch_axis)
    picked = jnp.sum(jnp.where(onehot, log_probs, 0), axis=class_axis)
    if class_weight is None:
        return -jnp.mean(picked), SoftmaxResiduals(jnp.exp(log_probs), labels)
    weights = jnp.asarray(class_weight, log_probs.dtype)[labels]  # (N,) w[y_i]
    total = jnp.sum(weights)
    return (-jnp.sum(weights * picked) / total,
            SoftmaxResiduals(jnp.exp(log_probs), labels, weights / total))


def softmax_xent_backward(res: SoftmaxResiduals, dloss=1.0, *, batch_axis=0):
    """Backward of `softmax_xent_forward`: `(softmax - onehot) * dloss / N`, shaped like
    the logits; with class weights, example i's row is scaled by `w[y_i] / sum_j w[y_j]`
    in place of 1 / N."""
    n, c = res.probs.shape[batch_axis], res.probs.shape[1 - batch_axis]
    onehot = _onehot(res.labels, c, batch_axis)
    if res.example_scale is None:
        return (res.probs - onehot.astype(res.probs.dtype)) * (dloss / n)
    scale = res.example_scale * dloss
    scale = scale[:, None] if batch_axis == 0 else scale
    return (res.probs - onehot.astype(res.probs.dtype)) * scale
