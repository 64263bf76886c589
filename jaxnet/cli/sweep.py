"""`jaxnet sweep`: parse value ranges, run the vmapped sweep, write results and plots."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import pathlib
import sys

import numpy as np

from jaxnet import ranges
from jaxnet.cli import common
from jaxnet.constants import DEFAULT_EPOCHS, LOG_AXES, SWEEPABLE
from jaxnet.errors import UsageError

# Flags taking "V", "V1,V2,..." or "LO:HI"; --hidden and --layers take lists of their own
# (`architectures`), which make the "hidden" axis.
AXIS_FLAGS = tuple(name for name in SWEEPABLE if name != "hidden")

PRESETS = ("notebook",)
# What a sweep leaves in its folder: --overwrite deletes them first, so a folder never mixes
# two sweeps (say, the rungs.png of an earlier one with halving).
OUTPUT_FILES = ("results.json", "results.csv", "best.json", "sweep.png", "loss_curves.png",
                "rungs.png")

DESCRIPTION = """\
Trains many settings of one network at once: every setting (and seed) is one run of a
vmapped, jitted training loop, so the sweep compiles its training loop once, for every chunk
and rung.

Each of --lr --weight-scale --reg --dropout --momentum --beta1 --beta2 --weight-decay
takes one value (a fixed setting), a list V1,V2,... or a range LO:HI. A range gives --num
points, log-spaced for lr, weight_scale, reg and weight_decay and evenly spaced otherwise;
with --random N it gives the bounds to draw from. --grid (the default) takes every
combination of the swept axes, --zip pairs them one to one.

--hidden and --layers sweep the architecture: --hidden 32,64,128 trains every hidden layer
at each width, --layers 2,3 at each depth (L-1 hidden layers), and both together every
combination (paired one to one with --zip). Commas separate settings, as for every flag
here; one architecture layer by layer is written with x: --hidden 256x128 (a list:
256x128,128x64). The runs of one depth train in one compiled program (a few, when widths
differ more than 4x), each network zero-padded to the widest and trained exactly as it
would be alone.

--halving ETA turns the sweep into successive halving: every run trains --min-epochs, then
only the best 1/ETA of the settings (by val accuracy, else final loss; diverged ones first
out) go on from where they stopped, to ETA times as many epochs, and so on up to --epochs
(each rung at least ETA times as long as the one before).
"""

EPILOG = """\
examples:
  jaxnet sweep --preset notebook                     the notebook's 100 (lr, weight_scale) pairs
  jaxnet sweep --lr 1e-4:1e-1 --num 4 --reg 0,1e-3   a 4 x 2 grid on digits
  jaxnet sweep --optimizer momentum --random 20 --lr 1e-3:1 --momentum 0.5:0.99 --seeds 3
  jaxnet sweep --lr 1e-4:3e-2 --num 6 --reg 0,1e-3,1e-2 --epochs 27 --halving 3 --min-epochs 1
  jaxnet sweep --hidden 32,64,128,256 --layers 2,3 --lr 1e-3,3e-3,1e-2 --epochs 27 --halving 3
  jaxnet sweep ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0   (on each host)

