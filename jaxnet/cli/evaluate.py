"""`jaxnet evaluate`: accuracy, loss, per-class scores and a confusion matrix of a trained run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re

import numpy as np

from jaxnet.cli import common
from jaxnet.errors import OutputExistsError, UsageError

SPLITS = ("test", "val", "train", "all")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="score a trained run on its test split or on other data",
        description="Scores the run's best parameters (eval mode) on its own test split (the "
        "numbers of its metrics.json) or on other data given with --dataset/--data (all of "
        "it); prints accuracy, loss, per-class precision/recall/F1 and the confusion matrix, "
        "and writes them to a JSON file (with the data's path, SHA-256 and split) and a "
        "confusion-matrix PNG, named for what was scored: evaluation.json and confusion.png "
        "for the run's test split, evaluation-SPLIT.json for its other splits, "
        "evaluation-on-NAME.json for other data (NAME: the file's name without extension, or "
        "the dataset; -SPLIT added with --split). An existing file is never replaced without "
        "--overwrite.")
    common.add_run_dir(p)
    p.add_argument("--dataset", choices=common.cfg.DATASETS,
                   help="data to score on (default: the run's own, or the kind --data's extension names)")
    p.add_argument("--data", metavar="PATH", help="CIFAR-10 folder, .npz or .csv file")
    p.add_argument("--target", help="the label column of a csv file")
    p.add_argument("--split", choices=SPLITS,
                   help="which split of the data, split as in training (default: test for the "
                   "run's own data, all for other --dataset/--data)")
    p.add_argument("--out", metavar="DIR", help="the folder the files go to (default RUN_DIR)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier evaluation of the same name")
    p.add_argument("--quiet", action="store_true",
                   help="no notes (such as the columns ignored); the report is still printed")
    p.set_defaults(run=run)


def _examples(config, split, columns=None, table=None):
    """Raw inputs and original labels of `split` of the data `config` names (a csv file's
    feature `columns` read by name; with the model's `table`, the features it makes)."""
    from jaxnet import fitting

    data = fitting.load_data(config, columns, table)
    names = ("train", "val", "test") if split == "all" else (split,)
    parts = [(getattr(data, f"x_{n}"), getattr(data, f"y_{n}")) for n in names]
    parts = [(x, y) for x, y in parts if x is not None]
    if not parts:
        raise UsageError(f"the {config.dataset} data has no {split} split here (its fraction "
                         "is 0 or the file has none); pick another --split")
    x = np.concatenate([x for x, _ in parts])
    return x, data.classes[np.concatenate([y for _, y in parts])]


def run(args) -> int:
    from jaxnet import predict
    from jaxnet.preload import preload

    other = args.dataset is not None or args.data is not None
    if args.target is not None and args.data is None:
        raise UsageError("--target names the label column of the csv file given with --data; "
                         "give --data FILE.csv too, or drop --target")
    split = args.split or ("all" if other else "test")
    out = pathlib.Path(args.out) if args.out else pathlib.Path(args.run_dir)
    names = report_names(split, other=other, data_path=args.data, dataset=args.dataset)
    if not args.overwrite:
        _refuse_existing(out / names[0], out / names[1])
    model = predict.load(args.run_dir)
    preload("jaxnet.plots")  # for confusion.png, imported while the model predicts
    config = model.config
    if other:
        from jaxnet.data import dataset_for

        dataset = args.dataset or dataset_for(args.data) or config.dataset
        config = dataclasses.replace(config, dataset=dataset,
                                     data_path=args.data, target=args.target or config.target)
        if split == "all":  # every row is scored: nothing to split off
            config = dataclasses.replace(config, val_fraction=0.0, test_fraction=0.0)
    with common.notes_to_stderr(args.quiet):
        x, y = _examples(config, split, model.feature_names, model.preprocessing.table)
    scored = {"run": str(args.run_dir), "dataset": config.dataset,
              "data_path": config.data_path, "data_sha256": data_sha256(config.data_path),
              "split": split}
    report = {**scored, **evaluation_report(model.on_features(), x, y)}
    write_report(out, names, report, model.classes)
    what = f"{config.dataset}{f' {config.data_path}' if config.data_path else ''} {split}"
    print(format_report(report, model.classes, what))
    print(f"written: {out / names[0]}, {out / names[1]}")
    return 0


def report_names(split: str, *, other: bool, data_path=None, dataset=None) -> tuple[str, str]:
    """(JSON, PNG) file names of an evaluation, named for what it scores, so that scoring
    other data or another split never lands on the run's own evaluation.json:

    the run's test split: evaluation.json, confusion.png; its split S: evaluation-S.json;
    other data: evaluation-on-NAME.json (NAME the file's name without extension, else the
    dataset's), evaluation-on-NAME-S.json for its split S other than all.
    """
    if not other:
        suffix = "" if split == "test" else f"-{split}"
    else:
        name = re.sub(r"[^\w.-]+", "_", pathlib.Path(data_path).stem if data_path is not None
                      else dataset)
        suffix = f"-on-{name}" + ("" if split == "all" else f"-{split}")
    return f"evaluation{suffix}.json", f"confusion{suffix}.png"


def _refuse_existing(report: pathlib.Path, plot: pathlib.Path) -> None:
    found = [p for p in (report, plot) if p.exists()]
    if not found:
        return
    scored = ""
    try:  # what the earlier evaluation scored, as it recorded
        saved = json.loads(report.read_text())
        data = saved.get("data_path") or saved.get("dataset")
        if data is not None:
            scored = f" (scoring {data}, split {saved.get('split')})"
    except (OSError, ValueError, AttributeError):
        pass
    raise OutputExistsError(
        f"{found[0]} exists from an earlier evaluation{scored}; pass --overwrite to replace it, "
        "or --out DIR to write elsewhere")


def data_sha256(path) -> str | None:
    """SHA-256 of the data file at `path`; of a folder (CIFAR-10's batches), of its files'
    relative names and contents in name order; None without a path (a built-in dataset)."""
    if path is None:
        return None
    path = pathlib.Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def evaluation_report(model, x, y) -> dict:
    """Accuracy, loss, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    scores = model.evaluate(x, y)
    labels = np.arange(len(model.classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        scores["labels"], scores["predictions"], labels=labels, zero_division=0)
    per_class = [{"class": _plain(c), "precision": float(p), "recall": float(r), "f1": float(f),
                  "support": int(s)} for c, p, r, f, s in zip(model.classes, precision, recall,
                                                               f1, support, strict=True)]
    matrix = confusion_matrix(scores["labels"], scores["predictions"], labels=labels)
    report = {"accuracy": scores["accuracy"], "loss": scores["loss"],
              "examples": scores["examples"], "per_class": per_class,
              "confusion_matrix": matrix.tolist()}
    if "members" in scores:  # an ensemble: the scores above are its own, then each member's
        report["members"] = scores["members"]
    return report


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def format_report(report: dict, classes, what: str) -> str:
    members = report.get("members")
    lines = [f"{what}: {'ensemble ' if members else ''}accuracy {100 * report['accuracy']:.2f}% "
             f"| loss {report['loss']:.4f} | {report['examples']} examples"]
    if members:
        lines[0] += f" | mean of {len(members)} members' probabilities"
        lines += [f"  member {k} (seed {m['seed']}, best epoch {m['best_epoch']}): accuracy "
                  f"{100 * m['accuracy']:.2f}% | loss {m['loss']:.4f}"
                  for k, m in enumerate(members)]
    lines.append("class        precision  recall     f1  support")
    for row in report["per_class"]:
        lines.append(f"{row['class']!s:<12} {row['precision']:9.3f} {row['recall']:7.3f} "
                     f"{row['f1']:6.3f} {row['support']:8d}")
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines += ["  " + " ".join(f"{v:4d}" for v in row) for row in report["confusion_matrix"]]
    return "\n".join(lines)


def write_report(out: pathlib.Path, names: tuple[str, str], report: dict, classes):
    """The report as JSON and its confusion matrix as a PNG, in `out` under `names`."""
    from jaxnet import plots
    from jaxnet.checkpoint import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / names[0], report)
    plots.confusion(np.asarray(report["confusion_matrix"]), [str(c) for c in classes],
                    out / names[1])
