"""Checks hand-written backward passes against autodiff and float64 finite differences."""

from __future__ import annotations

import dataclasses
import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnet import model
from jaxnet.train import balanced_class_weights

# The error of one tensor is max over its entries of |a - b| / max(|a|, |b|, floor) (CS231n's
# relative error; the floor stops entries that should be exactly zero, like the gradient of a
# bias feeding batchnorm, from dividing rounding noise by ~0). A tensor passes when that error
# is at most `rtol`. Defaults, measured on 3072-100-100-100-100-10 and deeper networks:
DEFAULT_SAMPLES = 10  # finite differences per tensor
DEFAULT_STEP = 1e-5  # central-difference step (CS231n's), in float64
# A float64 central difference of a loss ~1 is off by ~1e-10 (rounding / step, plus step**2
# truncation), so entries under the floor 1e-5 give errors up to ~1e-5; a relu kink inside the
# step gives more (rare at this step; rerun with another seed if one tensor fails narrowly).
NUMERIC_RTOL = 1e-4
NUMERIC_FLOOR = 1e-5
# (rtol, floor) of manual vs autodiff, by the dtype both run in. float64 agrees to ~1e-12;
# in float32 the two sum the same terms in other orders and differ by up to ~3e-7 absolute,
# all of it in entries that should be zero (biases feeding batchnorm) or that cancel.
AUTODIFF_TOLERANCES = {"float64": (1e-7, 1e-5), "float32": (1e-2, 1e-3)}

_NAMES = ("w", "b", "gamma", "beta")
_LABELS = {"w": "W", "b": "b", "gamma": "gamma", "beta": "beta"}


