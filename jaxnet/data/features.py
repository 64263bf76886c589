"""Unlabelled inputs for prediction: rows of features read from .npy, .npz or .csv files."""

from __future__ import annotations

import pathlib

import numpy as np

from jaxnet.data.csv import read_csv, read_frame
from jaxnet.data.dataset import DataError

FORMATS = (".npy", ".npz", ".csv")
_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}  # an .npz file is a zip archive


def read_features(path, feature_names=None, table=None, target=None) -> np.ndarray:
    """Reads the rows to predict on.

    Args:
      path: `.npy` (one array), `.npz` (key `x`) or `.csv` (numeric columns, read by
        `jaxnet.data.csv.read_csv` with its rules; a first row that is not all numbers, or
        that holds every one of `feature_names`, is the header).
      feature_names: the model's input columns (`TrainedModel.feature_names`), or None. A
        .csv file with a header row is then read by column name: its columns may come in
        any order, the others (the target, an id) are left out with one
        `IgnoredColumnsWarning`. A file without names is read in column order.
      table: the model's `jaxnet.data.table.Table` (`Preprocessing.table`), or None. A .csv
        file is then read by `read_frame` and its columns made into the features the network
        takes, as in training (the result is for `TrainedModel.on_features()`).
      target: the model's label column (`TrainConfig.target`): if the file holds it, the note
        about ignored columns names it as the target.

    Returns:
      A float64 array (N, ...) with one row per example (not yet checked for the feature
      count, nor an .npy or .npz file for NaN: the model's preprocessing does that).

    Raises:
      DataError: a missing or unreadable file, an unknown suffix; in a .csv file a
        missing feature column (naming it), a missing, non-numeric or infinite cell or a
        ragged row (naming line and column).
    """
    path = pathlib.Path(path)
    if path.suffix.lower() not in FORMATS:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; expected one of "
                        f"{', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: {'is a directory' if path.is_dir() else 'not found'}; "
                        f"expected a {path.suffix} file of inputs, one row per example")
    if path.suffix.lower() == ".csv" and table is not None:
        frame = read_frame(path, target=None, columns=table.names, label=target)
        return table.encode(frame.x, source=str(path), where=frame.line)
    if table is not None:
        raise DataError(f"{path}: the model was trained on a table's columns ({len(table.names)} "
                        "by name, with categories, dates or missing cells made into features); "
                        "give the rows as a .csv file with a header row")
    if path.suffix.lower() == ".csv":
        return read_csv(path, target=None, header=None, columns=feature_names)[0]
    how = "np.save(path, x)" if path.suffix.lower() == ".npy" else "np.savez(path, x=x)"
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not magic.startswith(_MAGIC[path.suffix.lower()]):
        raise DataError(f"{path}: is not an {path.suffix} file (it does not start as numpy's "
                        f"{path.suffix} files do); write it with {how}, or use .csv for text")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as err:  # damaged file, pickled objects
        raise DataError(f"{path}: cannot be read as {path.suffix} ({type(err).__name__}: {err}); "
                        f"it may be damaged or hold Python objects; write it with {how}") from None
    if path.suffix.lower() == ".npz":
        with loaded:
            if "x" not in loaded.files:
                raise DataError(f"{path}: has no array 'x' (keys found: "
                                f"{', '.join(loaded.files) or 'none'}); save with np.savez(path, x=...)")
            loaded = loaded["x"]
    x = np.asarray(loaded)
    if x.dtype.kind not in "biuf" or x.ndim < 1:
        raise DataError(f"{path}: holds {x.dtype} values of shape {x.shape}; expected numbers, "
                        "one row per example")
    return x.reshape(len(x), -1).astype(np.float64) if x.ndim > 1 else x.reshape(-1, 1).astype(np.float64)
