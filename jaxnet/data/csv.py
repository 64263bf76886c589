"""A user's CSV file: a header row, numeric feature columns and one target column."""

from __future__ import annotations

import csv
import difflib
import math
import os
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from jaxnet.data.dataset import DataError, Dataset
from jaxnet.data.split import split_arrays
from jaxnet.data.validate import check_classes

# Cells read as "no value" (compared after strip() and lower()).
_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
_EXPECTED = "expected a header row of column names, then one comma-separated row per example"


def _column(name: str, j: int) -> str:
    return f"column {name!r}" if name else f"column {j + 1} (unnamed)"


def _rows(path: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank row; line 1 is the file's first line."""
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected a .csv file; {_EXPECTED}")
    if not os.path.exists(path):
        raise DataError(f"{path}: not found; check the path ({_EXPECTED})")
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise DataError(
            f"{path}: cannot be read ({e.strerror or e}); check the file's permissions"
        ) from e
    with f:
        reader = csv.reader(f, skipinitialspace=True)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); is it really a CSV "
                    f"file? save it as UTF-8 CSV"
                ) from e
            except csv.Error as e:
                raise DataError(
                    f"{path}: line {reader.line_num}: not valid CSV ({e}); {_EXPECTED}"
                ) from e
            if len(row) > 1 or (row and row[0].strip()):
                yield reader.line_num, row


def _header(path: str, rows: Iterator[tuple[int, list[str]]]) -> tuple[int, list[str]]:
    for line, row in rows:
        return line, [cell.strip() for cell in row]
    raise DataError(f"{path}: the file is empty; {_EXPECTED}")


def csv_columns(path: str | os.PathLike) -> list[str]:
    """The column names in the header row of a CSV file.

    Args:
        path: The .csv file.

    Returns:
        The names, stripped of surrounding spaces.

    Raises:
        DataError: The file is missing, unreadable, not UTF-8 text or empty.
    """
    p = os.fspath(path)
    return _header(p, _rows(p))[1]


def _target_index(path: str, header: list[str], line: int, target: str) -> int:
    hits = [j for j, name in enumerate(header) if name == target]
    if len(hits) > 1:
        raise DataError(
            f"{path}: column {target!r} appears {len(hits)} times in the header (line {line}, "
            f"columns {', '.join(str(j + 1) for j in hits)}); rename all but one"
        )
    if hits:
        return hits[0]
    hint = ""
    close = [name for name in header if name.lower() == target.lower()]
    close = close or difflib.get_close_matches(target, header, n=1)
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        hint = "; the header has a single column: is the file separated by commas?"
    elif close:
        hint = f"; did you mean {close[0]!r}?"
    raise DataError(
        f"{path}: no column {target!r} in the header (line {line}); columns found: "
        f"{', '.join(map(repr, header))}; pass one of them as the target{hint}"
    )


def _number(path: str, line: int, column: str, cell: str, target: str | None) -> float:
    text = cell.strip()
    if text.lower() in _MISSING:
        raise DataError(
            f"{path}: line {line}, {column}: missing value "
            f"({'empty cell' if not text else repr(text)}); every feature cell needs a number; "
            f"fill it in (impute) or drop the row"
        )
    try:
        value = float(text)
    except ValueError:
        text_ok = f"only the target column {target!r}" if target is not None else "no column"
        raise DataError(
            f"{path}: line {line}, {column}: {text!r} is not a number; feature columns must be "
            f"numeric ({text_ok} may hold text); fix the cell, or drop or encode the column"
        ) from None
    if not math.isfinite(value):
        raise DataError(
            f"{path}: line {line}, {column}: {text!r} is infinite; expected a finite number; "
            f"fix the cell or drop the row"
        )
    return value


def _labels(path: str, column: str, cells: list[str], lines: list[int]) -> np.ndarray:
    """Whole numbers as int64 when every cell is one; other numbers refused; else strings."""
    try:
        ints = [int(c) for c in cells]
    except ValueError:
        ints = None
    if ints is not None:
        if all(-(2**63) <= v < 2**63 for v in ints):
            return np.array(ints, dtype=np.int64)
        return np.array(cells, dtype=str)  # ids too long for int64 stay names
    try:
        values = [float(c) for c in cells]
    except ValueError:
        return np.array(cells, dtype=str)
    for line, cell, v in zip(lines, cells, values, strict=True):
        if not (math.isfinite(v) and v == round(v) and abs(v) < 2.0**63):
            raise DataError(
                f"{path}: line {line}, {column}: label {cell!r} is not a whole number; numeric "
                f"labels must be class ids such as 3 or 3.0 (jaxnet classifies; a fractional "
                f"column is a regression target); pick the column that holds the classes"
            )
    return np.array(values).astype(np.int64)


