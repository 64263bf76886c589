"""Column kinds: how a table's columns (numbers, categories, booleans, dates) become features.

A ``Table`` is learned from the training rows of a table (a pandas DataFrame, as the CSV
reader or a user gives it) and then turns any rows with the same columns into a float array,
the network's input before standardisation. What it learned is plain JSON (``to_json``), so
a run keeps its whole input schema next to its weights, without pickle.

The kinds, decided from the training rows (``KINDS``):

* ``number``: a column pandas reads as numbers. One feature.
* ``boolean``: text that is only true/false or yes/no (any case). One feature, 0 or 1.
* ``date``: text that is only ISO-8601 dates or times (``2012-01-31``, ``2012-01-31T08:00``,
  with an optional UTC offset). Three features: the year, the day of the year (1-366) and
  the day of the week (0 is Monday), read in UTC.
* ``category``: any other text, or a column named in ``categorical`` (numbers too). One 0/1
  feature per value seen in training (one-hot, values sorted); a value never seen in
  training gives a row of zeros (noted, never an error).

Left out, with a note naming them: text that looks like an identifier (more than 20
distinct values and at least half of the cells distinct: names, ids, free text), a column
with no value in the training rows, and the columns named in ``drop``. Naming an
identifier-like column in ``categorical`` keeps it as a category.

Missing cells (empty, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``, any case): in a number,
boolean or date column they take the training rows' median and a 0/1 ``(missing)``
indicator feature is added when the training rows had missing cells there (scikit-learn's
``SimpleImputer(strategy="median", add_indicator=True)``); a missing cell at predict time in a
column that had none in training is filled the same way, with a note. In a category column a
missing cell is a category of its own, ``(missing)``. With ``impute=False`` every missing cell
is refused instead.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxnet.data.columns import DataNote
from jaxnet.data.dataset import DataError

KINDS = ("number", "boolean", "date", "category")
MISSING = "(missing)"  # the name of a missing-value category and of indicator features
_TRUE, _FALSE = {"true", "yes"}, {"false", "no"}
_BOOLEANS = ({"true", "false"}, {"yes", "no"})
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?")
_DATE_PARTS = ("year", "dayofyear", "dayofweek")
ID_MIN_DISTINCT = 20  # identifier-like: more distinct values than this ...
ID_MIN_FRACTION = 0.5  # ... and at least this fraction of the cells distinct


def _text(values: Any) -> np.ndarray:
    """Cells as stripped strings (object array); numbers written as Python writes them,
    whole numbers without ``.0``, so 3 and "3" are one category."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            out[i] = str(int(v))
        elif isinstance(v, (bool, np.bool_)):
            out[i] = "true" if v else "false"
        else:
            out[i] = str(v).strip()
    return out