Outputs (in --out): results.json (per setting: means and stds over seeds; per run),
results.csv (one row per run, with the epochs it trained and the rung where it stopped;
"hidden" written 64x64, and "layers"), best.json (the best setting, and the whole config to
retrain it alone: jaxnet train --config best.json), sweep.png (with --hidden or --layers:
the criterion against the width, one line per depth and value of the other axes),
loss_curves.png and, with --halving, rungs.png. A run whose loss,
weights, batchnorm statistics or optimizer state became non-finite is reported as diverged
(numbers left empty) and never chosen as best.
"""


def add_parser(subparsers):
    p = subparsers.add_parser(
        "sweep", help="train many settings at once (vmapped); --preset notebook reproduces the "
        "notebook", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_network_flags(p, sweep=True)
    common.add_optimizer_flags(p, sweep=True)
    common.add_run_flags(p, sweep=True)
    common.add_data_flags(p)
    common.add_output_flags(p, what="sweep")
    g = p.add_argument_group("sweep")
    g.add_argument("--preset", choices=PRESETS, help="notebook: 100 zipped (lr, weight_scale) "
                   "settings, 100 full-batch SGD steps on the N=50 random data; flags you give "
                   "override its other values")
    g.add_argument("--num", type=common.positive_int, default=5,
                   help="points per LO:HI range in --grid/--zip (default 5)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--grid", action="store_true", help="every combination of the axes (default)")
    mode.add_argument("--zip", action="store_true", help="pair the axes one to one (the "
                      "notebook's way); lists need equal lengths")
    mode.add_argument("--random", type=common.positive_int, metavar="N", help="N random settings "
                      "drawn within each LO:HI range (log-uniform on log axes)")
    g.add_argument("--seeds", type=common.positive_int, default=1, help="seeds per setting "
                   "(seed, seed+1, ...), in the same vmapped call; reports mean and std")
    g.add_argument("--chunk", type=common.positive_int,
                   help="runs per compiled call, to bound memory (default: all at once)")
    g.add_argument("--top", type=common.positive_int, default=8, help="loss curves plotted (default 8)")
    g.add_argument("--halving", type=common.positive_int, metavar="ETA", help="successive "
                   "halving: after each rung only the best 1/ETA of the settings train on (ETA >= 2)")
    g.add_argument("--min-epochs", type=common.positive_int, metavar="R", help="epochs of the "
                   "first rung with --halving (default: epochs / ETA^3, rounded up)")
    common.add_device_flags(p, what="devices to shard the runs over")
    p.set_defaults(run=run)


def parse_axis(flag: str, text: str, *, log: bool, num: int, mode: str,
               allow_zero: bool = False) -> list[float] | tuple[float, float]:
    """"1e-3" -> [1e-3]; "1e-3,1e-2" -> list; "LO:HI" -> num points (log or linear) or bounds.

    `log` spaces ranges (and draws --random values) log-uniformly, so their bounds must be
    positive; `allow_zero` (the axis takes 0: reg, weight_decay) adds how to include 0.
    The values themselves are checked by the library (jaxnet.ranges), as every setting is.
    """
    text = str(text).strip()
    try:
        if ":" in text:
            lo_text, hi_text = text.split(":", 1)
            lo, hi = float(lo_text), float(hi_text)
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} expects a number, a list like 1e-3,1e-2 or a range LO:HI, got {text!r}") from None
    if ":" in text:
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise UsageError(f"{flag} {text}: the bounds must be finite numbers")
        if lo > hi:
            raise UsageError(f"{flag} {text}: the lower bound {lo:g} is above the upper bound {hi:g}; write LO:HI")
        if log and lo <= 0:
            hint = " (to include 0, list it: 0,1e-4,1e-3)" if allow_zero else ""
            raise UsageError(f"{flag} {text}: a range on a log scale needs positive bounds, got {lo:g}{hint}")
        if mode == "random":
            return (lo, hi)
        if lo == hi:
            return [lo]
        return [float(v) for v in (np.geomspace(lo, hi, num) if log else np.linspace(lo, hi, num))]
    if not values:
        raise UsageError(f"{flag} {text!r} gives zero settings; give at least one value")
    if mode == "random" and len(values) > 1:
        raise UsageError(f"{flag} {text}: --random draws each axis from a range; write LO:HI "
                           "(or one value to keep it fixed)")
    return values


def notebook_preset():
    """The notebook's sweep: its data, network, zipped lr x weight_scale and 100 SGD steps."""
    overrides = {"dataset": "random", "optimizer": "sgd", "batch_size": 50, "epochs": 100,
                 "dropout": 0.0, "reg": 0.0, "init": "normal", "lr_schedule": "constant",
                 "standardize": False}
    settings_axes = {"lr": np.geomspace(1e-5, 1e5, 100), "weight_scale": np.linspace(1e-2, 9e-2, 100)}
    return overrides, settings_axes, "zip"


