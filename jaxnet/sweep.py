"""Sweeps: many settings and seeds of one architecture trained at once under vmap."""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnet import model, optim, ranges
from jaxnet.config import TrainConfig
from jaxnet.data import Dataset
from jaxnet.errors import ConfigError
from jaxnet.train import (
    dims_for,
    evaluate,
    init_train_state,
    is_finite,
    make_epoch,
    make_optimizer,
)

# Values a sweep may vary per run, and where each one lives.
OPTIMIZER_AXES = {"lr": "learning_rate", "momentum": "momentum", "beta1": "b1",
                  "beta2": "b2", "weight_decay": "weight_decay"}
STEP_AXES = ("reg", "dropout")  # read by the train step from TrainState.hyper
# In report and plot order: the notebook's lr and weight_scale first.
SWEEPABLE = ("lr", "weight_scale", "reg", "dropout", "momentum", "beta1", "beta2", "weight_decay")
LOG_AXES = ("lr", "weight_scale", "reg", "weight_decay")  # sampled log-uniformly
POSITIVE_AXES = ("lr", "weight_scale")  # must be > 0; reg and weight_decay may be 0
MODES = ("zip", "grid", "random")
DEFAULT_GROUP = 5  # runs vmapped together inside a chunk; measured fastest on a 2-core CPU
DEFAULT_EPOCHS = 30  # runs trained together share one length: config.epochs, or this when None


def make_settings(axes: dict[str, Sequence[float]], mode: str = "grid", *, n_random: int = 0,
                  seed: int = 0) -> list[dict]:
    """Expands value lists (or (low, high) ranges for "random") into a list of settings.

    Args:
      axes: name -> values. "zip" pairs equal-length lists (the notebook's way), "grid"
        takes every combination, "random" draws `n_random` settings with each axis given as
        (low, high): log-uniform for LOG_AXES, uniform otherwise.
      mode: "zip", "grid" or "random".

    Returns:
      A list of {name: float} dicts.
    """
    unknown = set(axes) - set(SWEEPABLE)
    if unknown:
        raise ConfigError(f"cannot sweep {sorted(unknown)}; sweepable: {', '.join(SWEEPABLE)}")
    if mode not in MODES:
        raise ConfigError(f"sweep mode must be one of {MODES}, got {mode!r}")
    names = list(axes)
    if mode == "random":
        if n_random <= 0:
            raise ConfigError(f"--random needs a positive number of settings, got {n_random}")
        rng = np.random.default_rng(seed)
        columns = {}
        for name, bounds in axes.items():
            lo, hi = float(min(bounds)), float(max(bounds))
            if name in LOG_AXES and lo <= 0:
                raise ConfigError(f"{name}: a log-uniform range needs positive bounds, got {lo:g}")
            if name in LOG_AXES:
                columns[name] = np.exp(rng.uniform(np.log(lo), np.log(hi), n_random))
            else:
                columns[name] = rng.uniform(lo, hi, n_random)
        return [{n: float(columns[n][i]) for n in names} for i in range(n_random)]
    values = [list(map(float, axes[n])) for n in names]
    if any(len(v) == 0 for v in values):
        raise ConfigError("every swept axis needs at least one value; the sweep has zero settings")
    if mode == "zip":
        lengths = {n: len(v) for n, v in zip(names, values, strict=True)}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"--zip pairs the axes one to one, so they need equal lengths; got {lengths}")
        return [dict(zip(names, combo, strict=True)) for combo in zip(*values, strict=True)]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


@dataclasses.dataclass
class SweepResult:
    """Per run (setting x seed) results, the per-setting summary and the best setting."""

    runs: list[dict]  # one row per setting and seed: hyperparameters, losses, accuracies
    settings: list[dict]  # one row per setting: means and stds over seeds
    best: dict | None  # the best non-diverged setting (None if every one diverged)
    loss_curves: np.ndarray  # (runs, steps) training loss per step
    criterion: str  # "val_accuracy" or "final_loss"
    compile_seconds: float
    run_seconds: float


