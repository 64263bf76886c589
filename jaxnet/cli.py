"""The `jaxnet` command: `jaxnet train` and `jaxnet sweep`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

DEFAULT_LAYERS, DEFAULT_HIDDEN = 5, 100


class CliError(Exception):
    """A user mistake: printed as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError(f"{self.prog}: {message} (see {self.prog} --help)")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _hidden_list(text):
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size like 100 or a list like 256,128,64, got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def add_model_and_data_flags(p: argparse.ArgumentParser):
    """Flags shared by `train` and `sweep`: architecture, data, optimizer, run."""
    from jaxnet import optim
    from jaxnet.data import DATASETS

    g = p.add_argument_group("network")
    g.add_argument("--layers", type=_positive_int, help=f"total layers L, as in the notebook (default {DEFAULT_LAYERS})")
    g.add_argument("--hidden", type=_hidden_list, help=f"width of every hidden layer, or a comma list of L-1 widths (default {DEFAULT_HIDDEN})")
    g.add_argument("--init", choices=("normal", "he"), help="weight init: normal = weight_scale * randn (default), he = sqrt(2/fan_in) * randn")
    g.add_argument("--dropout", type=float, help="drop probability after each hidden ReLU (default 0.2)")
    g.add_argument("--reg", type=float, help="L2 strength (default 1e-4)")
    g = p.add_argument_group("optimizer")
    g.add_argument("--optimizer", choices=optim.OPTIMIZERS, help="default adam")
    g.add_argument("--lr", help="learning rate (default 1e-3)")
    g.add_argument("--lr-schedule", choices=optim.SCHEDULES, help="default constant")
    g.add_argument("--lr-decay", type=float, help="per-epoch factor of the step schedule (default 0.95)")
    g.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    g.add_argument("--beta1", type=float, help="Adam beta1 (default 0.9)")
    g.add_argument("--beta2", type=float, help="Adam beta2 (default 0.999)")
    g.add_argument("--eps", type=float, help="Adam/RMSprop epsilon (default 1e-8)")
    g.add_argument("--rms-decay", type=float, help="RMSprop decay (default 0.99, CS231n's)")
    g.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 1e-4)")
    g = p.add_argument_group("run")
    g.add_argument("--batch-size", type=_positive_int, help="minibatch size (default 64)")
    g.add_argument("--epochs", type=_positive_int, help="default 30")
    g.add_argument("--patience", type=_positive_int, help="early stopping after this many epochs without a better val accuracy")
    g.add_argument("--grad", choices=("manual", "autodiff"), help="hand-written backward (default) or jax.grad")
    g.add_argument("--dtype", choices=("float32", "float64"), help="default float32")
    g.add_argument("--seed", type=int, help="default 0")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, help="default digits (embedded, no download)")
    g.add_argument("--data", metavar="PATH", help="CIFAR-10 folder or .npz file")
    g.add_argument("--val-fraction", type=float, help="validation share when jaxnet splits (default 0.1)")
    g.add_argument("--test-fraction", type=float, help="test share when jaxnet splits (default 0.2)")
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help="output folder (default: a new folder under runs/)")
    g.add_argument("--quiet", action="store_true", help="print only the summary")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxnet", description="N-layer MLPs in JAX: train, sweep.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    train = sub.add_parser("train", help="train one network (defaults: the notebook's 5 x 100 net on digits)")
    add_model_and_data_flags(train)
    train.add_argument("--weight-scale", type=float, help="std of the normal init (default 5e-2; --init normal only)")
    train.add_argument("--interactive", action="store_true", help="ask for the layers like the notebook")
    train.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
    train.add_argument("--seeds", type=_positive_int, help="train K seeds at once (vmapped) and report mean and std")
    add_device_flags(train)
    from jaxnet.sweep_cli import add_sweep_parser
    add_sweep_parser(sub)
    return parser


