"""Training: the pure train step and epoch, evaluation, the divergence rule and the epoch loop."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet import model, optim, rng
from jaxnet.config import TrainConfig, default
from jaxnet.distributed import DeviceEnv, to_host
from jaxnet.errors import ConfigError

LOSS_TOLERANCE = 1e-4  # without a val set, an epoch improves when its loss drops by this much


def improves(acc, loss, best_acc, best_loss):
    """The best-epoch rule: an epoch with val accuracy `acc` and val loss `loss` beats the
    best so far (`best_acc`, `best_loss`) when its accuracy is higher, or equal with a
    lower loss. A small validation set's accuracy moves in coarse steps and often ties;
    the loss then says which epoch's network fits it better. An exact tie in both keeps
    the earlier epoch, and a NaN never improves.

    `fit`, `--seeds`, sweeps and each rung of successive halving all choose their epoch by
    it (starting from -inf accuracy and +inf loss, so the first epoch with numbers wins).
    Without a validation set there is nothing to choose by: they all report the last epoch.
    Written with `|` and `&`, so it takes Python floats (-> bool) as well as traced jnp
    scalars (-> a bool array, as inside a `lax.scan`).
    """
    return (acc > best_acc) | ((acc == best_acc) & (loss < best_loss))


class TrainState(NamedTuple):
    """Everything a step changes: a pytree, so it can be jitted, donated, vmapped, saved."""

    params: Any  # tuple of layer dicts (jaxnet.init)
    bn_state: Any  # tuple of {"mean", "var"} running statistics
    opt_state: Any  # optax state, with the injected hyperparameters
    step: jax.Array  # int32 count of steps taken
    key: jax.Array  # PRNG key the next epoch's shuffle and dropout keys are split from
    # Per-run values the step reads: swept "reg" / "dropout" (absent: the config's),
    # "class_weight", the (C,) loss weights of `config.class_weight` (absent: unweighted),
    # and "widths", the hidden widths of a width sweep's zero-padded run (`model.init`)
    hyper: dict


# TrainConfig fields that never shape fit's compiled programs: the seed and the initial
# weights' rule enter through the initial state; the learning rate, momentum, betas, weight
# decay and RMSprop's decay are values in the optimizer state (`optim.INJECTED`; for other
# optimizers they are unused); the data's source, split and scaling and the stopping rule
# live on the host. The class weights are an argument of the epoch, held in the state
# (`train.with_class_weight`): programs compiled for one fit's weights serve another's.
_NOT_IN_PROGRAMS = ("seed", "init", "weight_scale", "lr", "momentum", "beta1", "beta2",
                    "weight_decay", "rms_decay", "patience", "dataset", "data_path", "target",
                    "categorical", "drop", "impute", "val_fraction", "test_fraction",
                    "standardize", "class_weight")


def program_config(config: TrainConfig) -> TrainConfig:
    """`config` with the fields its compiled programs do not depend on at their defaults,
    so fits that differ only there (another lr, seed or epoch count) share one compiled
    epoch and evaluation. The run's length shapes the programs only through the cosine
    schedule, which is laid over it."""
    fields = {f: default(f) for f in _NOT_IN_PROGRAMS}
    if config.lr_schedule != "cosine":
        fields.update(epochs=default("epochs"), max_epochs=default("max_epochs"))
    return dataclasses.replace(config, **fields)


def dims_for(config: TrainConfig, data) -> tuple[int, ...]:
    """The layer sizes `(D, *hidden, C)` of `config`'s network on `data` (a Dataset)."""
    return (data.num_features, *config.hidden, data.num_classes)


def batch_size(config: TrainConfig, n_train: int) -> int:
    return min(config.batch_size, n_train)


def steps_per_epoch(config: TrainConfig, n_train: int) -> int:
    """Steps that show every training example once: the last batch is filled up."""
    return math.ceil(n_train / batch_size(config, n_train))


def class_weights(config: TrainConfig, y_train, num_classes: int) -> np.ndarray | None:
    """The per-class loss weights `config.class_weight` asks for: the weights it lists, or
    "balanced" ones from the training labels.

    "balanced" is scikit-learn's rule (`sklearn.utils.class_weight.compute_class_weight`):
    w[c] = n_train / (C * count of class c in `y_train`), computed from the training split
    only. A class that `y_train` lacks gets weight 1; no training example uses it, and the
    loss's weighted mean makes the scale of the weights irrelevant.

    Args:
      config: the run's settings.
      y_train: (N,) integer training labels in [0, num_classes).
      num_classes: C, the network's outputs.

    Returns:
      (C,) float64 weights (the state and the sweeps hold them in the config's dtype), or
      None when `config.class_weight` is None.

    Raises:
      ConfigError: `config.class_weight` lists another number of weights than C.
    """
    if config.class_weight is None:
        return None
    if config.class_weight != "balanced":
        if len(config.class_weight) != num_classes:
            raise ConfigError(
                f"`class_weight` lists {len(config.class_weight)} weights but the data has "
                f"{num_classes} classes; give one weight per class, in the order of the sorted "
                "class labels, or use `class_weight='balanced'`")
        return np.asarray(config.class_weight, np.float64)
    return balanced_class_weights(y_train, num_classes)