def _categories(series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques) of a column's present cells as text: pandas.factorize, then the few
    distinct values written as text (fast on a million rows with few values)."""
    import pandas as pd

    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes, _text(np.asarray(uniques, dtype=object))


def _is_categorical_dtype(series) -> bool:
    import pandas as pd

    return isinstance(series.dtype, pd.CategoricalDtype)


def _dates(values) -> np.ndarray:
    """(N, 3) float64 year, day of year, day of week of ISO strings; NaN rows for cells that
    are missing or not a date."""
    import pandas as pd

    stamps = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601", utc=True,
                            errors="coerce")
    out = np.full((len(values), 3), np.nan)
    ok = stamps.notna().to_numpy()
    parts = (stamps.dt.year, stamps.dt.day_of_year, stamps.dt.day_of_week)  # _DATE_PARTS
    out[ok] = np.stack([p.to_numpy()[ok] for p in parts], axis=1)
    return out


class LeftOutColumnsNote(DataNote):
    """Columns a Table leaves out on its own (identifier-like, empty); `Table.summary` lists
    them too."""


def _note(message: str, kind: type[DataNote] = DataNote) -> None:
    warnings.warn(message, kind, stacklevel=4)


def _row(label) -> str:
    """Where a row is, for messages, by its DataFrame index label (the CSV reader passes
    a function naming the file's line instead)."""
    return f"row {label!r}"


def _first(series, mask: np.ndarray, where) -> str:
    return where(series.index[int(np.flatnonzero(mask)[0])])


@dataclasses.dataclass(frozen=True)
class Column:
    """One input column: its kind and what was learned for it from the training rows.

    Attributes:
        name: The column's name.
        kind: One of ``KINDS``.
        fill: number/boolean: (median,); date: (year, day of year, day of week) medians;
            category: ().
        indicator: Whether a ``(missing)`` indicator feature follows (number, boolean, date).
        categories: category: the training values, sorted, as text; ``(missing)`` among
            them when training had missing cells.
    """

    name: str
    kind: str
    fill: tuple[float, ...] = ()
    indicator: bool = False
    categories: tuple[str, ...] = ()

    @property
    def features(self) -> list[str]:
        """The names of the features this column becomes, in order."""
        if self.kind == "category":
            return [f"{self.name}={c}" for c in self.categories]
        base = ([f"{self.name}.{p}" for p in _DATE_PARTS] if self.kind == "date"
                else [self.name])
        return base + ([f"{self.name} {MISSING}"] if self.indicator else [])

    @property
    def width(self) -> int:
        return len(self.features)

    def values(self, series, source: str, where=_row) -> np.ndarray:
        """(N, k) float64 raw values (NaN where missing) of number/boolean/date columns."""
        if self.kind == "number":
            return _numbers(series, self.name, source, where)[:, None]
        if self.kind == "date":
            return _dates(series)
        codes, uniques = _categories(series)
        low = np.array([u.lower() for u in uniques], dtype=object)
        table = np.where(np.isin(low, list(_TRUE)), 1.0,
                         np.where(np.isin(low, list(_FALSE)), 0.0, np.nan))
        bad = [u for u, v in zip(uniques, table, strict=True) if np.isnan(v)]
        if bad:
            _note(f"{source}: column {self.name!r} is boolean, but holds {bad[0]!r}; read as "
                  "missing")
        return np.where(codes >= 0, table[np.maximum(codes, 0)] if len(table) else np.nan,
                        np.nan)[:, None]

    def encode(self, series, out: np.ndarray, source: str, where=_row) -> None:
        """Writes this column's features for every row into ``out`` (N, width)."""
        if self.kind == "category":
            codes, uniques = _categories(series)
            position = {c: j for j, c in enumerate(self.categories)}
            slot = np.array([position.get(u, -1) for u in uniques] + [position.get(MISSING, -1)])
            where = slot[codes]  # codes == -1 (missing) takes the last entry
            unseen = (where < 0)
            if unseen.any():
                kinds = sorted({uniques[c] if c >= 0 else MISSING for c in codes[unseen]})
                _note(f"{source}: column {self.name!r}: {int(unseen.sum())} rows hold values "
                      f"never seen in training ({', '.join(map(repr, kinds[:5]))}"
                      f"{', ...' if len(kinds) > 5 else ''}); they get no category (all zeros)")
            rows = np.flatnonzero(~unseen)
            out[:, :] = 0
            out[rows, where[rows]] = 1
            return
        raw = self.values(series, source, where)
        missing = np.isnan(raw).any(axis=1)
        if missing.any() and not self.indicator:
            _note(f"{source}: column {self.name!r} has {int(missing.sum())} missing cells; it "
                  "had none in training: filled with the training median")
        k = raw.shape[1]
        filled = np.where(missing[:, None], np.asarray(self.fill), raw)
        big = (np.abs(filled) > np.finfo(out.dtype).max).any(axis=1)
        if big.any():
            row = int(np.flatnonzero(big)[0])
            raise DataError(f"{source}: {_first(series, big, where)}, column {self.name!r}: "
                            f"{filled[row].max():g} is too large for {out.dtype.name}; rescale "
                            "the column or use float64")
        out[:, :k] = filled
        if self.indicator:
            out[:, k] = missing

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "fill": list(self.fill),
                "indicator": self.indicator, "categories": list(self.categories)}


def _as_numbers(series) -> np.ndarray:
    """A column as float64, NaN where missing or not a number (Python's float() rules)."""
    values = series.to_numpy()
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    codes, uniques = _categories(series)
    table = np.empty(len(uniques) + 1)
    for i, u in enumerate(uniques):
        try:
            table[i] = float(u)
        except ValueError:
            table[i] = np.nan
    table[-1] = np.nan  # code -1: missing
    return table[codes]


def _numbers(series, name: str, source: str, where=_row) -> np.ndarray:
    """A number column as float64, NaN where missing; text or infinity is refused."""
    out = _as_numbers(series)
    bad = np.isnan(out) & series.notna().to_numpy()
    if bad.any():
        cell = series.iloc[int(np.flatnonzero(bad)[0])]
        raise DataError(
            f"{source}: {_first(series, bad, where)}, column {name!r}: {cell!r} is not a "
            f"number ({int(bad.sum())} such cells); the column holds numbers; fix the cell, "
            "or leave it empty to mark it missing")
    if np.isinf(out).any():
        inf = np.isinf(out)
        raise DataError(f"{source}: {_first(series, inf, where)}, column {name!r}: "
                        f"{str(series.iloc[int(np.flatnonzero(inf)[0])])!r} is infinite; "
                        "expected a finite number; fix the cell or drop the row")
    return out