def relative_error(actual, expected, *, floor):
    """Max over entries of `|a - e| / max(|a|, |e|, floor)`, computed in float64.

    Args:
      actual, expected: arrays of the same shape.
      floor: positive; entries smaller than it count as this large, so two values that
        should be zero but differ by rounding noise `d` give `d / floor`, not ~1.

    Returns:
      A float: 0.0 for empty arrays, inf when either array holds a NaN or inf.
    """
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    if a.shape != e.shape:
        raise ValueError(f"relative_error needs equal shapes, got {a.shape} and {e.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(e))):
        return float("inf")
    scale = np.maximum(np.maximum(np.abs(a), np.abs(e)), floor)
    return float(np.max(np.abs(a - e) / scale, initial=0.0))


@dataclasses.dataclass(frozen=True)
class GradcheckRow:
    """One checked tensor.

    Attributes:
      label: the name printed in the table: `W1`, `b1`, `gamma1`, `beta1`, ... (layers
        numbered from 1, as in the CS231n notebook), or the input's name for `check_layer`.
      layer: index into `params` (from 0), or None for `check_layer`.
      name: `w`, `b`, `gamma` or `beta` (the params key), or the input's name.
      shape: the tensor's shape.
      autodiff_error: relative error of the manual gradient vs autodiff, over every entry.
      numeric_error: relative error of the float64 manual gradient vs central differences,
        over the sampled entries.
      passed: both errors within the report's tolerances.
    """

    label: str
    layer: int | None
    name: str
    shape: tuple[int, ...]
    autodiff_error: float
    numeric_error: float
    passed: bool


@dataclasses.dataclass(frozen=True)
class GradcheckReport:
    """Per-tensor errors of a hand-written gradient; `str(report)` is the CS231n-style table.

    Attributes:
      rows: one `GradcheckRow` per checked tensor, in layer order (W, b, gamma, beta).
      description: what was checked (network, batch, mode), the table's first line.
      autodiff_dtype: dtype the manual-vs-autodiff comparison ran in (the params' dtype).
      rtol_autodiff, floor_autodiff: its tolerance and floor.
      rtol_numeric, floor_numeric: the tolerance and floor of the float64 numeric check.
      step: central-difference step.
      samples: entries differenced per tensor (None: all of them).
    """

    rows: tuple[GradcheckRow, ...]
    description: str
    autodiff_dtype: str
    rtol_autodiff: float
    floor_autodiff: float
    rtol_numeric: float
    floor_numeric: float
    step: float
    samples: int | None

    @property
    def passed(self) -> bool:
        """True when every row is within both tolerances."""
        return all(row.passed for row in self.rows)

    @property
    def failures(self) -> tuple[GradcheckRow, ...]:
        """The rows outside a tolerance (empty when the check passed)."""
        return tuple(row for row in self.rows if not row.passed)

    def format(self) -> str:
        """The report as a table, one `W1 relative error: ...` line per tensor, then PASS/FAIL."""
        sampled = "every entry" if self.samples is None else f"{self.samples} entries per tensor"
        lines = [
            self.description,
            "relative error = max |manual - other| / max(|manual|, |other|, floor) over entries",
            f"  vs autodiff: {self.autodiff_dtype}, every entry, tolerance "
            f"{self.rtol_autodiff:.0e}, floor {self.floor_autodiff:.0e}",
            f"  vs numeric:  float64 central differences, step {self.step:.0e}, {sampled}, "
            f"tolerance {self.rtol_numeric:.0e}, floor {self.floor_numeric:.0e}",
        ]
        width = max([len(f"{row.label} relative error:") for row in self.rows], default=0)
        lines.append(f"{'':<{width}}  {'autodiff':>9}  {'numeric':>9}")
        for row in self.rows:
            head = f"{row.label} relative error:"
            mark = "" if row.passed else "  FAIL"
            lines.append(
                f"{head:<{width}}  {row.autodiff_error:>9.1e}  {row.numeric_error:>9.1e}{mark}"
            )
        if self.passed:
            lines.append(f"PASS: every tensor within tolerance ({len(self.rows)} checked)")
        else:
            lines.append("FAIL: " + ", ".join(row.label for row in self.failures))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _autodiff_tolerance(dtype, rtol, floor):
    name = jnp.dtype(dtype).name
    default = AUTODIFF_TOLERANCES.get(name)
    if default is None and (rtol is None or floor is None):
        raise ValueError(
            f"no default autodiff tolerance for {name}; pass rtol_autodiff= and "
            f"floor_autodiff=, or check float32/float64 values (defaults: {AUTODIFF_TOLERANCES})"
        )
    return (default[0] if rtol is None else rtol), (default[1] if floor is None else floor)


def _check_options(samples, step):
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int)
                                or samples < 1):
        raise ValueError(f"samples must be a positive int (entries per tensor) or None for all, "
                         f"got {samples!r}")
    if not step > 0:
        raise ValueError(f"step must be positive (the central-difference step), got {step!r}")


def _widen(value):
    if not isinstance(value, (jax.Array, np.ndarray)):
        return value
    if jnp.issubdtype(value.dtype, jnp.floating):
        return jnp.asarray(value, jnp.float64)
    if jnp.issubdtype(value.dtype, jnp.signedinteger):
        # int32 labels next to x64's int64 aranges would fail strict dtype promotion.
        return jnp.asarray(value, jnp.int64)
    return value  # PRNG keys, masks


def _to_x64(tree):
    """Float arrays of `tree` as float64, signed ints as int64; call under enable_x64(True)."""
    return jax.tree.map(_widen, tree)


def _pick_entries(leaves, samples, seed):
    """Flat indices (into `ravel_pytree` of `leaves`) of the entries to difference, per leaf."""
    rng = np.random.default_rng(seed)
    picks, offset = [], 0
    for leaf in leaves:
        size = int(np.size(leaf))
        if samples is None or samples >= size:
            chosen = np.arange(size)
        else:
            chosen = np.sort(rng.choice(size, samples, replace=False))
        picks.append(offset + chosen)
        offset += size
    return picks


def _central_differences(scalar_fn, tensors, flat_indices, step):
    """`(f(t + step e_i) - f(t - step e_i)) / (2 step)` for each flat index i into `tensors`
    (a list of arrays, raveled in order). Traceable: callers jit it with what it needs."""
    flat, unravel = ravel_pytree(tensors)

    def one(i):
        up = scalar_fn(unravel(flat.at[i].add(step)))
        down = scalar_fn(unravel(flat.at[i].add(-step)))
        return (up - down) / (2 * step)

    return jax.lax.map(one, flat_indices)


