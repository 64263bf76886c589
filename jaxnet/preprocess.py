"""The model's preprocessing: feature standardisation fitted on training inputs, and the classes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxnet.data.columns import select_frame
from jaxnet.data.dataset import SPLITS, DataError, Dataset, check_sorted_classes
from jaxnet.data.table import Table
from jaxnet.data.validate import (
    check_finite,
    check_numeric,
    clean_labels,
    float_dtype,
    lookup,
    preview,
)
from jaxnet.standardize import mean_and_scale

_LABEL_KINDS = {"int": np.int64, "str": str}
_ROWS = 1 << 16  # rows per float64 chunk when fitting the standardisation


def _table_frame(x: Any, names: tuple[str, ...]):
    """``x`` as a DataFrame of the table's columns: a DataFrame's own (matched by name), or
    an array's, taken in training column order."""
    import pandas as pd

    if hasattr(x, "iloc") and hasattr(x, "columns"):
        return select_frame(x, names)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise DataError(
            f"x has shape {x.shape}; the model reads {len(names)} columns "
            f"({', '.join(map(repr, names))}): pass a DataFrame with them (any order), or an "
            f"array of shape (N, {len(names)}) in that order")
    return pd.DataFrame(x, columns=list(names))


def _as_features(x: Any, name: str, num_features: int) -> np.ndarray:
    """``x`` (N, ...) as a finite numeric (N, D) array with D == ``num_features``."""
    x = check_numeric(x, name)
    x = x.reshape(len(x), int(np.prod(x.shape[1:])))  # -1 cannot be inferred for 0 rows
    if x.shape[1] != num_features:
        raise DataError(
            f"{name} has {x.shape[1]} features per example, but the model was trained on "
            f"{num_features}; pass inputs with the training data's {num_features} features, in "
            f"the same order"
        )
    check_finite(x, name)
    return x


