"""Sweeps: many settings and seeds of one architecture trained at once under vmap."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnet import distributed, input_span, rng
from jaxnet.config import TrainConfig
from jaxnet.data import Dataset
from jaxnet.sweep.chunks import CPU_GROUP as CPU_GROUP
from jaxnet.sweep.chunks import _chunk_layout
from jaxnet.sweep.chunks import default_group as default_group
from jaxnet.sweep.halving import _best, _Plan, _Program, _survivors, _train_rungs
from jaxnet.sweep.halving import halving_rungs as halving_rungs
from jaxnet.sweep.records import SweepResult as SweepResult
from jaxnet.sweep.records import _Record
from jaxnet.sweep.runs import _fixed_values, _programs, _sweep_splits
from jaxnet.sweep.settings import DEFAULT_EPOCHS as DEFAULT_EPOCHS
from jaxnet.sweep.settings import LOG_AXES as LOG_AXES
from jaxnet.sweep.settings import MODES as MODES
from jaxnet.sweep.settings import OPTIMIZER_AXES as OPTIMIZER_AXES
from jaxnet.sweep.settings import POSITIVE_AXES as POSITIVE_AXES
from jaxnet.sweep.settings import STEP_AXES as STEP_AXES
from jaxnet.sweep.settings import SWEEPABLE as SWEEPABLE
from jaxnet.sweep.settings import arch_groups as arch_groups
from jaxnet.sweep.settings import check_sweep as check_sweep
from jaxnet.sweep.settings import make_settings as make_settings
from jaxnet.train import class_weights, device_splits, dims_for, program_config, steps_per_epoch


def sweep(config: TrainConfig, data: Dataset, settings: list[dict], *, seeds: int = 1,
          chunk: int | None = None, group: int | str | None = "auto", mesh=None,
          halving: int | None = None, min_epochs: int | None = None,
          on_chunk: Callable[[int, int], None] | None = None,
          in_span: bool | None = None, keep_params: bool = False) -> SweepResult:
    """Trains every setting under `seeds` seeds, vmapped, one compiled call per chunk.

    The compiled programs are kept: a later sweep of the same program and shapes (other
    values of the swept axes or of fields `train.program_config` leaves out, e.g. the
    seed) compiles nothing.

    Args:
      config: the architecture, data and optimizer; the swept values override its fields.
      data: the dataset; shared by every run (never copied per setting).
      settings: dicts of swept values (see `make_settings`), all with the same keys, from
        SWEEPABLE. "hidden" (a tuple of widths) sweeps the architecture: the settings of
        each depth train in one compiled program (or a few: `arch_groups`), each run's
        network zero-padded to the program's widest (`model.init`'s `widths`), which
        trains exactly as the run's own network would alone (up to the order of sums).
      seeds: K seeds per setting: config.seed, config.seed + 1, ... (init, shuffle, dropout).
      chunk: the most runs per compiled call (memory); None runs them all at once. The runs
        are split into equal chunks (the last one padded), so every chunk (and rung) reuses
        one compilation.
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
        `halving_rungs`). Every rung runs in the first rung's chunk shape, so all share one
        compiled program: a later rung's runs are packed into the first chunks, and its
        groups of empty slots cost next to nothing (with `group` None, its empty slots
        train alongside, their results discarded). None trains every run for every epoch.
      min_epochs: the first rung's epochs (halving only); default ceil(epochs / ETA**3).
      on_chunk: called with (chunks done, chunks in all), e.g. for a progress bar.
      in_span: train the first layer in the span of the inputs (`jaxnet.input_span`: the same
        numbers up to round-off, far less work with few wide examples). None: where
        `input_span.why_not` finds it exact and cheaper (SGD, momentum or Nesterov, no L2 term,
        at most half as many training examples as features); True: always (ConfigError
        with the reason where it cannot be exact); False: never.
      keep_params: also return every run's reported parameters and batchnorm statistics
        (its best epoch's by `train.improves`, else its last; a run cut by halving: as it
        stopped) in `SweepResult.params`, stacked on the host, and their epochs in
        `SweepResult.best_epochs`. They are what the reported numbers were computed from.
        One architecture only (ConfigError when the settings' "hidden" differ).

    Returns:
      A SweepResult. A run whose loss, parameters, batchnorm statistics or optimizer state
      ever became non-finite (`train.is_finite`), or whose reported numbers are non-finite,
      is `diverged`: its numbers are reported as None and it is never chosen as best. Every
      run and setting records `epochs_trained` and the `rung` (0-based) where it stopped;
      the best setting is chosen among those that trained longest. With
      `config.class_weight`, every run trains on the class-weighted loss
      (`train.class_weights` of the training labels), and its losses and accuracies, which
      choose its best epoch and rank the settings, are class-weighted too.
    """
    check_sweep(config, settings, seeds=seeds, group=group, halving=halving,
                min_epochs=min_epochs, keep_params=keep_params)
    if config.epochs is None:
        config = dataclasses.replace(config, epochs=DEFAULT_EPOCHS)
    n_train = len(data.x_train)
    in_span = input_span.choose(config, set(settings[0]) - {"hidden"}, n_train,
                                data.num_features, in_span)
    rows = [{**s, "seed": config.seed + k} for s in settings for k in range(seeds)]
    plan = _plan(config, data, settings, rows, seeds=seeds, chunk=chunk, group=group, mesh=mesh,
                 halving=halving, min_epochs=min_epochs, in_span=in_span)
    record = _Record.empty(rows, settings, seeds, steps_per_epoch(config, n_train),
                           config.epochs)
    kept = _KeptParams(config, data, len(rows), in_span) if keep_params else None
    rung_records, compile_s, run_s = _train_rungs(plan, record, on_chunk, kept)
    summary = record.setting_rows(range(len(settings)))
    return SweepResult(record.run_rows(), summary, _best(summary, plan.criterion),
                       record.curves, plan.criterion, compile_s, run_s, rung_records,
                       int(record.epochs_trained.sum()), config.epochs, in_span,
                       None if kept is None else kept.tree,
                       None if kept is None else kept.epochs)


def _plan(config: TrainConfig, data: Dataset, settings: list[dict], rows: list[dict], *,
          seeds: int, chunk, group, mesh, halving, min_epochs, in_span: bool) -> _Plan:
    """What stays fixed through the sweep's rungs: the splits on device, the rungs' epochs
    and survivors, and the compiled programs with each run's arguments (its seed's key, its
    swept values and the class weights)."""
    dtype = np.dtype(config.dtype)
    splits = device_splits(data, dtype, distributed.DeviceEnv(mesh),
                           host=functools.partial(_sweep_splits, in_span=in_span))
    rung_epochs = [config.epochs] if halving is None else halving_rungs(config.epochs, halving,
                                                                         min_epochs)
    keys = {k: np.asarray(rng.seed_key(config.seed + k)) for k in range(seeds)}
    seed_keys = np.stack([keys[i % seeds] for i in range(len(rows))])
    values = {k: np.asarray([r[k] for r in rows], dtype) for k in settings[0] if k != "hidden"}
    weights = class_weights(config, data.y_train, data.num_classes)
    if weights is not None:  # every run's own copy: an argument, like the swept values
        values["class_weight"] = np.tile(weights.astype(dtype), (len(rows), 1))
    programs = _arch_programs(config, data, settings, rows, seed_keys, values, seeds=seeds,
                              chunk=chunk, group=group, mesh=mesh, has_val="val" in splits,
                              in_span=in_span)
    return _Plan(programs, splits, seeds, mesh, tuple(rung_epochs),
                 tuple(_survivors(len(settings), halving, len(rung_epochs))))


def _arch_programs(config: TrainConfig, data: Dataset, settings: list[dict], rows: list[dict],
                   seed_keys: np.ndarray, values: dict, *, seeds: int, chunk, group, mesh,
                   has_val: bool, in_span: bool) -> tuple[_Program, ...]:
    """The compiled programs of a sweep, one per architecture group (`arch_groups`: one per
    depth, widths more than MAX_PAD_RATIO apart split), each with its settings, chunk
    layout and `fresh(run ids)`, the initial carries of its runs (a padded group's runs
    carry their own widths, which their zero-padded networks have)."""
    n_train = len(data.x_train)
    fixed = _fixed_values(config)
    sharding = None if mesh is None else NamedSharding(mesh, P(mesh.axis_names[0]))

    def place(tree):
        return tree if mesh is None else distributed.put_rows(tree, mesh)

    programs = []
    for hidden, members in arch_groups(settings, config.hidden):
        group_config = dataclasses.replace(config, hidden=hidden)
        padded = any(tuple(settings[i].get("hidden", hidden)) != hidden for i in members)
        run_values = dict(values)
        if padded:  # each run's own widths, which its zero-padded network has
            run_values["widths"] = np.asarray(
                [r["hidden"] if len(r["hidden"]) == len(hidden) else hidden for r in rows],
                np.int32).reshape(len(rows), len(hidden))  # rows of other depths: unused
        # Every rung runs in the first rung's layout, so they all share one compiled program.
        _, size, per_group = _chunk_layout(len(members) * seeds, chunk,
                                           1 if mesh is None else mesh.size,
                                           default_group() if group == "auto" else group)
        _, init, train = _programs(
            dataclasses.replace(program_config(group_config), init=config.init),
            dims_for(group_config, data), n_train, has_val, in_span, config.epochs,
            per_group, sharding)

        def fresh(ids, init=init, run_values=run_values):  # the initial carries of runs `ids`
            return init(*place((seed_keys[ids], {a: v[ids] for a, v in run_values.items()})),
                        fixed)

        programs.append(_Program(train, fresh, np.asarray(members), size, per_group))
    return tuple(programs)


class _KeptParams:
    """`keep` of `_train_rungs`: each run's reported {"params", "bn_state"} from its host
    carry `(run, best (params, bn_state, step) or None, best acc, best loss)`, in the
    ordinary form (a run trained in the span gets its first layer built back), and the
    1-based epoch they come from."""

    def __init__(self, config: TrainConfig, data: Dataset, n_runs: int, in_span: bool):
        n_train = len(data.x_train)
        self.n_runs, self.spe = n_runs, steps_per_epoch(config, n_train)
        # a run trained in the span has coefficients over these inputs, not first-layer weights
        self.x_span = (data.x_train.reshape(n_train, -1).astype(config.dtype) if in_span
                       else None)
        self.tree = None
        self.epochs = np.zeros(n_runs, int)

    def __call__(self, run_ids: np.ndarray, carry):
        run, best, _, _ = carry
        ts = run.ts if self.x_span is not None else run
        params, bn_state, step = best if best is not None else (ts.params, ts.bn_state, ts.step)
        if self.x_span is not None:
            params = input_span.full_params(params, run.w0, self.x_span)
        reported = {"params": params, "bn_state": bn_state}
        if self.tree is None:
            self.tree = jax.tree.map(lambda a: np.zeros((self.n_runs, *a.shape[1:]), a.dtype),
                                     reported)
        for kept, new in zip(jax.tree.leaves(self.tree), jax.tree.leaves(reported), strict=True):
            kept[run_ids] = new
        self.epochs[run_ids] = np.asarray(step) // self.spe


def train_seeds(config: TrainConfig, data: Dataset, seeds: int) -> dict:
    """K seeds of one network in one compiled call; mean and std of the accuracies.

    Reported as `sweep` reports one setting: a diverged seed's numbers are None, and the
    means and stds are None when any seed diverged.
    """
    config = dataclasses.replace(config, epochs=config.epochs or DEFAULT_EPOCHS)
    return seed_metrics(config, sweep(config, data, [{}], seeds=seeds), seeds)


def seed_metrics(config: TrainConfig, result: SweepResult, seeds: int) -> dict:
    """`train_seeds`'s metrics of `result`, a sweep of `config` (epochs set) over `seeds`
    seeds of one setting."""
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