def _numeric_errors(manual, numeric, picks, floor):
    """Per-tensor relative error of `manual` (a list of arrays) at the picked entries."""
    manual_flat = np.asarray(ravel_pytree(manual)[0])
    numeric = np.asarray(numeric)
    errors, start = [], 0
    for chosen in picks:
        errors.append(relative_error(manual_flat[chosen], numeric[start:start + len(chosen)],
                                     floor=floor))
        start += len(chosen)
    return errors


def _param_entries(params):
    """(layer, name) for every tensor of `params`, in the notebook's order W, b, gamma, beta."""
    return tuple((i, name) for i, layer in enumerate(params) for name in _NAMES if name in layer)


def _in_order(tree, entries):
    return [tree[i][name] for i, name in entries]


# The gradient under test and `jax.grad` both run eagerly, so their forward passes are the
# same op-by-op computation: under jit, XLA may fuse one differently, and a unit within
# float32 rounding of a ReLU kink can then switch sides, giving an O(1) "error". Eager also
# means an edited or monkeypatched backward is always the one checked. The finite differences
# are jaxnet's own loss, jitted once per configuration and shape (the dropout masks make the
# compile slow); the masks and kinks there are float64, far from such rounding.
_LOSS_OPTIONS = ("train", "dropout", "reg", "momentum", "eps")


@functools.partial(jax.jit, static_argnames=("entries", "step", *_LOSS_OPTIONS))
def _loss_differences(tensors, state, x, y, key, class_weight, flat_indices, *, entries, step,
                      **options):
    # The differenced tensors are listed in `entries` order, so they line up with the rows
    # whatever order jax.tree flattens the layer dicts in.
    def scalar_loss(tensors):
        rebuilt = [{} for _ in range(entries[-1][0] + 1)]
        for (i, name), leaf in zip(entries, tensors, strict=True):
            rebuilt[i][name] = leaf
        return model.loss(tuple(rebuilt), state, x, y, key=key, class_weight=class_weight,
                          **options)[0]

    return _central_differences(scalar_loss, tensors, flat_indices, step)


def _weighted(class_weight, dtype) -> dict:
    # Only a given class_weight is passed: a gradient under test may not take the argument.
    return {} if class_weight is None else {"class_weight": jnp.asarray(class_weight, dtype)}


def _autodiff_errors(value_and_grad, params, state, x, y, key, class_weight, options, *,
                     entries, floor):
    """Per-tensor relative error of the gradient under test vs `jax.grad` of `jaxnet.loss`,
    both run eagerly in the params' dtype."""
    options = {**options, **_weighted(class_weight, jnp.result_type(params[0]["w"]))}
    _, manual = value_and_grad(params, state, x, y, key=key, **options)
    auto, _ = jax.grad(model.loss, has_aux=True)(params, state, x, y, key=key, **options)
    return [relative_error(m, a, floor=floor)
            for m, a in zip(_in_order(manual, entries), _in_order(auto, entries), strict=True)]


def _numeric_errors_x64(value_and_grad, params, state, x, y, key, class_weight, options, *,
                        entries, picks, step, floor):
    """Per-tensor relative error of the gradient under test vs central differences of
    `jaxnet.loss` at the `picks`, both run in float64 on float64 copies of the inputs."""
    with jax.enable_x64(True):
        params64, state64, x64, y64 = _to_x64((params, state, x, y))
        weighted = _weighted(class_weight, jnp.float64)
        _, manual64 = value_and_grad(params64, state64, x64, y64, key=key, **options,
                                     **weighted)
        numeric = _loss_differences(_in_order(params64, entries), state64, x64, y64, key,
                                    weighted.get("class_weight"),
                                    jnp.asarray(np.concatenate(picks)), entries=entries,
                                    step=step, **options)
        return _numeric_errors(_in_order(manual64, entries), numeric, picks, floor)


def _network_name(params):
    return "-".join(str(d) for d in (params[0]["w"].shape[-1],
                                     *(layer["w"].shape[-2] for layer in params)))


