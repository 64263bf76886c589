"""The N-layer network: pure init, apply, loss and the hand-written backward pass."""

from __future__ import annotations

import itertools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import layers, layout, ranges, rng
from jaxnet.constants import DEFAULT_EPS, DEFAULT_MOMENTUM, DEFAULT_WEIGHT_SCALE, INIT_METHODS

# Layout: params is a tuple of per-layer dicts. Hidden layers hold
# {"w": (out, in), "b": (out,), "gamma": (out,), "beta": (out,)}; the last layer holds
# {"w", "b"}. The batchnorm state is a tuple of {"mean": (h,), "var": (h,)}, one per hidden
# layer.


def check_dims(dims) -> tuple[int, ...]:
    """Validates layer sizes `(D, h1, ..., h_{L-1}, C)` and returns them as a tuple of ints."""
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(
            f"dims must be a sequence of layer sizes like (64, 100, 10), got {dims!r}"
        ) from None
    if len(dims) < 2:
        raise ValueError(
            f"dims must hold at least an input and an output size, like (64, 10), got {dims!r}"
        )
    for i, d in enumerate(dims):
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"dims[{i}] must be a positive integer, got {d!r} in dims={dims!r}")
        if d <= 0:
            raise ValueError(f"dims[{i}] must be a positive integer, got {d} in dims={dims!r}")
    return tuple(int(d) for d in dims)


def init(key, dims, *, init="normal", weight_scale=DEFAULT_WEIGHT_SCALE, dtype=jnp.float32,
         widths=None):
    """Builds fresh parameters and batchnorm state. Pure: the same key gives the same params.

    Args:
      key: PRNG key. `jax.vmap(lambda k: init(k, dims))(keys)` gives one network per key.
      dims: layer sizes `(D, h1, ..., h_{L-1}, C)`: L = len(dims) - 1 affine layers.
      init: "normal" draws weights as `weight_scale * randn` (the notebook's rule);
        "he" draws them as `sqrt(2 / fan_in) * randn` and ignores `weight_scale`.
      weight_scale: standard deviation of the "normal" weights (default 5e-2, the
        notebook's); may be a traced value, so sweeps can vmap over it.
      dtype: float dtype of every array (float32 by default).
      widths: None, or (L-1,) int hidden widths (may be traced), each at most the `dims`
        entry it pads: the init of the network `(D, *widths, C)`, the same numbers as
        `init(key, (D, *widths, C))`, zero-padded to `dims` (its gamma and batchnorm
        statistics too). Width sweeps (`jaxnet.sweep`) train such padded networks: the
        padded units stay zero and are the width-`widths` network's exactly (see
        `_forward`).

    Returns:
      params: tuple of L dicts; weights have the `(out, in)` layout, biases and beta are
        zeros, gamma ones.
      state: tuple of L - 1 dicts {"mean": zeros, "var": ones}.
    """
    dims = check_dims(dims)
    if init not in INIT_METHODS:
        raise ValueError(f"init must be one of {INIT_METHODS}, got {init!r}")
    if widths is not None and np.shape(widths) != (len(dims) - 2,):
        raise ValueError(f"widths must hold one width per hidden layer of dims={dims}, "
                         f"shape ({len(dims) - 2},), got shape {np.shape(widths)}")
    keys = jax.random.split(key, len(dims) - 1)
    real = dims if widths is None else (dims[0], *jnp.asarray(widths, jnp.int32), dims[-1])
    params, state = [], []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        if widths is None:
            scale = math.sqrt(2.0 / fan_in) if init == "he" else weight_scale
            draw = rng.normal(keys[i], (fan_out, fan_in), dtype)
        else:
            real_in, real_out = real[i], real[i + 1]
            scale = (jnp.sqrt(jnp.asarray(2, dtype) / jnp.asarray(real_in).astype(dtype))
                     if init == "he" else weight_scale)
            draw = rng.normal_within(keys[i], (fan_out, fan_in), dtype, (real_out, real_in))
        # The barrier keeps jit from folding `scale` into the draw's own sqrt(2): without it
        # a jitted or vmapped init differs from an eager one by 1 ulp in half the weights.
        w = jnp.asarray(scale, dtype) * jax.lax.optimization_barrier(draw)
        live = jnp.ones((fan_out,), dtype)  # 1 for the units of the network, 0 for padding
        if widths is not None:
            live = (jnp.arange(fan_out, dtype=jnp.int32) < real[i + 1]).astype(dtype)
            w = jnp.where((live[:, None] > 0) & (jnp.arange(fan_in, dtype=jnp.int32) < real[i]),
                          w, 0)
        layer = {"w": w, "b": jnp.zeros((fan_out,), dtype)}
        if i < len(dims) - 2:
            layer["gamma"] = live
            layer["beta"] = jnp.zeros((fan_out,), dtype)
            state.append({"mean": jnp.zeros((fan_out,), dtype), "var": live})
        params.append(layer)
    return tuple(params), tuple(state)


