"""Flags shared by the commands, and turning them into a TrainConfig."""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
import time
import warnings

from jaxnet import config as cfg
from jaxnet.constants import DEFAULT_EPOCHS, INIT_METHODS, SWEEPABLE
from jaxnet.errors import JaxnetError, UsageError, render

DEFAULT_LAYERS = len(cfg.default("hidden")) + 1
DEFAULT_HIDDEN = cfg.default("hidden")[0]
RUN_MARKERS = ("checkpoint.safetensors", "checkpoint.npz", "metrics.json", "results.json")
# Library names whose flag is named otherwise (the rest: `lr` is --lr, `batch_size` --batch-size).
FLAG_DESTS = {"data_path": "data", "out_dir": "out"}


class Parser(argparse.ArgumentParser):
    """argparse, with mistakes raised as UsageError (one line, exit 2)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def flag(name: str) -> str:
    """The flag of a setting: `batch_size` -> --batch-size."""
    return "--" + FLAG_DESTS.get(name, name).replace("_", "-")


def in_flags(message: str | JaxnetError, args=None) -> str:
    """A library message with the settings it names written as the flags of the command run.

    The library names settings (`lr=0.0`, see JaxnetError); a user of the command sees its
    flags (--lr 0.0). A setting the command has no flag for keeps its name; without parsed
    `args` (a mistake in the command line itself) every name is kept.
    """
    def flag_of(name):
        has_flag = args is not None and hasattr(args, FLAG_DESTS.get(name, name))
        return flag(name) if has_flag else None
    text = message.template if isinstance(message, JaxnetError) else message
    return render(text, flag_of)


@contextlib.contextmanager
def notes_to_stderr(quiet: bool = False, skip: tuple[type, ...] = ()):
    """Prints the library's DataNote warnings (columns or rows left out, unseen values)
    raised in the block on stderr, once each (unless `quiet`), instead of as Python warnings."""
    from jaxnet.data.columns import DataNote

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataNote)
        yield
    notes = [w for w in caught if issubclass(w.category, DataNote)]
    for note in dict.fromkeys(str(w.message) for w in notes if not issubclass(w.category, skip)):
        if not quiet:  # the settings a note names are flags here
            print(f"note: {render(note, flag)}", file=sys.stderr)
    for w in caught:  # any other warning goes on as it would have
        if w not in notes:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def name_list(text):
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected column names like a,b,c, got {text!r}")
    return tuple(names)


def hidden_list(text):
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size like 100 or a list like 256,128,64, got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def _field(group, field, text, *, sweep=False, **kwargs):
    """Adds `--field-name` for a TrainConfig field; its help quotes the config's default."""
    default = cfg.default(field)
    if sweep and field in SWEEPABLE:  # takes "V", "V1,V2" or "LO:HI"
        kwargs.update(type=str, metavar="VALUES")
    shown = "" if default in (None, ()) or isinstance(default, bool) else f" (default {default:g})" \
        if isinstance(default, float) else f" (default {default})"
    group.add_argument(flag(field), dest=field, help=text + shown, **kwargs)


def add_network_flags(p, *, sweep=False):
    g = p.add_argument_group("network")
    if sweep:  # lists of settings, as every swept flag takes (jaxnet.cli.sweep.architectures)
        g.add_argument("--layers", metavar="L[,L...]", help="total layers L, as in the "
                       f"notebook (default {DEFAULT_LAYERS}); a list L1,L2 sweeps the depth")
        g.add_argument("--hidden", metavar="W[,W...]", help="width of every hidden layer "
                       f"(default {DEFAULT_HIDDEN}); a list W1,W2 sweeps the width; one "
                       "architecture layer by layer is written 256x128")
    else:
        g.add_argument("--layers", type=positive_int,
                       help=f"total layers L, as in the notebook (default {DEFAULT_LAYERS})")
        g.add_argument("--hidden", type=hidden_list, help="width of every hidden layer, or a "
                       f"comma list of L-1 widths (default {DEFAULT_HIDDEN})")
    _field(g, "init", "weight init: normal = weight_scale * randn, he = sqrt(2/fan_in) * randn",
           choices=INIT_METHODS)
    _field(g, "weight_scale", "std of the normal init", type=number, sweep=sweep)
    _field(g, "dropout", "drop probability after each hidden ReLU", type=number, sweep=sweep)
    _field(g, "reg", "L2 strength", type=number, sweep=sweep)
    _field(g, "class_weight", "balanced: weight the training loss by inverse class frequency, "
           "n / (C * count) in the training split; the losses and accuracies reported are "
           "weighted alike",
           choices=cfg.CLASS_WEIGHTS)