def run(args) -> int:
    from jaxnet.sweep import check_sweep, make_settings

    common.setup_jax(args.dtype)
    mode = "zip" if args.zip else "random" if args.random else "grid"
    axes: dict = {}
    overrides: dict = {}
    if args.preset == "notebook":
        if args.lr is not None or args.weight_scale is not None:
            raise UsageError("--preset notebook sweeps --lr and --weight-scale itself; drop them "
                               "(or sweep without --preset)")
        if args.grid or args.random:
            raise UsageError("--preset notebook zips its lr and weight_scale values; drop --grid/--random")
        preset, axes, mode = notebook_preset()
        # The preset's values are defaults: flags given on the command line win.
        overrides = {k: v for k, v in preset.items() if getattr(args, k, None) is None}
        axes = {k: list(map(float, v)) for k, v in axes.items()}
    swept_flags = {name: getattr(args, name) for name in AXIS_FLAGS}
    static = {}
    for name, text in swept_flags.items():
        if text is None:
            continue
        values = parse_axis(f"--{name.replace('_', '-')}", text, log=name in LOG_AXES,
                            num=args.num, mode=mode,
                            allow_zero=ranges.is_valid(name, 0.0))
        if isinstance(values, list) and len(values) == 1:
            static[name] = values[0]  # one value: a plain config field, not an axis
        else:
            axes[name] = values
    for name in AXIS_FLAGS:
        setattr(args, name, None)
    archs = architectures(args.hidden, args.layers, mode)
    args.hidden = args.layers = None
    if len(archs) > 1:
        axes = {"hidden": archs, **axes}
    if mode == "random" and not axes:
        raise UsageError(f"--random {args.random} needs at least one axis given as a range "
                           "LO:HI, e.g. --lr 1e-4:1e-1")
    config = common.config_from_args(args, hidden=archs[0], **{**overrides, **static})
    config = dataclasses.replace(config, epochs=config.epochs or DEFAULT_EPOCHS)
    settings = make_settings(axes, mode, n_random=args.random or 0, seed=config.seed) if axes else [{}]
    # What sweep() would refuse, refused before any folder, device or data is touched.
    check_sweep(config, settings, seeds=args.seeds, halving=args.halving,
                min_epochs=args.min_epochs)
    check_useful(settings, seeds=args.seeds, halving=args.halving)
    from jaxnet import runlock

    # The folder is held (jaxnet.runlock) from here to the end: a second sweep, train or
    # --resume into it is refused at once.
    folder = pathlib.Path(args.out) if args.out else common.new_run_dir("sweep")
    with runlock.hold(folder if common.writes_outputs(args) else None, "jaxnet sweep"):
        return _run(args, config, settings, mode, folder)


def architectures(hidden: str | None, layers: str | None, mode: str) -> list[tuple[int, ...]]:
    """The architectures (tuples of hidden widths) that --hidden and --layers ask for.

    --hidden lists widths W (every hidden layer W wide) or architectures layer by layer
    (256x128); --layers lists total layer counts L (L-1 hidden layers). Widths and depths
    combine every way (one to one in "zip" mode, when both list several); an architecture
    written layer by layer has its own depth, so --layers may only confirm it. Duplicates
    are dropped; one architecture is a fixed network, several make the "hidden" axis.
    """
    def ints(flag, text, sep, what):
        try:
            values = [int(v) for v in text.split(sep)]
        except ValueError:
            values = []
        if not values or any(v <= 0 for v in values):
            raise UsageError(f"{flag} expects {what}, got {text!r}")
        return values

    depths = None if layers is None else ints("--layers", str(layers).replace(" ", ""), ",",
                                               "positive layer counts like 3 or 2,3,4")
    if hidden is None:
        items: list = [common.DEFAULT_HIDDEN]
    else:
        items = [tuple(ints("--hidden", item, "x", "widths like 64, a list like 32,64,128 or an "
                            "architecture layer by layer like 256x128"))
                 if "x" in item else ints("--hidden", item, "x", "positive widths like 64")[0]
                 for item in str(hidden).replace(" ", "").split(",")]
    layered = [item for item in items if isinstance(item, tuple)]
    if layered and depths is not None:
        shown = "x".join(map(str, layered[0]))
        if len(depths) > 1 or any(len(a) != depths[0] - 1 for a in layered):
            raise UsageError(f"--hidden {shown} gives the width of each hidden layer, so it sets "
                             f"the depth ({len(layered[0]) + 1} layers) and --layers {layers} "
                             "cannot change it; drop --layers, or give single widths (--hidden "
                             "64,128) to combine with --layers")
    if depths is not None and 1 in depths and hidden is not None:
        raise UsageError("--layers 1 is a network without hidden layers, so --hidden has nothing "
                         "to size; drop --hidden or 1 from --layers")
    depths = depths or [common.DEFAULT_LAYERS]
    if mode == "zip" and len(items) > 1 and len(depths) > 1:
        if len(items) != len(depths):
            raise UsageError(f"--zip pairs --hidden and --layers one to one, so they need equal "
                             f"lengths; got {len(items)} and {len(depths)}")
        pairs = list(zip(items, depths, strict=True))
    else:
        pairs = [(item, depth) for item in items for depth in depths]
    archs = [item if isinstance(item, tuple) else (item,) * (depth - 1) for item, depth in pairs]
    return list(dict.fromkeys(archs))


