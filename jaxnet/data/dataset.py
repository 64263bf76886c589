"""The Dataset container: features, class indices and the original labels they stand for."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxnet.errors import JaxnetError

SPLITS = ("train", "val", "test")


class DataError(JaxnetError, ValueError):
    """A dataset could not be loaded or failed validation.

    The message names the source (usually a file), what was wrong, what was
    expected and how to fix it.
    """


def check_sorted_classes(classes: Any, source: str, *, hint: str = "") -> np.ndarray:
    """The one rule for a class list: a non-empty 1-D array, sorted and distinct.

    Class index i stands for ``classes[i]``, so the order is part of a trained model;
    ``np.unique(labels)`` gives such a list.

    Args:
        classes: The original labels, shape (C,).
        source: Where they came from (a dataset's name); prefixes the message.
        hint: Another accepted form, appended to the expectation in the message.

    Returns:
        ``np.asarray(classes)``.

    Raises:
        DataError: The array is empty, not 1-D, unsorted or has repeats.
    """
    classes = np.asarray(classes)
    if classes.ndim != 1 or len(classes) == 0:
        raise DataError(
            f"{source}: classes has shape {classes.shape}, expected a non-empty 1-D array of "
            f"the original labels, like np.unique(labels) or np.arange(10){hint}"
        )
    if len(classes) > 1 and not (classes[1:] > classes[:-1]).all():
        raise DataError(
            f"{source}: classes must be sorted and distinct, like np.unique(labels); got "
            f"{classes[:10].tolist()}{' ...' if len(classes) > 10 else ''}"
        )
    return classes


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset: flattened features, class indices and the class labels.

    Build one from arrays with the constructor, e.g.
    ``Dataset(name="mine", x_train=x, y_train=y, x_val=None, y_val=None, x_test=None,
    y_test=None, classes=np.arange(3))``. ``y_*`` are indices into ``classes``.

    Attributes:
        name: Dataset name, e.g. ``"digits"``.
        x_train: Training inputs, shape (N, D), floating dtype.
        y_train: Training class indices, shape (N,), int32 in ``[0, num_classes)``.
        x_val: Validation inputs, shape (N_val, D), or None when there is no
            validation split.
        y_val: Validation class indices, shape (N_val,), int32, or None.
        x_test: Test inputs, shape (N_test, D), or None when there is no test split.
        y_test: Test class indices, shape (N_test,), int32, or None.
        classes: The original labels, shape (C,), sorted and distinct (ints or
            strings): ``classes[y]`` turns indices back into labels. An int C may
            be passed as a shorthand for ``np.arange(C)``.
        feature_names: The input column names in order (a CSV file's header), or None
            when the inputs have no names (arrays, images). One per feature, unless ``table``
            is given: then the columns the table reads.
        table: A ``jaxnet.data.table.Table`` when the features were made from a table's
            columns (categories one-hot, dates, missing-cell indicators), else None.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: np.ndarray
    feature_names: tuple[str, ...] | None = None
    table: Any = None  # a jaxnet.data.table.Table: how a table's columns became the D features

    def __post_init__(self) -> None:
        classes = self.classes
        if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
            classes = np.arange(int(classes))
        classes = check_sorted_classes(classes, self.name, hint=", or an int C for np.arange(C)")
        object.__setattr__(self, "classes", classes)
        if self.x_train is None or self.y_train is None:
            raise DataError(f"{self.name}: x_train and y_train are required; got None")
        width = None
        for split in SPLITS:
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if (x is None) != (y is None):
                raise DataError(
                    f"{self.name}: x_{split} and y_{split} must both be arrays or both be None; "
                    f"got x_{split}={'None' if x is None else 'array'} and "
                    f"y_{split}={'None' if y is None else 'array'}"
                )
            if x is None:
                continue
            self._check_split(split, np.asarray(x), np.asarray(y), width)
            width = np.asarray(x).shape[1]
            object.__setattr__(self, f"y_{split}", np.asarray(y, dtype=np.int32))
        if self.table is not None:
            width = np.asarray(self.x_train).shape[1]
            if self.table.width != width or tuple(self.feature_names or ()) != self.table.names:
                raise DataError(
                    f"{self.name}: the table makes {self.table.width} features of the columns "
                    f"{', '.join(self.table.names)}, but x_train has {width} features and "
                    f"feature_names are {self.feature_names}; build them with table.encode")
            object.__setattr__(self, "feature_names", self.table.names)
        elif self.feature_names is not None:
            names = tuple(str(n) for n in self.feature_names)
            if len(names) != np.asarray(self.x_train).shape[1] or len(set(names)) != len(names):
                raise DataError(
                    f"{self.name}: feature_names holds {len(names)} names "
                    f"({len(set(names))} distinct) for {np.asarray(self.x_train).shape[1]} "
                    f"features; expected one distinct name per column of x_train, or None")
            object.__setattr__(self, "feature_names", names)

    def _check_split(self, split: str, x: np.ndarray, y: np.ndarray, width: int | None) -> None:
        where = f"{self.name}: "
        if x.ndim != 2:
            raise DataError(
                f"{where}x_{split} has shape {x.shape}, expected (N, D); flatten it with "
                f"x.reshape(len(x), -1)"
            )
        if width is not None and x.shape[1] != width:
            raise DataError(
                f"{where}x_{split} has {x.shape[1]} features but x_train has {width}; expected "
                f"the same features in every split"
            )
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
            raise DataError(
                f"{where}y_{split} has shape {y.shape} and dtype {y.dtype}, expected "
                f"({len(x)},) integer class indices; map labels to indices with "
                f"np.unique(labels, return_inverse=True)"
            )
        bad = (y < 0) | (y >= len(self.classes))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{where}y_{split} holds class index {y[row].item()} at row {row}, outside "
                f"0..{len(self.classes) - 1}; y_* are indices into classes "
                f"({len(self.classes)} classes), not the labels themselves"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes C (``len(classes)``)."""
        return len(self.classes)

    @property
    def num_features(self) -> int:
        """Number of input features D (columns of ``x_train``)."""
        return int(self.x_train.shape[1])

    def summary(self) -> str:
        """One-line description of the dataset.

        Returns:
            E.g. ``"digits: 1257 train / 180 val / 360 test, 64 features, 10 classes"``;
            absent splits read ``no val`` / ``no test``.
        """

        def count(y: np.ndarray | None, split: str) -> str:
            return f"no {split}" if y is None else f"{len(y)} {split}"

        return (
            f"{self.name}: {len(self.y_train)} train / {count(self.y_val, 'val')} / "
            f"{count(self.y_test, 'test')}, {self.num_features} features, "
            f"{self.num_classes} classes"
        )
