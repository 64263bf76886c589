"""Sweeps: many settings and seeds of one architecture trained at once under vmap."""

from __future__ import annotations

import dataclasses
import functools
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

from jaxnet import distributed, input_span, model, optim, ranges
from jaxnet.config import TrainConfig, check_unused
from jaxnet.data import Dataset
from jaxnet.errors import ConfigError
from jaxnet.train import (
    TrainState,
    device_splits,
    dims_for,
    evaluate,
    improves,
    init_train_state,
    is_finite,
    make_epoch,
    make_optimizer,
    steps_per_epoch,
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
CPU_GROUP = 5  # runs vmapped together inside a chunk on a CPU; measured fastest on 2 cores
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
        raise ConfigError(f"`mode={mode!r}` is invalid: expected one of {', '.join(MODES)}")
    names = list(axes)
    if mode == "random":
        if n_random <= 0:
            raise ConfigError(f"`n_random={n_random}` is invalid: mode 'random' needs a positive "
                              "number of settings to draw")
        rng = np.random.default_rng(seed)
        columns = {}
        for name, bounds in axes.items():
            lo, hi = float(min(bounds)), float(max(bounds))
            if name in LOG_AXES and lo <= 0:
                raise ConfigError(f"`{name}=({lo:g}, {hi:g})` is invalid: a log-uniform range needs "
                                  "positive bounds")
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
            raise ConfigError("mode 'zip' pairs the axes one to one, so they need equal lengths; "
                              f"got {lengths}")
        return [dict(zip(names, combo, strict=True)) for combo in zip(*values, strict=True)]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


@dataclasses.dataclass
class SweepResult:
    """Per run (setting x seed) results, the per-setting summary and the best setting."""

    runs: list[dict]  # one row per setting and seed: hyperparameters, losses, accuracies
    settings: list[dict]  # one row per setting: means and stds over seeds
    best: dict | None  # the best non-diverged setting of the last rung (None: all diverged)
    loss_curves: np.ndarray  # (runs, steps) training loss per step; NaN after a run stopped
    criterion: str  # "val_accuracy" or "final_loss"
    compile_seconds: float
    run_seconds: float
    # One entry per rung (one for a plain sweep): {"epochs": trained by then, "settings":
    # indices of the settings in it, "scores": their criterion (None: diverged), "kept":
    # indices of those that went on to the next rung}.
    rungs: list[dict] = dataclasses.field(default_factory=list)
    epochs_spent: int = 0  # epochs trained, summed over runs (a full sweep: runs x epochs)
    epochs: int = 0  # the epochs of a run that is never cut (config.epochs)
    in_span: bool = False  # the first layer was trained in the span of the inputs (jaxnet.input_span)


def default_group(backend: str | None = None) -> int | None:
    """Runs vmapped together inside a chunk on `backend` (default: JAX's default backend).

    On a CPU, CPU_GROUP: a small group's weights stay in cache while it trains. On GPUs
    and TPUs, None: the whole chunk in one vmap, whose wide batched products fill the chip.
    """
    backend = jax.default_backend() if backend is None else backend
    return CPU_GROUP if backend == "cpu" else None


def halving_rungs(epochs: int, eta: int, min_epochs: int | None = None) -> list[int]:
    """The epoch counts at which successive halving ranks the runs.

    Args:
      epochs: the epochs the last survivors train (the sweep's `config.epochs`).
      eta: after each rung only the best 1/eta of the settings go on.
      min_epochs: R, the epochs every run trains; default ceil(epochs / eta**3), so there
        are at most four rungs.

    Returns:
      R, R*eta, R*eta**2, ... as long as `epochs` is at least eta times the last of them,
      then `epochs`: e.g. [1, 3, 9, 27] for 27 epochs, [1, 3, 10] for 10 (no rung that
      would add only a few epochs).
    """
    if min_epochs is None:
        min_epochs = max(1, math.ceil(epochs / eta**3))
    rungs = [min_epochs]
    while rungs[-1] * eta**2 <= epochs:
        rungs.append(rungs[-1] * eta)
    return rungs if rungs[-1] == epochs else [*rungs, epochs]


def _survivors(n_settings: int, eta: int | None, n_rungs: int) -> list[int]:
    """Settings in each rung: n, n // eta, n // eta**2, ... (at least one)."""
    counts = [n_settings]
    for _ in range(n_rungs - 1):
        counts.append(max(1, counts[-1] // eta))
    return counts


def _chunk_layout(n_runs: int, chunk: int | None, n_dev: int,
                  group: int | None) -> tuple[int, int, int | None]:
    """(chunks, runs per chunk, runs per group or None for one vmap over the chunk).

    As few chunks as `chunk` allows, of equal size (the last one padded: every chunk reuses
    one compilation), so padding adds less than a run per chunk. With devices, the size is
    rounded up to a multiple of their number. With groups, the chunk is split into equal
    groups, of a size within 2 of `group` that divides it if there is one, else padded:
    a remainder group would be a second compiled body.
    """
    cap = n_runs if chunk is None else max(1, min(chunk, n_runs))
    n_chunks = math.ceil(n_runs / cap)
    size = math.ceil(n_runs / n_chunks)
    if n_dev > 1:
        return n_chunks, math.ceil(size / n_dev) * n_dev, None
    if group is None or group >= size:
        return n_chunks, size, None
    near = sorted(range(max(min(group, 2), group - 2), group + 3), key=lambda g: (abs(g - group), -g))
    exact = [g for g in near if size % g == 0]
    if exact:
        return n_chunks, size, exact[0]
    n_groups = math.ceil(size / group)
    per_group = math.ceil(size / n_groups)
    return n_chunks, n_groups * per_group, per_group


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

        def val_scores(ts):  # (val loss, val accuracy)
            return evaluate(full(ts.params), ts.bn_state, *splits["val"], config=config)

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
                                          evaluate(full(params), bn_state, *split, config=config),
                                          strict=True)}
        metrics["loss_curve"] = losses.reshape(-1)
        # The divergence rule, on the weights as they are reported.
        metrics["finite"] = is_finite(ts._replace(params=full(ts.params)), losses)
        carry = (run._replace(ts=ts) if in_span else ts, best, best_acc, best_loss)
        return (carry, metrics) if keep_state else metrics

    return segment


def _init_fn(config: TrainConfig, dims, optimizer, sharding, n_train: int | None = None):
    """The jitted `(seed keys (runs, 2), {axis: values (runs,)}) -> stacked TrainStates`,
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
        ts = ts._replace(hyper={k: v for k, v in values.items() if k in STEP_AXES})
        return ts if n_train is None else input_span.SpanRun(ts, w0)

    return jax.jit(jax.vmap(build), out_shardings=sharding)


def check_sweep(config: TrainConfig, settings: list[dict], *, seeds: int = 1,
                group: int | str | None = "auto", halving: int | None = None,
                min_epochs: int | None = None) -> None:
    """Raises ConfigError for whatever `sweep` would refuse, before any data or compiling.

    Takes `sweep`'s arguments (a config with epochs=None trains DEFAULT_EPOCHS).
    """
    config.validate()
    if config.epochs is None:
        config = dataclasses.replace(config, epochs=DEFAULT_EPOCHS)
    _check_settings(config, settings)
    _check_options(config, seeds, group, halving, min_epochs)


def _check_settings(config: TrainConfig, settings: list[dict]):
    if not settings:
        raise ConfigError("the sweep has zero settings; give at least one value per axis")
    keys = set(settings[0])
    opt_axes = set(optim.INJECTED[config.optimizer])
    for i, s in enumerate(settings):
        if set(s) != keys:
            raise ConfigError(
                f"settings[{i}] sets {sorted(s)} but settings[0] sets {sorted(keys)}; every "
                "setting must give a value for the same swept axes (make_settings builds such "
                "lists; put values that stay fixed on the config instead)")
        for k, v in s.items():
            if k not in SWEEPABLE:
                raise ConfigError(f"cannot sweep {k!r}; sweepable: {', '.join(SWEEPABLE)}")
            if k in OPTIMIZER_AXES and OPTIMIZER_AXES[k] not in opt_axes:
                raise ConfigError(f"`optimizer={config.optimizer!r}` has no {k!r} to sweep; "
                                  f"drop `{k}` or choose an optimizer that has it")
            ranges.check(k, v)
    check_unused(config.init, keys)


def _check_options(config: TrainConfig, seeds, group, halving, min_epochs):
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"`seeds={seeds!r}` is invalid: expected an integer >= 1")
    if not (group in ("auto", None) or (isinstance(group, int) and not isinstance(group, bool)
                                        and group >= 1)):
        raise ConfigError(f"`group` must be 'auto', None or an integer >= 1, got {group!r}")
    if halving is None:
        if min_epochs is not None:
            raise ConfigError(f"`min_epochs={min_epochs}` sets the first rung of successive "
                              "halving; pass `halving=ETA` too (e.g. 3), or drop `min_epochs`")
        return
    if isinstance(halving, bool) or not isinstance(halving, int) or halving < 2:
        raise ConfigError(f"`halving={halving!r}` is invalid: expected an integer ETA >= 2 (each "
                          "rung keeps the best 1/ETA of the settings), e.g. 3")
    if min_epochs is not None and (isinstance(min_epochs, bool) or not isinstance(min_epochs, int)
                                   or not 1 <= min_epochs <= config.epochs):
        raise ConfigError(f"`min_epochs={min_epochs!r}` is invalid: expected an integer in [1, "
                          f"`epochs={config.epochs}`], the epochs every run trains before the "
                          "first cut; lower `min_epochs` or raise `epochs`")


def _sort_key(row: dict, criterion: str):
    """How settings rank, best first (a non-diverged row, means over its seeds): by
    "val_accuracy", a tie going to the lower final training loss; by "final_loss", the
    lower final training loss. Settings that tie on both keep their given order (`_ranked`
    sorts stably), in halving's cuts and in the choice of the best setting alike.

    Ranking settings is not choosing an epoch (`train.improves`, where a tie in val
    accuracy goes to the lower val loss), and is left as it was: neither key depends on
    which of a run's tied epochs it reports (its val accuracy is the same, its final loss
    is the last step's), so the epoch rule never changes which settings go on or win.
    """
    if criterion == "val_accuracy":
        return (-row["val_accuracy"], row["final_loss"])
    return (row["final_loss"],)


def _ranked(rows: list[dict], criterion: str) -> list[int]:
    """Indices of the non-diverged `rows`, best first by `_sort_key`; diverged rows are
    never ranked (never kept, never best)."""
    return sorted((i for i, r in enumerate(rows) if not r["diverged"]),
                  key=lambda i: _sort_key(rows[i], criterion))


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What stays fixed through a sweep's rungs."""

    config: TrainConfig
    optimizer: Any
    n_train: int
    in_span: bool
    splits: dict  # on device: "train" and, if any, "val" (x, y)
    seeds: int
    chunk: int | None
    n_dev: int
    group: int | None
    mesh: Any
    rung_epochs: tuple[int, ...]  # epochs trained by the end of each rung
    counts: tuple[int, ...]  # settings that enter each rung (at most)

    @property
    def criterion(self) -> str:
        return "val_accuracy" if "val" in self.splits else "final_loss"

    def place(self, tree):
        return tree if self.mesh is None else distributed.put_rows(tree, self.mesh)

    def chunks_from(self, rung: int, alive: int) -> int:
        """Compiled calls left from `rung` on with `alive` settings (diverged settings
        never go on, so rungs may shrink)."""
        return sum(_chunk_layout(min(c, alive) * self.seeds, self.chunk, self.n_dev,
                                 self.group)[0] for c in self.counts[rung:])


class _ChunkProgress:
    """(chunks done, chunks in all) for `on_chunk`; the total shrinks as rungs keep fewer."""

    def __init__(self, total: int, on_chunk: Callable[[int, int], None] | None):
        self.done, self.total, self.on_chunk = 0, total, on_chunk

    def step(self):
        self.done += 1
        if self.on_chunk is not None:
            self.on_chunk(self.done, self.total)


def _train_rungs(plan: _Plan, fresh, record: _Record,
                 on_chunk) -> tuple[list[dict], float, float]:
    """Trains the rungs in turn into `record`: rung 0 from `fresh(run ids)`, each later one
    from the state of the settings the one before kept. Returns (rung records, compile
    seconds, run seconds)."""
    seeds, rung_epochs, criterion = plan.seeds, plan.rung_epochs, plan.criterion
    progress = _ChunkProgress(plan.chunks_from(0, plan.counts[0]), on_chunk)
    rung_records = []
    alive = np.arange(plan.counts[0])  # the settings in the current rung
    state = None  # host copy of the alive runs' carries (after rung 0)
    compile_s = run_s = 0.0
    done_epochs = 0
    for k, until in enumerate(rung_epochs):
        run_ids = (alive[:, None] * seeds + np.arange(seeds)).reshape(-1)
        keep_state = k < len(rung_epochs) - 1
        one = _segment_fn(plan.config, plan.optimizer, plan.n_train, "val" in plan.splits,
                          until - done_epochs, keep_state=keep_state, in_span=plan.in_span)
        n_chunks, size, per_group = _chunk_layout(len(run_ids), plan.chunk, plan.n_dev,
                                                  plan.group)

        def inputs_at(pos, state=state, run_ids=run_ids):
            if state is None:  # rung 0: fresh runs
                return fresh(run_ids[pos])
            return plan.place(jax.tree.map(lambda a: a[pos], state))

        out, carry, seconds = _run_chunks(_batched(one, per_group), inputs_at, plan.splits,
                                          len(run_ids), n_chunks, size, keep_state=keep_state,
                                          on_chunk=progress.step)
        compile_s, run_s = compile_s + seconds[0], run_s + seconds[1]
        record.add(run_ids, out, k, done_epochs, until)
        done_epochs = until
        in_rung = record.setting_rows(alive)
        kept = _kept(in_rung, criterion, plan.counts[k + 1] if keep_state else 0)
        rung_records.append({
            "epochs": int(until), "settings": [int(s) for s in alive],
            "scores": [None if r["diverged"] else r[criterion] for r in in_rung],
            "kept": [int(alive[i]) for i in kept]})
        if not kept.size:
            break
        if keep_state:  # compact: only the kept settings' runs go on
            progress.total = progress.done + plan.chunks_from(k + 1, kept.size)
            pos = (kept[:, None] * seeds + np.arange(seeds)).reshape(-1)
            state = jax.tree.map(lambda a, pos=pos: a[pos], carry)
            alive = alive[kept]
    return rung_records, compile_s, run_s


def sweep(config: TrainConfig, data: Dataset, settings: list[dict], *, seeds: int = 1,
          chunk: int | None = None, group: int | str | None = "auto", mesh=None,
          halving: int | None = None, min_epochs: int | None = None,
          on_chunk: Callable[[int, int], None] | None = None,
          in_span: bool | None = None) -> SweepResult:
    """Trains every setting under `seeds` seeds, vmapped in one compiled call per chunk.

    Args:
      config: the architecture, data and optimizer; the swept values override its fields.
      data: the dataset; shared by every run (never copied per setting).
      settings: dicts of swept values (see `make_settings`), all with the same keys, from
        SWEEPABLE.
      seeds: K seeds per setting: config.seed, config.seed + 1, ... (init, shuffle, dropout).
      chunk: the most runs per compiled call (memory); None runs them all at once. The runs
        are split into equal chunks (the last one padded), so every chunk reuses one
        compilation.
      group: runs vmapped together inside the compiled call; the groups run one after
        another (`lax.map`), so each group's weights stay in cache while it trains. None
        vmaps the whole chunk at once; "auto" is `default_group()` (CPU_GROUP on a CPU, the
        whole chunk elsewhere). Ignored with a mesh (the runs are sharded instead).
      mesh: a one-axis Mesh (e.g. `distributed.setup(axis=SETTINGS_AXIS).mesh`) to shard the
        runs over, also across processes; results are the same. With several processes,
        every process calls `sweep` with the same arguments and gets the whole result.
      halving: ETA for successive halving: every run trains `min_epochs`, then only the best
        1/ETA of the settings by the criterion (never a diverged one) continue from their
        own state, to ETA times as many epochs, and so on up to `config.epochs` (see
        `halving_rungs`); each rung compiles once. None trains every run for every epoch.
      min_epochs: the first rung's epochs (halving only); default ceil(epochs / ETA**3).
      on_chunk: called with (chunks done, chunks in all), e.g. for a progress bar.
      in_span: train the first layer in the span of the inputs (`jaxnet.input_span`: the same
        numbers up to round-off, far less work with few wide examples). None: where
        `input_span.why_not` finds it exact and cheaper (SGD, momentum or Nesterov, no L2 term,
        at most half as many training examples as features); True: always (ConfigError
        with the reason where it cannot be exact); False: never.

    Returns:
      A SweepResult. A run whose loss, parameters, batchnorm statistics or optimizer state
      ever became non-finite (`train.is_finite`), or whose reported numbers are non-finite,
      is `diverged`: its numbers are reported as None and it is never chosen as best. Every
      run and setting records `epochs_trained` and the `rung` (0-based) where it stopped;
      the best setting is chosen among those that trained longest.
    """
    check_sweep(config, settings, seeds=seeds, group=group, halving=halving,
                min_epochs=min_epochs)
    if config.epochs is None:
        config = dataclasses.replace(config, epochs=DEFAULT_EPOCHS)
    dims = dims_for(config, data)
    n_train = len(data.x_train)
    in_span = input_span.choose(config, set(settings[0]), n_train, dims[0], in_span)
    optimizer = make_optimizer(config, n_train)
    dtype = np.dtype(config.dtype)
    rows = [{**s, "seed": config.seed + k} for s in settings for k in range(seeds)]
    splits = device_splits(data, dtype, distributed.DeviceEnv(mesh),
                           host=functools.partial(_sweep_splits, in_span=in_span))
    rung_epochs = [config.epochs] if halving is None else halving_rungs(config.epochs, halving,
                                                                         min_epochs)
    plan = _Plan(config, optimizer, n_train, in_span, splits, seeds, chunk,
                 1 if mesh is None else mesh.size, default_group() if group == "auto" else group,
                 mesh, tuple(rung_epochs), tuple(_survivors(len(settings), halving,
                                                            len(rung_epochs))))
    keys = {k: np.asarray(jax.random.PRNGKey(config.seed + k)) for k in range(seeds)}
    seed_keys = np.stack([keys[i % seeds] for i in range(len(rows))])
    values = {k: np.asarray([r[k] for r in rows], dtype) for k in settings[0]}
    init = _init_fn(config, dims, optimizer,
                    None if mesh is None else NamedSharding(mesh, P(mesh.axis_names[0])),
                    n_train if in_span else None)

    def fresh(ids):  # the initial carries of runs `ids`
        return init(*plan.place((seed_keys[ids], {a: v[ids] for a, v in values.items()})))

    record = _Record.empty(rows, settings, seeds, steps_per_epoch(config, n_train),
                           config.epochs)
    rung_records, compile_s, run_s = _train_rungs(plan, fresh, record, on_chunk)
    summary = record.setting_rows(range(len(settings)))
    return SweepResult(record.run_rows(), summary, _best(summary, plan.criterion),
                       record.curves, plan.criterion, compile_s, run_s, rung_records,
                       int(record.epochs_trained.sum()), config.epochs, in_span)


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


def _batched(one, per_group: int | None):
    """`one(run, splits)` jitted over a chunk of runs: one vmap, or groups of `per_group`
    vmapped runs one after another (`lax.map`)."""
    if per_group is None:
        return jax.jit(jax.vmap(one, in_axes=(0, None)))
    return jax.jit(lambda c, s: jax.lax.map(lambda t: one(t, s), c, batch_size=per_group))


def _kept(in_rung: list[dict], criterion: str, n_keep: int) -> np.ndarray:
    """Sorted indices of the best `n_keep` settings of a rung (`_ranked`)."""
    return np.sort(_ranked(in_rung, criterion)[:n_keep]).astype(int)


def _best(summary: list[dict], criterion: str) -> dict | None:
    """The best setting (`_ranked`) among those that trained longest (None: all diverged)."""
    top = max((s["rung"] for s in summary if not s["diverged"]), default=None)
    longest = [s for s in summary if s["rung"] == top]
    ranked = _ranked(longest, criterion)
    return longest[ranked[0]] if ranked else None


def _run_chunks(fn, inputs_at, splits, n_runs, n_chunks, size, *, keep_state, on_chunk):
    """Runs `fn` on `n_runs` runs in `n_chunks` chunks of `size` (the last one padded with
    copies of its last run), compiling once. `inputs_at(positions)` builds a chunk's input.

    Returns:
      ({name: (n_runs, ...) host array}, the host carries (n_runs, ...) or None,
      (compile seconds, run seconds)).
    """
    outs, carries, compile_s, run_s = [], [], 0.0, 0.0
    for c in range(n_chunks):
        pos = np.arange(c * size, min((c + 1) * size, n_runs))
        n_real = len(pos)
        inputs = inputs_at(np.concatenate([pos, np.full(size - n_real, pos[-1])]))
        t0 = time.perf_counter()
        if c == 0:
            compiled = fn.lower(inputs, splits).compile()
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
        out = distributed.gather(compiled(inputs, splits))
        run_s += time.perf_counter() - t0
        if keep_state:
            carry, out = out
            carries.append(jax.tree.map(lambda a, n=n_real: a[:n], carry))
        outs.append({name: v[:n_real] for name, v in out.items()})
        on_chunk()
    merged = {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}
    carry = jax.tree.map(lambda *a: np.concatenate(a), *carries) if keep_state else None
    return merged, carry, (compile_s, run_s)


@dataclasses.dataclass
class _Record:
    """What the sweep knows of every run so far, on the host; rows are built from it."""

    rows: list[dict]  # per run: its setting's values and its seed
    settings: list[dict]
    seeds: int
    steps_per_epoch: int
    curves: np.ndarray  # (runs, epochs * steps) training losses; NaN where not trained
    finite: np.ndarray  # (runs,) the divergence rule held at the end of every rung
    epochs_trained: np.ndarray  # (runs,) int
    rung: np.ndarray  # (runs,) int: the last rung the run trained in
    finals: dict = dataclasses.field(default_factory=dict)  # metric -> (runs,), latest rung's

    @classmethod
    def empty(cls, rows, settings, seeds, spe, epochs) -> _Record:
        n = len(rows)
        return cls(rows, settings, seeds, spe, np.full((n, epochs * spe), np.nan),
                   np.ones(n, bool), np.zeros(n, int), np.zeros(n, int))

    def add(self, run_ids, out: dict, rung: int, start: int, until: int):
        """Runs `run_ids` trained epochs start+1..until in `rung`; `out` holds their results."""
        out = dict(out)
        spe = self.steps_per_epoch
        self.curves[run_ids, start * spe:until * spe] = out.pop("loss_curve")
        self.finite[run_ids] &= np.asarray(out.pop("finite"), bool)
        for name, v in out.items():
            self.finals.setdefault(name, np.full(len(self.rows), np.nan))[run_ids] = v
        self.epochs_trained[run_ids], self.rung[run_ids] = until, rung

    def run_rows(self) -> list[dict]:
        """Per run: values, seed, `diverged`, `epochs_trained`, `rung`, `final_loss` and
        metrics. Diverged: broke the rule, or has a non-finite number to report (finite
        weights can still be too large to evaluate); its numbers are None."""
        last = np.maximum(self.epochs_trained * self.steps_per_epoch - 1, 0)
        final_loss = self.curves[np.arange(len(self.rows)), last]
        diverged = ~self.finite | ~np.isfinite(final_loss)
        for v in self.finals.values():
            diverged |= ~np.isfinite(v)
        runs = []
        for i, row in enumerate(self.rows):
            r: dict[str, Any] = dict(row)
            r["diverged"] = bool(diverged[i])
            r["epochs_trained"], r["rung"] = int(self.epochs_trained[i]), int(self.rung[i])
            r["final_loss"] = None if diverged[i] else float(final_loss[i])
            for name, v in self.finals.items():
                r[name] = None if diverged[i] else float(v[i])
            runs.append(r)
        return runs

    def setting_rows(self, which) -> list[dict]:
        """The rows of settings `which`: means and stds over their seeds; a setting with a
        diverged seed is diverged, its numbers None."""
        runs, seeds = self.run_rows(), self.seeds
        summary = []
        for s_idx in which:
            group = runs[s_idx * seeds:(s_idx + 1) * seeds]
            entry: dict[str, Any] = dict(self.settings[s_idx])
            entry["diverged"] = any(r["diverged"] for r in group)
            entry["seeds"] = seeds
            entry["epochs_trained"], entry["rung"] = group[0]["epochs_trained"], group[0]["rung"]
            for name in ("final_loss", *self.finals):
                vals = [r[name] for r in group]
                ok = not entry["diverged"]
                entry[name] = float(np.mean(vals)) if ok else None
                entry[f"{name}_std"] = float(np.std(vals)) if ok else None
            summary.append(entry)
        return summary


def train_seeds(config: TrainConfig, data: Dataset, seeds: int) -> dict:
    """K seeds of one network in one compiled call; mean and std of the accuracies.

    Reported as `sweep` reports one setting: a diverged seed's numbers are None, and the
    means and stds are None when any seed diverged.
    """
    config = dataclasses.replace(config, epochs=config.epochs or DEFAULT_EPOCHS)
    result = sweep(config, data, [{}], seeds=seeds)
    row = result.settings[0]
    metrics: dict[str, Any] = {"seeds": seeds, "diverged": row["diverged"],
                               "compile_seconds": result.compile_seconds,
                               "run_seconds": result.run_seconds}
    for name in ("train_accuracy", "val_accuracy", "test_accuracy", "final_loss"):
        metrics[f"{name}_mean"] = row.get(name)
        metrics[f"{name}_std"] = row.get(f"{name}_std")
        metrics[f"{name}_per_seed"] = [r.get(name) for r in result.runs]
    metrics["config"] = config.to_dict()
    return metrics