def balanced_class_weights(y, num_classes: int) -> np.ndarray:
    """(C,) float64 "balanced" weights of the labels `y` ((N,) ints in [0, C)): scikit-
    learn's `compute_class_weight`, w[c] = N / (C_y * count_c) over the C_y classes `y`
    holds, and 1 for the classes it lacks."""
    from sklearn.utils.class_weight import compute_class_weight

    y = np.asarray(y)
    present = np.unique(y)
    weights = np.ones(num_classes, np.float64)
    weights[present] = compute_class_weight("balanced", classes=present, y=y)
    return weights


def with_class_weight(ts: TrainState, class_weight) -> TrainState:
    """`ts` whose steps weight the loss by `class_weight` ((C,) array; None: unweighted).

    The weights travel in the state (`hyper`), so they are an argument of the compiled
    epoch, never a constant compiled into it: a compiled epoch shared by fits on other data
    (`fitting._jitted`) uses each fit's own weights."""
    hyper = {k: v for k, v in ts.hyper.items() if k != "class_weight"}
    if class_weight is not None:
        hyper["class_weight"] = jnp.asarray(class_weight, ts.params[-1]["w"].dtype)
    return ts._replace(hyper=hyper)


def _optimizer_values(config: TrainConfig) -> dict:
    return {"learning_rate": config.lr, "momentum": config.momentum, "beta1": config.beta1,
            "beta2": config.beta2, "rms_decay": config.rms_decay,
            "weight_decay": config.weight_decay}


def make_optimizer(config: TrainConfig, n_train: int) -> optax.GradientTransformation:
    """The optax optimizer that `config` names, with its schedule laid over the run."""
    spe = steps_per_epoch(config, n_train)
    return optim.make_optimizer(
        config.optimizer, **_optimizer_values(config), eps=config.eps,
        schedule_name=config.lr_schedule, lr_decay=config.lr_decay, steps_per_epoch=spe,
        total_steps=spe * config.num_epochs,
    )


def injected_hyperparams(config: TrainConfig) -> dict:
    """The values `config`'s optimizer holds in its state (`optim.INJECTED`): a state built
    for another config of the same program takes them with `optim.set_hyperparams`."""
    return optim.injected(config.optimizer, **_optimizer_values(config))


def learning_rate_at(config: TrainConfig, n_train: int, step: int) -> tuple[float, float]:
    """(rate actually applied at 0-based `step`, base rate) for messages."""
    base = config.lr
    spe = steps_per_epoch(config, n_train)
    factor = optim.schedule(config.lr_schedule, steps_per_epoch=spe,
                            total_steps=spe * config.num_epochs, lr_decay=config.lr_decay)
    return base * (1.0 if factor is None else float(factor(step))), base


def init_train_state(config: TrainConfig, dims, optimizer, key=None, *, params=None,
                     bn_state=None) -> TrainState:
    """A fresh TrainState; `key` defaults to PRNGKey(config.seed)."""
    key = rng.seed_key(config.seed) if key is None else key
    return _fresh_state(key, params, bn_state, dims=tuple(dims), init=config.init,
                        weight_scale=config.weight_scale, dtype=config.dtype,
                        optimizer=optimizer)


@functools.partial(jax.jit, static_argnames=("dims", "init", "weight_scale", "dtype", "optimizer"))
def _fresh_state(key, params, bn_state, *, dims, init, weight_scale, dtype, optimizer):
    # One compiled call, kept across fits of the same network and optimizer: run eagerly,
    # each of model.init's draws and fills compiled on its own: 20 more compilations,
    # ~0.3 s more compile time in `jaxnet train`.
    init_key, run_key = jax.random.split(key)
    if params is None:
        params, bn_state = model.init(init_key, dims, init=init, weight_scale=weight_scale,
                                      dtype=jnp.dtype(dtype))
    return TrainState(params, bn_state, optimizer.init(params), jnp.zeros((), jnp.int32),
                      run_key, {})


