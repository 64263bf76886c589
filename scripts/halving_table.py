"""Successive halving against the full sweep on digits: the best setting each finds, its
accuracies, the epochs (compute) each spends, and its wall and compile seconds. Prints a
markdown table.

Usage: python scripts/halving_table.py [--grid full|small] [--epochs 27]
                                      [--halving ETA:R [ETA:R ...]] [--hidden 256,256]
                                      [--repeat N] [--quick]

The full grid is Adam's lr x L2 reg x dropout (6 x 5 x 4 = 120 settings; --grid small:
2 x 2 x 2 = 8; --quick: 3 x 2 x 2 = 12 for 3 epochs) on the 64-256-256-10 net (--hidden);
each --halving ETA:R (default 3:1 and 3:3) is a successive-halving run whose first rung
trains R epochs. A survivor of halving continues from its own state, so when it reaches the
last rung it is the very run the full sweep trains for that setting.

Every sweep runs in a fresh Python process, as a user's `jaxnet sweep` would (nothing
compiled by another sweep is reused); with --repeat N the sweeps run N times, interleaved,
and the table shows each one's fastest run (wall: the `sweep` call, compilation included).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from jaxnet import fitting
from jaxnet.config import TrainConfig
from jaxnet.sweep import halving_rungs, make_settings, sweep

GRIDS = {
    "full": {"lr": np.geomspace(1e-4, 3e-2, 6), "reg": [0.0, 1e-4, 1e-3, 1e-2, 1e-1],
             "dropout": [0.0, 0.2, 0.4, 0.6]},
    "small": {"lr": [1e-3, 1e-2], "reg": [0.0, 1e-2], "dropout": [0.0, 0.4]},
    "quick": {"lr": [1e-3, 1e-2, 3e-2], "reg": [0.0, 1e-2], "dropout": [0.0, 0.4]},
}


def _setting(row: dict) -> str:
    return ", ".join(f"{k} {row[k]:.3g}" for k in GRIDS["full"])


def _rank(full: list[dict], setting: dict) -> int:
    """1-based place of `setting` in the full sweep's settings, by val accuracy (ties:
    final loss)."""
    ok = [s for s in full if not s["diverged"]]
    ok.sort(key=lambda s: (-s["val_accuracy"], s["final_loss"]))
    return 1 + next(i for i, s in enumerate(ok) if all(s[k] == setting[k] for k in GRIDS["full"]))


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", choices=tuple(GRIDS), default="full")
    p.add_argument("--epochs", type=int, default=27)
    p.add_argument("--halving", nargs="+", default=["3:1", "3:3"], metavar="ETA:R")
    p.add_argument("--hidden", default="256,256", help="hidden widths (default 256,256)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each sweep, interleaved")
    p.add_argument("--quick", action="store_true", help="12 settings, 3 epochs: a smoke test")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # "full" or "ETA:R"
    args = p.parse_args(argv)
    if args.quick:
        args.grid, args.epochs, args.halving = "quick", 3, ["3:1"]
    return args


def _config(args) -> TrainConfig:
    return TrainConfig(hidden=tuple(int(h) for h in args.hidden.split(",")), epochs=args.epochs,
                       optimizer="adam", seed=0)


def _child(args) -> dict:
    """One sweep in this process: what the table needs of it, as JSON."""
    config = _config(args)
    data, _ = fitting.prepare(config, fitting.load_data(config))
    settings = make_settings(GRIDS[args.grid], "grid")
    eta, min_epochs = (None, None) if args.child == "full" else map(int, args.child.split(":"))
    t0 = time.perf_counter()
    result = sweep(config, data, settings, halving=eta, min_epochs=min_epochs)
    wall = time.perf_counter() - t0
    if eta is not None:
        assert [r["epochs"] for r in result.rungs] == halving_rungs(config.epochs, eta, min_epochs)
    return {"wall": wall, "compile": result.compile_seconds, "run": result.run_seconds,
            "epochs_spent": result.epochs_spent, "best": result.best, "settings": result.settings,
            "rungs": [(len(r["settings"]), r["epochs"]) for r in result.rungs],
            "features": data.num_features, "classes": data.num_classes,
            "batch": config.batch_size}


def _run(args, variant: str) -> dict:
    """`_child` in a fresh Python process."""
    argv = [sys.executable, __file__, "--child", variant, "--grid", args.grid, "--epochs",
            str(args.epochs), "--hidden", args.hidden]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {variant} sweep failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = _parse(argv)
    if args.child is not None:
        print(json.dumps(_child(args)))
        return 0
    variants = ["full", *args.halving]
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for variant in variants:
            got = _run(args, variant)
            print(f"{variant}: wall {got['wall']:.1f} s, compile {got['compile']:.1f} s",
                  file=sys.stderr)
            if variant not in best or got["wall"] < best[variant]["wall"]:
                best[variant] = got

    full = best["full"]
    axes, epochs = GRIDS[args.grid], args.epochs
    n = len(full["settings"])
    repeat = f", fastest of {args.repeat} fresh processes each" if args.repeat > 1 else ""
    print(f"{n} settings ({' x '.join(f'{len(v)} {k}' for k, v in axes.items())}), "
          f"{epochs} epochs, digits, {full['features']}-{args.hidden.replace(',', '-')}-"
          f"{full['classes']}, Adam, batch {full['batch']}, float32{repeat}\n")
    print("| sweep | rungs: settings x epochs | epochs trained | share | wall s | compile s "
          "| wall vs full | best setting | val acc | test acc | its place in the full sweep |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for variant in variants:
        got = best[variant]
        if variant == "full":
            name, rungs = "full", f"{n} x {epochs}"
        else:
            eta, min_epochs = variant.split(":")
            name = f"halving, eta {eta}, R {min_epochs}"
            rungs = " → ".join(f"{s} x {e}" for s, e in got["rungs"])
        top = got["best"]
        print(f"| {name} | {rungs} | {got['epochs_spent']} | "
              f"{100 * got['epochs_spent'] / (n * epochs):.0f}% | {got['wall']:.1f} | "
              f"{got['compile']:.1f} | {100 * got['wall'] / full['wall']:.0f}% | "
              f"{_setting(top)} | {top['val_accuracy']:.4f} | {top['test_accuracy']:.4f} | "
              f"{_rank(full['settings'], top)} of {n} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