def _describe(network, batch, train, dropout, reg, class_weight=None):
    mode = f"train mode, dropout {dropout}" if train else "eval mode"
    weights = ("" if class_weight is None else ", class weights "
               + ", ".join(f"{w:.3g}" for w in np.asarray(class_weight).tolist()))
    return f"gradient check of network {network}, batch {batch}, {mode}, reg {reg}{weights}"


def gradcheck(params, state, x, y, *, key=None, train=True, dropout=0.0, reg=0.0,
              class_weight=None, momentum=model.DEFAULT_MOMENTUM, eps=model.DEFAULT_EPS,
              value_and_grad=model.manual_value_and_grad, samples=DEFAULT_SAMPLES, seed=0,
              step=DEFAULT_STEP, rtol_autodiff=None, floor_autodiff=None,
              rtol_numeric=NUMERIC_RTOL, floor_numeric=NUMERIC_FLOOR, description=None):
    """Checks a network's hand-written gradient against `jax.grad` and finite differences.

    Every evaluation uses the same `key`, so the dropout masks agree (within each dtype:
    float64 draws its masks in float64). Only the loss is differentiated; in train mode the
    new batchnorm state is an output and is not checked. Needs no global x64: the numeric
    check runs under `jax.enable_x64(True)` on float64 copies of params, state and x.

    Args:
      params, state: one network, from `jaxnet.init` (float32 or float64).
      x: (N, d1, ...) inputs with d1 * ... = dims[0].
      y: (N,) integer labels.
      key, train, dropout, reg, momentum, eps: as in `jaxnet.loss` (plain numbers here).
      class_weight: None, or (C,) per-class weights of the loss (`jaxnet.loss`); the
        gradient under test is then called with `class_weight=`.
      value_and_grad: the gradient under test, called like `jaxnet.manual_value_and_grad`
        (the default) and returning `((loss, new_state), grads)`, grads shaped like params.
        It runs eagerly, once in the params' dtype and once in float64.
      samples: entries per tensor compared with finite differences (default 10), chosen at
        random with `seed`; None differences every entry (slow for big layers).
      seed: seed of that choice.
      step: central-difference step (default 1e-5), applied in float64.
      rtol_autodiff, floor_autodiff: tolerance and floor of manual vs `jax.grad`, both run in
        the params' dtype; None takes `AUTODIFF_TOLERANCES` (float64: 1e-7 and 1e-5,
        float32: 1e-2 and 1e-3).
      rtol_numeric, floor_numeric: tolerance and floor of the float64 manual gradient vs
        central differences (default 1e-4 and 1e-5). Rounding in the differences grows
        with |loss|; for losses far above 1 (a huge reg) raise the floor.
      description: first line of the table; None describes the network and the call.

    Returns:
      A `GradcheckReport` with one row per tensor (W1, b1, gamma1, beta1, ..., W_L, b_L);
      `report.passed` says whether every row is within both tolerances.
    """
    _check_options(samples, step)
    options = {"train": bool(train), "dropout": float(dropout), "reg": float(reg),
               "momentum": float(momentum), "eps": float(eps)}
    dtype = jnp.result_type(params[0]["w"])
    rtol_autodiff, floor_autodiff = _autodiff_tolerance(dtype, rtol_autodiff, floor_autodiff)
    entries = _param_entries(params)
    x, y = jnp.asarray(x), jnp.asarray(y)
    auto_errors = _autodiff_errors(value_and_grad, params, state, x, y, key, class_weight,
                                   options, entries=entries, floor=floor_autodiff)
    picks = _pick_entries(_in_order(params, entries), samples, seed)
    numeric_errors = _numeric_errors_x64(value_and_grad, params, state, x, y, key, class_weight,
                                         options, entries=entries, picks=picks,
                                         step=float(step), floor=floor_numeric)

    rows = tuple(
        GradcheckRow(
            label=f"{_LABELS[name]}{i + 1}", layer=i, name=name,
            shape=tuple(params[i][name].shape), autodiff_error=a, numeric_error=n,
            passed=bool(a <= rtol_autodiff and n <= rtol_numeric),
        )
        for (i, name), a, n in zip(entries, auto_errors, numeric_errors, strict=True)
    )
    if description is None:
        description = _describe(_network_name(params), x.shape[0], train, dropout, reg,
                                class_weight)
    return GradcheckReport(rows, description, dtype.name, rtol_autodiff, floor_autodiff,
                           rtol_numeric, floor_numeric, step, samples)


