"""Matching input columns to a model's feature names: the one rule for CSV files and DataFrames."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

from jaxnet.data.dataset import DataError


class DataNote(UserWarning):
    """Something jaxnet did to the data that the user should hear of once (a column or rows
    left out, a value never seen in training); the CLI prints these as `note:` lines."""


class IgnoredColumnsWarning(DataNote):
    """Input columns the model does not use (the target, an id, ...) were left out."""


class Match(NamedTuple):
    """Where each of the model's features is among the input columns, and what is left out."""

    indices: list[int]  # indices[j]: the input column holding feature j
    ignored: list[str]  # input columns that are not features, in input order


def match_columns(found: Sequence[str], names: Sequence[str], *, source: str) -> Match:
    """The input columns holding the model's features `names`, matched by name.

    Args:
      found: the input's column names, in its order.
      names: the model's feature names, in training order.
      source: where the columns come from (a file name); prefixes the message.

    Returns:
      A Match: column indices in the order of `names`, and the names of the other columns.

    Raises:
      DataError: a feature column is missing (naming it and the columns found), or appears
        more than once.
    """
    found = [str(c) for c in found]
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(
            f"{source}: no column {', '.join(map(repr, missing))}: the model was trained on "
            f"{len(names)} columns ({', '.join(map(repr, names))}) and matches them by name; "
            f"columns found: {', '.join(map(repr, found)) or 'none'}; add the missing "
            f"column{'s' if len(missing) > 1 else ''} (or rename one to match)")
    repeated = [n for n in names if found.count(n) > 1]
    if repeated:
        raise DataError(f"{source}: column {repeated[0]!r} appears {found.count(repeated[0])} "
                        "times; keep one (the model matches columns by name)")
    wanted = set(names)
    return Match([found.index(n) for n in names], [c for c in found if c not in wanted])


def warn_ignored(source: str, ignored: Sequence[str], target: str | None = None) -> None:
    """The one note about input columns the model does not use, as an IgnoredColumnsWarning
    (the model's label column, `target`, marked as such)."""
    if ignored:
        names = [f"{c!r}{' (the target)' if c == target else ''}" for c in ignored]
        warnings.warn(
            f"{source}: ignored {len(ignored)} column{'s' if len(ignored) > 1 else ''} the "
            f"model does not use: {', '.join(names)}", IgnoredColumnsWarning, stacklevel=3)


def select_frame(x, names: Sequence[str] | None, *, source: str = "x"):
    """A DataFrame's feature columns by name, in the order `names` gives; other inputs as given.

    A pandas DataFrame whose column names are all strings is matched by name when the model
    has `names` (its other columns are left out with one IgnoredColumnsWarning); arrays, and
    a DataFrame with other column labels, keep their columns in order (the caller then
    checks only their count).

    Raises:
      DataError: a feature column is missing or repeated (see `match_columns`).
    """
    columns = getattr(x, "columns", None)
    if names is None or columns is None or not hasattr(x, "iloc") or not all(
            isinstance(c, str) for c in columns):
        return x
    match = match_columns(list(columns), names, source=source)
    warn_ignored(source, match.ignored)
    return x.iloc[:, match.indices]
