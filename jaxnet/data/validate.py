"""Checks of user arrays and labels, and their assembly into a validated Dataset."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxnet.data.dataset import SPLITS, DataError, Dataset

_LABELS_EXPECTED = "expected class labels: whole numbers (3 or 3.0) or strings"


def preview(values: Any, limit: int = 10) -> str:
    """Up to ``limit`` values as a comma-separated list for messages (``0, 1, ... (12 in all)``)."""
    values = np.asarray(values)
    items = [repr(v) for v in values[:limit].tolist()]
    if len(values) > limit:
        items.append(f"... ({len(values)} in all)")
    return ", ".join(items)


def float_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a numpy float dtype.

    Args:
        dtype: Anything ``np.dtype`` accepts, e.g. ``np.float32`` or ``"float64"``.

    Returns:
        The numpy dtype.

    Raises:
        DataError: If it is not a dtype, or not a floating one.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise DataError(f"dtype={dtype!r} is not a numpy dtype; expected e.g. np.float32") from e
    if dt.kind != "f":
        raise DataError(f"dtype={dt} is not a float dtype; expected np.float32 or np.float64")
    return dt


def _first_row(mask: np.ndarray) -> int:
    """Index of the first row of ``mask`` (N, ...) that has any True entry."""
    return int(np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))[0])


def check_numeric(x: Any, name: str) -> np.ndarray:
    """``x`` as a numpy array of numbers with one row per example: the rule for every input.

    Args:
        x: Inputs, shape (N, D) or (N, d1, d2, ...).
        name: What ``x`` is in messages, e.g. ``"data.npz: x_train"``.

    Returns:
        ``np.asarray(x)``.

    Raises:
        DataError: A dtype other than bool, int or float, or fewer than 2 dimensions.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(
            f"{name} has dtype {x.dtype}, expected numbers (int or float); convert it with "
            f".astype(np.float32)"
        )
    if x.ndim < 2:
        raise DataError(
            f"{name} has shape {x.shape}, expected (N, D) or (N, d1, d2, ...) with one row per "
            f"example; for a single example use x.reshape(1, -1), for a single feature "
            f"x.reshape(-1, 1)"
        )
    return x


def check_finite(x: np.ndarray, name: str) -> None:
    """Refuses NaN and infinite inputs, naming how many and the first row holding one.

    Args:
        x: Numeric inputs (see ``check_numeric``), shape (N, ...).
        name: What ``x`` is in messages.

    Raises:
        DataError: If any value of a float ``x`` is NaN or infinite.
    """
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = ~np.isfinite(x)
        raise DataError(
            f"{name} holds {int(bad.sum())} NaN or infinite values (first at row "
            f"{_first_row(bad)}); the model needs finite numbers; clean or impute them first"
        )


def _check_x(x: np.ndarray, n: int, where: str, x_name: str, y_name: str) -> None:
    check_numeric(x, f"{where}{x_name}")
    if len(x) != n:
        raise DataError(
            f"{where}{x_name} has {len(x)} rows but {y_name} has {n} labels; "
            f"expected one label per example (the same length)"
        )
    if len(x) == 0:
        raise DataError(
            f"{where}{x_name} is empty (0 examples); every split needs at least one example"
        )
    if x.size == 0:
        raise DataError(
            f"{where}{x_name} has shape {x.shape}, i.e. no features per example; "
            f"expected at least one feature"
        )
    check_finite(x, f"{where}{x_name}")


