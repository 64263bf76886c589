"""Training: config, pure train step and epoch, evaluation, and the resumable fit loop."""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet import checkpoint as ckpt
from jaxnet import model, optim
from jaxnet.data import DATASETS, Dataset, load_dataset
from jaxnet.distributed import DeviceEnv, to_host

GRADS = ("manual", "autodiff")
DTYPES = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; the CLI flags map one to one onto it."""

    dataset: str = "digits"  # digits, random, cifar10 or npz (see jaxnet.data)
    data_path: str | None = None  # folder (cifar10) or file (npz); built-in sets take none
    val_fraction: float = 0.1  # share held out for validation when jaxnet splits the data
    test_fraction: float = 0.2  # share held out for testing when jaxnet splits the data
    hidden: tuple[int, ...] = (100, 100, 100, 100)  # hidden widths: 5 layers of 100 (notebook)
    init: str = "normal"  # "normal" (weight_scale * randn, the notebook's) or "he"
    weight_scale: float = 5e-2  # std of "normal" weights (the notebook's 5e-2)
    dropout: float = 0.2  # drop probability after each hidden ReLU
    reg: float = 1e-4  # L2 strength: loss += 0.5 * reg * sum(w**2)
    optimizer: str = "adam"  # sgd, momentum, nesterov, rmsprop, adam or adamw
    lr: float = 1e-3  # base learning rate
    momentum: float = 0.9  # SGD momentum (momentum, nesterov)
    beta1: float = 0.9  # Adam's first-moment decay
    beta2: float = 0.999  # Adam's second-moment decay
    eps: float = 1e-8  # Adam's and RMSprop's epsilon
    rms_decay: float = 0.99  # RMSprop's squared-gradient decay (CS231n's 0.99)
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay
    lr_schedule: str = "constant"  # constant, step (lr_decay per epoch) or cosine
    lr_decay: float = 0.95  # per-epoch factor of the step schedule (CS231n's lr_decay)
    batch_size: int = 64  # minibatch size; the last partial batch of an epoch is dropped
    epochs: int = 30  # passes over the training set
    patience: int | None = None  # stop after this many epochs without a better val accuracy
    grad: str = "manual"  # "manual" (hand-written backward) or "autodiff" (jax.grad)
    dtype: str = "float32"  # float32, or float64 (turns on jax_enable_x64)
    bn_momentum: float = 0.9  # running = m * running + (1 - m) * batch
    bn_eps: float = 1e-5  # batchnorm's variance epsilon
    seed: int = 0  # seeds the initial weights, the shuffles and the dropout masks

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))

    def validate(self) -> TrainConfig:
        """Raises ValueError naming the first bad field and what it expects; returns self.

        Cheap: call it before loading data or compiling, so a typo fails at once.
        """
        def bad(field, expected):
            flag = "--" + field.replace("_", "-")
            raise ValueError(
                f"{field}={getattr(self, field)!r} is invalid: expected {expected}; change "
                f"TrainConfig.{field} (the {flag} flag)"
            )

        def is_int(value):
            return isinstance(value, numbers.Integral) and not isinstance(value, bool)

        def is_number(value):
            return isinstance(value, numbers.Real) and not isinstance(value, bool)

        if not all(is_int(h) and h >= 1 for h in self.hidden):
            bad("hidden", "positive integer widths, one per hidden layer, like (100, 100)")
        if self.dataset not in DATASETS:
            bad("dataset", f"one of {', '.join(DATASETS)}")
        for name in ("val_fraction", "test_fraction"):
            if not (is_number(getattr(self, name)) and 0 <= getattr(self, name) < 1):
                bad(name, "a fraction in [0, 1) (0 turns the split off)")
        if self.val_fraction + self.test_fraction >= 1:
            bad("test_fraction", f"val_fraction + test_fraction < 1 so some data is left to "
                f"train on (val_fraction is {self.val_fraction!r})")
        if self.init not in model.INIT_METHODS:
            bad("init", f"one of {', '.join(model.INIT_METHODS)}")
        if self.optimizer not in optim.OPTIMIZERS:
            bad("optimizer", f"one of {', '.join(optim.OPTIMIZERS)}")
        if self.lr_schedule not in optim.SCHEDULES:
            bad("lr_schedule", f"one of {', '.join(optim.SCHEDULES)}")
        if self.grad not in GRADS:
            bad("grad", "manual or autodiff")
        if self.dtype not in DTYPES:
            bad("dtype", "float32 or float64")
        if not (is_number(self.dropout) and 0 <= self.dropout < 1):
            bad("dropout", "a drop probability in [0, 1), e.g. 0.2 (0 turns dropout off)")
        for name in ("lr", "weight_scale", "eps", "bn_eps"):
            value = getattr(self, name)
            if not (is_number(value) and value > 0 and math.isfinite(value)):
                bad(name, "a finite number > 0")
        for name in ("reg", "weight_decay"):
            value = getattr(self, name)
            if not (is_number(value) and value >= 0 and math.isfinite(value)):
                bad(name, "a finite number >= 0")
        for name in ("momentum", "beta1", "beta2", "rms_decay", "bn_momentum"):
            value = getattr(self, name)
            if not (is_number(value) and 0 <= value < 1):
                bad(name, "a number in [0, 1)")
        if not (is_number(self.lr_decay) and 0 < self.lr_decay <= 1):
            bad("lr_decay", "a number in (0, 1], e.g. 0.95")
        if not (is_int(self.batch_size) and self.batch_size >= 2):
            bad("batch_size", "an integer >= 2 (batchnorm needs two examples for a variance)")
        if not (is_int(self.epochs) and self.epochs >= 1):
            bad("epochs", "an integer >= 1")
        if self.patience is not None and not (is_int(self.patience) and self.patience >= 1):
            bad("patience", "None or an integer >= 1")
        if not is_int(self.seed):
            bad("seed", "an integer")
        if self.dtype == "float64" and not jax.config.jax_enable_x64:
            raise ValueError(
                "dtype='float64' needs 64-bit JAX: call jax.config.update('jax_enable_x64', True) "
                "before creating arrays (the jaxnet command does this for --dtype float64)"
            )
        return self

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


class TrainState(NamedTuple):
    """Everything a step changes: a pytree, so it can be jitted, donated, vmapped, saved."""

    params: Any  # tuple of layer dicts (jaxnet.init)
    bn_state: Any  # tuple of {"mean", "var"} running statistics
    opt_state: Any  # optax state, with the injected hyperparameters
    step: jax.Array  # int32 count of steps taken
    key: jax.Array  # PRNG key the next epoch's shuffle and dropout keys are split from
    hyper: dict  # swept per-run values of "reg" / "dropout" (empty: use the config's)


def dims_for(config: TrainConfig, data: Dataset) -> tuple[int, ...]:
    return (data.num_features, *config.hidden, data.num_classes)


def steps_per_epoch(config: TrainConfig, n_train: int) -> int:
    return max(n_train // min(config.batch_size, n_train), 1)


def make_optimizer(config: TrainConfig, n_train: int) -> optax.GradientTransformation:
    """The optax optimizer that `config` names, with its schedule laid over the epochs."""
    spe = steps_per_epoch(config, n_train)
    return optim.make_optimizer(
        config.optimizer, learning_rate=config.lr, momentum=config.momentum,
        beta1=config.beta1, beta2=config.beta2, eps=config.eps, rms_decay=config.rms_decay,
        weight_decay=config.weight_decay, schedule=config.lr_schedule, lr_decay=config.lr_decay,
        steps_per_epoch=spe, total_steps=spe * config.epochs,
    )


def init_train_state(config: TrainConfig, dims, optimizer, key=None, *, params=None,
                     bn_state=None) -> TrainState:
    """A fresh TrainState; `key` defaults to PRNGKey(config.seed)."""
    key = jax.random.PRNGKey(config.seed) if key is None else key
    init_key, run_key = jax.random.split(key)
    if params is None:
        params, bn_state = model.init(init_key, dims, init=config.init,
                                      weight_scale=config.weight_scale,
                                      dtype=jnp.dtype(config.dtype))
    return TrainState(params, bn_state, optimizer.init(params), jnp.zeros((), jnp.int32),
                      run_key, {})


def make_train_step(config: TrainConfig, optimizer) -> Callable:
    """The pure step `(train_state, (x, y), key) -> (train_state, metrics)`.

    `key` draws the dropout masks. Jit it with `jax.jit(step, donate_argnums=0)`.
    """
    grad_fn = (model.manual_value_and_grad if config.grad == "manual"
               else jax.value_and_grad(model.loss, has_aux=True))

    def step(ts: TrainState, batch, key):
        x, y = batch
        reg = ts.hyper.get("reg", config.reg)
        dropout = ts.hyper.get("dropout", config.dropout)
        (loss, bn_state), grads = grad_fn(
            ts.params, ts.bn_state, x, y, key=key, train=True, dropout=dropout, reg=reg,
            momentum=config.bn_momentum, eps=config.bn_eps,
        )
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        return ts._replace(params=params, bn_state=bn_state, opt_state=opt_state,
                           step=ts.step + 1), {"loss": loss}

    return step


def make_epoch(config: TrainConfig, optimizer, n_train: int, batch_sharding=None, *,
               keep_finite: bool = True) -> Callable:
    """The pure epoch `(train_state, x, y) -> (train_state, losses)`.

    Shuffles with a key split from the state, then runs every full minibatch in one
    `lax.scan`. With `keep_finite`, if any step's loss is not finite, the state from before
    the epoch is returned (the caller sees the non-finite loss in `losses`, shape (steps,));
    sweeps turn it off, since the select costs a pass over the parameters per epoch. With
    `batch_sharding`, each minibatch is split across devices along its batch axis; XLA
    then sums gradients and batchnorm statistics over the global batch.
    """
    step = make_train_step(config, optimizer)
    batch = min(config.batch_size, n_train)
    n_steps = steps_per_epoch(config, n_train)

    def shard(x, y):
        if batch_sharding is None:
            return x, y
        return (jax.lax.with_sharding_constraint(x, batch_sharding),
                jax.lax.with_sharding_constraint(y, batch_sharding))

    def epoch(ts: TrainState, x, y):
        key, shuffle_key, dropout_key = jax.random.split(ts.key, 3)
        step_keys = jax.random.split(dropout_key, n_steps)
        if batch == n_train:  # full batch: the order does not matter
            def body(carry, k):
                return step(carry, shard(x, y), k)
            xs = step_keys
        else:
            order = jax.random.permutation(shuffle_key, n_train)[: n_steps * batch]
            def body(carry, inputs):
                idx, k = inputs
                return step(carry, shard(x[idx], y[idx]), k)
            xs = (order.reshape(n_steps, batch), step_keys)
        new, metrics = jax.lax.scan(body, ts._replace(key=key), xs)
        losses = metrics["loss"]
        if not keep_finite:
            return new, losses
        # Losses are taken before each update, so a blow-up in the last update shows only
        # in the parameters; a reverted epoch also leaves `step` unchanged.
        finite = jnp.all(jnp.isfinite(losses)) & jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(new.params)]))
        kept = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, ts._replace(key=key))
        return kept, losses

    return epoch


def evaluate(params, bn_state, x, y, *, config: TrainConfig):
    """Eval-mode (running statistics, no dropout) loss and accuracy on (x, y)."""
    logits, _ = model.apply(params, bn_state, x, train=False, eps=config.bn_eps)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)))
    loss = -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))
    return loss, jnp.mean(jnp.argmax(logits, axis=1) == y)


@dataclasses.dataclass
class TrainResult:
    """What `fit` returns: the best parameters (by validation accuracy) and the record."""

    params: Any  # best params (by val accuracy; the last ones without a val set)
    bn_state: Any  # the batchnorm statistics that belong to `params`
    final: TrainState  # the state after the last finite epoch
    history: list[dict]  # per epoch: loss, train/val/test accuracy
    metrics: dict  # summary, as written to metrics.json
    diverged: bool
    message: str | None  # why training stopped early (divergence, patience), if it did


def load_data(config: TrainConfig) -> Dataset:
    """Loads the dataset `config` names."""
    return load_dataset(config.dataset, config.data_path, val_fraction=config.val_fraction,
                        test_fraction=config.test_fraction, seed=config.seed,
                        dtype=np.dtype(config.dtype))


def _device_split(x, y, dtype):
    if x is None:
        return None
    return jnp.asarray(x, dtype), jnp.asarray(y, jnp.int32)


def _copy(tree):
    return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


def fit(config: TrainConfig, data: Dataset | None = None, *, out_dir=None, resume=False,
        on_epoch: Callable[[dict], None] | None = None, env: DeviceEnv | None = None) -> TrainResult:
    """Trains a network as `config` says and returns the best parameters and the record.

    Args:
      config: the run's settings (validated here, before any work).
      data: a loaded Dataset; None loads `config.dataset`.
      out_dir: when given, a checkpoint is written there atomically after every epoch (by
        process 0 only, when `env` spans several processes).
      resume: continue from the checkpoint in `out_dir` (same config) instead of starting;
        every process reads it.
      on_epoch: called after each epoch with that epoch's history row (progress bars).
      env: devices to shard each minibatch over (data parallelism); None: one device.

    Returns:
      A TrainResult. A non-finite loss stops training; `diverged` is then True, `message`
      names the step and learning rate, and the state is the one after the last finite
      epoch. `patience` stops training early; `params`/`bn_state` are the best epoch's.

    Raises:
      ValueError: a bad config value, `patience` without a validation set, or a resume whose
        config differs from the checkpoint's (only `epochs` may change, and not below the
        epochs already run).
      CheckpointError: `resume` with a missing, corrupt or mismatched checkpoint.
    """
    config.validate()
    if resume:
        if out_dir is None:
            raise ValueError("resume=True needs out_dir, the folder holding the checkpoint to "
                             "continue; pass out_dir=... (the CLI's --resume DIR)")
        _check_resumable(config, ckpt.load_metadata(out_dir), out_dir)  # before any work
    data = load_data(config) if data is None else data
    dtype = jnp.dtype(config.dtype)
    dims = dims_for(config, data)
    n_train = len(data.x_train)
    if n_train < 2:
        raise ValueError(f"the training set has {n_train} example(s); batchnorm needs at least 2; "
                         "use a dataset with more training examples")
    if config.patience is not None and data.x_val is None:
        raise ValueError(
            f"patience={config.patience} stops on the validation accuracy, but the {data.name} "
            "data has no validation set; set val_fraction > 0 (--val-fraction) or drop patience"
        )
    optimizer = make_optimizer(config, n_train)
    env = DeviceEnv(None) if env is None else env
    ts = init_train_state(config, dims, optimizer)
    splits = env.replicate({
        "train": _device_split(data.x_train, data.y_train, dtype),
        "val": _device_split(data.x_val, data.y_val, dtype),
        "test": _device_split(data.x_test, data.y_test, dtype)})
    x_train, y_train = splits["train"]

    epoch_fn = jax.jit(make_epoch(config, optimizer, n_train, env.batch_sharding),
                       donate_argnums=0)
    eval_fn = jax.jit(lambda p, s, x, y: evaluate(p, s, x, y, config=config))

    history: list[dict] = []
    best = {"params": _copy(ts.params), "bn_state": _copy(ts.bn_state)}
    best_epoch, best_val, stale, start = 0, -1.0, 0, 0
    if resume:
        tree, meta = ckpt.load_checkpoint(out_dir, {"train_state": ts, "best": best})
        done = _check_resumable(config, meta, out_dir)
        ts, best = tree["train_state"], tree["best"]
        history, start = list(meta["history"]), done
        best_epoch, best_val, stale = meta["best_epoch"], meta["best_val_accuracy"], meta["stale_epochs"]

    ts, best = env.replicate((ts, best))
    diverged, message = False, None
    spe = steps_per_epoch(config, n_train)
    train_seconds, trained_epochs = 0.0, 0
    for epoch in range(start, config.epochs):
        t0 = time.perf_counter()
        ts, losses = epoch_fn(ts, x_train, y_train)
        losses = np.asarray(losses)
        if epoch > start:  # the first call includes compilation
            train_seconds += time.perf_counter() - t0
            trained_epochs += 1
        bad = np.flatnonzero(~np.isfinite(losses))
        if not bad.size and int(to_host(ts.step)) != (epoch + 1) * spe:
            bad = np.array([len(losses) - 1])  # finite losses, yet reverted: the last update
        if bad.size:
            diverged = True
            step = epoch * spe + int(bad[0])  # 0-based: the optimizer's count at that step
            base = float(optim.get_hyperparams(ts.opt_state)["learning_rate"])
            lr = base * _schedule_factor(config, n_train, step)
            what = (f"the loss became {losses[bad[0]]}" if not np.isfinite(losses[bad[0]])
                    else "the parameters became non-finite")
            message = (
                f"training diverged: {what} at step {step + 1} "
                f"(epoch {epoch + 1}) with learning rate {lr:g}"
                + (f" (base {base:g}, {config.lr_schedule} schedule)" if lr != base else "")
                + f"; lower the learning rate (e.g. lr={base / 10:g}, --lr {base / 10:g}). "
                + ("Kept the parameters from the last finite epoch, "
                   + (f"epoch {epoch}." if epoch else "i.e. the initial ones."))
            )
            break
        row = {"epoch": epoch + 1, "loss": float(losses.mean())}
        for name, split in splits.items():
            if split is not None:
                row[f"{name}_loss"], acc = (float(v) for v in eval_fn(ts.params, ts.bn_state, *split))
                row[f"{name}_accuracy"] = acc
        history.append(row)
        score = row.get("val_accuracy", 0.0) if splits["val"] is not None else None
        if score is None or score > best_val:
            best_val = -1.0 if score is None else score
            best_epoch, stale = epoch + 1, 0
            best = {"params": _copy(ts.params), "bn_state": _copy(ts.bn_state)}
        else:
            stale += 1
        if out_dir is not None and env.is_lead:
            ckpt.save_checkpoint(out_dir, to_host({"train_state": ts, "best": best}), {
                "config": config.to_dict(), "epoch": epoch + 1, "history": history,
                "best_epoch": best_epoch, "best_val_accuracy": best_val, "stale_epochs": stale,
                "dims": list(dims),
            })
        if on_epoch is not None:
            on_epoch(row)
        if config.patience is not None and stale >= config.patience:
            message = (f"early stopping after epoch {epoch + 1}: no better validation accuracy "
                       f"for {stale} epochs; kept the best, epoch {best_epoch} "
                       f"(val accuracy {best_val:.4f})")
            break

    metrics = summarize(config, best, history, splits, eval_fn, best_epoch=best_epoch,
                        diverged=diverged)
    examples = trained_epochs * spe * min(config.batch_size, n_train)
    metrics["examples_per_second"] = examples / train_seconds if train_seconds else None
    return TrainResult(best["params"], best["bn_state"], ts, history, metrics, diverged, message)


def _schedule_factor(config: TrainConfig, n_train: int, step: int) -> float:
    """The schedule's multiplier of the base learning rate at 0-based `step`."""
    spe = steps_per_epoch(config, n_train)
    factor = optim.schedule_factor(config.lr_schedule, steps_per_epoch=spe,
                                   total_steps=spe * config.epochs, lr_decay=config.lr_decay)
    return 1.0 if factor is None else float(factor(step))


