"""The one CSV reader: ``read_frame`` reads a table's raw cells for column kinds
(``jaxnet.data.table``), ``read_csv`` numeric features only (rows to predict on for a model
trained without a table); both name the line and column of what they refuse."""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import itertools
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxnet.data.columns import DataNote, match_columns, warn_ignored
from jaxnet.data.dataset import SPLITS, DataError, Dataset
from jaxnet.data.split import split_indices
from jaxnet.data.table import Table
from jaxnet.data.validate import check_classes, make_dataset

# Cells read as "no value" (compared after strip() and lower()).
_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
_CHUNK_ROWS = 1 << 17  # rows pandas parses at a time for a big file
_EXPECTED = "expected a header row of column names, then one comma-separated row per example"


def _column(name: str | None, j: int) -> str:
    if name is None:  # a file without a header row
        return f"column {j + 1}"
    return f"column {name!r}" if name else f"column {j + 1} (unnamed)"


def _check_file(path: str) -> None:
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected a .csv file; {_EXPECTED}")
    if not os.path.exists(path):
        raise DataError(f"{path}: not found; check the path ({_EXPECTED})")


def _rows(path: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank row; line 1 is the file's first line."""
    _check_file(path)
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
                    f"{path}: cannot be read as CSV: not UTF-8 text ({e.reason} at byte "
                    f"{e.start}); is it really a CSV file? save it as UTF-8 CSV"
                ) from e
            except csv.Error as e:
                raise DataError(
                    f"{path}: line {reader.line_num}: cannot be read as CSV ({e}); {_EXPECTED}"
                ) from e
            if len(row) > 1 or (row and row[0].strip()):
                yield reader.line_num, row


def _first_row(path: str, rows: Iterator[tuple[int, list[str]]]) -> tuple[int, list[str]]:
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
    return _first_row(p, _rows(p))[1]


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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Labels(NamedTuple):
    """Labels as int64 or str, or the row of the first cell that cannot be a label."""

    y: np.ndarray | None
    bad_row: int | None


def _labels(cells: list[str]) -> _Labels:
    """Whole numbers as int64 when every cell is one; other numbers refused; else strings."""
    try:
        ints = [int(c) for c in cells]
    except ValueError:
        ints = None
    if ints is not None:
        if all(-(2**63) <= v < 2**63 for v in ints):
            return _Labels(np.array(ints, dtype=np.int64), None)
        return _Labels(np.array(cells, dtype=str), None)  # ids too long for int64 stay names
    try:
        values = [float(c) for c in cells]
    except ValueError:
        return _Labels(np.array(cells, dtype=str), None)
    for row, v in enumerate(values):
        if not (math.isfinite(v) and v == round(v) and abs(v) < 2.0**63):
            return _Labels(None, row)
    return _Labels(np.array(values).astype(np.int64), None)


class _Layout(NamedTuple):
    """The first row of a file and what it says about the columns."""

    header: list[str] | None  # column names, None when the first row is data
    line: int  # line number of the first row
    width: int  # cells per row
    target: int | None  # index of the target column
    features: list[int]  # indices of the feature columns, in the order the model takes them
    ignored: list[str]  # names of the columns that are neither features nor the target


class _Table(NamedTuple):
    """What ``_read`` found: features, labels and where each row and column came from."""

    x: np.ndarray  # (N, D) float64
    y: np.ndarray | None  # (N,) int64 or str
    columns: list[str]  # "column 'name'" for each feature, for messages
    names: list[str] | None  # feature column names; None without a header row
    lines: Sequence[int] | None  # line number of each row; None when pandas read the file


def _layout(path: str, target: str | None, header: bool | None,
            columns: Sequence[str] | None = None) -> _Layout:
    line, first = _first_row(path, _rows(path))
    if header is None:
        header = (target is not None or not all(_is_number(cell) for cell in first)
                  or (columns is not None and set(columns) <= set(first)))
    if not header:
        return _Layout(None, line, len(first), None, list(range(len(first))), [])
    t = None if target is None else _target_index(path, first, line, target)
    if len(first) == 1 and t is not None:
        raise DataError(
            f"{path}: the only column is the target {target!r} (line {line}); expected "
            f"at least one numeric feature column besides it"
        )
    if columns is None:
        return _Layout(first, line, len(first), t, [j for j in range(len(first)) if j != t], [])
    match = match_columns(first, columns, source=path)
    ignored = [c for j, c in enumerate(first) if j != t and c in match.ignored]
    return _Layout(first, line, len(first), t, match.indices, ignored)