def add_optimizer_flags(p, *, sweep=False):
    g = p.add_argument_group("optimizer")
    _field(g, "optimizer", "Optax optimizer", choices=cfg.OPTIMIZERS)
    _field(g, "lr", "learning rate", type=number, sweep=sweep)
    _field(g, "lr_schedule", "learning-rate schedule", choices=cfg.SCHEDULES)
    _field(g, "lr_decay", "per-epoch factor of the step schedule", type=number)
    _field(g, "momentum", "SGD momentum", type=number, sweep=sweep)
    _field(g, "beta1", "Adam beta1", type=number, sweep=sweep)
    _field(g, "beta2", "Adam beta2", type=number, sweep=sweep)
    _field(g, "eps", "Adam/RMSprop epsilon", type=number)
    _field(g, "rms_decay", "RMSprop decay (CS231n's)", type=number)
    _field(g, "weight_decay", "AdamW weight decay", type=number, sweep=sweep)


def add_run_flags(p, *, sweep=False):
    """--batch-size, --epochs, ...; runs trained together (sweep) share one fixed length."""
    g = p.add_argument_group("run")
    _field(g, "batch_size", "minibatch size", type=positive_int)
    if sweep:
        g.add_argument("--epochs", type=positive_int, help="epochs every run trains, keeping "
                       f"its best epoch by val accuracy (default {DEFAULT_EPOCHS})")
    else:
        _field(g, "epochs", "train exactly this many epochs (default: until the validation "
               "accuracy stops improving, see --max-epochs and --patience)", type=positive_int)
        _field(g, "max_epochs", "the most epochs without --epochs", type=positive_int)
        _field(g, "patience", "stop after this many epochs without a better val accuracy or loss "
               f"(default {cfg.ADAPTIVE_PATIENCE} without --epochs, else off)", type=positive_int)
    _field(g, "grad", "hand-written backward or jax.grad", choices=cfg.GRADS)
    _field(g, "dtype", "precision", choices=cfg.DTYPES)
    _field(g, "seed", "seeds the split, init, shuffles and dropout", type=int)


def add_data_flags(p):
    g = p.add_argument_group("data")
    _field(g, "dataset", "digits is embedded (no download); default: the kind --data's "
           "extension names (.csv, .npz), else digits", choices=cfg.DATASETS)
    g.add_argument("--data", metavar="PATH", help="CIFAR-10 folder, .npz or .csv file (its "
                   "extension selects the dataset when --dataset is not given)")
    _field(g, "target", "the label column of a csv file")
    _field(g, "categorical", "csv columns to one-hot encode whatever they hold (numbers too, "
           "or an identifier-like text column that would be left out)", type=name_list,
           metavar="COL,...")
    _field(g, "drop", "csv columns to leave out", type=name_list, metavar="COL,...")
    _field(g, "impute", "fill missing csv cells with the training median plus a missing "
           "indicator (categories: a (missing) category); --no-impute refuses them (default on)",
           action=argparse.BooleanOptionalAction)
    _field(g, "val_fraction", "validation share when jaxnet splits", type=number)
    _field(g, "test_fraction", "test share when jaxnet splits", type=number)
    _field(g, "standardize", "scale inputs by training mean and std (saved with the run; "
           "default on)", action=argparse.BooleanOptionalAction)