def _run_fn(config: TrainConfig, optimizer, n_train: int, has_val: bool):
    """The pure whole run of one setting: every epoch, then eval-mode metrics."""
    epoch = make_epoch(config, optimizer, n_train, keep_finite=False)

    def run(ts, splits):
        x, y = splits["train"]

        def one_epoch(carry, _):
            ts, best, best_acc = carry
            ts, losses = epoch(ts, x, y)
            if has_val:
                acc = evaluate(ts.params, ts.bn_state, *splits["val"], config=config)[1]
                better = acc > best_acc
                best = jax.tree.map(lambda new, old: jnp.where(better, new, old),
                                    (ts.params, ts.bn_state), best)
                best_acc = jnp.where(better, acc, best_acc)
            return (ts, best, best_acc), losses

        init = (ts, (ts.params, ts.bn_state), jnp.asarray(-1.0, jnp.float32))
        (ts, best, _), losses = jax.lax.scan(one_epoch, init, None, length=config.num_epochs)
        params, bn_state = best if has_val else (ts.params, ts.bn_state)
        metrics = {f"{name}_{what}": value
                   for name, split in splits.items()
                   for what, value in zip(("loss", "accuracy"),
                                          evaluate(params, bn_state, *split, config=config), strict=True)}
        metrics["loss_curve"] = losses.reshape(-1)
        metrics["finite"] = is_finite(ts) & jnp.all(jnp.isfinite(losses))  # the divergence rule
        return metrics

    return run


def _stack_runs(config, dims, optimizer, rows: list[dict]):
    """Builds the TrainStates of `rows` (each with "seed" and swept values), stacked on axis 0."""
    swept = sorted({k for r in rows for k in r} - {"seed"})
    dtype = jnp.dtype(config.dtype)

    def build(seed_key, values):
        ws = values.get("weight_scale", config.weight_scale)
        init_key, _ = jax.random.split(seed_key)
        params, bn_state = model.init(init_key, dims, init=config.init, weight_scale=ws,
                                      dtype=dtype)
        ts = init_train_state(config, dims, optimizer, seed_key, params=params, bn_state=bn_state)
        opt_values = {OPTIMIZER_AXES[k]: v for k, v in values.items() if k in OPTIMIZER_AXES}
        if opt_values:
            ts = ts._replace(opt_state=optim.set_hyperparams(ts.opt_state, **opt_values))
        hyper = {k: jnp.asarray(v, dtype) for k, v in values.items() if k in STEP_AXES}
        return ts._replace(hyper=hyper)

    keys = jnp.stack([jax.random.PRNGKey(int(r["seed"])) for r in rows])
    values = {k: jnp.asarray([r[k] for r in rows], dtype) for k in swept}
    # Initialised in its own small jit: building the weights inside the sweep's compiled
    # run made its compilation several times slower.
    return jax.jit(jax.vmap(build))(keys, values)


def _check_axes(config: TrainConfig, settings: list[dict]):
    if not settings:
        raise ConfigError("the sweep has zero settings; give at least one value per axis")
    opt_axes = set(optim.INJECTED[config.optimizer])
    for s in settings:
        for k, v in s.items():
            if k not in SWEEPABLE:
                raise ConfigError(f"cannot sweep {k!r}; sweepable: {', '.join(SWEEPABLE)}")
            if k in OPTIMIZER_AXES and OPTIMIZER_AXES[k] not in opt_axes:
                raise ConfigError(f"optimizer {config.optimizer!r} has no {k!r} to sweep")
            ranges.check(k, v)