def make_train_step(config: TrainConfig, optimizer, *, vmapped_runs: bool = False) -> Callable:
    """The pure step `(train_state, (x, y), key) -> (train_state, metrics)`.

    `key` draws the dropout masks. Jit it with `jax.jit(step, donate_argnums=0)`. Set
    `vmapped_runs` where the step runs under `jax.vmap` over train states that share x
    (`jaxnet.model.loss`). The loss is class-weighted by `ts.hyper["class_weight"]` where
    the state holds one (`with_class_weight`).
    """
    grad_fn = (model.manual_value_and_grad if config.grad == "manual"
               else jax.value_and_grad(model.loss, has_aux=True))

    def step(ts: TrainState, batch, key):
        x, y = batch
        reg = ts.hyper.get("reg", config.reg)
        dropout = ts.hyper.get("dropout", config.dropout)
        (loss, bn_state), grads = grad_fn(
            ts.params, ts.bn_state, x, y, key=key, train=True, dropout=dropout, reg=reg,
            momentum=config.bn_momentum, eps=config.bn_eps, vmapped_runs=vmapped_runs,
            class_weight=ts.hyper.get("class_weight"), widths=ts.hyper.get("widths"),
        )
        return apply_gradients(ts, optimizer, grads, bn_state), {"loss": loss}

    return step


def apply_gradients(ts: TrainState, optimizer, grads, bn_state) -> TrainState:
    """`ts` one optimizer step on: new params, optimizer state and batchnorm state."""
    updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
    params = optax.apply_updates(ts.params, updates)
    return ts._replace(params=params, bn_state=bn_state, opt_state=opt_state, step=ts.step + 1)


def is_finite(ts: TrainState, losses=None) -> jax.Array:
    """The divergence rule: True while every parameter, batchnorm statistic and optimizer
    state value is finite, and every training loss in `losses`. `fit` (through
    `make_epoch`), `train_seeds` and `sweep` all judge runs by it; a run whose reported
    numbers are still non-finite (weights too large to evaluate) counts as diverged too."""
    by_dtype: dict = {}
    for leaf in jax.tree.leaves((ts.params, ts.bn_state, ts.opt_state, losses)):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            by_dtype.setdefault(jnp.dtype(leaf.dtype), []).append(jnp.ravel(leaf))
    # One reduction per dtype over the leaves laid end to end: XLA fuses the concatenation
    # into it, where a reduction per leaf compiled to one kernel each (~70 for Adam).
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(jnp.concatenate(group)))
                              for group in by_dtype.values()] or [jnp.bool_(True)]))


def epoch_order(key, n_train: int, batch: int) -> jax.Array:
    """(steps, batch) example indices: a shuffle of all examples, the last batch filled up
    from a second shuffle, so every example is seen once per epoch at a static shape."""
    n_steps = math.ceil(n_train / batch)
    first, fill = jax.random.split(key)
    order = rng.permutation(first, n_train)
    if n_steps * batch > n_train:
        extra = rng.permutation(fill, n_train)[: n_steps * batch - n_train]
        order = jnp.concatenate([order, extra])
    return order.reshape(n_steps, batch)


def epoch_plan(ts: TrainState, n_train: int, batch: int):
    """What an epoch draws from its state's key: `(ts with the next key, step keys (steps,
    2), example order (steps, batch) or None for a full batch)`. Shared by every epoch
    function, so they all take the same shuffles and dropout masks."""
    key, shuffle_key, dropout_key = jax.random.split(ts.key, 3)
    step_keys = jax.random.split(dropout_key, math.ceil(n_train / batch))
    order = None if batch == n_train else epoch_order(shuffle_key, n_train, batch)
    return ts._replace(key=key), step_keys, order


def make_epoch(config: TrainConfig, optimizer, n_train: int, batch_sharding=None, *,
               keep_finite: bool = True, vmapped_runs: bool = False) -> Callable:
    """The pure epoch `(train_state, x, y) -> (train_state, losses)`.

    Shuffles with a key split from the state, then runs every minibatch in one `lax.scan`.
    With `keep_finite`, a run that breaks the divergence rule (`is_finite`, or a non-finite
    loss) in this epoch gets back the state from before it (the caller sees the non-finite
    loss in `losses`, shape (steps,), or an unchanged `step`); sweeps turn it off and check
    `is_finite` once at the end. With `batch_sharding`, each minibatch is split across
    devices along its batch axis; XLA then sums gradients and batchnorm statistics over the
    global batch. `vmapped_runs` as in `make_train_step`.
    """
    step = make_train_step(config, optimizer, vmapped_runs=vmapped_runs)
    batch = batch_size(config, n_train)

    def shard(x, y):
        if batch_sharding is None:
            return x, y
        return (jax.lax.with_sharding_constraint(x, batch_sharding),
                jax.lax.with_sharding_constraint(y, batch_sharding))

    def epoch(ts: TrainState, x, y):
        start, step_keys, order = epoch_plan(ts, n_train, batch)
        if order is None:  # full batch: the order does not matter
            def body(carry, k):
                return step(carry, shard(x, y), k)
            new, metrics = jax.lax.scan(body, start, step_keys)
        else:
            def body(carry, inputs):
                idx, k = inputs
                return step(carry, shard(x[idx], y[idx]), k)
            new, metrics = jax.lax.scan(body, start, (order, step_keys))
        losses = metrics["loss"]
        if not keep_finite:
            return new, losses
        # One conditional copy of the state, not a select per leaf: the same result, and
        # the epoch compiles ~0.5 s faster (~140 fewer kernels for Adam).
        kept = jax.lax.cond(is_finite(new, losses), lambda: new, lambda: start)
        return kept, losses

    return epoch