def clean_labels(y: Any, *, source: str = "data", y_name: str = "y") -> np.ndarray:
    """Checks class labels and brings them to one canonical dtype.

    Numbers must be whole (3.0 is read as 3, 1.5 is refused) and finite; they
    come back as int64 (booleans too). Strings (or bytes, decoded as UTF-8) come
    back as a numpy unicode array.

    Args:
        y: Labels, shape (N,).
        source: Where the labels came from (a file name); prefixes every message.
        y_name: Name of ``y`` in messages, e.g. ``"y_train"``.

    Returns:
        Labels, shape (N,), int64 or unicode.

    Raises:
        DataError: Wrong shape, NaN/inf, fractional or huge numbers, other dtypes.
    """
    where = f"{source}: "
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(
            f"{where}{y_name} has shape {y.shape}, expected (N,) class labels; "
            f"flatten it with y.ravel() (for one-hot labels use y.argmax(axis=1))"
        )
    kind = y.dtype.kind
    if kind == "U":
        return y
    if kind == "S":
        try:
            return np.char.decode(y, "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{where}{y_name} holds bytes labels that are not UTF-8 ({e}); store the labels "
                f"as str or as whole numbers"
            ) from e
    if kind == "O" and all(isinstance(v, str) for v in y.tolist()):
        return y.astype(str)
    if kind == "b":
        return y.astype(np.int64)
    if kind == "u" and len(y) and y.max() > np.iinfo(np.int64).max:
        row = int(np.argmax(y))
        raise DataError(
            f"{where}{y_name} holds label {y[row].item()} at row {row}, which does not fit "
            f"int64; {_LABELS_EXPECTED}; store such ids as strings"
        )
    if kind in "iu":
        return y.astype(np.int64)
    if kind != "f":
        raise DataError(
            f"{where}{y_name} has dtype {y.dtype}; {_LABELS_EXPECTED}; convert them, e.g. "
            f"y.astype(str) for names"
        )
    if not np.isfinite(y).all():
        bad = ~np.isfinite(y)
        raise DataError(
            f"{where}{y_name} holds {int(bad.sum())} NaN or infinite labels "
            f"(first at row {_first_row(bad)}); {_LABELS_EXPECTED}; drop the unlabelled rows"
        )
    frac = y != np.round(y)
    if frac.any():
        row = int(np.flatnonzero(frac)[0])
        raise DataError(
            f"{where}{y_name} holds {int(frac.sum())} non-integer labels "
            f"(first {y[row].item()!r} at row {row}); {_LABELS_EXPECTED}; round them, or store "
            f"them as strings if each value names a class"
        )
    # float64 represents 2**63 exactly, so this bound is safe for the cast below.
    huge = np.abs(y) >= 2.0**63
    if huge.any():
        row = int(np.flatnonzero(huge)[0])
        raise DataError(
            f"{where}{y_name} holds label {y[row].item()!r} at row {row}, which does not fit "
            f"int64; {_LABELS_EXPECTED}; store such ids as strings"
        )
    return y.astype(np.int64)