@functools.partial(jax.jit, static_argnames=("dims", "batch", "init", "weight_scale", "dtype"))
def _network_and_data(seed_key, *, dims, batch, init, weight_scale, dtype):
    k_init, k_x, k_y, k_drop = jax.random.split(seed_key, 4)
    params, state = model.init(k_init, dims, init=init, weight_scale=weight_scale, dtype=dtype)
    x = jax.random.normal(k_x, (batch, dims[0]), dtype)
    y = jax.random.randint(k_y, (batch,), 0, dims[-1])
    return params, state, x, y, k_drop


def gradcheck_network(dims, *, batch=20, seed=0, train=True, dropout=0.0, reg=0.0,
                      class_weight=None, init="normal", weight_scale=model.DEFAULT_WEIGHT_SCALE,
                      dtype=jnp.float32, **options):
    """Builds a network with `jaxnet.init` and random data, and runs `gradcheck` on it.

    Args:
      dims: layer sizes `(D, h1, ..., C)`, e.g. (3072, 100, 100, 100, 100, 10).
      batch: examples N in the random batch (default 20). In train mode use 5 or more:
        batchnorm over 2 or 3 examples is so ill-conditioned that float32 rounding (and
        float64 truncation) alone can exceed the tolerances.
      seed: seeds the params, the (N, D) standard-normal inputs, the (N,) labels in [0, C),
        the dropout key and the choice of differenced entries.
      train, dropout, reg: as in `jaxnet.loss`.
      class_weight: None, "balanced" (`jaxnet.train.balanced_class_weights` of the random
        labels, so rare labels weigh more), or (C,) weights: checks the class-weighted loss.
      init, weight_scale, dtype: as in `jaxnet.init` (float32 by default, as users train).
      **options: any other keyword of `gradcheck` (samples, step, rtol_autodiff,
        floor_autodiff, rtol_numeric, floor_numeric, value_and_grad, momentum, eps,
        description).

    Returns:
      The `GradcheckReport`.
    """
    dims = model.check_dims(dims)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(
            f"batch must be a positive int (examples in the random batch), got {batch!r}")
    if init not in model.INIT_METHODS:
        raise ValueError(f"init must be one of {model.INIT_METHODS}, got {init!r}")
    params, state, x, y, key = _network_and_data(
        jax.random.PRNGKey(seed), dims=dims, batch=batch, init=init,
        weight_scale=float(weight_scale), dtype=jnp.dtype(dtype))
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be None, 'balanced' or (C,) weights, got "
                             f"{class_weight!r}")
        class_weight = balanced_class_weights(y, dims[-1])
    options.setdefault("description",
                       _describe("-".join(map(str, dims)), batch, train, dropout, reg,
                                 class_weight) + f", seed {seed}")
    return gradcheck(params, state, x, y, key=key, train=train, dropout=dropout, reg=reg,
                     class_weight=class_weight, seed=seed, **options)


def _input_names(forward, count):
    try:
        names = list(inspect.signature(forward).parameters)
    except (TypeError, ValueError):
        names = []
    return [names[i] if i < len(names) else f"input {i}" for i in range(count)]


def _as_tuple(grads):
    return tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)


def _with_inputs(inputs, argnums, values):
    merged = list(inputs)
    for i, value in zip(argnums, values, strict=True):
        merged[i] = value
    return merged


