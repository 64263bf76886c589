"""`jaxnet evaluate`: accuracy, loss, per-class scores and a confusion matrix of a trained run."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from jaxnet.cli import common
from jaxnet.errors import UsageError

SPLITS = ("test", "val", "train", "all")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="score a trained run on its test split or on other data",
        description="Scores the run's best parameters (eval mode) on its own test split (the "
        "numbers of its metrics.json) or on other data given with --dataset/--data (all of "
        "it); prints accuracy, loss, per-class precision/recall/F1 and the confusion matrix, "
        "and writes evaluation.json and confusion.png.")
    common.add_run_dir(p)
    p.add_argument("--dataset", choices=common.cfg.DATASETS,
                   help="data to score on (default: the run's own, or the kind --data's extension names)")
    p.add_argument("--data", metavar="PATH", help="CIFAR-10 folder, .npz or .csv file")
    p.add_argument("--target", help="the label column of a csv file")
    p.add_argument("--split", choices=SPLITS,
                   help="which split of the data, split as in training (default: test for the "
                   "run's own data, all for other --dataset/--data)")
    p.add_argument("--out", metavar="DIR", help="where evaluation.json and confusion.png go "
                   "(default RUN_DIR)")
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

    model = predict.load(args.run_dir)
    config = model.config
    other = args.dataset is not None or args.data is not None
    if args.target is not None and args.data is None:
        raise UsageError("--target names the label column of the csv file given with --data; "
                         "give --data FILE.csv too, or drop --target")
    split = args.split or ("all" if other else "test")
    if other:
        from jaxnet.data import dataset_for

        dataset = args.dataset or dataset_for(args.data) or config.dataset
        config = dataclasses.replace(config, dataset=dataset,
                                     data_path=args.data, target=args.target or config.target)
        if split == "all":  # every row is scored: nothing to split off
            config = dataclasses.replace(config, val_fraction=0.0, test_fraction=0.0)
    with common.notes_to_stderr():
        x, y = _examples(config, split, model.feature_names, model.preprocessing.table)
    report = evaluation_report(model.on_features(), x, y)
    out = pathlib.Path(args.out) if args.out else pathlib.Path(args.run_dir)
    write_report(out, report, model.classes)
    what = f"{config.dataset}{f' {config.data_path}' if config.data_path else ''} {split}"
    print(format_report(report, model.classes, what))
    print(f"written: {out / 'evaluation.json'}, {out / 'confusion.png'}")
    return 0


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
    return {"accuracy": scores["accuracy"], "loss": scores["loss"],
            "examples": scores["examples"], "per_class": per_class,
            "confusion_matrix": matrix.tolist()}


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def format_report(report: dict, classes, what: str) -> str:
    lines = [f"{what}: accuracy {100 * report['accuracy']:.2f}% | loss {report['loss']:.4f} | "
             f"{report['examples']} examples", "class        precision  recall     f1  support"]
    for row in report["per_class"]:
        lines.append(f"{row['class']!s:<12} {row['precision']:9.3f} {row['recall']:7.3f} "
                     f"{row['f1']:6.3f} {row['support']:8d}")
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines += ["  " + " ".join(f"{v:4d}" for v in row) for row in report["confusion_matrix"]]
    return "\n".join(lines)


def write_report(out: pathlib.Path, report: dict, classes):
    from jaxnet import plots
    from jaxnet.checkpoint import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "evaluation.json", report)
    plots.confusion(np.asarray(report["confusion_matrix"]), [str(c) for c in classes],
                    out / "confusion.png")