def narrow(params, state, widths):
    """The network of hidden widths `widths` that zero-padded `params`, `state` hold (a
    width sweep's run, `init(..., widths=...)`): each layer sliced to its own units.

    Args:
      params, state: a padded network (from `init` with `widths`, trained or not).
      widths: the (L-1,) hidden widths, concrete ints (e.g. a sweep row's "hidden").

    Returns:
      (params, state) shaped as `init(key, (D, *widths, C))` builds them.
    """
    sizes = (params[0]["w"].shape[-1], *(int(w) for w in widths), params[-1]["w"].shape[-2])
    if len(sizes) != len(params) + 1:
        raise ValueError(f"widths {tuple(widths)} name {len(sizes) - 2} hidden layers but params "
                         f"have {len(params) - 1}")
    params = tuple({name: v[:out, :inp] if name == "w" else v[:out] for name, v in layer.items()}
                   for layer, inp, out in zip(params, sizes, sizes[1:], strict=False))
    state = tuple({name: v[:w] for name, v in entry.items()}
                  for entry, w in zip(state, sizes[1:-1], strict=True))
    return params, state


def _is_concrete_number(value) -> bool:
    return not isinstance(value, jax.core.Tracer) and np.ndim(value) == 0


def _check_tree(params, state):
    if not isinstance(params, (tuple, list)) or not params:
        raise TypeError(f"params must be the tuple of layer dicts from jaxnet.init, got {type(params).__name__}")
    if not isinstance(state, (tuple, list)):
        raise TypeError(f"state must be the tuple of batchnorm dicts from jaxnet.init, got {type(state).__name__}")
    if len(state) != len(params) - 1:
        raise ValueError(
            f"params and state do not belong together: params has {len(params)} layers, so state "
            f"needs {len(params) - 1} batchnorm entries, but it has {len(state)}; pass the state "
            "returned by the same jaxnet.init call"
        )
    for i, layer in enumerate(params):
        expected = {"w", "b"} if i == len(params) - 1 else {"w", "b", "gamma", "beta"}
        if not isinstance(layer, dict) or set(layer) != expected:
            found = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise ValueError(f"params[{i}] must be a dict with keys {sorted(expected)}, got {found}")
        if i and layer["w"].shape[-1] != params[i - 1]["w"].shape[-2]:
            raise ValueError(
                f"params[{i}]['w'] takes {layer['w'].shape[-1]} inputs but layer {i - 1} has "
                f"{params[i - 1]['w'].shape[-2]} outputs; build params with jaxnet.init"
            )
    for i, entry in enumerate(state):
        width = params[i]["w"].shape[-2]
        for name in ("mean", "var"):
            shape = tuple(entry[name].shape) if isinstance(entry, dict) and name in entry else None
            if shape != (width,):
                raise ValueError(
                    f"params and state do not belong together: hidden layer {i} has width "
                    f"{width} but state[{i}][{name!r}] has shape {shape}; pass the state "
                    "returned by the same jaxnet.init call"
                )


def _check_call(params, state, x, *, key, train, dropout):
    _check_tree(params, state)
    x_shape = np.shape(x)
    d_in = params[0]["w"].shape[-1]
    if len(x_shape) < 2 or math.prod(x_shape[1:]) != d_in:
        raise ValueError(
            f"x must have shape (N, ...) with {d_in} features per example (dims[0]), got shape "
            f"{x_shape}; reshape the data or build the network with dims[0]="
            f"{math.prod(x_shape[1:]) if len(x_shape) >= 2 else '...'}"
        )
    if _is_concrete_number(dropout):
        ranges.check("dropout", float(dropout))
        if train and float(dropout) > 0 and key is None:
            raise ValueError(
                f"dropout={dropout} in train mode needs a PRNG key for its masks: pass "
                "key=jax.random.key(...) (or PRNGKey), or train=False for evaluation"
            )
    if train and len(params) > 1 and x_shape[0] < 2:
        raise ValueError(
            f"batch size {x_shape[0]} in train mode: batchnorm needs at least 2 examples to "
            "compute a variance; use a larger batch or train=False"
        )