def lookup(labels: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``labels`` in the sorted array ``classes``.

    Args:
        labels: Canonical labels (see ``clean_labels``), shape (N,).
        classes: Sorted distinct labels, shape (C,).

    Returns:
        (indices, known): int32 indices, shape (N,), valid where ``known`` (bool, (N,))
        is True; a label is unknown when it is not in ``classes`` (including a string
        label against int classes and vice versa).
    """
    labels, classes = np.asarray(labels), np.asarray(classes)
    if (labels.dtype.kind == "U") != (classes.dtype.kind == "U") or len(classes) == 0:
        return np.zeros(len(labels), np.int32), np.zeros(len(labels), bool)
    idx = np.minimum(np.searchsorted(classes, labels), len(classes) - 1)
    return idx.astype(np.int32), classes[idx] == labels


def check_classes(classes: np.ndarray, *, source: str, y_name: str) -> None:
    """Refuses a label set with fewer than two classes (nothing to classify).

    Args:
        classes: Distinct labels found in ``y_name``, shape (C,).
        source: Where the labels came from; prefixes the message.
        y_name: Name of the labels in the message, e.g. ``"y_train"``.

    Raises:
        DataError: If C < 2.
    """
    if len(classes) < 2:
        raise DataError(
            f"{source}: {y_name} holds a single class ({preview(classes)}); a classifier needs "
            f"at least two distinct training labels; add examples of the other classes or "
            f"check that the right column/array holds the labels"
        )


def validate_arrays(
    x: Any,
    y: Any,
    *,
    classes: Any = None,
    source: str = "data",
    x_name: str = "x",
    y_name: str = "y",
) -> tuple[np.ndarray, np.ndarray]:
    """Checks that ``x``/``y`` form a usable classification split.

    Checks: ``x`` is numeric with shape (N, d1, ...), N >= 1, at least one feature,
    no NaN/inf values; ``y`` has shape (N,) and holds labels as ``clean_labels``
    accepts them (whole numbers of any size and sign, or strings); when ``classes``
    is given, every label is one of them.

    Args:
        x: Inputs, shape (N, D) or (N, d1, d2, ...).
        y: Labels, shape (N,).
        classes: If given, the allowed labels (the distinct training labels), shape (C,).
        source: Where the arrays came from (a file name); prefixes every message.
        x_name: Name of ``x`` in messages, e.g. ``"x_train"``.
        y_name: Name of ``y`` in messages, e.g. ``"y_train"``.

    Returns:
        (x, labels): ``x`` as a numpy array (unchanged) and the labels, shape (N,),
        int64 or unicode (see ``clean_labels``).

    Raises:
        DataError: If any check fails; the message names ``source`` and the problem.
    """
    where = f"{source}: "
    labels = clean_labels(y, source=source, y_name=y_name)
    x = np.asarray(x)
    _check_x(x, len(labels), where, x_name, y_name)
    if classes is not None:
        _encode(labels, np.asarray(classes), source, y_name)
    return x, labels


def _encode(labels: np.ndarray, classes: np.ndarray, source: str, y_name: str) -> np.ndarray:
    """Class indices (int32) of canonical ``labels``; every label must be in ``classes``."""
    idx, known = lookup(labels, classes)
    if not known.all():
        rows = np.flatnonzero(~known)
        unseen = np.unique(labels[rows])
        raise DataError(
            f"{source}: {y_name} holds {len(rows)} labels never seen in training (first "
            f"{labels[rows[0]].item()!r} at row {rows[0]}; unseen: {preview(unseen)}); the "
            f"classes are the distinct training labels: {preview(classes)}; add examples of "
            f"those labels to the training data or drop those rows"
        )
    return idx


def make_dataset(
    name: str,
    source: str,
    splits: dict[str, tuple[Any, Any] | None],
    dtype: np.dtype,
    classes: Any = None,
) -> Dataset:
    """Validates raw splits, maps their labels to class indices and builds the Dataset.

    Args:
        name: Dataset name.
        source: Where the data came from; prefixes every message.
        splits: ``{"train": (x, y), "val": (x, y) or None, "test": ...}`` with raw
            inputs (N, d1, ...) and original labels (N,).
        dtype: Float dtype of the inputs.
        classes: The class labels, shape (C,); None takes the sorted distinct
            training labels (at least two).

    Returns:
        The Dataset: x_* flattened to (N, D) of ``dtype``, y_* int32 indices into ``classes``.

    Raises:
        DataError: A split fails ``validate_arrays``, a single training class, a
            val/test label never seen in training, or values too large for ``dtype``.
    """
    checked = {}
    for split in SPLITS:
        if splits.get(split) is not None:
            x, y = splits[split]
            checked[split] = validate_arrays(
                x, y, source=source, x_name=f"x_{split}", y_name=f"y_{split}"
            )
    if classes is None:
        classes = np.unique(checked["train"][1])
        check_classes(classes, source=source, y_name="y_train")
    classes = clean_labels(classes, source=source, y_name="classes")

    shape = checked["train"][0].shape[1:]
    out: dict[str, np.ndarray | None] = {}
    for split in SPLITS:
        out[f"x_{split}"] = out[f"y_{split}"] = None
        if split not in checked:
            continue
        x, labels = checked[split]
        if x.shape[1:] != shape:
            raise DataError(
                f"{source}: x_{split} has examples of shape {x.shape[1:]} but x_train "
                f"has {shape}; expected the same feature shape in every split"
            )
        indices = _encode(labels, classes, source, f"y_{split}")
        with np.errstate(over="ignore"):
            flat = np.ascontiguousarray(x.reshape(len(x), -1), dtype=dtype)
        if not np.isfinite(flat).all():
            raise DataError(
                f"{source}: x_{split} has values too large for {dtype.name} (they become inf, "
                f"first at row {_first_row(~np.isfinite(flat))}); rescale the data or pass "
                f"dtype=np.float64"
            )
        out[f"x_{split}"] = flat
        out[f"y_{split}"] = indices
    return Dataset(name=name, classes=classes, **out)