def add_run_dir(p):
    """The RUN_DIR argument of the commands that use a trained run (predict, evaluate, export)."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder of a jaxnet train run")


def add_output_flags(p, *, what="run"):
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help="output folder (default: a new folder under runs/)")
    g.add_argument("--overwrite", action="store_true",
                   help=f"allow --out to name a folder that already holds a {what}")
    g.add_argument("--quiet", action="store_true", help="print only the summary")


def add_device_flags(p, *, what="data-parallel devices"):
    g = p.add_argument_group("devices")
    g.add_argument("--devices", type=positive_int, help=f"{what} (default: all visible)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="multi-host: address of process 0")
    g.add_argument("--num-processes", type=positive_int, help="multi-host: number of processes")
    g.add_argument("--process-id", type=int, help="multi-host: this process's index")


# TrainConfig fields set by a flag of the same name.
CONFIG_FLAGS = ("init", "weight_scale", "dropout", "reg", "optimizer", "lr", "lr_schedule",
                "lr_decay", "momentum", "beta1", "beta2", "eps", "rms_decay", "weight_decay",
                "batch_size", "epochs", "max_epochs", "patience", "grad", "dtype", "seed",
                "dataset", "target", "categorical", "drop", "impute", "val_fraction",
                "test_fraction", "standardize", "class_weight")


def resolve_hidden(layers, hidden) -> tuple[int, ...]:
    """Combines --layers and --hidden into the hidden widths."""
    if hidden is None:
        return (DEFAULT_HIDDEN,) * ((layers or DEFAULT_LAYERS) - 1)
    if layers == 1:
        raise UsageError("--layers 1 is a network without hidden layers, so --hidden has nothing "
                         "to size; drop --hidden or raise --layers")
    if len(hidden) == 1:
        return tuple(hidden) * ((layers or DEFAULT_LAYERS) - 1)
    if layers is not None and len(hidden) != layers - 1:
        raise UsageError(f"--hidden lists {len(hidden)} widths but --layers {layers} needs "
                         f"{layers - 1} (one per hidden layer); fix one of the two")
    return tuple(hidden)


def config_from_args(args, *, hidden=None, **overrides) -> cfg.TrainConfig:
    """A validated TrainConfig from parsed flags: flags not given keep the config's defaults,
    or the values of the `--config` file where one is given."""
    values = {f: getattr(args, f) for f in CONFIG_FLAGS if getattr(args, f, None) is not None}
    values.update(overrides)
    if getattr(args, "data", None) is not None:
        values["data_path"] = args.data
    given = set(values)
    saved = read_config(args.config).to_dict() if getattr(args, "config", None) else {}
    if hidden is None and saved and args.layers is None and args.hidden is None:
        hidden = tuple(saved["hidden"])
    values["hidden"] = hidden if hidden is not None else resolve_hidden(args.layers, args.hidden)
    values = {**saved, **values}
    cfg.check_unused(values.get("init", cfg.default("init")), given)
    setup_jax(values.get("dtype", cfg.default("dtype")))
    return cfg.TrainConfig.from_dict(values).validate()


def read_config(path) -> cfg.TrainConfig:
    """The TrainConfig saved in the JSON file `path`: under "config" (a sweep's best.json,
    results.json, a run's metrics.json) or the whole file."""
    import json

    try:
        with open(path) as f:
            saved = json.load(f)
    except OSError as err:
        raise UsageError(f"--config {path}: cannot read it ({err.strerror}); pass a sweep's "
                         "best.json or a run's metrics.json") from None
    except ValueError as err:
        raise UsageError(f"--config {path}: not JSON ({err}); pass a sweep's best.json") from None
    values = saved.get("config", saved) if isinstance(saved, dict) else None
    if not isinstance(values, dict) or "hidden" not in values:
        raise UsageError(f"--config {path} holds no jaxnet config (no \"config\" with "
                         "\"hidden\"); pass a sweep's best.json or a run's metrics.json"
                         + (" (this sweep had no best setting: every one diverged)"
                            if isinstance(saved, dict) and saved.get("config", 0) is None
                            else ""))
    try:
        return cfg.TrainConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise UsageError(f"--config {path}: its config cannot be used ({err})") from None


def load_data(config, *, quiet: bool = False):
    """The data `config` names, its notes (columns or rows left out) on stderr and, for a
    table, the kind of each column, once."""
    from jaxnet import fitting
    from jaxnet.data.table import LeftOutColumnsNote

    with notes_to_stderr(quiet, skip=(LeftOutColumnsNote,)):  # the summary names them
        data = fitting.load_data(config)
    if data.table is not None and not quiet:
        print(render(data.table.summary(), flag), file=sys.stderr)
    return data


def setup_jax(dtype):
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)