def hidden_text(hidden) -> str:
    """An architecture as --hidden and results.csv write it: (64, 32) -> "64x32", () -> "-"."""
    return "x".join(str(int(w)) for w in hidden) or "-"


def value_text(name: str, value) -> str:
    """A swept value for a person: "64x64" for "hidden", else the shortest exact number."""
    return hidden_text(value) if name == "hidden" else f"{float(value)!r}"


def check_useful(settings: list[dict], *, seeds: int, halving: int | None) -> None:
    """Refuses a sweep that cannot tell settings apart: one run, or halving with fewer
    settings than one cut needs."""
    n = len(settings)
    if n == 1 and seeds == 1:
        raise UsageError("this sweep has one setting and one seed, so it would train a single "
                         "run with nothing to compare; train it with jaxnet train and the same "
                         "flags, or sweep a flag (a list V1,V2 or a range LO:HI), or pass --seeds K")
    if halving is not None and n < halving:
        lower = f", use --halving {n}" if n >= 2 else ""
        raise UsageError(f"--halving {halving} keeps the best 1/{halving} of the settings at each "
                         f"cut, but this sweep has {n} setting{'' if n == 1 else 's'}, fewer than "
                         f"{halving}; sweep at least {halving} settings{lower}, or drop --halving")


def _run(args, config, settings, mode, folder) -> int:
    from jaxnet import distributed, runlock

    out = common.output_dir(args, "sweep") if args.out else folder
    # Before any other JAX work: jax.distributed must start before the devices do.
    env = distributed.setup(args.coordinator, args.num_processes, args.process_id, args.devices,
                            axis=distributed.SETTINGS_AXIS)
    # The lead of a cluster found by its variables (JAX_COORDINATOR_ADDRESS) is known only now;
    # where the flags told, the folder is held already (then this does nothing).
    with runlock.hold(out if env.is_lead else None, "jaxnet sweep"):
        return _sweep(args, config, settings, mode, out, env)


def _sweep(args, config, settings, mode, out, env) -> int:
    from jaxnet import fitting
    from jaxnet.preload import preload
    from jaxnet.sweep import halving_rungs, sweep

    quiet = args.quiet or not env.is_lead
    data, _ = fitting.prepare(config, common.load_data(config, quiet=quiet))
    n_runs = len(settings) * args.seeds
    if not quiet:
        rungs = ""
        if args.halving:
            epochs = halving_rungs(config.epochs, args.halving, args.min_epochs)
            rungs = f" (successive halving, eta {args.halving}: rungs at {epochs} epochs)"
        if "hidden" in settings[0]:
            from jaxnet.sweep import arch_groups

            groups = arch_groups(settings, config.hidden)
            archs = ", ".join(dict.fromkeys(hidden_text(s["hidden"]) for s in settings))
            net = (f"hidden layers {archs} (in {len(groups)} compiled program"
                   f"{'' if len(groups) == 1 else 's'}, padded to "
                   f"{', '.join(hidden_text(h) for h, _ in groups)})")
        else:
            net = str((data.num_features, *config.hidden, data.num_classes))
        print(f"sweeping {len(settings)} settings x {args.seeds} seed(s) = {n_runs} runs of "
              f"{net} on {data.summary()}, "
              f"{_epochs(config.epochs)} of {config.optimizer}{rungs}, {config.dtype}, "
              f"{env.num_devices} device(s)", file=sys.stderr)
    if env.is_lead:
        preload("jaxnet.plots")  # imported while the sweep trains, drawn after it
    bar = common.progress_bar(None, unit="chunk", quiet=quiet)

    def on_chunk(done, total):
        bar.total = total
        bar.update(done - bar.n)

    result = sweep(config, data, settings, seeds=args.seeds, chunk=args.chunk, mesh=env.mesh,
                   halving=args.halving, min_epochs=args.min_epochs, on_chunk=on_chunk)
    bar.close()
    if env.is_lead:
        if args.overwrite:
            for name in OUTPUT_FILES:
                (out / name).unlink(missing_ok=True)
        write_outputs(out, result, config, top=args.top, mode=mode)
        print_report(result, out, preset=args.preset)
    return 0