def sweep(config: TrainConfig, data: Dataset, settings: list[dict], *, seeds: int = 1,
          chunk: int | None = None, group: int | None = DEFAULT_GROUP, mesh=None,
          on_chunk: Callable[[int, int], None] | None = None) -> SweepResult:
    """Trains every setting under `seeds` seeds, vmapped in one compiled call per chunk.

    Args:
      config: the architecture, data and optimizer; the swept values override its fields.
      data: the dataset; shared by every run (never copied per setting).
      settings: dicts of swept values (see `make_settings`); keys from SWEEPABLE.
      seeds: K seeds per setting: config.seed, config.seed + 1, ... (init, shuffle, dropout).
      chunk: runs per compiled call (memory); None runs them all at once. The last chunk is
        padded, so every chunk reuses one compilation.
      group: runs vmapped together inside the compiled call; the groups run one after
        another (`lax.map`), so each group's weights stay in cache while it trains. None
        vmaps the whole chunk at once. Ignored with a mesh (the runs are sharded instead).
      mesh: a Mesh with a "settings" axis to shard the runs over (results are the same).
      on_chunk: called with (chunks done, chunks in all), e.g. for a progress bar.

    Returns:
      A SweepResult. A run whose loss was ever non-finite is `diverged`: its numbers are
      reported as None and it is never chosen as best.
    """
    config.validate()
    if config.epochs is None:
        config = dataclasses.replace(config, epochs=DEFAULT_EPOCHS)
    _check_axes(config, settings)
    if group is not None and group < 1:
        raise ConfigError(f"group must be None or >= 1, got {group}")
    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}")
    dims = dims_for(config, data)
    n_train = len(data.x_train)
    optimizer = make_optimizer(config, n_train)
    dtype = jnp.dtype(config.dtype)
    rows = [{**s, "seed": config.seed + k} for s in settings for k in range(seeds)]
    n_runs = len(rows)
    chunk = n_runs if chunk is None else max(1, min(chunk, n_runs))
    n_dev = 1 if mesh is None else mesh.size
    chunk = math.ceil(chunk / n_dev) * n_dev
    replicated = NamedSharding(mesh, P()) if mesh is not None else None
    split_arrays = {"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val),
                    "test": (data.x_test, data.y_test)}
    splits = {name: (jnp.asarray(x, dtype), jnp.asarray(y, jnp.int32))
              for name, (x, y) in split_arrays.items() if x is not None}
    if replicated is not None:
        splits = jax.device_put(splits, replicated)
    one_run = _run_fn(config, optimizer, n_train, "val" in splits)
    if group is None or group >= chunk or mesh is not None:
        run = jax.jit(jax.vmap(one_run, in_axes=(0, None)))
    else:
        run = jax.jit(lambda ts, splits: jax.lax.map(lambda t: one_run(t, splits), ts,
                                                     batch_size=group))

    outputs, compile_s, run_s = [], 0.0, 0.0
    n_chunks = math.ceil(n_runs / chunk)
    for c in range(n_chunks):
        part = rows[c * chunk:(c + 1) * chunk]
        n_real = len(part)
        part = part + [part[-1]] * (chunk - n_real)  # pad: one compiled shape for all
        ts = _stack_runs(config, dims, optimizer, part)
        if mesh is not None:
            ts = jax.device_put(ts, NamedSharding(mesh, P(mesh.axis_names[0])))
        t0 = time.perf_counter()
        if c == 0:
            compiled = run.lower(ts, splits).compile()
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
        out = jax.device_get(compiled(ts, splits))
        run_s += time.perf_counter() - t0
        outputs.append({k: v[:n_real] for k, v in out.items()})
        if on_chunk is not None:
            on_chunk(c + 1, n_chunks)
    merged = jax.tree.map(lambda *a: np.concatenate(a), *outputs)
    return _summarize(rows, settings, seeds, merged, "val" in splits, compile_s, run_s)


def _summarize(rows, settings, seeds, out, has_val, compile_s, run_s) -> SweepResult:
    curves = np.asarray(out["loss_curve"], dtype=np.float64)
    diverged = ~np.asarray(out["finite"], bool)
    metric_names = [k for k in out if k not in ("loss_curve", "finite")]
    for k in metric_names:  # finite weights can still be too large to evaluate
        diverged |= ~np.isfinite(np.asarray(out[k], np.float64))
    runs = []
    for i, row in enumerate(rows):
        r: dict[str, Any] = dict(row)
        r["diverged"] = bool(diverged[i])
        r["final_loss"] = None if diverged[i] else float(curves[i, -1])
        for k in metric_names:
            r[k] = None if diverged[i] else float(out[k][i])
        runs.append(r)
    criterion = "val_accuracy" if has_val else "final_loss"
    summary = []
    for s_idx, setting in enumerate(settings):
        group = runs[s_idx * seeds:(s_idx + 1) * seeds]
        entry: dict[str, Any] = dict(setting)
        entry["diverged"] = any(r["diverged"] for r in group)
        entry["seeds"] = seeds
        for k in ("final_loss", *metric_names):
            vals = [r[k] for r in group]
            ok = not entry["diverged"]
            entry[k] = float(np.mean(vals)) if ok else None
            entry[f"{k}_std"] = float(np.std(vals)) if ok else None
        summary.append(entry)
    candidates = [s for s in summary if not s["diverged"]]
    best = None
    if candidates:
        if has_val:
            best = max(candidates, key=lambda s: (s["val_accuracy"], -s["final_loss"]))
        else:
            best = min(candidates, key=lambda s: s["final_loss"])
    return SweepResult(runs, summary, best, curves, criterion, compile_s, run_s)


def train_seeds(config: TrainConfig, data: Dataset, seeds: int) -> dict:
    """K seeds of one network in one compiled call; mean and std of the accuracies."""
    config = dataclasses.replace(config, epochs=config.epochs or DEFAULT_EPOCHS)
    result = sweep(config, data, [{}], seeds=seeds)
    metrics: dict[str, Any] = {"seeds": seeds, "diverged": result.settings[0]["diverged"],
                               "compile_seconds": result.compile_seconds,
                               "run_seconds": result.run_seconds}
    for name in ("train_accuracy", "val_accuracy", "test_accuracy", "final_loss"):
        values = [r.get(name) for r in result.runs]
        ok = [v for v in values if v is not None]
        metrics[f"{name}_mean"] = float(np.mean(ok)) if ok else None
        metrics[f"{name}_std"] = float(np.std(ok)) if ok else None
        metrics[f"{name}_per_seed"] = values
    metrics["config"] = config.to_dict()
    return metrics