def _manual_grads(forward, backward, inputs, argnums, dout, names):
    """The backward's gradients for `argnums`, reshaped to the inputs' shapes where only the
    layout differs (affine's dx is (N, D_in) for an (N, d1, ..., dk) input)."""
    _, res = forward(*inputs)
    grads = _as_tuple(backward(res, dout))
    if len(grads) != len(argnums):
        raise ValueError(
            f"backward returned {len(grads)} gradients but argnums={argnums} names "
            f"{len(argnums)} inputs; pass argnums= with one input index per gradient"
        )
    out = []
    for i, g in zip(argnums, grads, strict=True):
        if g is None:
            out.append(None)
            continue
        shape = np.shape(inputs[i])
        if np.shape(g) != shape:
            if np.size(g) != np.size(inputs[i]):
                raise ValueError(
                    f"backward's gradient for {names[i]!r} has shape {np.shape(g)} but the "
                    f"input has shape {shape}; a gradient must have the input's shape or size"
                )
            g = jnp.reshape(g, shape)
        out.append(g)
    return out


def _default_dout(forward, inputs, seed):
    out, _ = forward(*inputs)
    return jax.random.normal(jax.random.PRNGKey(seed), np.shape(out), jnp.result_type(out))


def with_manual_vjp(forward, backward, *inputs, argnums=None):
    """Wraps a forward/backward pair so that JAX differentiates it with `backward`.

    `jax.test_util.check_grads(fn, primals, order=1, modes=["rev"])` then compares the
    hand-written backward with finite differences (on `forward` alone it would only check
    JAX's autodiff).

    Args:
      forward: `forward(*inputs) -> (out, residuals)`.
      backward: `backward(residuals, dout) -> grads`, one gradient (or None) per input of
        `argnums`, or a single array.
      *inputs: all of forward's positional inputs, differentiable or not (eps, key, rate).
      argnums: indices of the differentiable inputs, in the order of backward's gradients;
        None means the first len(grads) inputs.

    Returns:
      (fn, primals): `fn(*primals)` is forward's `out` for the differentiable inputs
      `primals` (the others held fixed); its VJP runs `backward`.
    """
    if argnums is None:
        argnums = _default_argnums(forward, backward, inputs)
    argnums = tuple(argnums)

    @jax.custom_vjp
    def fn(*primals):
        return forward(*_with_inputs(inputs, argnums, primals))[0]

    def fn_fwd(*primals):
        merged = _with_inputs(inputs, argnums, primals)
        out, res = forward(*merged)
        return out, res

    # Shapes and dtypes are static, so the backward closes over them rather than saving them.
    like = [jax.ShapeDtypeStruct(np.shape(inputs[i]), jnp.result_type(inputs[i]))
            for i in argnums]

    def fn_bwd(res, dout):
        grads = _as_tuple(backward(res, dout))
        return tuple(jnp.zeros(s.shape, s.dtype) if g is None else jnp.reshape(g, s.shape)
                     for g, s in zip(grads, like, strict=True))

    fn.defvjp(fn_fwd, fn_bwd)
    return fn, tuple(inputs[i] for i in argnums)


def _default_argnums(forward, backward, inputs):
    out, res = forward(*inputs)
    count = len(_as_tuple(backward(res, jnp.zeros_like(out))))
    return tuple(range(count))


def _least_precise_float(inputs, argnums, names):
    """The dtype of the least precise differentiated input; a ValueError naming the input
    when one is not floating-point."""
    dtypes = [jnp.result_type(inputs[i]) for i in argnums]
    for i, d in zip(argnums, dtypes, strict=True):
        if not jnp.issubdtype(d, jnp.floating):
            raise ValueError(
                f"input {i} ({names[i]!r}) has dtype {d}, but gradients need float inputs; "
                f"pass argnums= naming only the float inputs the backward differentiates"
            )
    return max(dtypes, key=lambda d: jnp.finfo(d).eps)