def add_device_flags(p: argparse.ArgumentParser):
    g = p.add_argument_group("devices")
    g.add_argument("--devices", type=_positive_int, help="data-parallel devices (default: all visible)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="multi-host: address of process 0")
    g.add_argument("--num-processes", type=_positive_int, help="multi-host: number of processes")
    g.add_argument("--process-id", type=int, help="multi-host: this process's index")


def ask_architecture(read=None, write=None) -> tuple[int, list[int]]:
    """The notebook's questions, with defaults that Enter accepts; re-asks on bad answers.

    `read` defaults to `input` (looked up at call time), `write` to printing on stderr.
    """
    read = read or input
    write = write or (lambda text: print(text, file=sys.stderr))

    def ask(question, default):
        while True:
            try:
                answer = read(f"{question} [{default}] ").strip()
            except EOFError:
                raise CliError(f"--interactive: input ended before answering {question!r}; "
                               "answer each question or drop --interactive") from None
            if not answer:
                return default
            try:
                value = int(answer)
            except ValueError:
                write(f"  {answer!r} is not a whole number; enter a positive integer like {default}")
                continue
            if value <= 0:
                write(f"  {value} is not positive; enter a positive integer like {default}")
                continue
            return value

    layers = ask("how many layers do you want in your network?", DEFAULT_LAYERS)
    hidden = [ask(f"size of layer {i}?", DEFAULT_HIDDEN) for i in range(1, layers)]
    return layers, hidden


def resolve_hidden(layers, hidden) -> tuple[int, ...]:
    """Combines --layers and --hidden into the hidden widths."""
    if hidden is None:
        return (DEFAULT_HIDDEN,) * ((layers or DEFAULT_LAYERS) - 1)
    if layers == 1:
        raise CliError("--layers 1 is a network without hidden layers, so --hidden has nothing "
                       "to size; drop --hidden or raise --layers")
    if len(hidden) == 1 and layers is not None:
        return tuple(hidden) * (layers - 1)
    if len(hidden) == 1 and layers is None:
        return tuple(hidden) * (DEFAULT_LAYERS - 1)
    if layers is not None and len(hidden) != layers - 1:
        raise CliError(f"--hidden lists {len(hidden)} widths but --layers {layers} needs "
                       f"{layers - 1} (one per hidden layer); fix one of the two")
    return tuple(hidden)


_FLAG_FIELDS = ("init", "weight_scale", "dropout", "reg", "optimizer", "lr", "lr_schedule", "lr_decay",
                "momentum", "beta1", "beta2", "eps", "rms_decay", "weight_decay", "batch_size",
                "epochs", "patience", "grad", "dtype", "seed", "dataset", "val_fraction",
                "test_fraction")


def config_from_args(args, *, hidden=None, **overrides):
    """A TrainConfig from parsed flags: flags not given keep the config's defaults."""
    from jaxnet.train import TrainConfig

    values = {f: getattr(args, f) for f in _FLAG_FIELDS if getattr(args, f, None) is not None}
    values.update(overrides)
    if "lr" in values:
        values["lr"] = _float(values["lr"], "--lr")
    if args.data is not None:
        values["data_path"] = args.data
    values["hidden"] = hidden if hidden is not None else resolve_hidden(args.layers, args.hidden)
    if values.get("init") == "he" and "weight_scale" in values:
        raise CliError("--init he draws sqrt(2/fan_in) * randn and ignores --weight-scale; "
                       "drop one of the two")
    try:
        return TrainConfig(**values).validate()
    except ValueError as err:
        raise CliError(f"{err}") from None


def _float(text, flag):
    try:
        return float(text)
    except (TypeError, ValueError):
        raise CliError(f"{flag} expects a number, got {text!r}") from None


def setup_jax(dtype):
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)


def new_run_dir(kind="train") -> pathlib.Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = pathlib.Path("runs") / f"{kind}-{stamp}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def write_json(path, obj):
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    tmp.replace(path)


