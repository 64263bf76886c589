"""Datasets for jaxnet: built-in digits and random data, local CIFAR-10, .npz and .csv files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxnet.constants import DATASETS
from jaxnet.data.cifar10 import load_cifar10
from jaxnet.data.columns import IgnoredColumnsWarning as IgnoredColumnsWarning
from jaxnet.data.csv import load_csv
from jaxnet.data.dataset import DataError as DataError
from jaxnet.data.dataset import Dataset as Dataset
from jaxnet.data.digits import load_digits
from jaxnet.data.npz import load_npz
from jaxnet.data.random import random_data as random_data
from jaxnet.data.split import check_fractions
from jaxnet.data.validate import float_dtype
from jaxnet.data.validate import validate_arrays as validate_arrays

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "IgnoredColumnsWarning",
    "dataset_for",
    "load_dataset",
    "random_data",
    "validate_arrays",
]

_SUFFIX_DATASET = {".csv": "csv", ".npz": "npz"}
_FILE_KIND = {"cifar10": "a CIFAR-10 directory", "npz": "an .npz file", "csv": "a .csv file"}


def dataset_for(path) -> str | None:
    """The dataset a file's extension names: ``"csv"`` for .csv, ``"npz"`` for .npz, else None.

    The rule behind ``TrainConfig(data_path="iris.csv")`` (and ``jaxnet train --data
    iris.csv``) reading the file as csv without ``dataset`` being given.
    """
    if path is None:
        return None
    return _SUFFIX_DATASET.get(os.path.splitext(os.fspath(path))[1].lower())


def _dataset_key(name) -> str:
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    return key


def _split_options(val_fraction, test_fraction, seed, dtype) -> dict[str, Any]:
    """The loaders' split and dtype keywords, checked (ConfigError: bad fractions; DataError:
    not a float dtype)."""
    check_fractions(val_fraction, test_fraction)
    return {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed,
            "dtype": float_dtype(dtype)}


def _check_source(key: str, path, target, table: dict[str, Any]):
    """DataError unless dataset `key` takes the `path`, `target` and csv `table` options given
    (or not)."""
    if target is not None and key != "csv":
        raise DataError(
            f"target={target!r} names a column of a csv file, but dataset {key!r} is not csv; "
            "drop `target`, or use the csv dataset"
        )
    if key in ("digits", "random") and path is not None:
        raise DataError(
            f"dataset {key!r} is built in and takes no path (got {os.fspath(path)!r}); "
            "drop `data_path`, or use 'npz', 'csv' or 'cifar10' to load a file"
        )
    if key not in ("digits", "random") and path is None:
        raise DataError(f"dataset {key!r} needs `data_path=PATH` ({_FILE_KIND[key]}); none was given")
    if table and key != "csv":
        raise DataError(f"{', '.join(f'`{k}`' for k in table)} name how a csv file's columns "
                        f"are read, but dataset {key!r} is not csv; drop them")


def load_dataset(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    dtype: Any = np.float32,
    target: str | None = None,
    columns: Sequence[str] | None = None,
    **table: Any,
) -> Dataset:
    """Loads and validates a dataset, with raw (not standardised) features.

    Labels are mapped to classes: ``classes`` holds the sorted distinct training
    labels (whole numbers of any size and sign, or strings) and ``y_*`` their
    int32 indices. Standardisation is not done here; see ``jaxnet.preprocess``.

    Datasets (``DATASETS``):

    * ``"digits"`` (built in, default): scikit-learn's 1797 8x8 digits, D=64
      pixel values 0..16, C=10. Stratified train/val/test split, sizes
      ceil(fraction * 1797), so the defaults give 1257 / 180 / 360.
    * ``"random"`` (built in): the notebook data, 50 examples, D=3072, C=10, train
      only; drawn by ``random_data(seed=231 + seed)`` so the default seed=0 gives
      the notebook's exact arrays.
    * ``"cifar10"``: the official python or binary files in directory ``path`` (or its
      ``cifar-10-batches-py`` / ``-bin`` subdirectory), split as CS231n does (see
      ``load_cifar10``); pixel values 0..255, D=3072. The fractions and seed are unused.
    * ``"npz"``: a ``.npz`` file at ``path`` holding ``x``, ``y`` (split by jaxnet)
      or ``x_train``, ``y_train``, ``x_test``, ``y_test`` and optionally ``x_val``,
      ``y_val`` (used as given; every val/test label must occur in training).
      Inputs (N, d1, ...) are flattened to (N, D).
    * ``"csv"``: a ``.csv`` file at ``path`` with a header row; the column named
      ``target`` holds the labels (numbers or strings), every other column is a
      feature: numbers, categories, booleans or dates, missing cells filled (see
      ``jaxnet.data.table``). Split by jaxnet like an .npz with ``x``, ``y``.

    jaxnet's splits are stratified when every class has enough members, else a
    plain shuffled split; either way each class keeps a training example.

    Args:
        name: One of ``DATASETS``.
        path: Directory (cifar10) or file (npz, csv); must be None for digits/random.
        val_fraction: Fraction of all examples held out for validation, in [0, 1);
            0 means no validation split (x_val/y_val None). digits, npz (x, y), csv.
        test_fraction: Fraction of all examples held out for testing, in [0, 1);
            0 means no test split. digits, npz (x, y), csv.
        seed: Seed of the split shuffle (digits, npz, csv) or offset of the random data.
        dtype: Float dtype of the inputs (float32 default; float64 possible).
        target: Name of the label column of a csv file; must be None otherwise.
        columns: The feature columns of a csv file by name, in this order (a trained
            model's ``feature_names``; see ``read_csv``); None: every column but the
            target, in file order. Other datasets have no column names and ignore it.
        **table: For a csv file, how its columns become features (``load_csv``'s
            ``table``, ``categorical``, ``drop``, ``impute``); refused for other datasets.

    Returns:
        A validated Dataset: x_* (N, D) of ``dtype``, y_* (N,) int32 class indices,
        ``classes`` (C,) the original labels.

    Raises:
        DataError: Unknown name, missing or unexpected ``path``, ``target`` or csv
            ``**table`` options, a dtype that is not float, or any file/array problem (the
            message names the file and the problem).
        ConfigError: Bad split fractions.
    """
    key = _dataset_key(name)
    split = _split_options(val_fraction, test_fraction, seed, dtype)
    _check_source(key, path, target, table)
    if key == "digits":
        return load_digits(**split)
    if key == "random":
        return random_data(seed=231 + seed, dtype=split["dtype"])
    p = os.fspath(path)
    if key == "cifar10":
        return load_cifar10(p, split["dtype"])
    if key == "npz":
        return load_npz(p, **split)
    return load_csv(p, target=target, columns=columns, **table, **split)