def _columns(layout: _Layout) -> tuple[list[int], list[str]]:
    features = layout.features
    names = layout.header
    return features, [_column(None if names is None else names[j], j) for j in features]


def _read_fast(path: str, layout: _Layout) -> _Table | None:
    """The file read by pandas' C parser, or None for anything the row loop must look at.

    None (never an error) whenever pandas meets something unusual: a row of the wrong
    length, a feature cell that is not an int64 or float64 number (text, a missing or
    infinite value, ``1_000``, which Python's float() reads), a missing label, a label
    that is not a class id. ``_read_exact`` then refuses the file naming the line and
    column, or reads the cells pandas does not.
    """
    if layout.line != 1:  # something before the first row: let the row loop count lines
        return None
    import pandas as pd  # imported here: pandas takes ~0.5 s to import

    t = layout.target
    # pandas 3 reads every number as Python's float() does (tests/test_csv.py checks it);
    # before 3 its default parser could miss the last bit (pandas-dev/pandas#39514).
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    try:
        with warnings.catch_warnings():
            # rows longer than the first are cut with a ParserWarning: take the row loop
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path, header=0 if layout.header is not None else None,
                names=range(layout.width), index_col=False, skipinitialspace=True,
                na_filter=False, encoding="utf-8-sig", engine="c",
                dtype=None if t is None else {t: str}, **exact,
            )
    except (ValueError, pd.errors.ParserWarning, OSError):  # ParserError, UnicodeDecodeError
        return None
    features, columns = _columns(layout)
    if frame.shape[1] != layout.width or len(frame) == 0:
        return None
    if any(frame[j].dtype not in (np.int64, np.float64) for j in features):
        return None
    x = frame[features].to_numpy(np.float64)
    if not np.isfinite(x).all():
        return None
    y = None
    if t is not None:
        cells = [cell.strip() for cell in frame[t].tolist()]
        if any(cell.lower() in _MISSING for cell in cells):
            return None
        y = _labels(cells).y
        if y is None:
            return None
    names = None if layout.header is None else [layout.header[j] for j in features]
    return _Table(x, y, columns, names, None)


def _read_exact(path: str, layout: _Layout, target: str | None) -> _Table:
    """The file read row by row with Python's csv module; refuses naming line and column."""
    features, columns = _columns(layout)
    width, t, names = layout.width, layout.target, layout.header
    rows = _rows(path)
    if names is not None:
        next(rows)  # the header
    x: list[list[float]] = []
    labels: list[str] = []
    lines: list[int] = []
    for line, row in rows:
        if len(row) != width:
            cut = len(row) if len(row) < width else None
            where = (
                f"the row ends before {_column(None if names is None else names[cut], cut)}"
                if cut is not None
                else f"cell {width + 1} ({row[width].strip()!r}) has no column"
            )
            first = (f"the header (line {layout.line}) has {width} columns" if names is not None
                     else f"line {layout.line} has {width}")
            raise DataError(
                f"{path}: line {line} has {len(row)} cells but {first}: {where}; expected one "
                f"cell per column; fix the row (a missing or stray comma?)"
            )
        cells = (row[j] for j in features)
        x.append([_number(path, line, c, v, target) for c, v in zip(columns, cells, strict=True)])
        if t is not None:
            label = row[t].strip()
            if label.lower() in _MISSING:
                raise DataError(
                    f"{path}: line {line}, {_column(names[t], t)}: missing label "
                    f"({'empty cell' if not label else repr(label)}); every row needs a label; "
                    f"fill it in or drop the row"
                )
            labels.append(label)
        lines.append(line)
    if not x:
        raise DataError(
            f"{path}: has a header (line {layout.line}) but no data rows; {_EXPECTED}"
        )
    y = None
    if t is not None:
        y, bad = _labels(labels)
        if bad is not None:
            raise DataError(
                f"{path}: line {lines[bad]}, {_column(names[t], t)}: label {labels[bad]!r} is "
                f"not a whole number; numeric labels must be class ids such as 3 or 3.0 (jaxnet "
                f"classifies; a fractional column is a regression target); pick the column that "
                f"holds the classes"
            )
    kept = None if names is None else [names[j] for j in features]
    return _Table(np.array(x, dtype=np.float64), y, columns, kept, lines)