def _fmt(v):
    return "diverged" if v is None or not math.isfinite(v) else f"{v:.6g}"


def _swept(result) -> list[str]:
    first = result.settings[0] if result.settings else {}
    return [k for k in SWEEPABLE if k in first]


def print_report(result, out, *, preset=None):
    swept = _swept(result)
    n_div = sum(s["diverged"] for s in result.settings)
    seeds = result.settings[0]["seeds"] if result.settings else 1
    halving = len(result.rungs) > 1
    last_rung = len(result.rungs) - 1
    if preset == "notebook" or len(result.settings) <= 20:
        for s in result.settings:
            hp = " ".join(f"{k}: {hidden_text(s[k]) if k == 'hidden' else f'{s[k]:.6g}'}"
                          for k in swept)
            line = f"{hp}  loss: {_fmt(s['final_loss'])}"
            if seeds > 1 and not s["diverged"]:
                line += f" ± {s['final_loss_std']:.2g}"
            if result.criterion == "val_accuracy" and not s["diverged"]:
                line += f"  val accuracy: {s['val_accuracy']:.4f}"
            if halving and s["rung"] < last_rung:
                line += f"  (stopped after {_epochs(s['epochs_trained'])})"
            print(line.strip())
    if halving:
        print_rungs(result)
    if result.best is None:
        print(f"every one of the {len(result.settings)} settings diverged; lower the learning rates")
    else:
        best = result.best
        # Among the settings that trained as long as the best one (all, without halving).
        losses = [s["final_loss"] for s in result.settings
                  if not s["diverged"] and s["rung"] == best["rung"]]
        print(f"min loss found: {min(losses)}")
        if swept:
            print(f"best parameters found: {setting_text(best, swept)} (chosen by "
                  f"{result.criterion.replace('_', ' ')})")
        if result.criterion == "val_accuracy":
            print(f"best val accuracy: {best['val_accuracy']:.4f}"
                  + (f" ± {best['val_accuracy_std']:.4f} over {seeds} seeds" if seeds > 1 else ""))
        if swept:
            print(f"retrain the best setting alone: jaxnet train --config {out / 'best.json'}")
    print(f"{len(result.settings)} settings, {n_div} diverged (flagged, never chosen); "
          f"compile {result.compile_seconds:.2f} s, run {result.run_seconds:.2f} s"
          + (" (first layer trained in the span of the inputs)" if result.in_span else "")
          + f"; outputs in {out}")


def setting_text(setting: dict, names) -> str:
    """"lr=0.001, reg=0.0": a setting's values as they were swept (shortest exact repr)."""
    return ", ".join(f"{name}={value_text(name, setting[name])}" for name in names)


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def print_rungs(result):
    """One line per rung of successive halving, then the compute it took."""
    what = "val accuracy" if result.criterion == "val_accuracy" else "final loss"
    for k, rung in enumerate(result.rungs):
        scores = [v for v in rung["scores"] if v is not None]
        n_div = len(rung["scores"]) - len(scores)
        pick = max if result.criterion == "val_accuracy" else min
        n = len(rung["settings"])
        line = (f"rung {k}: {n} setting{'' if n == 1 else 's'} trained {_epochs(rung['epochs'])}; "
                f"best {what} " + (f"{pick(scores):.4f}" if scores else "n/a (all diverged)"))
        if n_div:
            line += f", {n_div} diverged"
        if rung["kept"]:
            line += f"; the best {len(rung['kept'])} go on"
        print(line)
    full = len(result.runs) * result.epochs
    print(f"epochs trained: {result.epochs_spent} of the full sweep's {full} "
          f"({100 * result.epochs_spent / full:.0f}%)")