# Fit runs several epochs per compiled call (`make_epochs`) when an epoch's work is this
# many FLOPs or fewer. An epoch's host round trip (dispatch, evaluation call, copies to the
# host, checkpoint) cost ~15-20 ms on 2 cores (train_loop's time per epoch, the default
# network, 32 epochs, one epoch per call against chunks: 28.5 against 7.0 ms at 0.03
# GFLOP an epoch, 46.7 against 30.9 at 0.29 (digits), 126.5 against 115.1 at 1.26): about
# a tenth of an epoch of ~1.5 GFLOP. Above this, one epoch per call costs little and keeps
# a live bar and a checkpoint after every epoch.
CHUNK_FLOPS = 2e9
# The most epochs per call (one compiled program serves any count up to it): ~1 ms of
# round trip an epoch left, and a killed run loses at most this many epochs (~3 s of them).
CHUNK_EPOCHS = 16


def epochs_per_call(config: TrainConfig, dims, n_train: int) -> int:
    """How many epochs `fit` may run in one compiled call (1: one epoch per call).

    An epoch's work is ~6 FLOPs per weight per example (forward and backward) over
    `steps_per_epoch * batch_size` examples; at `CHUNK_FLOPS` or fewer, up to `CHUNK_EPOCHS`
    epochs run per call (`make_epochs`), with the same results as one per call."""
    weights = sum(a * b for a, b in itertools.pairwise(dims))
    examples = steps_per_epoch(config, n_train) * batch_size(config, n_train)
    return CHUNK_EPOCHS if 6 * weights * examples <= CHUNK_FLOPS else 1