def _check_labels(x, y):
    y_shape, y_dtype = np.shape(y), jnp.result_type(y)
    if not jnp.issubdtype(y_dtype, jnp.integer):
        raise TypeError(f"labels y must be integers (class indices), got dtype {y_dtype}; cast with y.astype(int)")
    if y_shape != (np.shape(x)[0],):
        raise ValueError(f"labels y must have shape ({np.shape(x)[0]},) to match x, got {y_shape}")


def _check_class_weight(params, class_weight):
    if class_weight is None:
        return
    num_classes = params[-1]["w"].shape[-2]
    if np.shape(class_weight) != (num_classes,):
        raise ValueError(
            f"class_weight must have shape ({num_classes},), one weight per class of the "
            f"network's output, got shape {np.shape(class_weight)}")


class _Residuals(NamedTuple):
    affine: list  # one per layer; the first is the layout's (None for a given product)
    batchnorm: list
    relu: list
    dropout: list  # None entries where no dropout was applied


def _maybe_nonzero(value) -> bool:
    """False only for a concrete 0, so a literal 0 can skip work while traced values cannot."""
    return not (_is_concrete_number(value) and float(value) == 0.0)


def _layout(params, x, vmapped_runs=False) -> layout.Layout:
    """x flattened to (N, D) in the params' dtype, in the layout chosen for it."""
    x = jnp.asarray(x)
    x = x.reshape(x.shape[0], -1).astype(params[0]["w"].dtype)
    return layout.choose(x, vmapped_runs=vmapped_runs)


def _forward(params, state, lay, *, key, train, dropout, momentum, eps, widths=None):
    """`affine -> (batchnorm -> relu -> dropout -> affine) x (L-1)` on the batch `lay`
    (`jaxnet.layout`); returns the logits in that layout, the new state and every layer's
    residuals.

    `widths` ((L-1,) ints, may be traced): the params are a narrower network's, zero-padded
    (`init(..., widths=...)`); only the dropout masks need to know, to draw that network's
    own (`layers.dropout_forward`'s `size`). Everything else holds by itself: a padded unit
    has zero weights in and out, zero bias, gamma and beta, so its pre-activation is 0, its
    batch mean and variance 0 (its running statistics, 0, stay 0; rsqrt(0 + eps) is
    finite), its output 0, and every gradient reaching it or its parameters is exactly 0, so
    the optimizer's moments of it stay 0 and decoupled weight decay or L2 of 0 is 0. The
    network's own units compute what they compute alone, up to the order of the sums in
    the products (the padding adds exact zeros).
    """
    axis = lay.batch_axis
    drop = train and _maybe_nonzero(dropout)
    keys = jax.random.split(key, len(state)) if drop else [None] * len(state)
    res = _Residuals([], [], [], [])
    new_state = []
    h, r = lay.first_affine(params[0]["w"], params[0]["b"])
    res.affine.append(r)
    for i, stats in enumerate(state):
        layer, after = params[i], params[i + 1]
        if train:
            h, r = layers.batchnorm_train_forward(h, layer["gamma"], layer["beta"], eps,
                                                  batch_axis=axis)
            new_state.append({
                "mean": momentum * stats["mean"] + (1 - momentum) * r.mean,
                "var": momentum * stats["var"] + (1 - momentum) * r.var,
            })
        else:
            h, r = layers.batchnorm_eval_forward(
                h, layer["gamma"], layer["beta"], stats["mean"], stats["var"], eps, batch_axis=axis
            )
            new_state.append(stats)
        res.batchnorm.append(r)
        h, r = layers.relu_forward(h)
        res.relu.append(r)
        if drop:
            size = None if widths is None else (
                (h.shape[0], widths[i]) if axis == 0 else (widths[i], h.shape[1]))
            h, r = layers.dropout_forward(h, dropout, keys[i], size=size)
        else:
            r = None
        res.dropout.append(r)
        h, r = layers.affine_forward(h, after["w"], after["b"], batch_axis=axis)
        res.affine.append(r)
    return h, (tuple(new_state) if train else state), res