def best_file(result, config) -> dict:
    """best.json: the criterion, the best setting's row, and "config", the whole TrainConfig
    of that setting (the sweep's config with its swept values), which `jaxnet train --config
    best.json` trains alone (its seed: the sweep's first). No best: "config" is None."""
    best = result.best
    values = None
    if best is not None:
        swept = {k: best[k] for k in _swept(result)}
        values = dataclasses.replace(config, **swept).to_dict()
    return {"criterion": result.criterion, "best": best, "config": values}


def _log_scale(rows, axis) -> bool:
    """Log axes for positive values spanning at least a decade (a 0 in reg would vanish)."""
    values = [r[axis] for r in rows]
    return (axis in LOG_AXES and all(v > 0 for v in values)
            and max(values) >= 10 * min(values))


def write_outputs(out, result, config, *, top=8, mode="grid"):
    """results.json, results.csv, best.json and the plots; `mode` is how the settings were
    made ("zip" settings vary together, so they are plotted along the first axis)."""
    from jaxnet import plots
    from jaxnet.checkpoint import jsonable, write_json

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json",
               {"config": config.to_dict(), "criterion": result.criterion,
                "compile_seconds": result.compile_seconds, "run_seconds": result.run_seconds,
                "epochs_spent": result.epochs_spent, "in_span": result.in_span,
                "rungs": result.rungs, "settings": result.settings, "runs": result.runs})
    write_json(out / "best.json", best_file(result, config))
    fields = list(dict.fromkeys(k for r in result.runs for k in r))
    if "hidden" in fields:  # the depth beside the widths, as --layers counts it
        fields.insert(fields.index("hidden") + 1, "layers")
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for run, r in zip(result.runs, jsonable(result.runs), strict=True):
            if "hidden" in run:
                r.update(hidden=hidden_text(run["hidden"]), layers=len(run["hidden"]) + 1)
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    swept = _swept(result)
    metric = "val_accuracy" if result.criterion == "val_accuracy" else "final_loss"
    rows = [dict(s) for s in result.settings]
    if "hidden" in swept:
        plots.sweep_widths(rows, [a for a in swept if a != "hidden"], metric, out / "sweep.png")
    elif len(swept) == 1 or (swept and mode == "zip"):
        plots.sweep_line(rows, swept, metric, out / "sweep.png",
                         log_x=_log_scale(rows, swept[0]))
    elif len(swept) >= 2:
        plots.sweep_scatter(rows, swept[0], swept[1], metric, out / "sweep.png",
                            log_x=_log_scale(rows, swept[0]), log_y=_log_scale(rows, swept[1]))
    if len(result.rungs) > 1:
        plots.sweep_rungs(result.rungs, metric, out / "rungs.png")
    order = [i for i, r in enumerate(result.runs) if not r["diverged"]]
    # Longest-trained first (successive halving), then by the criterion.
    if metric == "val_accuracy":
        order.sort(key=lambda i: (-result.runs[i]["rung"], -result.runs[i]["val_accuracy"],
                                  result.runs[i]["final_loss"]))
    else:
        order.sort(key=lambda i: (-result.runs[i]["rung"], result.runs[i]["final_loss"]))
    curves = {}
    for i in order[:top]:
        label = ", ".join(f"{k}={hidden_text(result.runs[i][k])}" if k == "hidden"
                          else f"{k}={result.runs[i][k]:.3g}" for k in [*swept, "seed"])
        curve = result.loss_curves[i]  # NaN after the epochs a run trained (halving)
        steps = len(curve) * result.runs[i]["epochs_trained"] // result.epochs
        curves[label if label not in curves else f"{label} (run {i})"] = curve[:steps]
    if curves:
        plots.loss_curves(curves, out / "loss_curves.png")