_NA_CELLS = sorted({"".join(chars) for word in _MISSING
                    for chars in itertools.product(*({c.lower(), c.upper()} for c in word))})


def _lines(path: str, layout: _Layout) -> list[int]:
    """The line number of every data row, and a DataError for a row of the wrong length
    (which pandas pads with missing cells): the row loop, run only when a file has
    missing cells or a row pandas refused."""
    rows = _rows(path)
    if layout.header is not None:
        next(rows)
    lines = []
    for line, row in rows:
        if len(row) != layout.width:
            names, width = layout.header, layout.width
            cut = len(row) if len(row) < width else None
            where = (f"the row ends before {_column(None if names is None else names[cut], cut)}"
                     if cut is not None else f"cell {width + 1} ({row[width].strip()!r}) has "
                     "no column")
            first = (f"the header (line {layout.line}) has {width} columns" if names is not None
                     else f"line {layout.line} has {width}")
            raise DataError(
                f"{path}: line {line} has {len(row)} cells but {first}: {where}; expected one "
                f"cell per column; fix the row (a missing or stray comma?)")
        lines.append(line)
    return lines


def _read_chunks(read, hints: dict):
    """The whole file as ``read`` reads it with the ``hints`` dtypes, a block of rows at a
    time, each column joined at the end: pandas' own reader holds about twice the table
    while it parses; this holds it about once."""
    import pandas as pd
    from pandas.api.types import union_categoricals

    pieces: dict = {}
    for chunk in read(dtype=hints, chunksize=_CHUNK_ROWS):
        for j in chunk.columns:  # numbers copied out, so the chunk's 2-D block is freed
            column = chunk[j]
            numeric = column.dtype.kind in "biuf" and not isinstance(column.dtype,
                                                                     pd.CategoricalDtype)
            pieces.setdefault(j, []).append(column.to_numpy().copy() if numeric else column)
        del chunk, column
    columns = {}
    for j in list(pieces):
        parts = pieces.pop(j)
        if all(isinstance(part, np.ndarray) for part in parts) and len(
                {part.dtype for part in parts}) == 1:
            columns[j] = pd.Series(np.concatenate(parts))
        elif all(isinstance(getattr(part, "dtype", None), pd.CategoricalDtype)
                 for part in parts):
            columns[j] = pd.Series(union_categoricals(parts))
        else:
            columns[j] = pd.concat([pd.Series(part) for part in parts], ignore_index=True)
        del parts
    return pd.DataFrame(columns, copy=False)