def make_epochs(config: TrainConfig, optimizer, n_train: int, batch_sharding=None, *,
                max_epochs: int) -> Callable:
    """Up to `max_epochs` epochs and their evaluations in one call, for small data.

    The pure function `(train_state, splits, count, best_acc, best_loss) -> (train_state,
    saved, best, record)` runs `count` (a traced int32 <= `max_epochs`: one program serves
    every count) epochs of `make_epoch` (keep_finite), each followed by `evaluate_splits`
    on `splits`, with the state's class weights. It stops early, and later epochs are
    no-ops, where `train_loop`'s per-epoch rules stop: an epoch that breaks `is_finite`
    (its state is the one before it, as `make_epoch` gives), or one whose mean training
    loss or any evaluation is non-finite (its state is kept).

    Returns:
      train_state: the state after the last epoch run (as the per-epoch loop leaves it).
      saved: the state after the last epoch that was recorded (what a checkpoint holds).
      best: {"params", "bn_state"} of the last recorded epoch that `improves` on
        (`best_acc`, `best_loss`) and on the chunk's earlier epochs (with a val split), or
        of the last recorded epoch (without one); the input state's where none.
      record: {"losses": (max_epochs, steps), "step": (max_epochs,), "scores": {split:
        (loss, accuracy) each (max_epochs,)}}; rows past the last epoch run are zeros.
    """
    epoch = make_epoch(config, optimizer, n_train, batch_sharding, keep_finite=False)
    spe = steps_per_epoch(config, n_train)

    def epochs(ts: TrainState, splits, count, best_acc, best_loss):
        x, y = splits["train"]
        has_val = splits.get("val") is not None
        weights = ts.hyper.get("class_weight")
        score_shapes = jax.eval_shape(
            lambda p, b: evaluate_splits(p, b, splits, weights, config=config),
            ts.params, ts.bn_state)
        loss_dtype = jnp.result_type(next(iter(score_shapes.values()))[0].dtype)

        # A while loop that stops after the first epoch the host would not record, carrying
        # the states before and after the last epoch (`prev`, `cur`: not reverted); the
        # states to return and to save are picked once, after it (docs/performance.md).
        def body(carry):
            i, prev, cur, best, best_acc, best_loss, status, record = carry
            del prev
            new, losses = epoch(cur, x, y)
            diverged = ~is_finite(new, losses)  # `make_epoch(keep_finite=True)` reverts it
            scores = evaluate_splits(new.params, new.bn_state, splits, weights, config=config)
            values = [jnp.mean(losses), *jax.tree.leaves(scores)]
            finite = jnp.all(jnp.stack([jnp.isfinite(v) for v in values]))
            recorded = ~diverged & finite
            if has_val:
                acc, loss = scores["val"][1], scores["val"][0]
                better = recorded & improves(acc, loss, best_acc, best_loss)
                best_acc = jnp.where(better, acc, best_acc)
                best_loss = jnp.where(better, loss, best_loss)
            else:
                better = recorded
            # A conditional copy, not a select per leaf: ~2x faster to trace, lower and load.
            kept = {"params": new.params, "bn_state": new.bn_state}
            best = jax.lax.cond(better, lambda: kept, lambda: best)
            row = {"losses": losses.astype(loss_dtype),
                   "step": jnp.where(diverged, cur.step, new.step), "scores": scores}
            record = jax.tree.map(lambda r, v: r.at[i].set(v), record, row)
            # 0: recorded; 1: diverged in the epoch; 2: non-finite evaluation
            status = jnp.where(recorded, 0, jnp.where(diverged, 1, 2)).astype(jnp.int32)
            return i + 1, cur, new, best, best_acc, best_loss, status, record

        def more(carry):
            i, *_, status, _ = carry
            return (i < count) & (status == 0)

        record = _empty_record(max_epochs, spe, loss_dtype, ts.step.dtype, score_shapes)
        best = {"params": ts.params, "bn_state": ts.bn_state}
        init = (jnp.int32(0), ts, ts, best, best_acc, best_loss, jnp.int32(0), record)
        n, prev, cur, best, _, _, status, record = jax.lax.while_loop(more, body, init)
        # Rows past the last epoch run: zeros, and the step of the state returned.
        ts, saved = jax.lax.switch(status, (
            lambda: (cur, cur),  # every epoch recorded
            lambda: (prev._replace(key=cur.key), prev),  # reverted, as `make_epoch` does
            lambda: (cur, prev)))  # kept, but not recorded
        run = jnp.arange(max_epochs, dtype=jnp.int32) < n
        record["step"] = jnp.where(run, record["step"], ts.step)
        return ts, saved, best, record

    return epochs


def _empty_record(max_epochs: int, steps: int, loss_dtype, step_dtype, score_shapes) -> dict:
    """`make_epochs`' record before its first epoch: zeros of every row's shape."""
    return {"losses": jnp.zeros((max_epochs, steps), loss_dtype),
            "step": jnp.zeros(max_epochs, step_dtype),
            "scores": jax.tree.map(lambda s: jnp.zeros((max_epochs, *s.shape), s.dtype),
                                   score_shapes)}


def widen(logits):
    """`logits` in float32 or wider, for softmax and cross-entropy (float16/bfloat16 round
    too coarsely there); float32 and float64 are returned as they are."""
    return logits.astype(jnp.float32) if jnp.finfo(logits.dtype).bits < 32 else logits


def device_splits(data, dtype, env: DeviceEnv | None = None, *, host=None) -> dict:
    """The data's splits on the device(s), as `fit` and `sweep` train and evaluate on them.

    Args:
      data: a Dataset (`jaxnet.data`).
      dtype: the inputs' dtype (the config's); labels become int32.
      env: replicates every array over the devices of its mesh; None (or no mesh): the
        default device.
      host: maps the host (numpy) splits to what is placed instead, e.g. a sweep's span
        form (`jaxnet.input_span`): flat examples plus the training set's Gram matrix.

    Returns:
      {"train": (x, y), "val": (x, y) or None, "test": (x, y) or None} on the device(s),
      or `host` of it.
    """
    splits = {name: None if x is None else (np.asarray(x, dtype), np.asarray(y, np.int32))
              for name, (x, y) in (("train", (data.x_train, data.y_train)),
                                   ("val", (data.x_val, data.y_val)),
                                   ("test", (data.x_test, data.y_test)))}
    if host is not None:
        splits = host(splits)
    if env is None or env.mesh is None:
        return jax.device_put(splits)
    return env.replicate(splits)


