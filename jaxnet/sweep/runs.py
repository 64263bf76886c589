"""One run of a sweep: its initial state, the splits it trains on, and a segment of its epochs."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import input_span, model, optim
from jaxnet.config import TrainConfig
from jaxnet.sweep.chunks import _batched
from jaxnet.sweep.settings import OPTIMIZER_AXES, STEP_AXES
from jaxnet.train import (
    TrainState,
    evaluate,
    improves,
    init_train_state,
    injected_hyperparams,
    is_finite,
    make_epoch,
    make_optimizer,
    steps_per_epoch,
)


def _fixed_values(config: TrainConfig) -> dict:
    """The values of a run that no setting sweeps, which the sweep's programs take as inputs
    all the same (as `train.program_config` keeps them out of fit's programs): the initial
    weights' scale, and the optimizer's injected hyperparameters (`optim.INJECTED`) in
    float64, cast to the optimizer state's own dtype as `fit` casts them."""
    return {"weight_scale": np.asarray(config.weight_scale, config.dtype),
            "optimizer": {name: np.float64(value)
                          for name, value in injected_hyperparams(config).items()}}


def _init_fn(config: TrainConfig, dims, optimizer, sharding, n_train: int | None = None, *,
             has_val: bool | None = None):
    """The jitted `(seed keys (runs, 2), {axis: values (runs,)}, fixed=None) -> runs`
    (values may hold "widths" (runs, L-1) int32: each run's network, zero-padded to `dims`):
    stacked TrainStates, or `input_span.SpanRun`s when `n_train` is given (the first layer
    in the span form); as carries with no best epoch yet (`_fresh_carry`) when `has_val`
    is given. The swept values override `fixed` (`_fixed_values`; None: `config`'s, built
    into the program).

    In its own small jit: building the weights inside the sweep's compiled run made its
    compilation several times slower.
    """
    def fresh_run(seed_key, values, fixed):
        ws = values.get("weight_scale", fixed["weight_scale"])
        init_key, _ = jax.random.split(seed_key)
        params, bn_state = model.init(init_key, dims, init=config.init, weight_scale=ws,
                                      dtype=jnp.dtype(config.dtype), widths=values.get("widths"))
        if n_train is not None:
            params, w0 = input_span.to_span(params, n_train)
        ts = init_train_state(config, dims, optimizer, seed_key, params=params, bn_state=bn_state)
        opt_values = {**fixed["optimizer"],
                      **{OPTIMIZER_AXES[k]: v for k, v in values.items() if k in OPTIMIZER_AXES}}
        ts = ts._replace(opt_state=optim.set_hyperparams(ts.opt_state, **opt_values),
                         hyper={k: v for k, v in values.items()
                                if k in STEP_AXES or k in ("class_weight", "widths")})
        run = ts if n_train is None else input_span.SpanRun(ts, w0)
        return run if has_val is None else _fresh_carry(run, has_val, config.dtype)

    def init_runs(seed_keys, values, fixed=None):
        fixed = _fixed_values(config) if fixed is None else fixed
        return jax.vmap(fresh_run, in_axes=(0, 0, None))(seed_keys, values, fixed)

    return jax.jit(init_runs, out_shardings=sharding)


def _fresh_carry(run, has_val: bool, dtype):
    """The carry of a run that has no best epoch yet: -inf val accuracy and +inf val loss
    (in `train.evaluate`'s dtypes: float32, and the network's `dtype`), so the first
    epoch improves on them (`train.improves`); best (params, bn_state) its own, or None
    without a val set (the last epoch is reported)."""
    ts = run.ts if isinstance(run, input_span.SpanRun) else run
    best = (ts.params, ts.bn_state, ts.step) if has_val else None  # step: which epoch
    return (run, best, jnp.full((), -jnp.inf, jnp.float32), jnp.full((), jnp.inf, dtype))


@functools.lru_cache(maxsize=8)
def _programs(config: TrainConfig, dims, n_train: int, has_val: bool, in_span: bool,
              epochs: int, per_group: int | None, sharding):
    """(optimizer, init, train) of a sweep, kept across calls (fit's rule: `config` is a
    `train.program_config`, with its `init` rule), so sweeps of the same program and
    shapes (other learning rates, rungs of successive halving) compile once:

    init: `_init_fn`'s `(seed keys, {axis: values}, fixed) -> carries` of fresh runs,
      sharded by `sharding` (None: one device).
    train: `(carries (runs, ...), splits, epochs (groups,) int32) -> (carries, metrics)`,
      up to `epochs` more epochs (`_segment_fn`, `chunks._batched`).
    """
    optimizer = make_optimizer(config, n_train)
    init = _init_fn(config, dims, optimizer, sharding, n_train if in_span else None,
                    has_val=has_val)
    one = _segment_fn(config, optimizer, n_train, has_val, epochs, keep_state=True,
                      in_span=in_span)
    return optimizer, init, _batched(one, per_group)


def _segment_fn(config: TrainConfig, optimizer, n_train: int, has_val: bool, n_epochs: int, *,
                keep_state: bool, in_span: bool = False):
    """`segment(carry, splits, epochs=n_epochs)`: one run trained `epochs` more epochs (a
    traced int32 of at most `n_epochs` too: the loop then runs as long as it says), then
    the eval-mode metrics of its reported parameters: those of the best epoch so far by
    `train.improves` (as `fit` chooses), else the last. Its "loss_curve" holds `n_epochs`
    epochs' steps, zeros after the `epochs` trained; with 0 epochs (traced) nothing is
    evaluated and the metrics are zeros. It starts from a fresh run (a TrainState, or an
    `input_span.SpanRun` with `in_span`) or from the carry `(run, best (params, bn_state),
    best val accuracy, best val loss)` of an earlier segment (best: (params, bn_state, step)), so a rung of successive
    halving goes on comparing with the best epoch of the rungs before; with `keep_state`
    it returns that carry too, to be continued."""
    spe = steps_per_epoch(config, n_train)
    if in_span:
        span_epoch = input_span.make_epoch(config, optimizer, n_train)
    else:
        plain_epoch = make_epoch(config, optimizer, n_train, keep_finite=False, vmapped_runs=True)

    def segment(carry, splits, epochs=n_epochs):
        if isinstance(carry, (TrainState, input_span.SpanRun)):  # a fresh run
            carry = _fresh_carry(carry, has_val, config.dtype)
        run, best, best_acc, best_loss = carry
        x, y = splits["train"]
        if in_span:
            p0 = x @ run.w0.T  # once per segment; see jaxnet.input_span

            def epoch(ts):
                return span_epoch(ts, p0, y, splits["gram"])

            def full(params):
                return input_span.full_params(params, run.w0, x)
        else:
            def epoch(ts):
                return plain_epoch(ts, x, y)

            def full(params):
                return params

        def one_epoch(i, carry):
            ts, best, best_acc, best_loss, curve = carry
            ts, losses = epoch(ts)
            curve = jax.lax.dynamic_update_index_in_dim(curve, losses.astype(curve.dtype), i, 0)
            if has_val:
                loss, acc = evaluate(full(ts.params), ts.bn_state, *splits["val"], config=config,
                                     class_weight=ts.hyper.get("class_weight"))
                better = improves(acc, loss, best_acc, best_loss)
                best, best_acc, best_loss = jax.tree.map(
                    lambda new, old: jnp.where(better, new, old),
                    ((ts.params, ts.bn_state, ts.step), acc, loss), (best, best_acc, best_loss))
            return ts, best, best_acc, best_loss, curve

        ts = run.ts if in_span else run
        curve = jnp.zeros((n_epochs, spe), best_loss.dtype)
        ts, best, best_acc, best_loss, curve = jax.lax.fori_loop(
            0, epochs, one_epoch, (ts, best, best_acc, best_loss, curve))

        def report(ts, best):
            params, bn_state = best[:2] if has_val else (ts.params, ts.bn_state)
            return {f"{name}_{what}": value
                    for name, split in splits.items() if name != "gram"
                    for what, value in zip(("loss", "accuracy"),
                                           evaluate(full(params), bn_state, *split, config=config,
                                                    class_weight=ts.hyper.get("class_weight")),
                                           strict=True)}

        if isinstance(epochs, int):
            metrics = report(ts, best)
        else:  # a real branch where `epochs` is the same for every vmapped run
            metrics = jax.lax.cond(
                epochs > 0, report,
                lambda *a: jax.tree.map(jnp.zeros_like, jax.eval_shape(report, *a)), ts, best)
        metrics["loss_curve"] = curve.reshape(-1)
        # The divergence rule, on the weights as they are reported.
        metrics["finite"] = is_finite(ts._replace(params=full(ts.params)), curve)
        carry = (run._replace(ts=ts) if in_span else ts, best, best_acc, best_loss)
        return (carry, metrics) if keep_state else metrics

    return segment


def _sweep_splits(splits: dict, in_span: bool) -> dict:
    """The host splits a sweep trains on: those the data has (the sweep ranks by val
    accuracy where "val" is there), in the span form with `in_span` (see `jaxnet.input_span`):
    the examples flat, and "gram", the training set's Gram matrix."""
    splits = {name: xy for name, xy in splits.items() if xy is not None}
    if in_span:
        splits = {name: (x.reshape(len(x), -1), y) for name, (x, y) in splits.items()}
        splits["gram"] = np.asarray(_gram(splits["train"][0]))
    return splits


@jax.jit
def _gram(x):
    """x @ x.T, compiled (an eager `jnp.dot` rounded differently on a Zen 4)."""
    return x @ x.T
