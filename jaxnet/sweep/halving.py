"""Successive halving: the rungs, the ranking of settings, and training the rungs in turn."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxnet import distributed
from jaxnet.sweep.chunks import _run_chunks
from jaxnet.sweep.records import _Record


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


def _kept(in_rung: list[dict], criterion: str, n_keep: int) -> np.ndarray:
    """Sorted indices of the best `n_keep` settings of a rung (`_ranked`)."""
    return np.sort(_ranked(in_rung, criterion)[:n_keep]).astype(int)


def _best(summary: list[dict], criterion: str) -> dict | None:
    """The best setting (`_ranked`) among those that trained longest (None: all diverged)."""
    top = max((s["rung"] for s in summary if not s["diverged"]), default=None)
    longest = [s for s in summary if s["rung"] == top]
    ranked = _ranked(longest, criterion)
    return longest[ranked[0]] if ranked else None


@dataclasses.dataclass(frozen=True)
class _Program:
    """One compiled program of a sweep and the settings it trains: a sweep of one
    architecture has one; a width sweep one per group of architectures (`settings.arch_groups`)."""

    train: Any  # the compiled-once program (`runs._programs`)
    fresh: Callable  # run ids -> the initial carries of those runs, placed
    settings: np.ndarray  # the indices of the settings it trains, sorted
    size: int  # runs per compiled call (chunk), in every rung
    per_group: int | None  # runs vmapped together in a chunk (None: the whole chunk)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What stays fixed through a sweep's rungs."""

    programs: tuple[_Program, ...]
    splits: dict  # on device: "train" and, if any, "val" (x, y)
    seeds: int
    mesh: Any
    rung_epochs: tuple[int, ...]  # epochs trained by the end of each rung
    counts: tuple[int, ...]  # settings that enter each rung (at most)

    @property
    def criterion(self) -> str:
        return "val_accuracy" if "val" in self.splits else "final_loss"

    def place(self, tree):
        return tree if self.mesh is None else distributed.put_rows(tree, self.mesh)

    def chunks_from(self, rung: int, alive) -> int:
        """Compiled calls left from `rung` on with the settings `alive` (at most: diverged
        settings never go on, so rungs may shrink, and a later rung keeps settings of some
        programs only)."""
        return sum(math.ceil(min(c, np.isin(alive, p.settings).sum()) * self.seeds / p.size)
                   for c in self.counts[rung:] for p in self.programs)


class _ChunkProgress:
    """(chunks done, chunks in all) for `on_chunk`; the total shrinks as rungs keep fewer."""

    def __init__(self, total: int, on_chunk: Callable[[int, int], None] | None):
        self.done, self.total, self.on_chunk = 0, total, on_chunk

    def step(self):
        self.done += 1
        if self.on_chunk is not None:
            self.on_chunk(self.done, self.total)


def _train_rungs(plan: _Plan, record: _Record, on_chunk,
                 keep: Callable[[np.ndarray, Any], None] | None = None
                 ) -> tuple[list[dict], float, float]:
    """Trains the rungs in turn into `record`, each program its own settings: rung 0 from
    `fresh(run ids)`, each later one from the state of the settings the one before kept
    (ranked together, whatever program trained them); `keep(run ids, host carries)` (if
    given) sees every rung's carries, so a run cut by halving leaves its last. Returns
    (rung records, compile seconds, run seconds)."""
    seeds, rung_epochs, criterion = plan.seeds, plan.rung_epochs, plan.criterion
    alive = np.arange(plan.counts[0])  # the settings in the current rung
    progress = _ChunkProgress(plan.chunks_from(0, alive), on_chunk)
    rung_records = []
    # Per program: its alive settings and the host copy of their runs' carries (after rung 0).
    states: dict[int, tuple[np.ndarray, Any]] = {}
    compile_s = run_s = 0.0
    done_epochs = 0
    for k, until in enumerate(rung_epochs):
        keep_state = k < len(rung_epochs) - 1
        carries = {}
        for p, program in enumerate(plan.programs):
            mine = alive[np.isin(alive, program.settings)]
            if not mine.size:
                continue
            run_ids = (mine[:, None] * seeds + np.arange(seeds)).reshape(-1)
            state = states.get(p)

            def inputs_at(pos, state=state, run_ids=run_ids, program=program):
                if state is None:  # rung 0: fresh runs
                    return program.fresh(run_ids[pos])
                return plan.place(jax.tree.map(lambda a: a[pos], state[1]))

            out, carry, seconds = _run_chunks(program.train, inputs_at, plan.splits,
                                              len(run_ids), program.size, program.per_group,
                                              until - done_epochs,
                                              keep_state=keep_state or keep is not None,
                                              on_chunk=progress.step)
            if keep is not None:
                keep(run_ids, carry)
            out["loss_curve"] = out["loss_curve"][:, :(until - done_epochs)
                                                  * record.steps_per_epoch]
            compile_s, run_s = compile_s + seconds[0], run_s + seconds[1]
            record.add(run_ids, out, k, done_epochs, until)
            carries[p] = (mine, carry)
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
            alive = alive[kept]
            progress.total = progress.done + plan.chunks_from(k + 1, alive)
            states = {}
            for p, (mine, carry) in carries.items():
                which = np.flatnonzero(np.isin(mine, alive))
                if which.size:
                    pos = (which[:, None] * seeds + np.arange(seeds)).reshape(-1)
                    states[p] = (mine[which], jax.tree.map(lambda a, pos=pos: a[pos], carry))
    return rung_records, compile_s, run_s