def apply(params, state, x, *, key=None, train=True, dropout=0.0, momentum=DEFAULT_MOMENTUM,
          eps=DEFAULT_EPS):
    """Runs the network: `(affine -> batchnorm -> relu -> dropout) x (L-1) -> affine`.

    Args:
      params, state: from `init`.
      x: (N, d1, ...) inputs with d1 * ... = dims[0]; cast to the params' dtype.
      key: PRNG key for the dropout masks (one per hidden layer, split from it); needed
        only when `train` and `dropout > 0`.
      train: True normalises with batch statistics and updates the running averages;
        False uses the running statistics, no dropout, and returns `state` unchanged.
      dropout: drop probability in [0, 1) (inverted dropout, as in Flax and PyTorch).
      momentum: running averages follow `running = momentum * running + (1 - momentum) *
        batch` (default 0.9, as CS231n; PyTorch's 0.1 means 1 - momentum here). The
        running variance averages the biased batch variance (divided by N).
      eps: batchnorm's variance epsilon (default 1e-5).

    Returns:
      logits: (N, C), and the new batchnorm state.
    """
    _check_call(params, state, x, key=key, train=train, dropout=dropout)
    lay = _layout(params, x)
    logits, new_state, _ = _forward(params, state, lay, key=key, train=train, dropout=dropout,
                                    momentum=momentum, eps=eps)
    return lay.batch_major(logits), new_state


def _l2(params, reg):
    if not _maybe_nonzero(reg):  # a literal 0: no reduction over the weights at every step
        return 0.0
    return 0.5 * reg * sum(jnp.sum(layer["w"] * layer["w"]) for layer in params)


def loss(params, state, x, y, *, key=None, train=True, dropout=0.0, reg=0.0,
         momentum=DEFAULT_MOMENTUM, eps=DEFAULT_EPS, vmapped_runs=False, class_weight=None,
         widths=None):
    """Mean softmax cross-entropy plus `0.5 * reg * sum(w**2)` over the weight matrices.

    Args:
      params, state, x, key, train, dropout, momentum, eps: as in `apply`.
      y: (N,) integer labels in [0, C).
      reg: L2 strength (biases, gamma and beta are not regularised).
      class_weight: None (every example counts the same), or (C,) positive per-class
        weights w, which make the cross-entropy the weighted mean `sum_i w[y_i] * nll_i /
        sum_i w[y_i]` over the batch: PyTorch's `CrossEntropyLoss(weight=w)`. The L2 term
        is not weighted. May be traced (an argument of a jitted step, not a constant).
      vmapped_runs: True where the call runs under `jax.vmap` over runs' parameters that
        share x (sweeps): the first layer's product then takes the form XLA runs faster
        there (`jaxnet.layout`). The same numbers up to round-off either way.
      widths: None, or the (L-1,) hidden widths (may be traced) of the network the params
        hold zero-padded (`init`'s `widths`): dropout then draws that network's masks.

    Returns:
      The scalar loss and the new batchnorm state (so `jax.value_and_grad(loss,
      has_aux=True)` works).
    """
    _check_call(params, state, x, key=key, train=train, dropout=dropout)
    _check_labels(x, y)
    _check_class_weight(params, class_weight)
    data_loss, new_state = _data_loss(params, state, _layout(params, x, vmapped_runs), y,
                                      key=key, train=train, dropout=dropout,
                                      momentum=momentum, eps=eps, class_weight=class_weight,
                                      widths=widths)
    return data_loss + _l2(params, reg), new_state


def _data_loss(params, state, lay, y, *, key, train, dropout, momentum, eps, class_weight,
               widths=None):
    """Mean (class-weighted, with `class_weight`) softmax cross-entropy (no L2 term) and
    the new state."""
    logits, new_state, _ = _forward(params, state, lay, key=key, train=train, dropout=dropout,
                                    momentum=momentum, eps=eps, widths=widths)
    return (layers.softmax_xent_forward(logits, jnp.asarray(y), class_weight=class_weight,
                                        batch_axis=lay.batch_axis)[0],
            new_state)


