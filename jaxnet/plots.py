"""Matplotlib figures: training curves and sweep results, written as PNG files."""

from __future__ import annotations

import math
import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def training_curves(history: list[dict], path, *, kept_epoch: int | None = None,
                    test_accuracy: float | None = None) -> pathlib.Path:
    """Loss and accuracy per epoch (train/val) in one PNG (see `curves_figure`)."""
    fig = curves_figure(history, kept_epoch=kept_epoch, test_accuracy=test_accuracy)
    # Fixed margins, room for 6-character tick labels: one drawing pass, where
    # `tight_layout` measures the text first (~0.06 s of `jaxnet train`'s ~3 s).
    fig.subplots_adjust(left=0.09, right=0.985, bottom=0.12, top=0.92, wspace=0.22)
    return _save(fig, path, tight=False)


def curves_figure(history: list[dict], *, kept_epoch: int | None = None,
                  test_accuracy: float | None = None):
    """The training curves: loss (left) and accuracy (right) per epoch.

    Args:
      history: `TrainResult.history`, one row per epoch with "epoch", "loss" and the
        train/val losses and accuracies.
      kept_epoch: the epoch whose parameters were kept, marked on both panels.
      test_accuracy: the kept parameters' test accuracy, drawn as one point at
        `kept_epoch` (the test score is reported once, never per epoch).

    Returns:
      The matplotlib Figure (two Axes).
    """
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = _subplots(1, 2, figsize=(10, 4))
    losses = [row["loss"] for row in history]
    ax_loss.plot(epochs, losses, label="train (minibatch, train mode)")
    if history and "val_loss" in history[0]:
        losses += [row["val_loss"] for row in history]
        ax_loss.plot(epochs, [row["val_loss"] for row in history], label="val (eval mode)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    log_axis(ax_loss, losses)
    for split in ("train", "val"):
        if history and f"{split}_accuracy" in history[0]:
            ax_acc.plot(epochs, [row[f"{split}_accuracy"] for row in history], label=split)
    if kept_epoch is not None and test_accuracy is not None:
        ax_acc.plot([kept_epoch], [test_accuracy], "*", ms=10, color="C3",
                    label=f"test, kept epoch ({test_accuracy:.4f})")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy (eval mode)")
    for ax in (ax_loss, ax_acc):
        if kept_epoch is not None:
            ax.axvline(kept_epoch, color="0.4", ls="--", lw=1, label=f"kept: epoch {kept_epoch}")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


# The highest a log axis goes: matplotlib's log ticks overflow float64 (a warning, then an
# error in its formatter) when the view reaches ~1e300. A diverged run's larger losses leave
# the chart at its top edge.
LOG_AXIS_TOP = 1e250


def log_axis(ax, values) -> None:
    """A log y-axis for positive `values` spanning a decade or more, a linear one otherwise.
    Up to three decades, ticks at 1, 2 and 5 times each power of ten written as plain numbers
    (matplotlib's default may show only two ticks, 10^-1 and 10^0); beyond, matplotlib's own
    (the 1-2-5 ticks vanish past ~7 decades), the view ending at `LOG_AXIS_TOP`."""
    from matplotlib import ticker

    if not _spans_decades(values):
        return
    low, high = math.log10(min(values)), math.log10(min(max(values), LOG_AXIS_TOP))
    if max(values) > LOG_AXIS_TOP:  # limits set first: autoscaling would overflow
        ax.set_ylim(10 ** (low - ax.margins()[1] * (high - low)), LOG_AXIS_TOP)
        ax.annotate(f"above {LOG_AXIS_TOP:g}: off the chart", (0.01, 0.99), va="top",
                    xycoords="axes fraction", fontsize="small", color="0.4")
    ax.set_yscale("log")
    if high - low > 3:
        return
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _subplots(*grid, figsize):
    """`pyplot.subplots` without pyplot (~0.3 s more to import, and a global figure
    registry): a Figure on its own Agg canvas, and its Axes."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*grid)


def _save(fig, path, *, tight=True) -> pathlib.Path:
    if tight:
        fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    return path


def _mark_diverged(ax, xs):
    """Red crosses along the bottom edge at `xs`: diverged settings have no value to plot,
    and must not stretch the y-axis."""
    if len(xs):
        ax.scatter(xs, [0.03] * len(xs), marker="x", c="red", s=40, clip_on=False,
                   transform=ax.get_xaxis_transform(), label=f"diverged ({len(xs)})", zorder=3)


def _spans_decades(values) -> bool:
    values = np.asarray(values, dtype=float)
    return values.size > 1 and bool(np.all(values > 0)) and values.max() >= 10 * values.min()


def sweep_scatter(rows: list[dict], x: str, y: str, metric: str, path, *, log_x=True,
                  log_y=False) -> pathlib.Path:
    """Each setting at (x, y), coloured by `metric`; diverged settings drawn as red crosses.

    After successive halving (rows with a "rung"), settings that stopped at a lower rung
    are drawn smaller: their metric comes from fewer epochs.
    """
    ok = [r for r in rows if not r["diverged"]]
    bad = [r for r in rows if r["diverged"]]
    top = max((r.get("rung", 0) for r in rows), default=0)
    fig, ax = _subplots(figsize=(6.5, 5))
    if ok:
        sizes = [40 * 2.0 ** (r.get("rung", 0) - top) + 6 for r in ok]
        sc = ax.scatter([r[x] for r in ok], [r[y] for r in ok], c=[r[metric] for r in ok],
                        cmap="viridis", s=sizes)
        fig.colorbar(sc, ax=ax, label=metric)
    if bad:
        ax.scatter([r[x] for r in bad], [r[y] for r in bad], marker="x", c="red", s=40,
                   label=f"diverged ({len(bad)})")
        ax.legend()
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    title = f"{metric} per setting" + (" (smaller: stopped at an earlier rung)" if top else "")
    ax.set(xlabel=x, ylabel=y, title=title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def sweep_line(rows: list[dict], axes: list[str], metric: str, path, *,
               log_x=False) -> pathlib.Path:
    """`metric` against the first swept axis, for one-axis or zipped sweeps.

    Args:
      rows: one dict per setting with the axes' values, `metric`, "diverged" and optionally
        "epochs_trained" (successive halving: one series per epoch count, since a metric
        after fewer epochs is not comparable).
      axes: the swept axes; axes after the first vary together with it (zipped) and are
        named in the x label with their range.
      metric: the key plotted on y; a log y-axis when it is positive over a decade or more.
      path: the PNG to write.
      log_x: a log x-axis (log-spaced values).

    Returns:
      The path written. Diverged settings are red crosses along the bottom edge.
    """
    x = axes[0]
    ok = sorted((r for r in rows if not r["diverged"]), key=lambda r: r[x])
    fig, ax = _subplots(figsize=(7, 4.5))
    by_epochs: dict[int, list[dict]] = {}
    for r in ok:
        by_epochs.setdefault(r.get("epochs_trained", 0), []).append(r)
    for epochs, group in sorted(by_epochs.items()):
        plural = "" if epochs == 1 else "s"
        label = f"trained {epochs} epoch{plural}" if len(by_epochs) > 1 else None
        style = "o-" if len(by_epochs) == 1 else "o"
        ax.plot([r[x] for r in group], [r[metric] for r in group], style, ms=4, label=label)
    _mark_diverged(ax, [r[x] for r in rows if r["diverged"]])
    if log_x:
        ax.set_xscale("log")
    if metric != "val_accuracy" and _spans_decades([r[metric] for r in ok]):
        ax.set_yscale("log")
    label = x
    others = [a for a in axes[1:] if rows]
    if others:
        ranges = ", ".join(f"{a} {rows[0][a]:.3g} to {rows[-1][a]:.3g}" for a in others)
        label += f" (zipped with {ranges})"
    ax.set(xlabel=label, ylabel=metric, title=f"{metric} per setting")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, path)


def sweep_widths(rows: list[dict], others: list[str], metric: str, path) -> pathlib.Path:
    """A width sweep: `metric` against the width of the hidden layers, one line per depth
    and per value of the `others` axes.

    Args:
      rows: one dict per setting with "hidden" (a tuple of widths), the `others` axes'
        values, `metric`, "diverged" and optionally "epochs_trained" (successive halving:
        settings that stopped early are hollow markers, their metric after fewer epochs).
      others: the other swept axes (a line per combination of their values, up to 10
        labelled).
      metric: the key plotted on y.
      path: the PNG to write.

    Returns:
      The path written. The x value of an architecture whose layers differ is its widest
      layer's width. Diverged settings are red crosses along the bottom edge.
    """
    def width(r):
        return max(r["hidden"], default=0)

    most = max((r.get("epochs_trained", 0) for r in rows), default=0)
    series: dict[tuple, list[dict]] = {}
    for r in sorted((r for r in rows if not r["diverged"]), key=width):
        key = (len(r["hidden"]), *(r[a] for a in others))
        series.setdefault(key, []).append(r)
    fig, ax = _subplots(figsize=(7, 4.5))
    for n, (key, group) in enumerate(sorted(series.items())):
        parts = [f"{key[0]} hidden layer{'' if key[0] == 1 else 's'}"]
        parts += [f"{a}={v:.3g}" for a, v in zip(others, key[1:], strict=True)]
        line = ax.plot([width(r) for r in group], [r[metric] for r in group], "-", lw=1,
                       label=", ".join(parts) if n < 10 else None)[0]
        full = [r for r in group if r.get("epochs_trained", 0) == most]
        early = [r for r in group if r.get("epochs_trained", 0) != most]
        ax.plot([width(r) for r in full], [r[metric] for r in full], "o", ms=5,
                color=line.get_color())
        ax.plot([width(r) for r in early], [r[metric] for r in early], "o", ms=5,
                mfc="none", color=line.get_color())
    _mark_diverged(ax, [width(r) for r in rows if r["diverged"]])
    widths = sorted({width(r) for r in rows})
    if widths and widths[0] > 0 and widths[-1] >= 4 * widths[0]:
        ax.set_xscale("log", base=2)
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.minorticks_off()
    if metric != "val_accuracy" and _spans_decades([r[metric] for g in series.values() for r in g]):
        ax.set_yscale("log")
    note = " (hollow: stopped early by halving)" if any(
        r.get("epochs_trained", 0) != most for r in rows if not r["diverged"]) else ""
    ax.set(xlabel="width of the hidden layers (the widest, where they differ)", ylabel=metric,
           title=f"{metric} against width{note}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _save(fig, path)


def sweep_rungs(rungs: list[dict], metric: str, path) -> pathlib.Path:
    """Successive halving: each setting's `metric` at every rung it reached.

    Args:
      rungs: `SweepResult.rungs`: per rung its "epochs", "settings" (indices), "scores"
        (None: diverged) and "kept".
      metric: the name of the score (the y label).
      path: the PNG to write.

    Returns:
      The path written. Settings that reached the last rung are drawn in colour, the rest
      grey; a diverged setting is a red cross where it diverged.
    """
    series: dict[int, list[tuple[int, float]]] = {}
    diverged_at: list[int] = []
    for rung in rungs:
        for s, score in zip(rung["settings"], rung["scores"], strict=True):
            if score is None:
                diverged_at.append(rung["epochs"])
            else:
                series.setdefault(s, []).append((rung["epochs"], score))
    finalists = set(rungs[-1]["settings"])
    fig, ax = _subplots(figsize=(7, 4.5))
    for s, points in series.items():
        xs, ys = zip(*points, strict=True)
        if s in finalists:
            ax.plot(xs, ys, "o-", ms=4, lw=1.5, zorder=2)
        else:
            ax.plot(xs, ys, "o-", ms=2, lw=0.6, color="0.6", alpha=0.5, zorder=1)
    _mark_diverged(ax, diverged_at)
    epochs = [r["epochs"] for r in rungs]
    ax.set_xscale("log")
    ax.set_xticks(epochs, [f"{e}\n({len(r['settings'])})" for e, r in zip(epochs, rungs, strict=True)])
    ax.minorticks_off()
    if metric != "val_accuracy" and _spans_decades([y for p in series.values() for _, y in p]):
        ax.set_yscale("log")
    ax.set(xlabel="epochs trained (settings in the rung)", ylabel=metric,
           title=f"Successive halving: {metric} at each rung")
    ax.grid(alpha=0.3)
    if diverged_at:
        ax.legend(fontsize=8)
    return _save(fig, path)


def loss_curves(curves: dict[str, np.ndarray], path, title="Loss curves of the best settings") -> pathlib.Path:
    """One line per labelled curve (training loss per step or epoch)."""
    fig, ax = _subplots(figsize=(7, 4.5))
    for label, curve in curves.items():
        curve = np.asarray(curve, dtype=float)
        ax.plot(np.arange(1, len(curve) + 1), curve, label=label)
    ax.set(xlabel="step", ylabel="training loss", title=title)
    values = np.concatenate([np.ravel(c) for c in curves.values()]) if curves else []
    log_axis(ax, values)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=max(1, math.ceil(len(curves) / 6)))
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    return path


def confusion(matrix: np.ndarray, labels: list[str], path) -> pathlib.Path:
    """A confusion matrix (rows: true class, columns: predicted), drawn by scikit-learn."""
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = _subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=ax, colorbar=False,
                                                               values_format="d")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    return path
