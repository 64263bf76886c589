"""`jaxnet train`: train one network (or K seeds of it) and write the run's folder."""

from __future__ import annotations

import dataclasses
import pathlib
import sys

from jaxnet.cli import common, interrupt
from jaxnet.errors import UsageError

# Flags that would change a resumed run's settings; the checkpoint's saved config wins.
_RESUME_CONFLICTS = (*(f for f in common.CONFIG_FLAGS if f != "epochs"), "layers", "hidden",
                     "data", "out", "seeds", "overwrite", "config")
# What runs leave in their folder: --overwrite deletes these before the new run writes
# anything, so a folder never mixes two runs (an old checkpoint with new metrics).
_RUN_FILES = (*common.RUN_MARKERS, "curves.png", "evaluation.json", "confusion.png")


def add_parser(subparsers):
    p = subparsers.add_parser("train", help="train one network (defaults: the notebook's "
                              "5 x 100 net on digits)")
    common.add_network_flags(p)
    common.add_optimizer_flags(p)
    common.add_run_flags(p)
    common.add_data_flags(p)
    common.add_output_flags(p)
    p.add_argument("--interactive", action="store_true", help="ask for the layers like the notebook")
    p.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
    p.add_argument("--config", metavar="FILE", help="start from the settings in FILE (a sweep's "
                   "best.json, or any jaxnet JSON with a \"config\"); flags given override them")
    p.add_argument("--seeds", type=common.positive_int,
                   help="train K seeds at once (vmapped) and keep them as one ensemble model "
                   "(mean of the members' probabilities; each member keeps its own best "
                   "epoch); reports the ensemble's accuracy and the members' mean and std")
    p.add_argument("--search", action="store_true", help="pick the hidden layers, lr and "
                   "dropout for a small table by successive halving on the val split, then "
                   "train the winner as this run (jaxnet.search)")
    common.add_device_flags(p)
    p.set_defaults(run=run)


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
                raise UsageError(f"--interactive: input ended before answering {question!r}; "
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

    layers = ask("how many layers do you want in your network?", common.DEFAULT_LAYERS)
    hidden = [ask(f"size of layer {i}?", common.DEFAULT_HIDDEN) for i in range(1, layers)]
    return layers, hidden


def _resumed_config(args):
    from jaxnet import checkpoint as ckpt
    from jaxnet import fitting
    from jaxnet.config import TrainConfig

    # `is`, not `in (None, False)`: `--dropout 0` is 0.0, and 0.0 == False.
    given = [f for f in _RESUME_CONFLICTS
             if getattr(args, f, None) is not None and getattr(args, f) is not False]
    given += ["interactive"] if args.interactive else []
    if given:
        flags = ", ".join("--" + f.replace("_", "-") for f in given)
        raise UsageError(f"--resume continues with the settings saved in {args.resume}, so {flags} "
                         "cannot be given with it (only --epochs can change); drop them, or start "
                         "a fresh run with --out")
    out = pathlib.Path(args.resume)
    if not out.is_dir():
        raise UsageError(f"--resume {args.resume}: no such folder; pass the output folder of "
                         f"an earlier jaxnet train run (it holds {ckpt.CHECKPOINT_FILE})")
    meta = ckpt.load_metadata(out)
    if not isinstance(meta.get("config"), dict):
        raise UsageError(f"--resume {args.resume}: the checkpoint there is not from jaxnet "
                         "train (it has no saved config); pass a training run's folder")
    saved = TrainConfig.from_dict(meta["config"])
    if args.epochs is not None:
        saved = dataclasses.replace(saved, epochs=args.epochs)
    common.setup_jax(saved.dtype)
    fitting.check_resumable(saved.validate(), meta, out)  # e.g. --epochs below the epochs run
    return saved, out, len(meta["history"])


def run(args) -> int:
    """Trains, holding the output folder (jaxnet.runlock) from the start to the end of the
    command, so that a second train, --resume or sweep into it is refused at once."""
    try:
        from jaxnet import runlock

        if not (args.resume or args.out):
            args.out = str(common.new_run_dir("train"))
        if not common.writes_outputs(args):
            status = _run(args)
        else:
            with runlock.hold(args.resume or args.out, "jaxnet train", create=not args.resume):
                status = _run(args)
        interrupt.check()  # a signal Python could not raise where it landed
        return status
    except KeyboardInterrupt as err:
        print(_interrupted(err, args.resume or args.out), file=sys.stderr)
        return interrupt.exit_status(err)


def _run(args) -> int:
    from jaxnet import distributed, fitting

    done, hidden = 0, None
    if args.search:
        return _run_search(args)
    if args.resume:
        config, out, done = _resumed_config(args)
    else:
        if args.interactive:
            if args.layers or args.hidden:
                raise UsageError("--interactive asks for the layers itself: drop --layers/--hidden, "
                                 "or drop --interactive")
            hidden = tuple(ask_architecture()[1])
        config = common.config_from_args(args, hidden=hidden)
        out = common.output_dir(args, "train")
    if args.seeds:
        return _run_seeds(args, config, out)
    env = distributed.setup(args.coordinator, args.num_processes, args.process_id, args.devices,
                            batch_size=config.batch_size)
    data = common.load_data(config, quiet=args.quiet or not env.is_lead)
    interrupt.check()
    lead = env.is_lead
    if args.overwrite and lead:
        _clear_run(out)
    if lead and not args.quiet:
        what = f"resuming from epoch {done}:" if args.resume else "training"
        length = (_epochs(config.epochs) if config.epochs else
                  f"until no improvement (up to {_epochs(config.max_epochs)})")
        print(f"{what} {(data.num_features, *config.hidden, data.num_classes)} on "
              f"{data.summary()}; {length} of {config.optimizer} (lr {config.lr:g}, "
              f"{config.lr_schedule}), batch {config.batch_size}, {config.dtype}, "
              f"{env.num_devices} device(s); outputs in {out}", file=sys.stderr)
    progress = common.EpochProgress(epochs=config.epochs, patience=config.stop_patience,
                                    done=done, quiet=args.quiet or not lead)

    def on_epoch(report):
        progress.update(report)
        interrupt.check()  # the epoch is saved: a safe point to stop

    try:
        result = fitting.fit(config, data, out_dir=out, resume=bool(args.resume),
                             on_epoch=on_epoch, env=env)
    finally:
        progress.close()
    if result.message and (result.diverged or not args.quiet):
        print(common.in_flags(result.message, args), file=sys.stderr)
    if lead:
        print(summary_line(result.metrics, out))
    return 1 if result.diverged else 0


def _interrupted(err, out) -> str:
    """The one line for a run stopped by a signal: the epoch its folder `out` holds, and how
    to go on, or that nothing was saved."""
    what = interrupt.what(err)
    if out is None or not (pathlib.Path(out) / common.RUN_MARKERS[0]).is_file():  # checkpoint.safetensors; no JAX import
        return f"{what} before the first epoch ended; nothing was saved"
    from jaxnet import checkpoint as ckpt

    try:
        saved = f"epoch {int(ckpt.load_metadata(out)['epoch'])} is saved in {out}"
    except (ckpt.CheckpointError, KeyError, TypeError, ValueError):
        saved = f"{out} holds the last complete epoch"
    return f"{what}; {saved}; continue with: jaxnet train --resume {out}"


def _run_seeds(args, config, out) -> int:
    from jaxnet import fitting
    from jaxnet.sweep import DEFAULT_EPOCHS

    given = [f"--{f.replace('_', '-')}" for f in ("devices", "coordinator", "num_processes",
                                                  "process_id") if getattr(args, f) is not None]
    if given:
        raise UsageError(f"--seeds trains its seeds in one vmapped call on one device, so "
                         f"{', '.join(given)} cannot be given with it; drop them (or use "
                         "jaxnet sweep --seeds K, which shards runs over devices)")
    if args.max_epochs is not None:  # the library ignores it with seeds, as with --epochs
        raise UsageError("--max-epochs belongs to training until no improvement, but --seeds "
                         f"trains every seed for the same --epochs (default {DEFAULT_EPOCHS}; "
                         "each keeps its best epoch by val accuracy); drop --max-epochs, or "
                         "train seeds one by one")
    fitting.check_seeds(config, args.seeds)  # before loading the data
    data = common.load_data(config, quiet=args.quiet)
    interrupt.check()
    if args.overwrite:
        _clear_run(out)
    metrics = fitting.fit_seeds(config, args.seeds, data, out_dir=out)
    epochs = metrics["config"]["epochs"]
    print(f"{args.seeds} seeds of {config.hidden} on {config.dataset}, {_epochs(epochs)} each: "
          f"test accuracy {_pm(metrics, 'test_accuracy')}, val accuracy "
          f"{_pm(metrics, 'val_accuracy')}; {metrics['wall_seconds']:.1f} s; outputs in {out}")
    ens = metrics["ensemble"]
    if ens["diverged_seeds"]:
        print(f"seed(s) {', '.join(map(str, ens['diverged_seeds']))} diverged, so no ensemble "
              f"was saved (metrics.json only); lower --lr (now {config.lr:g})", file=sys.stderr)
        return 1
    scored = next((s for s in ("test", "val", "train") if ens[f"{s}_accuracy"] is not None))
    plain = " (unweighted)" if config.class_weight is not None else ""
    print(f"ensemble of {args.seeds} (mean of their probabilities): {scored} accuracy{plain} "
          f"{ens[f'{scored}_accuracy']:.4f}; best epochs {ens['best_epochs']}; saved as one "
          f"model: jaxnet predict/evaluate/export {out}")
    return 0


# What --search chooses or cannot honour: refused with it rather than ignored.
_SEARCH_CONFLICTS = ("hidden", "layers", "lr", "dropout", "interactive", "resume", "seeds",
                     "devices", "coordinator", "num_processes", "process_id")


def _run_search(args) -> int:
    from jaxnet import search

    given = [common.flag(f) for f in _SEARCH_CONFLICTS  # `is`: --dropout 0 is given
             if getattr(args, f, None) is not None and getattr(args, f, None) is not False]
    if given:
        raise UsageError(f"--search chooses the hidden layers, --lr and --dropout itself and "
                         f"trains its candidates together on one device, then the winner, so "
                         f"{', '.join(given)} cannot be given with it; drop them, or drop --search")
    config = common.config_from_args(args)
    search.check_search(config)
    out = common.output_dir(args, "train")
    data = common.load_data(config, quiet=args.quiet)
    interrupt.check()
    if args.overwrite:
        _clear_run(out)
    n = len(search.candidates())
    if not args.quiet:
        print(f"searching {n} candidates ({' x '.join(search.SEARCHED)}) on {data.summary()} "
              f"by successive halving (ETA {search.HALVING}) on the val split, then training "
              f"the winner; outputs in {out}", file=sys.stderr)
    progress = common.EpochProgress(epochs=config.epochs, patience=config.stop_patience,
                                    quiet=args.quiet)

    def on_epoch(report):
        progress.update(report)
        interrupt.check()

    try:
        found = search.search(config, data, out_dir=out, on_epoch=on_epoch)
    finally:
        progress.close()
    chosen = found.chosen
    best = next(r for r in found.table if all(r[k] == v for k, v in chosen.items()))
    print(f"search: {len(found.table)} candidates, {found.rungs} rungs up to "
          f"{_epochs(found.epochs)}, {found.programs} compiled "
          f"program{'s' if found.programs != 1 else ''}, {found.search_seconds:.1f} s; chosen: "
          f"--hidden {','.join(map(str, chosen['hidden']))} --lr {chosen['lr']:g} "
          f"--dropout {chosen['dropout']:g} (val accuracy {100 * best['val_accuracy']:.2f}%)")
    result = found.fit
    if result.message and (result.diverged or not args.quiet):
        print(common.in_flags(result.message, args), file=sys.stderr)
    print(summary_line(result.metrics, out))
    return 1 if result.diverged else 0


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def _clear_run(out):
    for name in _RUN_FILES:
        (pathlib.Path(out) / name).unlink(missing_ok=True)


def _pm(metrics, name):
    mean, std = metrics.get(f"{name}_mean"), metrics.get(f"{name}_std")
    return "n/a" if mean is None else f"{mean:.4f} ± {std:.4f}"


def summary_line(metrics: dict, out) -> str:
    """The one line `jaxnet train` prints at the end, e.g.

    `test accuracy 97.78% | 30 epochs (best 26) | 4.2 s | 116,986 examples/s | outputs in runs/x`
    """
    for split in ("test", "val", "train"):
        if metrics.get(f"{split}_accuracy") is not None:
            acc = f"{split} accuracy {100 * metrics[f'{split}_accuracy']:.2f}%"
            if split != "test":
                acc += " (no test set)"
            if metrics.get("class_weights"):
                acc += " (class-weighted)"
            break
    else:
        acc = "no accuracy" if metrics.get("diverged") else "no accuracy (no data split)"
    n = metrics["epochs_run"]
    parts = [acc, f"{n} epoch{'' if n == 1 else 's'} (best {metrics['best_epoch']})"]
    if metrics.get("diverged"):
        parts.append("diverged")
    parts.append(f"{metrics['wall_seconds']:.1f} s")
    eps = metrics.get("examples_per_second")
    parts.append(f"{eps:,.0f} examples/s" if eps else "examples/s n/a (needs 2+ epochs)")
    parts.append(f"outputs in {out}")
    return " | ".join(parts)