def manual_value_and_grad(params, state, x, y, *, key=None, train=True, dropout=0.0, reg=0.0,
                          momentum=DEFAULT_MOMENTUM, eps=DEFAULT_EPS, vmapped_runs=False,
                          class_weight=None, widths=None):
    """`jax.value_and_grad(loss, has_aux=True)` computed by the hand-written backward passes.

    Same arguments and same result as that call (`class_weight`, `widths` included); no autodiff is
    used. Jittable and vmappable (`vmapped_runs` as in `loss`). The input gradient of the
    first layer is never computed.

    Returns:
      ((loss, new_state), grads) with grads shaped like params.
    """
    _check_call(params, state, x, key=key, train=train, dropout=dropout)
    _check_labels(x, y)
    _check_class_weight(params, class_weight)
    return _manual(params, state, _layout(params, x, vmapped_runs), y, key=key, train=train,
                   dropout=dropout, reg=reg, momentum=momentum, eps=eps,
                   class_weight=class_weight, widths=widths)


def _manual(params, state, lay, y, *, key, train, dropout, reg, momentum, eps, class_weight,
            widths=None):
    axis = lay.batch_axis
    logits, new_state, res = _forward(params, state, lay, key=key, train=train,
                                      dropout=dropout, momentum=momentum, eps=eps,
                                      widths=widths)
    data_loss, xent_res = layers.softmax_xent_forward(logits, jnp.asarray(y),
                                                      class_weight=class_weight, batch_axis=axis)
    value = data_loss + _l2(params, reg)

    def weight_grad(dw, i):
        return dw + reg * params[i]["w"] if _maybe_nonzero(reg) else dw  # skip a literal 0

    bn_backward = layers.batchnorm_train_backward if train else layers.batchnorm_eval_backward
    grads: list[Any] = [{} for _ in params]
    dh = layers.softmax_xent_backward(xent_res, batch_axis=axis)
    for i in reversed(range(1, len(params))):  # layer i's affine, then hidden layer i - 1
        dh, dw, db = layers.affine_backward(res.affine[i], dh, batch_axis=axis)
        grads[i].update(w=weight_grad(dw, i), b=db)
        if res.dropout[i - 1] is not None:
            dh = layers.dropout_backward(res.dropout[i - 1], dh)
        dh = layers.relu_backward(res.relu[i - 1], dh)
        dh, dgamma, dbeta = bn_backward(res.batchnorm[i - 1], dh, batch_axis=axis)
        grads[i - 1].update(gamma=dgamma, beta=dbeta)
    dw, db = lay.first_affine_backward(res.affine[0], dh)
    grads[0].update(w=weight_grad(dw, 0), b=db)
    return (value, new_state), tuple(grads)


def value_and_grad_from_first(params, state, first, y, *, grad="manual", key=None, train=True,
                              dropout=0.0, momentum=DEFAULT_MOMENTUM, eps=DEFAULT_EPS,
                              class_weight=None, widths=None):
    """The loss and gradients given the first layer's product `first = x @ params[0]["w"].T`
    (N, H1) in place of x, for trainers that hold the first layer's weights in another
    form (`jaxnet.input_span`). No L2 term: it depends on that form.

    Args:
      params, state, y, key, train, dropout, momentum, eps, class_weight, widths: as in `loss`;
        params[0]["w"] is not read.
      first: (N, H1) the first layer's product, without its bias.
      grad: "manual" (the hand-written backward) or "autodiff" (`jax.grad`).

    Returns:
      ((loss, new_state), grads) as `manual_value_and_grad`, except that grads[0]["w"] is
      d loss / d first, (N, H1).
    """
    if grad == "manual":
        return _manual(params, state, layout.choose_for_product(first), y, key=key,
                       train=train, dropout=dropout, reg=0.0, momentum=momentum, eps=eps,
                       class_weight=class_weight, widths=widths)

    def from_first(params, first):
        return _data_loss(params, state, layout.choose_for_product(first), y, key=key,
                          train=train, dropout=dropout, momentum=momentum, eps=eps,
                          class_weight=class_weight, widths=widths)

    value, (grads, d_first) = jax.value_and_grad(from_first, argnums=(0, 1), has_aux=True)(
        params, first)
    return value, (dict(grads[0], w=d_first), *grads[1:])