class _Table(NamedTuple):
    """What ``_read`` found: features, labels and where each row and column came from."""

    x: np.ndarray  # (N, D) float64
    y: np.ndarray | None  # (N,) int64 or str
    columns: list[str]  # "column 'name'" for each feature, for messages
    names: list[str]  # feature column names
    lines: list[int]  # line number of each row in the file


def _read(path: str, target: str | None) -> _Table:
    rows = _rows(path)
    header_line, header = _header(path, rows)
    t = None if target is None else _target_index(path, header, header_line, target)
    features = [j for j in range(len(header)) if j != t]
    if not features:
        raise DataError(
            f"{path}: the only column is the target {target!r} (line {header_line}); expected "
            f"at least one numeric feature column besides it"
        )
    columns = [_column(header[j], j) for j in features]
    x: list[list[float]] = []
    labels: list[str] = []
    lines: list[int] = []
    for line, row in rows:
        if len(row) != len(header):
            where = (
                f"the row ends before {_column(header[len(row)], len(row))}"
                if len(row) < len(header)
                else f"cell {len(header) + 1} ({row[len(header)].strip()!r}) has no column"
            )
            raise DataError(
                f"{path}: line {line} has {len(row)} cells but the header (line {header_line}) "
                f"has {len(header)} columns: {where}; expected one cell per column; fix the row "
                f"(a missing or stray comma?)"
            )
        cells = (row[j] for j in features)
        x.append([_number(path, line, c, v, target) for c, v in zip(columns, cells, strict=True)])
        if t is not None:
            label = row[t].strip()
            if label.lower() in _MISSING:
                raise DataError(
                    f"{path}: line {line}, {_column(header[t], t)}: missing label "
                    f"({'empty cell' if not label else repr(label)}); every row needs a label; "
                    f"fill it in or drop the row"
                )
            labels.append(label)
        lines.append(line)
    if not x:
        raise DataError(
            f"{path}: has a header (line {header_line}) but no data rows; {_EXPECTED}"
        )
    y = None if t is None else _labels(path, _column(header[t], t), labels, lines)
    names = [header[j] for j in features]
    return _Table(np.array(x, dtype=np.float64), y, columns, names, lines)


def read_csv(
    path: str | os.PathLike, *, target: str | None
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Reads a CSV file with a header row into features and labels.

    Every column except ``target`` is a feature and must hold numbers. The
    target column may hold strings; when every target cell is a whole number
    (``3`` or ``3.0``) the labels are int64. Cells are stripped of surrounding
    spaces; empty cells and ``NA``, ``N/A``, ``NaN``, ``null``, ``None`` (any case)
    are missing values. Blank lines are skipped.

    Args:
        path: The .csv file (UTF-8, comma-separated, optional byte-order mark).
        target: Name of the label column, or None when the file holds features only.

    Returns:
        (x, y, feature_names): x float64 (N, D), y (N,) int64 or str (None without
        a target), and the D feature column names in file order.

    Raises:
        DataError: One line naming the file, the line number (the header is line 1)
            and the column: missing or unreadable file, empty file, no data rows,
            unknown or repeated target column, no feature columns, a row with the
            wrong number of cells, a missing, non-numeric or infinite feature, a
            missing or fractional label.
    """
    table = _read(os.fspath(path), target)
    return table.x, table.y, table.names


def load_csv(
    path: str | os.PathLike,
    *,
    target: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    dtype: np.dtype,
) -> Dataset:
    """A CSV file (see ``read_csv``) split by jaxnet exactly like an .npz file with ``x``, ``y``.

    Args:
        path: The .csv file.
        target: Name of the label column; required.
        val_fraction: Validation fraction in [0, 1).
        test_fraction: Test fraction in [0, 1).
        seed: Seed of the split (stratified where every class has enough rows).
        dtype: Float dtype of the inputs.

    Returns:
        The Dataset named ``"csv"``; ``classes`` are the distinct labels.

    Raises:
        DataError: Everything ``read_csv`` refuses, no target given, a single class,
            a value too large for ``dtype``, or too few rows for the fractions.
    """
    p = os.fspath(path)
    if target is None:
        raise DataError(
            f"{p}: no target column given; the csv dataset needs the name of the label column "
            f"(--target COLUMN); columns found: {', '.join(map(repr, csv_columns(p)))}"
        )
    table = _read(p, target)
    big = np.abs(table.x) > np.finfo(dtype).max
    if big.any():
        row, col = np.argwhere(big)[0]
        raise DataError(
            f"{p}: line {table.lines[row]}, {table.columns[col]}: {table.x[row, col]:g} is too "
            f"large for {np.dtype(dtype).name}; rescale the column or use float64"
        )
    check_classes(np.unique(table.y), source=p, y_name=f"column {target!r}")
    return split_arrays(
        "csv", p, table.x, table.y, val_fraction=val_fraction, test_fraction=test_fraction,
        seed=seed, dtype=dtype,
    )