@dataclasses.dataclass(frozen=True, eq=False)
class Preprocessing:
    """How raw inputs and labels become model inputs and class indices, and back.

    Attributes:
        mean: Per-feature training mean, float64 (D,), or None when standardisation is off.
        scale: Per-feature training standard deviation, float64 (D,), 1 where a
            feature is constant, or None when standardisation is off.
        classes: The original labels, (C,) int64 or str, sorted and distinct;
            class index i stands for ``classes[i]``.
        num_features: Number of input features D the model takes.
        feature_names: The input column names in training order (a CSV file's header,
            a DataFrame's columns), or None for a model trained on unnamed arrays. One per
            feature, unless ``table`` is given: then the columns the table reads.
        table: How a table's columns (categories, dates, missing cells) become the D
            features (``jaxnet.data.table.Table``), applied before standardisation; None
            when the inputs are the features themselves.
    """

    mean: np.ndarray | None
    scale: np.ndarray | None
    classes: np.ndarray
    num_features: int
    feature_names: tuple[str, ...] | None = None
    table: Table | None = None

    def __post_init__(self) -> None:
        classes = clean_labels(self.classes, source="preprocessing", y_name="classes")
        object.__setattr__(self, "classes", check_sorted_classes(classes, "preprocessing"))
        if (self.mean is None) != (self.scale is None):
            raise DataError("preprocessing: mean and scale must both be arrays or both be None")
        if self.mean is not None:
            for field in ("mean", "scale"):
                value = np.asarray(getattr(self, field), dtype=np.float64)
                if value.shape != (self.num_features,):
                    raise DataError(
                        f"preprocessing: {field} has shape {value.shape}, expected "
                        f"({self.num_features},), one value per feature"
                    )
                object.__setattr__(self, field, value)
        if self.table is not None:
            if self.table.width != self.num_features:
                raise DataError(f"preprocessing: the table makes {self.table.width} features, "
                                f"expected num_features={self.num_features}")
            object.__setattr__(self, "feature_names", self.table.names)
        elif self.feature_names is not None:
            names = self.feature_names
            if (isinstance(names, str) or not all(isinstance(n, str) for n in names)
                    or len(names) != self.num_features or len(set(names)) != len(names)):
                raise DataError(
                    f"preprocessing: feature_names must be {self.num_features} distinct "
                    f"strings, one per feature, or None; got {preview(np.asarray(names))}")
            object.__setattr__(self, "feature_names", tuple(names))

    @classmethod
    def fit(cls, x_train: Any, classes: Any, *, standardize: bool = True,
            feature_names: Any = None, table: Table | None = None) -> Preprocessing:
        """Learns the preprocessing from the training inputs only.

        Standardisation is scikit-learn's ``StandardScaler``: mean and (population)
        standard deviation per feature, computed in float64; constant features get
        scale 1, so they map to 0 and never to NaN.

        Args:
            x_train: Training inputs, shape (N, D) or (N, d1, ...), N >= 1.
            classes: The original labels (C,), sorted and distinct (``Dataset.classes``).
            standardize: Whether to standardise; False keeps inputs as they are.
            feature_names: The D input column names, in order, or None.
            table: The Table that made ``x_train`` of a table's columns, or None.

        Returns:
            The fitted Preprocessing.

        Raises:
            DataError: Non-numeric, empty or non-finite inputs, or bad classes.
        """
        x = np.asarray(x_train)
        width = int(np.prod(x.shape[1:])) if x.ndim >= 2 else 0
        x = _as_features(x, "x_train", width)
        if len(x) == 0 or width == 0:
            raise DataError(
                f"x_train has shape {np.shape(x_train)}; fitting the preprocessing needs at "
                f"least one example with at least one feature"
            )
        if not standardize:
            return cls(mean=None, scale=None, classes=np.asarray(classes), num_features=width,
                       feature_names=feature_names, table=table)
        # scikit-learn's StandardScaler, fitted in float64 a few rows at a time (one
        # partial_fit for small sets), computed without importing scikit-learn
        mean, scale = mean_and_scale(x, _ROWS)
        return cls(
            mean=mean, scale=scale, classes=np.asarray(classes),
            num_features=width, feature_names=feature_names, table=table,
        )

    @property
    def standardize(self) -> bool:
        """Whether inputs are standardised."""
        return self.mean is not None

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return len(self.classes)

    def transform(self, x: Any, dtype: Any = np.float32) -> np.ndarray:
        """Turns raw inputs into model inputs.

        Args:
            x: Raw inputs, shape (N, D) or (N, d1, ...) with D features in all; or a
                pandas DataFrame, whose columns are matched to ``feature_names`` by name
                when both have names (other columns are left out with one
                ``IgnoredColumnsWarning``). With a ``table``: a DataFrame holding its
                columns (any order), or an (N, len(feature_names)) array of raw cells in
                training column order.
            dtype: Float dtype of the result.

        Returns:
            (N, D) array of ``dtype``: ``(x - mean) / scale``, or x itself when
            standardisation is off.

        Raises:
            DataError: A feature column missing from a DataFrame, wrong feature count, NaN/inf values, non-numeric dtype, or
                values too large for ``dtype``.
        """
        dtype = float_dtype(dtype)
        if self.table is not None:
            x = self.table.encode(_table_frame(x, self.table.names), source="x")
        return self._transform(select_frame(x, self.feature_names), dtype, "x")

    def _transform(self, x: Any, dtype: np.dtype, name: str) -> np.ndarray:
        x = _as_features(x, name, self.num_features)
        with np.errstate(over="ignore"):
            out = x.astype(dtype)  # a copy: the in-place updates below leave x alone
            if self.mean is not None:
                out -= self.mean.astype(dtype)
                out /= self.scale.astype(dtype)
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            raise DataError(
                f"{name} has values too large for {dtype.name} after preprocessing (first at "
                f"row {int(np.flatnonzero(bad)[0])}); rescale the data or use float64"
            )
        return out

    def encode(self, labels: Any) -> np.ndarray:
        """Original labels -> class indices.

        Args:
            labels: Labels, shape (N,), each one of ``classes`` (3.0 matches 3).

        Returns:
            int32 class indices, shape (N,).

        Raises:
            DataError: A label is not one of the classes (the message names it).
        """
        labels = clean_labels(labels, source="labels", y_name="labels")
        idx, known = lookup(labels, self.classes)
        if not known.all():
            unknown = np.unique(labels[~known])
            raise DataError(
                f"{int((~known).sum())} labels are not among the classes the model was trained "
                f"on (unknown: {preview(unknown)}; first at row {int(np.flatnonzero(~known)[0])}); "
                f"expected one of: {preview(self.classes)}"
            )
        return idx

    def decode(self, indices: Any) -> np.ndarray:
        """Class indices -> original labels.

        Args:
            indices: Integer class indices in ``[0, num_classes)``, any shape.

        Returns:
            The labels ``classes[indices]``, same shape, int64 or str.

        Raises:
            DataError: Non-integer or out-of-range indices.
        """
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise DataError(
                f"class indices have dtype {indices.dtype}, expected integers (e.g. "
                f"logits.argmax(axis=-1))"
            )
        bad = (indices < 0) | (indices >= self.num_classes)
        if bad.any():
            raise DataError(
                f"class index {indices[bad].flat[0].item()} is outside 0..{self.num_classes - 1} "
                f"({self.num_classes} classes)"
            )
        return self.classes[indices]

    def apply(self, dataset: Dataset, dtype: Any = None) -> Dataset:
        """The dataset with every split transformed and its labels re-indexed to ``classes``.

        Args:
            dataset: A Dataset with D = ``num_features`` features, whose classes are
                all among ``classes`` (its indices are re-mapped if the class lists differ).
            dtype: Float dtype of the result; None keeps ``dataset.x_train.dtype``
                (float32 if that is not a float dtype).

        Returns:
            A new Dataset with the same name and splits, inputs transformed,
            ``classes`` equal to this preprocessing's.

        Raises:
            DataError: What ``transform`` refuses (naming the split), or a dataset
                class the preprocessing does not know.
        """
        if dtype is None:
            dtype = dataset.x_train.dtype if dataset.x_train.dtype.kind == "f" else np.float32
        dt = float_dtype(dtype)
        mapping = self.encode(dataset.classes)
        out: dict[str, np.ndarray | None] = {}
        for split in SPLITS:
            x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
            out[f"x_{split}"] = None if x is None else self._transform(
                x, dt, f"{dataset.name}: x_{split}")
            out[f"y_{split}"] = None if y is None else mapping[y]
        return Dataset(name=dataset.name, classes=self.classes,
                       feature_names=dataset.feature_names, table=dataset.table, **out)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The numeric state for a checkpoint.

        Returns:
            ``{"mean": float64 (D,), "scale": float64 (D,)}``, or ``{}`` when
            standardisation is off.
        """
        if self.mean is None:
            return {}
        return {"mean": self.mean, "scale": self.scale}

    @staticmethod
    def array_shapes(num_features: int, standardize: bool) -> dict[str, Any]:
        """Shapes and dtypes of ``to_arrays()``, as a checkpoint template.

        Args:
            num_features: D.
            standardize: Whether the preprocessing standardises.

        Returns:
            ``{"mean", "scale"}`` as float64 (D,) ``jax.ShapeDtypeStruct``, or ``{}``.
        """
        if not standardize:
            return {}
        import jax  # only loading a model needs it

        return {k: jax.ShapeDtypeStruct((num_features,), np.float64) for k in ("mean", "scale")}

    def to_json(self) -> dict[str, Any]:
        """The rest of the state, as JSON-serialisable values.

        Returns:
            ``{"standardize": bool, "num_features": D, "classes": [...],
            "label_kind": "int" | "str", "feature_names": [...] or None}``.
        """
        return {
            "standardize": self.standardize,
            "num_features": self.num_features,
            "classes": self.classes.tolist(),
            "label_kind": "str" if self.classes.dtype.kind == "U" else "int",
            "feature_names": None if self.feature_names is None else list(self.feature_names),
            "table": None if self.table is None else self.table.to_json(),
        }

    @classmethod
    def from_saved(cls, arrays: dict[str, Any], meta: dict[str, Any]) -> Preprocessing:
        """Rebuilds a Preprocessing from ``to_arrays()`` and ``to_json()`` output.

        Args:
            arrays: The saved arrays (``mean``, ``scale`` when standardising).
            meta: The saved JSON dict (runs saved before ``feature_names`` was
                recorded load with None).

        Returns:
            The Preprocessing, equal to the one that was saved.

        Raises:
            DataError: Missing or inconsistent entries (a damaged or foreign checkpoint).
        """
        damaged = "the checkpoint is damaged or was not written by jaxnet; train again"
        try:
            standardize = bool(meta["standardize"])
            num_features = int(meta["num_features"])
            kind = _LABEL_KINDS[meta["label_kind"]]
            classes = np.asarray(meta["classes"], dtype=kind)
            names = meta.get("feature_names")
            names = None if names is None else tuple(names)
            table = None if meta.get("table") is None else Table.from_json(meta["table"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"preprocessing metadata lacks or garbles {e}; expected the keys "
                f"standardize, num_features, classes, label_kind; {damaged}"
            ) from e
        if not standardize:
            return cls(mean=None, scale=None, classes=classes, num_features=num_features,
                       feature_names=names, table=table)
        missing = [k for k in ("mean", "scale") if k not in arrays]
        if missing:
            raise DataError(
                f"preprocessing arrays lack {', '.join(missing)} although standardize is on; "
                f"{damaged}"
            )
        return cls(
            mean=np.asarray(arrays["mean"], dtype=np.float64),
            scale=np.asarray(arrays["scale"], dtype=np.float64),
            classes=classes,
            num_features=num_features,
            feature_names=names,
            table=table,
        )