def evaluate(params, bn_state, x, y, *, config: TrainConfig, class_weight=None):
    """Eval-mode (running statistics, no dropout) mean cross-entropy and accuracy on (x, y).

    With `class_weight` ((C,) weights w, those the run trains with), both are weighted
    means over the examples, `sum w[y_i] * score_i / sum w[y_i]`, so the best epoch
    (`improves`), early stopping and sweeps' rankings follow the weighted objective; with
    "balanced" weights the accuracy is the balanced accuracy (mean recall over classes) on
    a split whose classes are distributed like the training split's (as scikit-learn's
    gradient boosting scores its validation set with the class weights).
    """
    logits, _ = model.apply(params, bn_state, x, train=False, eps=config.bn_eps)
    wide = widen(logits)
    nll = optax.softmax_cross_entropy_with_integer_labels(wide, y)
    correct = jnp.argmax(logits, axis=1).astype(y.dtype) == y
    if class_weight is None:
        return jnp.mean(nll), jnp.mean(correct.astype(jnp.float32))
    weights = jnp.asarray(class_weight, wide.dtype)[y]
    total = jnp.sum(weights)
    return (jnp.sum(weights * nll) / total,
            (jnp.sum(weights * correct.astype(weights.dtype)) / total).astype(jnp.float32))


def evaluate_splits(params, bn_state, splits: dict, class_weight=None, *,
                    config: TrainConfig) -> dict:
    """`evaluate` on each split given: {name: (loss, accuracy)} for the (x, y) values of
    `splits` that are not None, class-weighted by `class_weight` if given. Jitted whole,
    the splits share one compilation and one call per epoch."""
    return {name: evaluate(params, bn_state, *split, config=config, class_weight=class_weight)
            for name, split in splits.items() if split is not None}


def split_scores(eval_fn, params, bn_state, splits: dict, class_weight=None) -> dict:
    """`{"<split>_loss": float, "<split>_accuracy": float}` of `eval_fn` (jitted
    `evaluate_splits`) for each split given, in the splits' order (train, val, test)."""
    scores = jax.device_get(eval_fn(params, bn_state, splits) if class_weight is None
                            else eval_fn(params, bn_state, splits, class_weight))
    return {f"{name}_{what}": float(value) for name in splits if name in scores
            for what, value in zip(("loss", "accuracy"), scores[name], strict=True)}


@dataclasses.dataclass
class Progress:
    """What the loop carries from epoch to epoch; a checkpoint saves it, a resume restores it."""

    state: TrainState  # the state after the last epoch
    best: dict  # {"params", "bn_state"} of the best epoch so far
    history: list[dict] = dataclasses.field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    best_score: float = -math.inf  # val accuracy, or minus the train loss without a val set
    stale: int = 0  # epochs since the last improvement (see _record)
    seconds: float = 0.0  # wall time of the last epoch, compilation included (not saved)

    def meta(self) -> dict:
        return {"epoch": len(self.history), "history": self.history,
                "best_epoch": self.best_epoch, "best_score": self.best_score,
                "stale_epochs": self.stale}


@dataclasses.dataclass
class LoopResult:
    progress: Progress
    diverged: bool
    message: str | None  # why training stopped early (divergence, no improvement), if it did
    train_seconds: float  # wall time of the epochs after the first (which compiles)
    timed_epochs: int


def _copy(tree):
    # A copy in new buffers, with no program compiled where the array is all on this
    # process's devices (`jnp.array(a, copy=True)` compiles one per shape: 5 for the
    # default network, ~0.1-0.2 s of a cold run); an array across processes is copied so.
    return jax.tree.map(lambda a: jax.device_put(a, may_alias=False) if a.is_fully_addressable
                        else jnp.array(a, copy=True), tree)


def new_progress(ts: TrainState) -> Progress:
    return Progress(ts, {"params": _copy(ts.params), "bn_state": _copy(ts.bn_state)})


def _divergence(config, n_train, step_count: int, losses, epoch) -> str | None:
    """The message for an epoch that broke the divergence rule, or None (`step_count`:
    the state's step after the epoch, unchanged where it was reverted)."""
    spe = steps_per_epoch(config, n_train)
    bad = np.flatnonzero(~np.isfinite(losses))
    if not bad.size and step_count == (epoch + 1) * spe:
        return None
    index = int(bad[0]) if bad.size else len(losses) - 1  # reverted with finite losses
    step = epoch * spe + index  # 0-based: the optimizer's count at that step
    lr, base = learning_rate_at(config, n_train, step)
    what = (f"the loss became {losses[index]}" if bad.size
            else "the parameters, batchnorm statistics or optimizer state became non-finite")
    return (f"training diverged: {what} at step {step + 1} (epoch {epoch + 1}) with learning "
            f"rate {lr:g}" + (f" (base {base:g}, {config.lr_schedule} schedule)" if lr != base else "")
            + f"; lower the learning rate (e.g. `lr={base / 10:g}`). Kept the "
            + (f"parameters from the last finite epoch, epoch {epoch}." if epoch
               else "initial parameters."))