def _check_resumable(config: TrainConfig, meta: dict, out_dir) -> int:
    """Checks that the checkpoint metadata `meta` can be continued with `config`.

    Returns the number of epochs the checkpoint holds.
    """
    needed = ("config", "epoch", "history", "best_epoch", "best_val_accuracy", "stale_epochs")
    missing = [k for k in needed if k not in meta]
    if missing or not isinstance(meta["config"], dict):
        raise ckpt.CheckpointError(
            f"the checkpoint in {out_dir} is not from jaxnet's fit (its metadata lacks "
            f"{', '.join(missing) or 'a config'}); point to the folder of a training run, or "
            "start a fresh run"
        )
    try:
        saved = TrainConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as err:
        raise ckpt.CheckpointError(f"the checkpoint in {out_dir} holds an unreadable config "
                                   f"({err}); start a fresh run") from None
    changed = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name != "epochs" and getattr(saved, f.name) != getattr(config, f.name)]
    if changed:
        diffs = "; ".join(f"{name}: saved {getattr(saved, name)!r}, now {getattr(config, name)!r}"
                          for name in changed)
        raise ValueError(
            f"the checkpoint in {out_dir} was written with a different config ({diffs}); resume "
            "with the saved settings (only epochs may change), or start a fresh run in a new folder"
        )
    done = int(meta["epoch"])
    if config.epochs < done:
        raise ValueError(
            f"the checkpoint in {out_dir} already holds {done} epochs but epochs={config.epochs}; "
            f"pass epochs >= {done} (--epochs) to continue it"
        )
    return done


def summarize(config, best, history, splits, eval_fn, *, best_epoch, diverged) -> dict:
    """The metrics.json summary: accuracies of the best parameters, and the record."""
    metrics = {"final_loss": history[-1]["loss"] if history else None,
               "best_epoch": best_epoch, "epochs_run": len(history), "diverged": diverged}
    for name, split in splits.items():
        acc = None
        if split is not None:
            acc = float(eval_fn(best["params"], best["bn_state"], *split)[1])
        metrics[f"{name}_accuracy"] = acc
    metrics["history"] = history
    metrics["config"] = config.to_dict()
    return metrics
