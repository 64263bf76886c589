"""What padding costs a width sweep's run: a network of width w trained zero-padded to width W
against the same network trained alone, on digits. Prints a markdown table.

Usage: python scripts/bench_width.py [--pairs 32:32 32:256 ...] [--layers 2] [--runs 5]
                                     [--epochs 5] [--repeat 3]

Each pair w:W is a sweep of `--runs` settings (learning rates) of `--layers` hidden layers of
width w, trained in one program padded to W (w:w is the unpadded program). Every sweep runs
in a fresh Python process; with --repeat N the pairs run N times, interleaved, and the table
shows each pair's best: examples/s of training (the runs' examples over the seconds of the
compiled calls, compilation left out) and the compile seconds of its programs.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

PAIRS = ("32:32", "32:64", "32:128", "32:256", "64:64", "64:256", "128:128", "128:256",
         "256:256")


def _child(width: int, padded: int, layers: int, runs: int, epochs: int) -> dict:
    """One sweep of `runs` settings of width `width` in a program padded to `padded`."""
    import importlib

    from jaxnet import fitting
    from jaxnet.config import TrainConfig

    sweep_module = importlib.import_module("jaxnet.sweep")  # the module, not the function
    config = TrainConfig(hidden=(width,) * layers, epochs=epochs)
    data = fitting.prepare(config, fitting.load_data(config))[0]
    settings = [{"hidden": (width,) * layers, "lr": lr}
                for lr in [1e-3 * 2**i for i in range(runs)]]
    # The program's widths: `padded` at every layer, whatever the settings' own.
    sweep_module.arch_groups = lambda s, h: [((padded,) * layers, list(range(len(s))))]
    result = sweep_module.sweep(config, data, settings)
    examples = runs * epochs * len(data.x_train)
    return {"width": width, "padded": padded, "examples_per_second": examples / result.run_seconds,
            "run_seconds": result.run_seconds, "compile_seconds": result.compile_seconds}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), metavar="w:W")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child, args.layers, args.runs, args.epochs)))
        return
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for pair in args.pairs:
            w, big = pair.split(":")
            out = subprocess.run(
                [sys.executable, __file__, "--child", w, big, "--layers", str(args.layers),
                 "--runs", str(args.runs), "--epochs", str(args.epochs)],
                check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            old = best.get(pair)
            if old is None or row["examples_per_second"] > old["examples_per_second"]:
                best[pair] = {**row, "compile_seconds": min(
                    row["compile_seconds"], old["compile_seconds"] if old else float("inf"))}
            elif row["compile_seconds"] < old["compile_seconds"]:
                old["compile_seconds"] = row["compile_seconds"]
    alone = {r["width"]: r["examples_per_second"] for r in best.values()
             if r["width"] == r["padded"]}
    print(f"{args.runs} runs of {args.layers} hidden layers on digits, {args.epochs} epochs, "
          f"batch 64, Adam, float32; best of {args.repeat} fresh processes, interleaved\n")
    print("| width | padded to | examples/s | vs alone | compile s |")
    print("|---|---|---|---|---|")
    for pair in args.pairs:
        r = best[pair]
        ratio = (f"{r['examples_per_second'] / alone[r['width']]:.2f}x"
                 if r["width"] in alone else "")
        print(f"| {r['width']} | {r['padded']} | {r['examples_per_second']:,.0f} | {ratio} | "
              f"{r['compile_seconds']:.1f} |")


if __name__ == "__main__":
    main()
