"""Matplotlib figures: training curves and sweep results, written as PNG files."""

from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def training_curves(history: list[dict], path) -> pathlib.Path:
    """Loss and accuracy per epoch (train/val/test where present) in one PNG."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [row["loss"] for row in history], label="train (minibatch, train mode)")
    for split in ("val",):
        if history and f"{split}_loss" in history[0]:
            ax_loss.plot(epochs, [row[f"{split}_loss"] for row in history], label=f"{split} (eval mode)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.set_yscale("log")
    for split in ("train", "val", "test"):
        if history and f"{split}_accuracy" in history[0]:
            ax_acc.plot(epochs, [row[f"{split}_accuracy"] for row in history], label=split)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy (eval mode)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def sweep_scatter(rows: list[dict], x: str, y: str, metric: str, path, *, log_x=True,
                  log_y=False) -> pathlib.Path:
    """Each setting at (x, y), coloured by `metric`; diverged settings drawn as red crosses."""
    ok = [r for r in rows if not r["diverged"]]
    bad = [r for r in rows if r["diverged"]]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    if ok:
        sc = ax.scatter([r[x] for r in ok], [r[y] for r in ok], c=[r[metric] for r in ok],
                        cmap="viridis", s=40)
        fig.colorbar(sc, ax=ax, label=metric)
    if bad:
        ax.scatter([r[x] for r in bad], [r[y] for r in bad], marker="x", c="red", s=40,
                   label=f"diverged ({len(bad)})")
        ax.legend()
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set(xlabel=x, ylabel=y, title=f"{metric} per setting")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def loss_curves(curves: dict[str, np.ndarray], path, title="Loss curves of the best settings") -> pathlib.Path:
    """One line per labelled curve (training loss per step or epoch)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in curves.items():
        curve = np.asarray(curve, dtype=float)
        ax.plot(np.arange(1, len(curve) + 1), curve, label=label)
    ax.set(xlabel="step", ylabel="training loss", title=title)
    if curves and all(np.all(np.asarray(c) > 0) for c in curves.values()):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=max(1, math.ceil(len(curves) / 6)))
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def confusion(matrix: np.ndarray, labels: list[str], path) -> pathlib.Path:
    """A confusion matrix (rows: true class, columns: predicted), drawn by scikit-learn."""
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=ax, colorbar=False,
                                                               values_format="d")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
