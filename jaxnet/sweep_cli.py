"""The `jaxnet sweep` command: parse ranges, run the vmapped sweep, write results and plots."""

from __future__ import annotations

import csv
import pathlib
import sys

import numpy as np

from jaxnet import cli

PRESETS = ("notebook",)


def add_sweep_parser(sub):
    p = sub.add_parser("sweep", help="train many settings at once (vmapped); --preset notebook reproduces the notebook")
    cli.add_model_and_data_flags(p)
    g = p.add_argument_group("sweep")
    g.add_argument("--preset", choices=PRESETS, help="notebook: 100 zipped (lr, weight_scale) settings, 100 full-batch SGD steps on the N=50 random data")
    g.add_argument("--weight-scale", help="values or range of the init scale (implies --init normal)")
    g.add_argument("--num", type=cli._positive_int, default=5, help="points per LO:HI range in --grid/--zip (default 5)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--grid", action="store_true", help="every combination of the axes (default)")
    mode.add_argument("--zip", action="store_true", help="pair the axes one to one (the notebook's way)")
    mode.add_argument("--random", type=cli._positive_int, metavar="N", help="N log-uniform random settings")
    g.add_argument("--seeds", type=cli._positive_int, default=1, help="seeds per setting, in the same vmapped call")
    g.add_argument("--chunk", type=cli._positive_int, help="runs per compiled call (memory); default all")
    g.add_argument("--top", type=cli._positive_int, default=8, help="loss curves plotted (default 8)")
    # --lr, --reg, --dropout and friends take "V", "V1,V2,..." or "LO:HI" here.
    for action in p._actions:
        if action.dest in ("reg", "dropout", "momentum", "beta1", "beta2", "weight_decay"):
            action.type = None
    return p


def parse_axis(flag: str, text: str, *, log: bool, num: int, mode: str) -> list[float] | tuple[float, float]:
    """"1e-3" -> [1e-3]; "1e-3,1e-2" -> list; "LO:HI" -> num points (log or linear) or bounds."""
    text = str(text)
    try:
        if ":" in text:
            lo_text, hi_text = text.split(":", 1)
            lo, hi = float(lo_text), float(hi_text)
            if lo > hi:
                raise cli.CliError(f"{flag} {text}: the lower bound {lo:g} is above the upper bound {hi:g}; write LO:HI")
            if log and lo <= 0:
                raise cli.CliError(f"{flag} {text}: a log-scale range needs positive bounds, got {lo:g}")
            if mode == "random":
                return (lo, hi)
            return list(np.geomspace(lo, hi, num) if log else np.linspace(lo, hi, num))
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise cli.CliError(f"{flag} expects a number, a list like 1e-3,1e-2 or a range LO:HI, got {text!r}") from None
    if not values:
        raise cli.CliError(f"{flag} {text!r} gives zero settings")
    if log and any(v <= 0 for v in values):
        raise cli.CliError(f"{flag} {text}: values on a log axis must be positive")
    return values


def notebook_preset(args):
    """The notebook's sweep: its data, network, zipped lr x weight_scale and 100 SGD steps."""
    overrides = dict(dataset="random", optimizer="sgd", batch_size=50, epochs=100, dropout=0.0,
                     reg=0.0, init="normal", lr_schedule="constant")
    settings_axes = {"lr": np.geomspace(1e-5, 1e5, 100), "weight_scale": np.linspace(1e-2, 9e-2, 100)}
    return overrides, settings_axes, "zip"


