"""What a sweep knows of its runs (`_Record`) and what it returns (`SweepResult`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


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
    # With `sweep(keep_params=True)`: every run's reported {"params", "bn_state"} (its best
    # epoch's, else its last), numpy arrays with a leading runs axis; and `best_epochs`
    # (runs,), the 1-based epoch they come from. None otherwise.
    params: Any = None
    best_epochs: np.ndarray | None = None

    def __repr__(self) -> str:
        # Counts and the best setting in one line, not every run and loss curve.
        from jaxnet.sweep.settings import SWEEPABLE

        swept = [k for k in SWEEPABLE if self.settings and k in self.settings[0]]
        best = None if self.best is None else {k: self.best[k] for k in swept}
        score = None if self.best is None else self.best.get(self.criterion)
        return (f"SweepResult(settings={len(self.settings)}, runs={len(self.runs)}, "
                f"swept={tuple(swept)}, diverged={sum(s['diverged'] for s in self.settings)}, "
                f"rungs={len(self.rungs)}, criterion={self.criterion!r}, best={best}, "
                f"best_{self.criterion}={score})")


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