def _detect(name: str, series, categorical: bool, source: str,
            where=_row) -> tuple[str | None, str]:
    """(kind, why) of a column from its training cells; kind None: leave it out."""
    present = series.dropna()
    if len(present) == 0:
        return None, "no value in the training rows"
    if categorical or _is_categorical_dtype(series):
        return "category", "named as categorical"
    if series.dtype.kind == "b":
        return "boolean", ""
    if series.dtype.kind in "iuf":
        return "number", ""
    numbers = _as_numbers(present)
    text = np.isnan(numbers)
    if not text.any():
        return "number", ""
    if text.mean() < 0.5:  # mostly numbers: a typo, or a marker of missing cells
        cells = sorted(set(present[text].tolist()))
        raise DataError(
            f"{source}: {_first(present, text, where)}, column {name!r}: {cells[0]!r} is not a "
            f"number, but the column holds numbers ({int(text.sum())} of {len(present)} cells "
            f"are text: {', '.join(map(repr, cells[:3]))}{', ...' if len(cells) > 3 else ''}); "
            "fix the cells; if they mark missing values, leave them empty or write NA; to read "
            "the column as categories, name it in `categorical`")
    _, uniques = _categories(present)
    low = {u.lower() for u in uniques}
    if any(low <= b for b in _BOOLEANS):
        return "boolean", ""
    if all(_ISO.fullmatch(u) for u in uniques) and not np.isnan(_dates(uniques)).any():
        return "date", ""
    if len(uniques) > ID_MIN_DISTINCT and len(uniques) >= ID_MIN_FRACTION * len(present):
        return None, (f"identifier-like: {len(uniques)} distinct values in {len(present)} "
                      "training rows; name it in `categorical` to keep it as a category")
    return "category", ""