def _record(config, progress: Progress, row: dict, has_val: bool, kept=None):
    """Appends the epoch's row and updates the best epoch and the count of stale epochs.

    With a validation set the best epoch is chosen by `improves` (higher val accuracy, a
    tie going to the lower val loss); an epoch is stale unless it is the new best or lowers
    the val loss below every earlier epoch's (by LOSS_TOLERANCE). Counting the loss too
    matters on small validation sets, whose accuracy moves in coarse steps and can stay
    flat for many epochs while the network is still learning. Without one, the best epoch
    is the last, and an epoch is stale unless it lowers the best training loss by
    LOSS_TOLERANCE. A new best keeps `kept` ({"params", "bn_state"}; default: a copy of
    the progress's state's).
    """
    del config
    first = not progress.best_epoch
    progress.history.append(row)
    earlier = progress.history[:-1]
    if has_val:
        acc, loss = row["val_accuracy"], row["val_loss"]
        best_loss = math.inf if first else earlier[progress.best_epoch - 1]["val_loss"]
        better = bool(improves(acc, loss, progress.best_score, best_loss))
        lowest = min((r["val_loss"] for r in earlier), default=math.inf)
        learning = better or loss < lowest - LOSS_TOLERANCE
        score = acc
    else:
        score = -row["loss"]
        better = learning = first or score > progress.best_score + LOSS_TOLERANCE
    if better:
        progress.best_score, progress.best_epoch = score, row["epoch"]
    progress.stale = 0 if learning else progress.stale + 1
    if not has_val or progress.best_epoch == row["epoch"]:  # no val set: the last params
        ts = progress.state
        progress.best = kept if kept is not None else {"params": _copy(ts.params),
                                                       "bn_state": _copy(ts.bn_state)}


def train_loop(config: TrainConfig, splits: dict, progress: Progress, *, epoch_fn, eval_fn,
               epochs_fn=None, max_epochs: int = 1,
               on_epoch: Callable[[Progress], None] | None = None,
               on_save: Callable[[Progress], None] | None = None) -> LoopResult:
    """Runs epochs from `progress` until `config.num_epochs`, no improvement, or divergence.

    Args:
      config: the run's settings.
      splits: {"train": (x, y), "val": (x, y) or None, "test": (x, y) or None} on device;
        each epoch's row holds the train and val scores (the test score is the caller's
        to report, once).
      progress: where to start (`new_progress(init_train_state(...))`, or a resumed one).
      epoch_fn: jitted `make_epoch(...)`; eval_fn: jitted `evaluate_splits` with the
        config bound: `(params, bn_state, splits[, class_weight]) -> {name: (loss,
        accuracy)}`; it gets the state's class weights (`with_class_weight`), if any.
      epochs_fn: jitted `make_epochs(..., max_epochs=max_epochs)`, or None. Given, the
        epochs run in chunks of up to `max_epochs` per call (the first call: one epoch, as
        it compiles), never past the point where early stopping could stop (with patience
        p and s stale epochs, not before p - s more epochs), with the same rows, best
        epoch, stop and states as one epoch per call.
      on_epoch: called with the progress after every completed epoch (reports, bars): with
        `epochs_fn`, for each epoch of a chunk once the chunk returns and is saved.
      on_save: called with the progress whose state belongs to its last row (checkpoints):
        after every epoch, or with `epochs_fn` after every chunk.

    Returns:
      A LoopResult. On divergence the state is the one after the last finite epoch.
    """
    has_val, patience = splits.get("val") is not None, config.stop_patience
    if patience is not None and progress.stale >= patience:  # resuming a run that had stopped
        return LoopResult(progress, False, _stopped(progress, has_val), 0.0, 0)
    if epochs_fn is not None:
        return _chunked_loop(config, splits, progress, epochs_fn, max_epochs, on_epoch, on_save)
    x, y = splits["train"]
    message, diverged, seconds, timed = None, False, 0.0, 0
    start = len(progress.history)
    for epoch in range(start, config.num_epochs):
        t0 = time.perf_counter()
        ts, losses = epoch_fn(progress.state, x, y)
        losses = np.asarray(losses)
        elapsed = time.perf_counter() - t0
        message = _divergence(config, len(x), int(to_host(ts.step)), losses, epoch)
        if message is not None:
            progress.state, diverged = ts, True
            break
        progress.state = ts
        # The test set is reported once, for the kept epoch (`fitting.summarize`): an
        # epoch's row holds no test score, so nothing can pick an epoch, or stop, by it.
        # `eval_fn` still scores it, in the one program the summary calls too: leaving it out
        # here made a second program, ~1.5 s more compilation on 2 cores, to save ~0.3 ms of
        # evaluation per epoch on digits.
        scores = split_scores(eval_fn, ts.params, ts.bn_state, splits,
                              ts.hyper.get("class_weight"))
        message = _row(progress, losses, scores, epoch, has_val)
        if message is not None:
            diverged = True
            break
        progress.seconds = elapsed
        if epoch > start:  # the first epoch of a call includes compilation
            seconds, timed = seconds + elapsed, timed + 1
        for callback in (on_save, on_epoch):
            if callback is not None:
                callback(progress)
        if patience is not None and progress.stale >= patience:
            message = _stopped(progress, has_val)
            break
    return LoopResult(progress, diverged, message, seconds, timed)