def writes_outputs(args) -> bool:
    """Whether this process writes the command's outputs, as far as the flags tell before
    jax.distributed starts: one process, or --process-id 0. (With a cluster's variables,
    JAX_COORDINATOR_ADDRESS, the index is known only later.)"""
    import os

    if args.coordinator is None and os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return False
    return args.process_id in (None, 0)


def new_run_dir(kind="train") -> pathlib.Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = pathlib.Path("runs") / f"{kind}-{stamp}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def output_dir(args, kind: str) -> pathlib.Path:
    """--out (refused when it holds a run, unless --overwrite) or a new folder under runs/."""
    if not args.out:
        return new_run_dir(kind)
    out = pathlib.Path(args.out)
    found = [name for name in RUN_MARKERS if (out / name).exists()]
    if found and not args.overwrite:
        resume = f"continue it with --resume {out}, " if kind == "train" else ""
        raise UsageError(f"--out {out} already holds a run ({', '.join(found)}); {resume}choose "
                         "a new folder, or pass --overwrite to replace it")
    return out


def progress_bar(total, *, unit, quiet):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True)


class EpochProgress:
    """Where `jaxnet train` is, on stderr, in the form that fits where stderr goes.

    On a terminal, a bar: with `epochs` known its count of them; for a run that trains until
    no improvement, no total (nothing knows when it will stop), but the epochs so far, the
    best epoch, the patience left and the time per epoch after the first (which compiles).
    To a file or a pipe, one plain line per epoch, e.g.
    `epoch 12: train loss 0.3100, val acc 0.9620 (best 0.9670 at epoch 9, patience 7 left), 0.4 s`.
    Nothing when `quiet`.

    Args:
      epochs: the run's fixed length, or None (until no improvement).
      patience: epochs without improvement that stop the run, or None.
      done: epochs already run (a resumed run).
      quiet: print nothing.
      stream: where to write (default sys.stderr).
    """

    def __init__(self, *, epochs, patience, done=0, quiet=False, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.patience, self.calls = patience, 0
        self.bar = None
        self.lines = not quiet and not self.stream.isatty()
        if not quiet and not self.lines:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs, initial=done, unit="epoch", file=self.stream,
                            dynamic_ncols=True)

    def update(self, report: dict) -> None:
        """`report`: what `fitting.fit` gives its `on_epoch` (the epoch's row and more)."""
        self.calls += 1
        if self.lines:
            print(self.line(report, compiled=self.calls == 1), file=self.stream, flush=True)
        elif self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(self._postfix(report), refresh=True)

    def line(self, report: dict, *, compiled: bool = False) -> str:
        """The plain line for one epoch; `compiled`: its time includes compilation."""
        parts = [f"train loss {report['loss']:.4f}"]
        best, left = report["best_epoch"], self._left(report)
        if report.get("val_accuracy") is not None:
            notes = [f"best {report['best_val_accuracy']:.4f} at epoch {best}"]
            notes += [f"patience {left} left"] if left is not None else []
            parts.append(f"val acc {report['val_accuracy']:.4f} ({', '.join(notes)})")
        else:
            parts.append(f"train acc {report['train_accuracy']:.4f}")
        seconds = _duration(report["seconds"]) + (" with compilation" if compiled else "")
        return f"epoch {report['epoch']}: {', '.join(parts)}, {seconds}"

    def _left(self, report):
        return None if self.patience is None else self.patience - report["stale_epochs"]

    def _postfix(self, report) -> dict:
        postfix = {"loss": f"{report['loss']:.4f}"}
        if report.get("val_accuracy") is not None:
            postfix["val acc"] = f"{report['val_accuracy']:.4f}"
            postfix["best"] = f"{report['best_val_accuracy']:.4f} @ {report['best_epoch']}"
        if self._left(report) is not None:
            postfix["patience left"] = self._left(report)
        postfix["epoch time"] = (_duration(report["seconds"])
                                 + (" with compilation" if self.calls == 1 else ""))
        return postfix

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 0.1 else f"{1000 * seconds:.0f} ms"