@dataclasses.dataclass(frozen=True)
class Table:
    """The input columns of a table, their kinds, and what was learned for each.

    Attributes:
        columns: The columns the model uses, in input order.
        left_out: (name, why) of the input columns it leaves out.
        impute: Whether missing cells are filled (False: refused, in training and after).
    """

    columns: tuple[Column, ...]
    left_out: tuple[tuple[str, str], ...] = ()
    impute: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        """The input columns the model reads, by name, in order."""
        return tuple(c.name for c in self.columns)

    @property
    def features(self) -> list[str]:
        """The names of the D features the network takes, in order."""
        return [f for c in self.columns for f in c.features]

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def describe(self, feature: int) -> str:
        """Feature ``feature`` for messages: "column 'age'", or "column 'when' (feature
        'when.year')" when the column makes several."""
        for column in self.columns:
            if feature < column.width:
                own = column.features[feature]
                return f"column {column.name!r}" + ("" if own == column.name
                                                    else f" (feature {own!r})")
            feature -= column.width
        raise IndexError(feature)

    @classmethod
    def fit(cls, frame, *, rows: Any = None, categorical: Sequence[str] = (),
            drop: Sequence[str] = (), impute: bool = True, source: str = "data",
            where=_row) -> Table:
        """Decides each column's kind from the training rows ``frame`` and learns its values.

        Args:
            frame: The training rows: a pandas DataFrame of the feature columns (numbers
                as numbers, text as str, missing cells as NaN/None).
            rows: The positions of the training rows in ``frame``; None: every row (read
                column by column, so a big frame is never copied whole).
            categorical: Columns to one-hot encode whatever they hold.
            drop: Columns to leave out.
            impute: False refuses missing cells instead of filling them.
            source: Where the rows come from (a file name); prefixes messages.
            where: A row's index label -> where it is ("line 12"), for messages.

        Returns:
            The fitted Table; left-out columns are named in one ``DataNote``.

        Raises:
            DataError: ``categorical``/``drop`` name a column the table lacks, both name one
                column, a missing cell with ``impute=False``, or no column is left.
        """
        names = [str(c) for c in frame.columns]
        for setting, given in (("categorical", categorical), ("drop", drop)):
            unknown = [c for c in given if c not in names]
            if unknown:
                raise DataError(f"{source}: `{setting}` names {', '.join(map(repr, unknown))}, "
                                f"not a feature column; columns found: "
                                f"{', '.join(map(repr, names))}")
        both = sorted(set(categorical) & set(drop))
        if both:
            raise DataError(f"{source}: {', '.join(map(repr, both))} is both in `categorical` "
                            "and in `drop`; keep it in one")
        columns, left_out = [], []
        for name in names:
            if name in drop:
                left_out.append((name, "dropped as asked"))
                continue
            series = frame[name] if rows is None else frame[name].iloc[rows]
            kind, why = _detect(name, series, name in categorical, source, where)
            if kind is None:
                left_out.append((name, why))
                continue
            missing = series.isna().to_numpy()
            if missing.any() and not impute:
                raise DataError(
                    f"{source}: {_first(series, missing, where)}, column {name!r}: missing "
                    "value; `impute=False` refuses missing cells; fill them in, drop the rows, "
                    "or let jaxnet fill them (drop `impute=False`)")
            columns.append(_fit_column(name, kind, series, bool(missing.any()), source, where))
        if not columns:
            raise DataError(f"{source}: no feature column is left ({'; '.join(f'{n!r}: {w}' for n, w in left_out)}); "
                            "keep at least one (`categorical=[...]` keeps an identifier-like one)")
        table = cls(tuple(columns), tuple(left_out), impute)
        unasked = [(n, w) for n, w in left_out if w != "dropped as asked"]
        if unasked:
            _note(f"{source}: left out {len(unasked)} column{'s' if len(unasked) > 1 else ''}: "
                  + "; ".join(f"{n!r} ({w})" for n, w in unasked), LeftOutColumnsNote)
        return table

    def encode(self, frame, *, rows: Any = None, dtype: Any = np.float64, source: str = "x",
               where=_row) -> np.ndarray:
        """The features (N, D) of ``frame``'s rows (a DataFrame holding ``names``), or of the
        rows at positions ``rows``, as ``dtype``.

        Raises:
            DataError: A number column holding text, an infinite number or one too large
                for ``dtype``, or a missing cell when ``impute`` is False.
        """
        n = len(frame) if rows is None else len(rows)
        out = np.empty((n, self.width), dtype=dtype)
        j = 0
        for column in self.columns:
            series = frame[column.name] if rows is None else frame[column.name].iloc[rows]
            missing = series.isna().to_numpy()
            if not self.impute and missing.any():
                raise DataError(f"{source}: {_first(series, missing, where)}, column "
                                f"{column.name!r}: missing value; the model was trained with "
                                "`impute=False`, which refuses them; fill it in")
            column.encode(series, out[:, j:j + column.width], source, where)
            j += column.width
        return out

    def summary(self) -> str:
        """One line per kind: which columns have it (and what is left out)."""
        lines = []
        for kind in KINDS:
            cols = [c for c in self.columns if c.kind == kind]
            if not cols:
                continue
            parts = []
            for c in cols:
                extra = []
                if kind == "category":
                    extra.append(f"{len(c.categories)} values")
                if c.indicator:
                    extra.append("missing cells filled")
                parts.append(f"{c.name}" + (f" ({', '.join(extra)})" if extra else ""))
            lines.append(f"  {kind}: {', '.join(parts)}")
        for name, why in self.left_out:
            lines.append(f"  left out: {name} ({why})")
        return (f"columns: {len(self.columns)} in, {self.width} features\n" + "\n".join(lines))

    def to_json(self) -> dict[str, Any]:
        return {"columns": [c.to_json() for c in self.columns],
                "left_out": [list(x) for x in self.left_out], "impute": self.impute}

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> Table:
        try:
            columns = tuple(
                Column(name=str(c["name"]), kind=str(c["kind"]),
                       fill=tuple(float(v) for v in c["fill"]), indicator=bool(c["indicator"]),
                       categories=tuple(str(v) for v in c["categories"]))
                for c in meta["columns"])
            left_out = tuple((str(n), str(w)) for n, w in meta.get("left_out", []))
            impute = bool(meta.get("impute", True))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"the saved table schema lacks or garbles {e}; the checkpoint is "
                            "damaged or was not written by jaxnet; train again") from e
        if any(c.kind not in KINDS for c in columns):
            raise DataError("the saved table schema names an unknown column kind; the "
                            "checkpoint is damaged or from a newer jaxnet; train again")
        return cls(columns, left_out, impute)


def _fit_column(name: str, kind: str, series, missing: bool, source: str, where) -> Column:
    if kind == "category":
        _, uniques = _categories(series)
        cats = sorted(set(uniques))
        return Column(name, kind, categories=tuple(cats + ([MISSING] if missing else [])))
    column = Column(name, kind, indicator=missing)
    raw = column.values(series, source, where)
    fill = tuple(float(v) for v in np.nanmedian(raw, axis=0))
    return dataclasses.replace(column, fill=fill)