def _label_text(value) -> str:
    """A label as the file wrote it, near enough for `_labels`: whole floats as ints."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


class Frame(NamedTuple):
    """A table as ``read_frame`` reads it."""

    x: Any  # pandas DataFrame of the feature columns, by name; missing cells NaN/None
    y: np.ndarray | None  # (N,) labels, int64 or str; None without a target
    line: Callable[[int], str]  # data row -> "line 12", for messages


def _parse(p: str, layout: _Layout, dtype, categorical: Sequence[str]):
    """The file as pandas' C reader parses it (columns numbered), the feature columns that
    the first rows show as numbers parsed into `dtype`, text as categories, in row blocks
    (`_read_chunks`); a file it refuses is refused naming the line, where a row is at fault."""
    import pandas as pd

    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    read = functools.partial(
        pd.read_csv, p, header=0, names=range(layout.width), index_col=False,
        skipinitialspace=True, na_values=_NA_CELLS, keep_default_na=False,
        encoding="utf-8-sig", engine="c", **exact)
    try:
        with warnings.catch_warnings(), np.errstate(over="ignore"):
            warnings.simplefilter("error", pd.errors.ParserWarning)
            try:  # what the first rows show: numbers parsed into `dtype`, text as categories
                first = read(nrows=1000)
                hints = {j: dtype if first[j].dtype.kind in "iuf" else "category"
                         for j in layout.features if layout.header[j] not in categorical
                         and first[j].dtype.kind in "iufO"}
                raw = _read_chunks(read, hints)
                if any(np.isinf(raw[j].to_numpy()).any() for j, h in hints.items()
                       if h != "category"):
                    raw = read()  # too large for `dtype`, or infinite: say which
            except ValueError:  # a later cell is not a number: let pandas look at all of them
                raw = read()
    except (ValueError, pd.errors.ParserWarning, OSError) as e:  # ParserError, UnicodeDecodeError
        _lines(p, layout)  # names the bad line, if a row is the problem
        raise DataError(f"{p}: cannot be read as CSV ({e}); {_EXPECTED}") from None
    if len(raw) == 0:
        raise DataError(f"{p}: has a header (line {layout.line}) but no data rows; {_EXPECTED}")
    return raw


def _frame_labels(p: str, raw, layout: _Layout, impute: bool, line):
    """(raw without the rows whose label is missing, their labels as int64 or str): a
    missing label is left out with a DataNote (refused with `impute` False), a fractional
    one refused, naming its line (`line(row)`)."""
    import pandas as pd

    t = layout.target
    column = _column(layout.header[t], t)
    codes, uniques = pd.factorize(raw[t])
    stripped = [_label_text(u) for u in uniques]
    gone = np.array([u.lower() in _MISSING for u in stripped] + [True])[codes]
    if gone.any():
        first = line(int(np.flatnonzero(gone)[0]))
        if not impute:
            raise DataError(f"{p}: {first}, {column}: missing label; every row needs a "
                            "label; fill it in or drop the row")
        warnings.warn(f"{p}: left out {int(gone.sum())} row{'s' if gone.sum() > 1 else ''} "
                      f"whose label ({column}) is missing (first at {first})", DataNote,
                      stacklevel=4)
        raw = raw[~gone]
        codes = codes[~gone]
    kept = [i for i, u in enumerate(stripped) if u.lower() not in _MISSING]
    remap = np.full(len(stripped) + 1, -1)
    remap[kept] = np.arange(len(kept))
    codes = remap[codes]
    labels, bad = _labels([stripped[i] for i in kept])
    if bad is not None:
        row = int(np.flatnonzero(codes == bad)[0])
        raise DataError(
            f"{p}: {line(int(raw.index[row]))}, {column}: label {stripped[kept[bad]]!r} is not "
            "a whole number; numeric labels must be class ids such as 3 or 3.0 (jaxnet "
            "classifies; a fractional column is a regression target); pick the column that "
            "holds the classes")
    return raw, labels[codes]


def read_frame(path: str | os.PathLike, *, target: str | None,
               columns: Sequence[str] | None = None, impute: bool = True,
               dtype: Any = np.float64, categorical: Sequence[str] = (),
               label: str | None = None) -> Frame:
    """Reads a CSV file with a header row into a DataFrame of raw cells, for column kinds.

    The file rules of ``read_csv`` hold (UTF-8, commas, quotes, blank lines skipped, cells
    stripped, the same missing-cell words), but feature cells may hold text and be missing:
    ``jaxnet.data.table.Table`` decides what each column is. Parsed by pandas' C reader;
    the rows are counted again with Python's csv module only when a line must be named.

    Args:
        path: The .csv file.
        target: The label column, or None.
        columns: The feature columns to read, by name (a trained model's); None: every
            column but ``target``. Other columns are named in one ``IgnoredColumnsWarning``.
        impute: True leaves out rows whose label is missing, with a ``DataNote``; False
            refuses them.
        dtype: The float dtype number columns are parsed into (the run's: float32 halves
            the memory of a big file); the ``categorical`` columns stay as written.
        label: The model's label column when reading rows to predict on (no ``target``):
            named as the target in the note about ignored columns.

    Raises:
        DataError: What ``read_csv`` refuses about the file itself: missing, unreadable or
            empty file, no data rows, no header row, unknown or repeated target or feature
            column, a row with the wrong number of cells, a missing label with
            ``impute=False``, a fractional numeric label.
    """
    import pandas as pd  # imported here: pandas takes ~0.5 s to import

    p = os.fspath(path)
    layout = _layout(p, target, None if columns is not None else True, columns)
    if layout.header is None:
        raise DataError(f"{p}: the first row holds numbers, not column names; the model reads "
                        f"its columns by name ({', '.join(map(repr, columns))}): add a header row")
    names = [layout.header[j] for j in layout.features]
    repeated = [n for n in names if names.count(n) > 1]
    if repeated:
        raise DataError(
            f"{p}: column {repeated[0]!r} appears {names.count(repeated[0])} times in the "
            f"header; rename all but one (a trained model matches its input columns by name)")
    raw = _parse(p, layout, dtype, categorical)
    known: list[int] | None = None

    def line(row: int) -> str:
        nonlocal known
        known = known if known is not None else _lines(p, layout)
        return f"line {known[row]}"

    if raw.isna().to_numpy().any() or layout.line != 1:
        known = _lines(p, layout)  # a short row reads as missing cells: refuse it first
    raw, y = (raw, None) if layout.target is None else _frame_labels(p, raw, layout, impute, line)
    x = raw  # the feature columns, renamed in place: a big file is not copied
    for j in [j for j in x.columns if j not in set(layout.features)]:
        del x[j]  # the target and ignored columns
    if list(x.columns) != layout.features:
        x = x[layout.features]
    x.columns = names
    for name in names:  # strip text cells; the missing-cell words with spaces around them
        if not (pd.api.types.is_numeric_dtype(x[name]) or pd.api.types.is_bool_dtype(x[name])):
            codes, uniques = pd.factorize(x[name])
            clean = np.array([u.strip() if isinstance(u, str) else u for u in uniques] + [None],
                             dtype=object)
            clean[[isinstance(u, str) and u.lower() in _MISSING for u in clean]] = None
            x[name] = clean[codes]
    warn_ignored(p, layout.ignored, label)
    return Frame(x, y, line)


def _read(path: str, target: str | None, header: bool | None,
          columns: Sequence[str] | None = None) -> _Table:
    layout = _layout(path, target, header, columns)
    table = _read_fast(path, layout)
    table = table if table is not None else _read_exact(path, layout, target)
    warn_ignored(path, layout.ignored)
    return table


def _line(path: str, table: _Table, row: int) -> int:
    """Line number of data row ``row`` (0-based) of ``table``, counted again if pandas read it."""
    if table.lines is not None:
        return table.lines[row]
    rows = _rows(path)
    if table.names is not None:
        next(rows)  # the header
    for k, (line, _) in enumerate(rows):
        if k == row:
            return line
    raise AssertionError(f"{path} has fewer than {row + 1} data rows")


def read_csv(
    path: str | os.PathLike, *, target: str | None, header: bool | None = True,
    columns: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """Reads a CSV file into features and labels: jaxnet's one CSV reader.

    The rules, for training data and for the inputs of ``jaxnet predict`` alike:

    * UTF-8 text (an optional byte-order mark is dropped), comma-separated, quoted
      with ``"`` as spreadsheets write it. Blank lines (empty or only spaces) are skipped.
    * Spaces after a comma are skipped (so `` "a, b"`` is one quoted cell), and every
      cell and column name is stripped of surrounding whitespace.
    * A cell that is empty or ``NA``, ``N/A``, ``NaN``, ``null``, ``None`` (any case) is
      missing; a missing feature or label is refused, as is an infinite feature.
    * Every column except ``target`` is a feature and must hold numbers (as Python's
      ``float`` reads them). The target column may hold strings; when every target
      cell is a whole number (``3`` or ``3.0``) the labels are int64.
    * Every row has as many cells as the first row.

    The file is parsed by pandas' C reader; when pandas' result is refused (or holds
    a cell it does not read as a number, such as ``1_000``), the file is read again
    row by row with Python's csv module, which accepts or refuses exactly as above
    and names the line and column of the first bad cell.

    Args:
        path: The .csv file.
        target: Name of the label column, or None when the file holds features only.
        header: True: the first non-blank row holds the column names. None: it does
            unless every one of its cells is a number and there is no ``target`` (then
            every row is data). False: every row is data (``target`` must be None).
            With ``columns``, None also reads a first row holding all of them as the header.
        columns: The feature columns to read, by name, in this order (a trained model's
            ``feature_names``): the file may hold them in any order; its other columns,
            but ``target``, are not read and are named in one ``IgnoredColumnsWarning``.
            Without a header row every column is a feature, as without ``columns``.

    Returns:
        (x, y, feature_names): x float64 (N, D), y (N,) int64 or str (None without
        a target), and the D feature column names in file order (None without a
        header row).

    Raises:
        DataError: One line naming the file, the line number (the file's first line
            is line 1) and the column: missing or unreadable file, empty file, no data
            rows, unknown or repeated target column, no feature columns, a row with the
            wrong number of cells, a missing, non-numeric or infinite feature, a
            missing or fractional label; a column of ``columns`` missing (naming it
            and the columns found) or repeated.
    """
    p = os.fspath(path)
    if target is not None and header is False:
        raise ValueError(f"target={target!r} needs a header row naming the columns")
    table = _read(p, target, header, columns)
    return table.x, table.y, table.names


def load_csv(path: str | os.PathLike, *, target: str | None,
             columns: Sequence[str] | None = None, table: Table | None = None,
             categorical: Sequence[str] = (), drop: Sequence[str] = (), impute: bool = True,
             **split) -> Dataset:
    """A CSV file (see ``read_frame``) split by jaxnet like an .npz file with ``x``, ``y``,
    its columns made into features by a ``jaxnet.data.table.Table`` fitted on the training
    split (numbers, categories, booleans, dates; missing cells filled; see that module).

    Args:
        path: The .csv file.
        target: Name of the label column; required.
        columns: The feature columns, by name and in this order; None: every column but
            ``target``, in file order (or ``table``'s).
        table: A trained model's Table: the file's columns are encoded as it says instead of
            fitting a new one (``columns`` is then the table's).
        categorical, drop, impute: As ``Table.fit`` takes them; ``impute=False`` also
            refuses a row whose label is missing (else it is left out, noted).
        **split: ``val_fraction``, ``test_fraction``, ``seed`` and ``dtype``, as
            ``split_arrays`` takes them.

    Returns:
        The Dataset named ``"csv"``; ``classes`` are the distinct labels, ``table`` the
        Table and ``feature_names`` the columns it reads.

    Raises:
        DataError: Everything ``read_frame`` and ``Table.fit`` refuse, no target given, a
            single class, a value too large for ``dtype``, or too few rows for the fractions.
    """
    p = os.fspath(path)
    if target is None:
        raise DataError(
            f"{p}: no target column given; the csv dataset needs the name of the label column "
            f"(`target=COLUMN`); columns found: {', '.join(map(repr, csv_columns(p)))}"
        )
    if table is not None:
        columns, categorical = table.names, [c.name for c in table.columns
                                             if c.kind == "category"]
    dtype = split.pop("dtype")
    frame = read_frame(p, target=target, columns=columns,
                       impute=impute if table is None else table.impute, dtype=dtype,
                       categorical=categorical)
    classes = np.unique(frame.y)
    check_classes(classes, source=p, y_name=f"column {target!r}")
    parts = dict(zip(SPLITS, split_indices(frame.y, source=p, **split), strict=True))
    if table is None:
        table = Table.fit(frame.x, rows=np.sort(parts["train"]), categorical=categorical,
                          drop=drop, impute=impute, source=p, where=frame.line)
    for name, rows in parts.items():  # one split at a time: the file is in memory once
        parts[name] = None if rows is None else (
            table.encode(frame.x, rows=rows, dtype=dtype, source=p, where=frame.line),
            frame.y[rows])
    del frame
    data = make_dataset("csv", p, parts, dtype, classes=classes)
    return dataclasses.replace(data, feature_names=table.names, table=table)