def run_sweep(args) -> int:
    from jaxnet.sweep import LOG_AXES, make_settings, sweep

    cli.setup_jax(args.dtype)
    mode = "zip" if args.zip else "random" if args.random else "grid"
    axes: dict = {}
    overrides: dict = {}
    if args.preset == "notebook":
        overrides, axes, mode = notebook_preset(args)
        for flag in ("epochs", "dtype", "seed"):  # these may still change
            if getattr(args, flag) is not None:
                overrides[flag] = getattr(args, flag)
        args.lr = None
    swept_flags = {"lr": args.lr, "weight_scale": args.weight_scale, "reg": args.reg,
                   "dropout": args.dropout, "momentum": args.momentum, "beta1": args.beta1,
                   "beta2": args.beta2, "weight_decay": args.weight_decay}
    static = {}
    for name, text in swept_flags.items():
        if text is None:
            continue
        values = parse_axis(f"--{name.replace('_', '-')}", text, log=name in LOG_AXES,
                            num=args.num, mode=mode)
        if isinstance(values, list) and len(values) == 1 and mode != "random":
            static[name] = values[0]  # one value: a plain config field, not an axis
        else:
            axes[name] = values
    for name in ("lr", "weight_scale", "reg", "dropout", "momentum", "beta1", "beta2", "weight_decay"):
        setattr(args, name, None)
    if "weight_scale" in axes or "weight_scale" in static:
        overrides.setdefault("init", "normal")
    config = cli.config_from_args(args, **overrides, **static)
    try:
        settings = make_settings(axes, mode, n_random=args.random or 0, seed=config.seed) if axes else [{}]
    except ValueError as err:
        raise cli.CliError(str(err)) from None
    from jaxnet.train import load_data

    data = load_data(config)
    out = pathlib.Path(args.out) if args.out else cli.new_run_dir("sweep")
    n_runs = len(settings) * args.seeds
    if not args.quiet:
        print(f"sweeping {len(settings)} settings x {args.seeds} seed(s) = {n_runs} runs of "
              f"{(data.num_features, *config.hidden, data.num_classes)} on {data.summary()}, "
              f"{config.epochs} epochs of {config.optimizer}, {config.dtype}", file=sys.stderr)
    from tqdm.auto import tqdm

    bar = tqdm(total=None, unit="chunk", disable=args.quiet or not sys.stderr.isatty())

    def on_chunk(done, total):
        bar.total = total
        bar.update(done - bar.n)

    import jax

    mesh = None
    if len(jax.devices()) > 1:
        mesh = jax.make_mesh((len(jax.devices()),), ("settings",),
                             axis_types=(jax.sharding.AxisType.Auto,))
    result = sweep(config, data, settings, seeds=args.seeds, chunk=args.chunk, mesh=mesh,
                   on_chunk=on_chunk)
    bar.close()
    write_outputs(out, result, config, top=args.top)
    print_report(result, out, preset=args.preset)
    return 0


def _fmt(v):
    return "diverged" if v is None else f"{v:.6g}"


def print_report(result, out, *, preset=None):
    swept = [k for k in (result.settings[0] if result.settings else {})
             if k in ("lr", "weight_scale", "reg", "dropout", "momentum", "beta1", "beta2", "weight_decay")]
    n_div = sum(s["diverged"] for s in result.settings)
    if preset == "notebook" or len(result.settings) <= 20:
        for s in result.settings:
            hp = " ".join(f"{k}: {s[k]:.6g}" for k in swept)
            print(f"{hp}  loss: {_fmt(s['final_loss'])}")
    if result.best is None:
        print(f"every one of the {len(result.settings)} settings diverged; lower the learning rates")
    else:
        best = result.best
        losses = [s["final_loss"] for s in result.settings if not s["diverged"]]
        print(f"min loss found: {min(losses)}")
        print(f"best parameters found: {[tuple(best[k] for k in swept)]} ({', '.join(swept)}; chosen by {result.criterion})")
    print(f"{len(result.settings)} settings, {n_div} diverged (flagged, never chosen); "
          f"compile {result.compile_seconds:.2f} s, run {result.run_seconds:.2f} s; outputs in {out}")


def write_outputs(out, result, config, *, top=8):
    """results.json, results.csv, best.json and the plots."""
    from jaxnet import plots

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cli.write_json(out / "results.json", {"config": config.to_dict(), "criterion": result.criterion,
                                         "compile_seconds": result.compile_seconds,
                                         "run_seconds": result.run_seconds,
                                         "settings": result.settings, "runs": result.runs})
    cli.write_json(out / "best.json", {"criterion": result.criterion, "best": result.best})
    fields = list(dict.fromkeys(k for r in result.runs for k in r))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in result.runs:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    swept = [k for k in ("lr", "weight_scale", "reg", "dropout", "momentum", "beta1", "beta2", "weight_decay")
             if result.settings and k in result.settings[0]]
    metric = "val_accuracy" if result.criterion == "val_accuracy" else "final_loss"
    rows = [{**s, metric: s[metric]} for s in result.settings]
    if len(swept) >= 2:
        plots.sweep_scatter(rows, swept[0], swept[1], metric, out / "sweep.png",
                            log_x=swept[0] in ("lr", "reg", "weight_decay", "weight_scale"),
                            log_y=swept[1] in ("lr", "reg", "weight_decay"))
    elif len(swept) == 1:
        for r in rows:
            r["_"] = 0.0
        plots.sweep_scatter(rows, swept[0], "_", metric, out / "sweep.png")
    order = [i for i, r in enumerate(result.runs) if not r["diverged"]]
    key = (lambda i: -result.runs[i]["val_accuracy"]) if metric == "val_accuracy" else (lambda i: result.runs[i]["final_loss"])
    order.sort(key=key)
    curves = {", ".join(f"{k}={result.runs[i][k]:.3g}" for k in [*swept, "seed"]): result.loss_curves[i]
              for i in order[:top]}
    if curves:
        plots.loss_curves(curves, out / "loss_curves.png")