def run_train(args) -> int:
    from jaxnet import checkpoint as ckpt
    from jaxnet import distributed

    hidden = None
    if args.resume:
        _check_resume_flags(args)
    if args.interactive:
        if args.layers or args.hidden:
            raise CliError("--interactive asks for the layers itself: drop --layers/--hidden, "
                           "or drop --interactive")
        _layers, hidden_sizes = ask_architecture()
        hidden = tuple(hidden_sizes)
    if args.resume:
        out = pathlib.Path(args.resume)
        if not out.is_dir():
            raise CliError(f"--resume {args.resume}: no such folder; pass the output folder of "
                           "an earlier jaxnet train run (it holds checkpoint.npz)")
        meta = ckpt.load_metadata(out)
        if not isinstance(meta.get("config"), dict):
            raise CliError(f"--resume {args.resume}: the checkpoint there is not from jaxnet "
                           "train (it has no saved config); pass a training run's folder")
        from jaxnet.train import TrainConfig
        saved = TrainConfig.from_dict(meta["config"])
        if args.epochs is not None:
            saved = dataclasses.replace(saved, epochs=args.epochs)
        setup_jax(saved.dtype)
        from jaxnet.train import _check_resumable
        config = saved.validate()
        _check_resumable(config, meta, out)  # e.g. --epochs below the epochs already run
    else:
        setup_jax(args.dtype)
        config = config_from_args(args, hidden=hidden)
        out = pathlib.Path(args.out) if args.out else new_run_dir("train")
    env = distributed.setup(args.coordinator, args.num_processes, args.process_id, args.devices,
                            batch_size=config.batch_size)
    from jaxnet.train import fit, load_data

    data = load_data(config)
    lead = env.is_lead
    if lead:
        out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.seeds:
        from jaxnet.sweep import train_seeds
        metrics = train_seeds(config, data, args.seeds, progress=not args.quiet and lead)
        metrics["wall_seconds"] = time.perf_counter() - started
        if lead:
            write_json(out / "metrics.json", metrics)
            print(f"{args.seeds} seeds of {config.hidden} on {config.dataset}: test accuracy "
                  f"{_pm(metrics, 'test_accuracy')}, val accuracy {_pm(metrics, 'val_accuracy')}; "
                  f"{metrics['wall_seconds']:.1f} s; outputs in {out}")
        return 0
    if lead and not args.quiet:
        from jaxnet.train import dims_for
        what = "resuming" if args.resume else "training"
        print(f"{what} {dims_for(config, data)} on {data.summary()}; {config.epochs} epochs of "
              f"{config.optimizer} (lr {config.lr:g}, {config.lr_schedule}), batch "
              f"{config.batch_size}, {config.dtype}, {env.num_devices} device(s); outputs in {out}",
              file=sys.stderr)
    bar = _progress(config.epochs, quiet=args.quiet or not lead)
    if args.resume:
        bar.update(len(ckpt.load_metadata(out)["history"]))

    def on_epoch(row):
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k in ("loss", "train_accuracy", "val_accuracy")})

    try:
        result = fit(config, data, out_dir=out, resume=bool(args.resume),
                     on_epoch=on_epoch, env=env)
    except KeyboardInterrupt:
        bar.close()
        if (out / ckpt.CHECKPOINT_FILE).is_file():
            print(f"interrupted; continue with: jaxnet train --resume {out}", file=sys.stderr)
        else:
            print("interrupted before the first epoch ended; nothing was saved", file=sys.stderr)
        return 130
    bar.close()
    metrics = result.metrics
    metrics["wall_seconds"] = time.perf_counter() - started
    metrics["devices"] = env.num_devices
    metrics["message"] = result.message
    if lead:
        write_json(out / "metrics.json", metrics)
        if result.history:
            from jaxnet.plots import training_curves
            training_curves(result.history, out / "curves.png")
    if result.message and (result.diverged or not args.quiet):
        print(result.message, file=sys.stderr)
    if lead:
        print(summary_line(metrics, out))
    return 1 if result.diverged else 0


def summary_line(metrics: dict, out) -> str:
    """The one line `jaxnet train` prints at the end, e.g.

    `test accuracy 97.78% | 30 epochs (best 26) | 4.2 s | 116,986 examples/s | outputs in runs/x`
    """
    for split in ("test", "val", "train"):
        if metrics.get(f"{split}_accuracy") is not None:
            acc = f"{split} accuracy {100 * metrics[f'{split}_accuracy']:.2f}%"
            if split != "test":
                acc += " (no test set)"
            break
    else:
        acc = "no accuracy (no data split)"
    n = metrics["epochs_run"]
    parts = [acc, f"{n} epoch{'' if n == 1 else 's'} (best {metrics['best_epoch']})"]
    if metrics.get("diverged"):
        parts.append("diverged")
    parts.append(f"{metrics['wall_seconds']:.1f} s")
    eps = metrics.get("examples_per_second")
    parts.append(f"{eps:,.0f} examples/s" if eps else "examples/s n/a (needs 2+ epochs)")
    parts.append(f"outputs in {out}")
    return " | ".join(parts)


# Flags that would change a resumed run's settings; the checkpoint's saved config wins.
_RESUME_CONFLICTS = (*(f for f in _FLAG_FIELDS if f != "epochs"), "layers", "hidden", "data",
                     "out", "seeds")


def _check_resume_flags(args):
    given = [f for f in _RESUME_CONFLICTS if getattr(args, f, None) is not None]
    given += ["interactive"] if args.interactive else []
    if given:
        flags = ", ".join("--" + f.replace("_", "-") for f in given)
        raise CliError(f"--resume continues with the settings saved in {args.resume}, so {flags} "
                       "cannot be given with it (only --epochs can change); drop them, or start "
                       "a fresh run with --out")


def _pm(metrics, name):
    mean, std = metrics.get(f"{name}_mean"), metrics.get(f"{name}_std")
    return "n/a" if mean is None else f"{mean:.4f} ± {std:.4f}"


def _progress(total, *, quiet):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", disable=quiet or not sys.stderr.isatty(),
                dynamic_ncols=True)


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["train", *(argv or [])])
        if args.command == "train":
            return run_train(args)
        from jaxnet.sweep_cli import run_sweep
        return run_sweep(args)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume DIR where a checkpoint was written", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
