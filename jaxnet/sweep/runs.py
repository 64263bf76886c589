"""One run of a sweep: its initial state, the splits it trains on, and a segment of its epochs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import input_span, model, optim
from jaxnet.config import TrainConfig
from jaxnet.sweep.settings import OPTIMIZER_AXES, STEP_AXES
from jaxnet.train import TrainState, evaluate, improves, init_train_state, is_finite, make_epoch


def _init_fn(config: TrainConfig, dims, optimizer, sharding, n_train: int | None = None):
    """The jitted `(seed keys (runs, 2), {axis: values (runs,)}, with "class_weight" (runs,
    C) for a class-weighted loss) -> stacked TrainStates`,
    or stacked `input_span.SpanRun`s when `n_train` is given (the first layer in the span form).

    Built once per sweep (one compilation for every chunk of one size), in its own small
    jit: building the weights inside the sweep's compiled run made its compilation several
    times slower.
    """
    def build(seed_key, values):
        ws = values.get("weight_scale", config.weight_scale)
        init_key, _ = jax.random.split(seed_key)
        params, bn_state = model.init(init_key, dims, init=config.init, weight_scale=ws,
                                      dtype=jnp.dtype(config.dtype))
        if n_train is not None:
            params, w0 = input_span.to_span(params, n_train)
        ts = init_train_state(config, dims, optimizer, seed_key, params=params, bn_state=bn_state)
        opt_values = {OPTIMIZER_AXES[k]: v for k, v in values.items() if k in OPTIMIZER_AXES}
        if opt_values:
            ts = ts._replace(opt_state=optim.set_hyperparams(ts.opt_state, **opt_values))
        ts = ts._replace(hyper={k: v for k, v in values.items()
                                if k in STEP_AXES or k == "class_weight"})
        return ts if n_train is None else input_span.SpanRun(ts, w0)

    return jax.jit(jax.vmap(build), out_shardings=sharding)


def _segment_fn(config: TrainConfig, optimizer, n_train: int, has_val: bool, n_epochs: int, *,
                keep_state: bool, in_span: bool = False):
    """One run trained `n_epochs` more epochs, then the eval-mode metrics of its reported
    parameters: those of the best epoch so far by `train.improves` (as `fit` chooses), else
    the last. It starts from a fresh run (a TrainState, or an `input_span.SpanRun` with `in_span`)
    or from the carry `(run, best (params, bn_state), best val accuracy, best val loss)` of
    an earlier segment, so a rung of successive halving goes on comparing with the best
    epoch of the rungs before; with `keep_state` it returns that carry too, to be continued."""
    if in_span:
        span_epoch = input_span.make_epoch(config, optimizer, n_train)
    else:
        plain_epoch = make_epoch(config, optimizer, n_train, keep_finite=False, vmapped_runs=True)

    def segment(carry, splits):
        if isinstance(carry, (TrainState, input_span.SpanRun)):  # a fresh run: nothing is best yet
            carry = (carry, None, None, None)
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

        def val_scores(ts):  # (val loss, val accuracy), class-weighted as the run trains
            return evaluate(full(ts.params), ts.bn_state, *splits["val"], config=config,
                            class_weight=ts.hyper.get("class_weight"))

        ts = run.ts if in_span else run
        if best_acc is None:  # -inf accuracy and +inf loss: the first epoch improves on them
            best = (ts.params, ts.bn_state) if has_val else None
            loss, acc = (jax.eval_shape(val_scores, ts) if has_val
                         else (jax.ShapeDtypeStruct((), jnp.float32),) * 2)
            best_acc, best_loss = (jnp.full((), -jnp.inf, acc.dtype),
                                   jnp.full((), jnp.inf, loss.dtype))

        def one_epoch(carry, _):
            ts, best, best_acc, best_loss = carry
            ts, losses = epoch(ts)
            if has_val:
                loss, acc = val_scores(ts)
                better = improves(acc, loss, best_acc, best_loss)
                best, best_acc, best_loss = jax.tree.map(
                    lambda new, old: jnp.where(better, new, old),
                    ((ts.params, ts.bn_state), acc, loss), (best, best_acc, best_loss))
            return (ts, best, best_acc, best_loss), losses

        (ts, best, best_acc, best_loss), losses = jax.lax.scan(
            one_epoch, (ts, best, best_acc, best_loss), None, length=n_epochs)
        params, bn_state = best if has_val else (ts.params, ts.bn_state)
        metrics = {f"{name}_{what}": value
                   for name, split in splits.items() if name != "gram"
                   for what, value in zip(("loss", "accuracy"),
                                          evaluate(full(params), bn_state, *split, config=config,
                                                   class_weight=ts.hyper.get("class_weight")),
                                          strict=True)}
        metrics["loss_curve"] = losses.reshape(-1)
        # The divergence rule, on the weights as they are reported.
        metrics["finite"] = is_finite(ts._replace(params=full(ts.params)), losses)
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