def check_layer(forward, backward, *inputs, argnums=None, dout=None, samples=None, seed=0,
                step=DEFAULT_STEP, rtol_autodiff=None, floor_autodiff=None,
                rtol_numeric=NUMERIC_RTOL, floor_numeric=NUMERIC_FLOOR,
                description=None) -> GradcheckReport:
    """Checks one forward/backward pair against `jax.vjp` and float64 finite differences.

    The pair follows jaxnet.layers' convention: `forward(*inputs) -> (out, residuals)`,
    `backward(residuals, dout) -> grads`. The numeric check differences the scalar
    `sum(forward(...)[0] * dout)` in float64 (under `jax.enable_x64(True)`, on float64
    copies of every floating input), so its gradient is exactly the VJP the backward computes.

    Args:
      forward: e.g. `jaxnet.layers.batchnorm_train_forward`.
      backward: e.g. `jaxnet.layers.batchnorm_train_backward`; returns one gradient per
        input in `argnums` (a tuple, or a single array for one input). A None gradient
        (like affine's dx with compute_dx=False) is skipped; a gradient with the input's
        size but not its shape (affine's flattened dx) is reshaped.
      *inputs: every positional input of forward, including non-differentiable ones such
        as eps, a dropout rate, a PRNG key or labels.
      argnums: indices of the inputs the gradients belong to, in order; None means the first
        len(grads) inputs (right for every pair in jaxnet.layers).
      dout: upstream gradient shaped like `out`; None draws a standard normal with `seed`.
      samples: entries per input compared with finite differences; None (the default for
        layers, which are small) differences every entry.
      seed: seeds `dout` and the choice of sampled entries.
      step, rtol_autodiff, floor_autodiff, rtol_numeric, floor_numeric: as in `gradcheck`;
        the autodiff tolerance follows the least precise differentiable input's dtype.
      description: first line of the table; None names the forward function.

    Returns:
      A `GradcheckReport` with one row per checked input, labelled with forward's argument
      names (`x`, `w`, `b`, `gamma`, ...).
    """
    _check_options(samples, step)
    names = _input_names(forward, len(inputs))
    argnums = tuple(_default_argnums(forward, backward, inputs) if argnums is None else argnums)
    if dout is None:
        dout = _default_dout(forward, inputs, seed)
    dtype = _least_precise_float(inputs, argnums, names)
    rtol_autodiff, floor_autodiff = _autodiff_tolerance(dtype, rtol_autodiff, floor_autodiff)

    manual = _manual_grads(forward, backward, inputs, argnums, dout, names)
    checked = [k for k, g in enumerate(manual) if g is not None]
    if not checked:
        raise ValueError("backward returned only None gradients; nothing to check")
    checked_argnums = [argnums[k] for k in checked]

    def out_of(*values):
        return forward(*_with_inputs(inputs, checked_argnums, values))[0]

    out, vjp = jax.vjp(out_of, *[inputs[i] for i in checked_argnums])
    auto = vjp(jnp.asarray(dout, jnp.result_type(out)))
    auto_errors = [relative_error(manual[k], a, floor=floor_autodiff)
                   for k, a in zip(checked, auto, strict=True)]

    picks = _pick_entries([inputs[i] for i in checked_argnums], samples, seed)
    with jax.enable_x64(True):
        inputs64, dout64 = _to_x64((list(inputs), jnp.asarray(dout)))
        manual64 = _manual_grads(forward, backward, inputs64, argnums, dout64, names)

        def scalar_out(values):
            return jnp.sum(forward(*_with_inputs(inputs64, checked_argnums, values))[0] * dout64)

        differences = jax.jit(lambda t, i: _central_differences(scalar_out, t, i, step))
        numeric = differences([inputs64[i] for i in checked_argnums],
                              jnp.asarray(np.concatenate(picks)))
        numeric_errors = _numeric_errors([manual64[k] for k in checked], numeric, picks,
                                         floor_numeric)

    rows = tuple(
        GradcheckRow(label=names[i], layer=None, name=names[i], shape=tuple(np.shape(inputs[i])),
                     autodiff_error=a, numeric_error=n,
                     passed=bool(a <= rtol_autodiff and n <= rtol_numeric))
        for i, a, n in zip(checked_argnums, auto_errors, numeric_errors, strict=True)
    )
    if description is None:
        description = f"gradient check of {getattr(forward, '__name__', repr(forward))}"
    return GradcheckReport(rows, description, jnp.dtype(dtype).name, rtol_autodiff,
                           floor_autodiff, rtol_numeric, floor_numeric, step, samples)

