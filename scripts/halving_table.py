"""Successive halving against the full sweep on digits: the best setting each finds, its
accuracies, and the epochs (compute) each spends. Prints a markdown table.

Usage: python scripts/halving_table.py [--epochs 27] [--halving ETA:R [ETA:R ...]]
                                      [--hidden 256,256] [--quick]

The grid is Adam's lr x L2 reg x dropout (6 x 5 x 4 = 120 settings, --quick: 3 x 2 x 2 = 12)
on the 64-256-256-10 net (--hidden); each --halving ETA:R (default 3:1 and 3:3) is a
successive-halving run whose first rung trains R epochs. A survivor of halving continues from its own state, so when it
reaches the last rung it is the very run the full sweep trains for that setting.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from jaxnet import fitting
from jaxnet.config import TrainConfig
from jaxnet.sweep import halving_rungs, make_settings, sweep

AXES = {"lr": np.geomspace(1e-4, 3e-2, 6), "reg": [0.0, 1e-4, 1e-3, 1e-2, 1e-1],
        "dropout": [0.0, 0.2, 0.4, 0.6]}
QUICK_AXES = {"lr": [1e-3, 1e-2, 3e-2], "reg": [0.0, 1e-2], "dropout": [0.0, 0.4]}


def _setting(row: dict) -> str:
    return ", ".join(f"{k} {row[k]:.3g}" for k in AXES)


def _rank(full, setting: dict) -> int:
    """1-based place of `setting` in the full sweep, by val accuracy (ties: final loss)."""
    ok = [s for s in full.settings if not s["diverged"]]
    ok.sort(key=lambda s: (-s["val_accuracy"], s["final_loss"]))
    return 1 + next(i for i, s in enumerate(ok) if all(s[k] == setting[k] for k in AXES))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=27)
    p.add_argument("--halving", nargs="+", default=["3:1", "3:3"], metavar="ETA:R")
    p.add_argument("--hidden", default="256,256", help="hidden widths (default 256,256)")
    p.add_argument("--quick", action="store_true", help="12 settings, 3 epochs: a smoke test")
    args = p.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    if args.quick:
        args.halving = ["3:1"]
    axes = QUICK_AXES if args.quick else AXES
    hidden = tuple(int(h) for h in args.hidden.split(","))
    config = TrainConfig(hidden=hidden, epochs=epochs, optimizer="adam", seed=0)
    data, _ = fitting.prepare(config, fitting.load_data(config))
    settings = make_settings(axes, "grid")

    variants = [None] + [tuple(int(v) for v in text.split(":")) for text in args.halving]
    results = {}
    for variant in variants:
        eta, min_epochs = variant or (None, None)
        t0 = time.perf_counter()
        result = sweep(config, data, settings, halving=eta, min_epochs=min_epochs)
        results[variant] = (result, time.perf_counter() - t0)
        print(f"{variant or 'full sweep'}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    full = results[None][0]
    n = len(settings)
    print(f"{n} settings ({' x '.join(f'{len(v)} {k}' for k, v in axes.items())}), "
          f"{epochs} epochs, digits, {data.num_features}-{'-'.join(map(str, config.hidden))}-"
          f"{data.num_classes}, Adam, batch {config.batch_size}, float32\n")
    print("| sweep | rungs: settings x epochs | epochs trained | share | wall s (compile s) "
          "| best setting | val acc | test acc | its place in the full sweep |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant, (result, wall) in results.items():
        if variant is None:
            name, rungs = "full", f"{n} x {epochs}"
        else:
            eta, min_epochs = variant
            name = f"halving, eta {eta}, R {min_epochs}"
            rungs = " → ".join(f"{len(r['settings'])} x {r['epochs']}" for r in result.rungs)
            assert [r["epochs"] for r in result.rungs] == halving_rungs(epochs, eta, min_epochs)
        best = result.best
        print(f"| {name} | {rungs} | {result.epochs_spent} | "
              f"{100 * result.epochs_spent / (n * epochs):.0f}% | {wall:.0f} "
              f"({result.compile_seconds:.0f}) | {_setting(best)} | {best['val_accuracy']:.4f} | "
              f"{best['test_accuracy']:.4f} | {_rank(full, best)} of {n} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