def _row(progress: Progress, losses, scores: dict, epoch: int, has_val: bool,
         kept=None) -> str | None:
    """Records epoch `epoch`'s row (`_record`), or returns the message of a run whose
    evaluation became non-finite (the row is then not recorded)."""
    row = {"epoch": epoch + 1, "loss": float(losses.mean()),
           **{k: v for k, v in scores.items() if not k.startswith("test_")}}
    # Finite weights too large to use (on any split, as before the test left the row).
    if not all(math.isfinite(v) for v in (row["loss"], *scores.values())):
        return (f"training diverged: the evaluation loss became non-finite after epoch "
                f"{epoch + 1}; lower the learning rate (`lr`)")
    _record(None, progress, row, has_val, kept)
    return None


def _chunked_loop(config, splits, progress: Progress, epochs_fn, max_epochs, on_epoch,
                  on_save) -> LoopResult:
    """`train_loop` with up to `max_epochs` epochs per call of `epochs_fn` (`make_epochs`);
    the host replays each chunk's record through the per-epoch rules."""
    x, _ = splits["train"]
    has_val, patience = splits.get("val") is not None, config.stop_patience
    message, diverged, seconds, timed = None, False, 0.0, 0
    epoch = start = len(progress.history)
    while epoch < config.num_epochs and message is None:
        count = 1 if epoch == start else min(max_epochs, config.num_epochs - epoch)
        if patience is not None:  # no stop can come sooner than patience - stale epochs
            count = min(count, patience - progress.stale)
        best_loss = (progress.history[progress.best_epoch - 1]["val_loss"]
                     if has_val and progress.best_epoch else math.inf)
        t0 = time.perf_counter()
        ts, saved, best, record = epochs_fn(
            progress.state, splits, *chunk_arguments(splits, count, progress.best_score,
                                                     best_loss))
        record = jax.device_get(record)
        elapsed = time.perf_counter() - t0
        best = _copy(best)  # the next call donates the state, whose buffers `best` may share
        reports = []
        for i in range(count):
            losses = record["losses"][i]
            message = _divergence(config, len(x), int(record["step"][i]), losses, epoch)
            if message is not None:
                diverged = True
                break
            scores = {f"{name}_{what}": float(value[i]) for name, pair in record["scores"].items()
                      for what, value in zip(("loss", "accuracy"), pair, strict=True)}
            message = _row(progress, losses, scores, epoch, has_val, kept=best)
            if message is not None:
                diverged = True
                break
            epoch += 1
            progress.seconds = elapsed / count
            reports.append(dataclasses.replace(progress, history=list(progress.history)))
            if patience is not None and progress.stale >= patience:
                message = _stopped(progress, has_val)
                break
        if reports and on_save is not None:
            progress.state = saved
            on_save(progress)
        progress.state = ts
        if reports and reports[0].history[-1]["epoch"] > start + 1:  # not the compiling call
            seconds, timed = seconds + progress.seconds * len(reports), timed + len(reports)
        for report in reports:
            report.state = ts
            if on_epoch is not None:
                on_epoch(report)
    return LoopResult(progress, diverged, message, seconds, timed)


def chunk_arguments(splits, count=1, best_acc=-math.inf, best_loss=math.inf) -> tuple:
    """`make_epochs`' arguments after the state and the splits, as host scalars of the
    dtypes its program is compiled for."""
    dtype = splits["train"][0].dtype
    loss_dtype = dtype if jnp.finfo(dtype).bits >= 32 else np.float32  # as `widen`
    return np.int32(count), np.float32(best_acc), np.asarray(best_loss, loss_dtype)


def _stopped(progress: Progress, has_val: bool) -> str:
    criterion = "validation accuracy or loss" if has_val else "training loss"
    return (f"early stopping after epoch {len(progress.history)}: no better {criterion} for "
            f"{progress.stale} epoch{'' if progress.stale == 1 else 's'}; kept the best, epoch "
            f"{progress.best_epoch}")
