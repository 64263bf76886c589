"""`jaxnet predict`: labels and class probabilities of a trained run for new rows."""

from __future__ import annotations

import csv
import io
import pathlib

import numpy as np

from jaxnet.cli import common
from jaxnet.errors import UsageError

OUT_FORMATS = (".csv", ".npz")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "predict", help="predict labels and probabilities for new rows with a trained run",
        description="Reads rows of raw features (.npz key x, .npy, or .csv with numeric columns "
        "and an optional header; a header's columns are matched to the run's by name, in any "
        "order, and other columns such as the target are ignored), applies the run's preprocessing and writes one prediction "
        "per row: .csv (label, then one probability column per class) or .npz (labels, "
        "probabilities).")
    common.add_run_dir(p)
    p.add_argument("--data", metavar="FILE", required=True, help="inputs: .npz, .npy or .csv")
    p.add_argument("--out", metavar="FILE", required=True, help="predictions: .csv or .npz")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true",
                   help="no notes (such as the columns ignored); the summary is still printed")
    p.set_defaults(run=run)


def run(args) -> int:
    from jaxnet import predict
    from jaxnet.checkpoint import write_bytes
    from jaxnet.data import DataError
    from jaxnet.data.features import read_features

    out = pathlib.Path(args.out)
    if out.suffix.lower() not in OUT_FORMATS:
        raise UsageError(f"--out {out}: expected a .csv or .npz file name")
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {out} exists; choose another name or pass --overwrite")
    model = predict.load(args.run_dir)
    try:
        with common.notes_to_stderr(args.quiet):
            x = read_features(args.data, model.feature_names, model.preprocessing.table,
                              model.config.target)
            probabilities = model.on_features().predict_proba(x)
    except DataError as err:
        message = err.template  # its settings still marked, for the flags
        raise DataError(message if message.startswith(str(args.data)) else
                        f"{args.data}: {message}") from None
    labels = model.preprocessing.decode(np.argmax(probabilities, axis=1))
    write_bytes(out, _encode(out.suffix.lower(), labels, probabilities, model.classes))
    print(f"{len(labels)} predictions ({len(model.classes)} classes) written to {out}")
    return 0


def _encode(suffix, labels, probabilities, classes) -> bytes:
    buffer = io.BytesIO()
    if suffix == ".npz":
        np.savez(buffer, labels=labels, probabilities=probabilities, classes=classes)
        return buffer.getvalue()
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["label", *(f"p_{c}" for c in classes)])
    for label, row in zip(labels, probabilities, strict=True):
        writer.writerow([label, *(f"{p:.6g}" for p in row)])
    return text.getvalue().encode()
