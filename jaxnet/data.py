"""Datasets for jaxnet: built-in digits and random data, local CIFAR-10 and user .npz files."""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "load_dataset",
    "random_data",
    "validate_arrays",
]

DATASETS = ("digits", "random", "cifar10", "npz")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR_PIXELS = 3 * 32 * 32
_CIFAR_RECORD = 1 + _CIFAR_PIXELS
_CIFAR_CLASSES = 10
_CIFAR_PY_FILES = (*tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
_CIFAR_BIN_FILES = (*tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin")
_CIFAR_EXPECTED = (
    "expected data_batch_1..5 and test_batch (python format) or "
    "data_batch_1.bin..5.bin and test_batch.bin (binary format)"
)
_CIFAR_DOWNLOAD = (
    f"download and extract cifar-10-python.tar.gz or cifar-10-binary.tar.gz from {CIFAR10_URL}"
)
_SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """A dataset could not be loaded or failed validation.

    The message names the source (usually a file), what was wrong, what was
    expected and how to fix it.
    """


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset with flattened features and integer labels.

    Attributes:
        name: Dataset name, e.g. ``"digits"``.
        x_train: Training inputs, shape (N, D), floating dtype.
        y_train: Training labels, shape (N,), int32 in ``[0, num_classes)``.
        x_val: Validation inputs, shape (N_val, D), or None when there is no
            validation split.
        y_val: Validation labels, shape (N_val,), int32, or None.
        x_test: Test inputs, shape (N_test, D), or None when there is no test split.
        y_test: Test labels, shape (N_test,), int32, or None.
        num_classes: Number of classes C.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int

    def __post_init__(self) -> None:
        for split in ("val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if (x is None) != (y is None):
                raise DataError(
                    f"{self.name}: x_{split} and y_{split} must both be arrays or both be None; "
                    f"got x_{split}={'None' if x is None else 'array'} and "
                    f"y_{split}={'None' if y is None else 'array'}"
                )

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


# --------------------------------------------------------------------------- validation


def _first_row(mask: np.ndarray) -> int:
    """Index of the first row of ``mask`` (N, ...) that has any True entry."""
    return int(np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))[0])


def validate_arrays(
    x: Any,
    y: Any,
    *,
    num_classes: int | None = None,
    source: str = "data",
    x_name: str = "x",
    y_name: str = "y",
) -> None:
    """Checks that ``x``/``y`` form a usable classification split.

    Checks: ``x`` is numeric with shape (N, d1, ...) and no NaN/inf values,
    ``y`` has shape (N,) and holds whole-number labels (floats such as 3.0 are
    accepted, 1.5 is not) that are >= 0 and, when ``num_classes`` is given,
    < ``num_classes``; N >= 1.

    Args:
        x: Inputs, shape (N, D) or (N, d1, d2, ...).
        y: Labels, shape (N,).
        num_classes: If given, labels must lie in ``[0, num_classes)``.
        source: Where the arrays came from (a file name); prefixes every message.
        x_name: Name of ``x`` in messages, e.g. ``"x_train"``.
        y_name: Name of ``y`` in messages, e.g. ``"y_train"``.

    Raises:
        DataError: If any check fails; the message names ``source`` and the problem.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    where = f"{source}: "

    if x.dtype.kind not in "biuf":
        raise DataError(
            f"{where}{x_name} has dtype {x.dtype}, expected numbers (int or float); "
            f"convert it with .astype(np.float32) before saving"
        )
    if x.ndim < 2:
        raise DataError(
            f"{where}{x_name} has shape {x.shape}, expected (N, D) or (N, d1, d2, ...) with one "
            f"row per example; for a single feature use x.reshape(-1, 1)"
        )
    if y.ndim != 1:
        raise DataError(
            f"{where}{y_name} has shape {y.shape}, expected (N,) integer class labels; "
            f"flatten it with y.ravel() (for one-hot labels use y.argmax(axis=1))"
        )
    if len(x) != len(y):
        raise DataError(
            f"{where}{x_name} has {len(x)} rows but {y_name} has {len(y)} labels; "
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
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = ~np.isfinite(x)
        raise DataError(
            f"{where}{x_name} holds {int(bad.sum())} NaN or infinite values "
            f"(first at row {_first_row(bad)}); clean or impute them before training"
        )

    if y.dtype.kind not in "biuf":
        raise DataError(
            f"{where}{y_name} has dtype {y.dtype}, expected integer class labels 0..C-1; "
            f"map class names to integers first, e.g. np.unique(y, return_inverse=True)[1]"
        )
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            bad = ~np.isfinite(y)
            raise DataError(
                f"{where}{y_name} holds {int(bad.sum())} NaN or infinite labels "
                f"(first at row {_first_row(bad)}); expected integer class labels 0..C-1"
            )
        frac = y != np.round(y)
        if frac.any():
            row = int(np.flatnonzero(frac)[0])
            raise DataError(
                f"{where}{y_name} holds {int(frac.sum())} non-integer labels "
                f"(first {y[row].item()!r} at row {row}); expected integer class labels 0..C-1"
            )
    neg = y < 0
    if neg.any():
        row = int(np.flatnonzero(neg)[0])
        raise DataError(
            f"{where}{y_name} holds {int(neg.sum())} negative labels (first {y[row].item()!r} at "
            f"row {row}); expected class labels 0..C-1; remap them, e.g. "
            f"np.unique(y, return_inverse=True)[1]"
        )
    if num_classes is not None:
        high = y >= num_classes
        if high.any():
            row = int(np.flatnonzero(high)[0])
            raise DataError(
                f"{where}{y_name} holds {int(high.sum())} labels >= num_classes={num_classes} "
                f"(first {y[row].item()!r} at row {row}); expected labels in 0..{num_classes - 1}"
            )
    big = y > np.iinfo(np.int32).max
    if big.any():
        row = int(np.flatnonzero(big)[0])
        raise DataError(
            f"{where}{y_name} holds label {y[row].item()!r} at row {row}, which does not fit "
            f"int32; expected class labels 0..C-1 with a small C"
        )


def _finish(
    name: str,
    source: str,
    splits: dict[str, tuple[np.ndarray, np.ndarray] | None],
    num_classes: int,
    dtype: np.dtype,
) -> Dataset:
    """Casts, flattens and validates the splits, then builds the Dataset."""
    out: dict[str, np.ndarray | None] = {}
    for split in _SPLITS:
        pair = splits.get(split)
        if pair is None:
            out[f"x_{split}"] = out[f"y_{split}"] = None
            continue
        x, y = pair
        x = np.ascontiguousarray(np.asarray(x).reshape(len(x), -1), dtype=dtype)
        validate_arrays(
            x, y, num_classes=num_classes, source=source, x_name=f"x_{split}", y_name=f"y_{split}"
        )
        out[f"x_{split}"] = x
        out[f"y_{split}"] = np.ascontiguousarray(y, dtype=np.int32)
    return Dataset(name=name, num_classes=int(num_classes), **out)


# --------------------------------------------------------------------------- splitting


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for label, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(f, (int, float)) and 0.0 <= f < 1.0):
            raise DataError(
                f"{label}={f!r} is outside [0, 1); pass a fraction such as 0.1 (0 disables "
                f"the split)"
            )
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"val_fraction={val_fraction} + test_fraction={test_fraction} = "
            f"{val_fraction + test_fraction:g} leaves no training data; expected a sum < 1 "
            f"(e.g. 0.1 and 0.2)"
        )


def _holdout_size(fraction: float, n: int) -> int:
    """ceil(fraction * n) like scikit-learn, robust to float round-off (0.3 * 10 -> 3)."""
    return math.ceil(fraction * n - 1e-9) if fraction > 0 else 0


def _can_stratify(y: np.ndarray, n_hold: int) -> bool:
    _, counts = np.unique(y, return_counts=True)
    k = len(counts)
    return counts.min() >= 2 and n_hold >= k and len(y) - n_hold >= k


def _holdout(
    idx: np.ndarray, y: np.ndarray, n_hold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``idx`` into (rest, held-out) with ``n_hold`` held out, stratified if possible."""
    from sklearn.model_selection import train_test_split

    labels = y[idx]
    stratify = labels if _can_stratify(labels, n_hold) else None
    rest, held = train_test_split(idx, test_size=n_hold, random_state=seed, stratify=stratify)
    return np.asarray(rest), np.asarray(held)


def _split_indices(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Shuffled (train, val, test) index arrays; val/test None when their fraction is 0.

    Sizes are ceil(fraction * N) of the whole set; the test set is drawn first, then
    validation from the rest. Each draw is stratified when every class has >= 2
    members and the sizes allow one example per class on both sides.
    """
    n = len(y)
    n_test = _holdout_size(test_fraction, n)
    n_val = _holdout_size(val_fraction, n)
    if n - n_test - n_val < 1:
        raise DataError(
            f"{source}: {n} examples are too few for val_fraction={val_fraction} and "
            f"test_fraction={test_fraction} ({n_val} val + {n_test} test leaves no training "
            f"data); use smaller fractions or more data"
        )
    rest = np.arange(n)
    test = val = None
    if n_test:
        rest, test = _holdout(rest, y, n_test, seed)
    if n_val:
        rest, val = _holdout(rest, y, n_val, seed)
    return rest, val, test


# --------------------------------------------------------------------------- built-in data


def random_data(
    n: int = 50,
    d: int = 3 * 32 * 32,
    c: int = 10,
    seed: int = 231,
    dtype: Any = np.float32,
) -> Dataset:
    """The CS231n notebook's random data (training split only).

    Draws ``X = rng.randn(n, d)`` then ``y = rng.randint(c, size=n)`` from
    ``rng = np.random.RandomState(seed)``, exactly as the notebook does.

    Args:
        n: Number of examples N.
        d: Number of features D.
        c: Number of classes C.
        seed: RandomState seed (231 in the notebook).
        dtype: Float dtype of x.

    Returns:
        Dataset named ``"random"`` with x_train (N, D), y_train (N,) in [0, C),
        num_classes C and no val/test split.

    Raises:
        DataError: If n, d or c is not a positive integer.
    """
    for label, v in (("n", n), ("d", d), ("c", c)):
        if not (isinstance(v, (int, np.integer)) and v >= 1):
            raise DataError(f"random_data: {label}={v!r} must be a positive integer")
    dtype = _float_dtype(dtype)
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d)
    y = rng.randint(c, size=n)
    return _finish("random", "random data", {"train": (x, y)}, c, dtype)


def _load_digits(val_fraction: float, test_fraction: float, seed: int, dtype: np.dtype) -> Dataset:
    """scikit-learn's 8x8 digits, stratified split, standardised with train statistics."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    source = "digits"
    validate_arrays(x, y, num_classes=10, source=source)
    tr, va, te = _split_indices(y, val_fraction, test_fraction, seed, source)
    mean = x[tr].mean(axis=0)
    std = x[tr].std(axis=0)
    std[std == 0] = 1.0

    def part(idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        return None if idx is None else ((x[idx] - mean) / std, y[idx])

    return _finish(
        "digits", source, {"train": part(tr), "val": part(va), "test": part(te)}, 10, dtype
    )


# --------------------------------------------------------------------------- CIFAR-10


def _numpy_pickle_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 1.26
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    objs = {
        "multiarray._reconstruct": multiarray._reconstruct,
        "multiarray.scalar": multiarray.scalar,
    }
    if hasattr(numeric, "_frombuffer"):
        objs["numeric._frombuffer"] = numeric._frombuffer
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for key, obj in objs.items():
        mod, name = key.split(".")
        for pkg in ("numpy.core", "numpy._core"):
            allowed[(f"{pkg}.{mod}", name)] = obj
    return allowed


_BUILTINS_ALLOWED = {
    t.__name__: t
    for t in (list, dict, tuple, set, frozenset, bytes, bytearray, str, int, float, complex, bool)
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only builds plain containers, bytes, numbers and numpy arrays.

    Every global a pickle references goes through ``find_class``; anything not on
    the allow-list raises DataError, so a malicious file cannot call e.g.
    ``os.system``.
    """

    def __init__(self, file: Any, *, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self._source = source
        self._allowed = _numpy_pickle_globals()

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _BUILTINS_ALLOWED:
            return _BUILTINS_ALLOWED[name]
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles
            import codecs

            return codecs.encode
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        raise DataError(
            f"refusing to unpickle {module}.{name} from {self._source}: only plain containers, "
            f"bytes, numbers and numpy arrays are allowed"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(
            f"refusing to unpickle a persistent reference from {self._source}: only plain "
            f"containers, bytes, numbers and numpy arrays are allowed"
        )


def _safe_unpickle(file: str) -> Any:
    """Loads a pickle file with ``_RestrictedUnpickler`` (``encoding="bytes"``)."""
    try:
        with open(file, "rb") as f:
            return _RestrictedUnpickler(f, source=file).load()
    except DataError:
        raise
    except Exception as e:  # corrupt pickle: many exception types are possible
        raise DataError(
            f"{file}: not a readable CIFAR-10 python batch ({type(e).__name__}: {e}); "
            f"re-download it: {_CIFAR_DOWNLOAD}"
        ) from e


def _check_cifar_labels(labels: np.ndarray, file: str) -> None:
    bad = (labels < 0) | (labels >= _CIFAR_CLASSES)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{file}: {int(bad.sum())} labels outside 0..9 (first {labels[row].item()!r} at image "
            f"{row}); expected CIFAR-10 class labels 0..9"
        )


def _read_cifar_python(file: str) -> tuple[np.ndarray, np.ndarray]:
    """One python-format batch -> (uint8 (n, 3072), int64 (n,))."""
    batch = _safe_unpickle(file)
    if not isinstance(batch, dict):
        raise DataError(
            f"{file}: holds a {type(batch).__name__}, expected a dict with keys b'data' and "
            f"b'labels' (CIFAR-10 python format)"
        )

    def get(key: str) -> Any:
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
        found = ", ".join(repr(k) for k in batch) or "none"
        raise DataError(
            f"{file}: no {key.encode()!r} entry (keys found: {found}); expected b'data' and "
            f"b'labels' (CIFAR-10 python format)"
        )

    data, labels = get("data"), get("labels")
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == _CIFAR_PIXELS
    ):
        desc = (
            f"an array of shape {data.shape} and dtype {data.dtype}"
            if isinstance(data, np.ndarray)
            else f"a {type(data).__name__}"
        )
        raise DataError(
            f"{file}: b'data' is {desc}, expected a uint8 array of shape (n, {_CIFAR_PIXELS}) "
            f"(CIFAR-10 python format)"
        )
    try:
        labels = np.asarray(labels)
    except Exception as e:
        raise DataError(f"{file}: b'labels' is not a list of integers ({e})") from e
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{file}: b'labels' has shape {labels.shape} and dtype {labels.dtype}, expected a "
            f"list of {len(data)} integers 0..9"
        )
    if len(labels) != len(data):
        raise DataError(
            f"{file}: {len(data)} images but {len(labels)} labels; expected one label per image"
        )
    _check_cifar_labels(labels, file)
    return data, labels.astype(np.int64)


def _read_cifar_binary(file: str) -> tuple[np.ndarray, np.ndarray]:
    """One binary-format batch -> (uint8 (n, 3072), int64 (n,))."""
    with open(file, "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR_RECORD:
        raise DataError(
            f"{file}: {raw.size} bytes is not a positive multiple of {_CIFAR_RECORD} "
            f"(1 label byte + {_CIFAR_PIXELS} pixel bytes per image); the file is truncated "
            f"or not CIFAR-10 binary format; re-download it: {_CIFAR_DOWNLOAD}"
        )
    records = raw.reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    _check_cifar_labels(labels, file)
    return records[:, 1:].copy(), labels


def _find_cifar(path: str) -> tuple[str, str]:
    """Returns (directory, "python" | "binary") for a CIFAR-10 directory."""
    if not os.path.exists(path):
        raise DataError(
            f"{path}: CIFAR-10 directory not found; {_CIFAR_EXPECTED}; {_CIFAR_DOWNLOAD}"
        )
    if not os.path.isdir(path):
        raise DataError(
            f"{path}: is a file, expected a directory ({_CIFAR_EXPECTED}); if it is the "
            f"downloaded archive, extract it first (tar xzf) and pass the extracted directory"
        )
    candidates = [
        path,
        os.path.join(path, "cifar-10-batches-py"),
        os.path.join(path, "cifar-10-batches-bin"),
    ]
    layouts = (("python", _CIFAR_PY_FILES), ("binary", _CIFAR_BIN_FILES))
    for d in candidates:
        for fmt, names in layouts:
            if all(os.path.isfile(os.path.join(d, n)) for n in names):
                return d, fmt
    for d in candidates:
        for fmt, names in layouts:
            present = [n for n in names if os.path.isfile(os.path.join(d, n))]
            if present:
                missing = [os.path.join(d, n) for n in names if n not in present]
                raise DataError(
                    f"{d}: CIFAR-10 {fmt} format is incomplete, missing {', '.join(missing)}; "
                    f"{_CIFAR_EXPECTED}; {_CIFAR_DOWNLOAD}"
                )
    raise DataError(f"{_CIFAR_EXPECTED} in {path}, found none; {_CIFAR_DOWNLOAD}")


def _load_cifar10(path: str, dtype: np.dtype) -> Dataset:
    """CIFAR-10 from a local directory with the CS231n split and mean-image subtraction.

    Features are flattened in (row, column, channel) order like the CS231n loader,
    i.e. ``x.reshape(-1, 32, 32, 3)`` recovers the images.
    """
    d, fmt = _find_cifar(path)
    names = _CIFAR_PY_FILES if fmt == "python" else _CIFAR_BIN_FILES
    read = _read_cifar_python if fmt == "python" else _read_cifar_binary
    batches = [read(os.path.join(d, n)) for n in names]
    x_all = np.concatenate([b[0] for b in batches[:5]])
    y_all = np.concatenate([b[1] for b in batches[:5]])
    x_test, y_test = batches[5]

    def hwc(x: np.ndarray) -> np.ndarray:  # (n, 3*32*32) CHW -> (n, 32*32*3) HWC
        return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(len(x), -1)

    n = len(x_all)
    n_val = 1000 if n >= 50000 else max(1, n // 50)
    n_train = n - n_val
    mean = x_all[:n_train].mean(axis=0, dtype=np.float64).astype(dtype)

    def part(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return hwc(x.astype(dtype) - mean), y

    splits = {
        "train": part(x_all[:n_train], y_all[:n_train]),
        "val": part(x_all[n_train:], y_all[n_train:]),
        "test": part(x_test, y_test),
    }
    return _finish("cifar10", d, splits, _CIFAR_CLASSES, dtype)


# --------------------------------------------------------------------------- npz


_NPZ_LAYOUTS = "x, y (split by jaxnet) or x_train, y_train, x_test, y_test [, x_val, y_val]"


def _load_npz(
    path: str, val_fraction: float, test_fraction: float, seed: int, dtype: np.dtype
) -> Dataset:
    """A user's .npz file, split by jaxnet (x, y) or used as given (x_train, ...)."""
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "not found"
        raise DataError(f"{path}: {what}; expected an .npz file with keys {_NPZ_LAYOUTS}")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:  # text file, pickle, corrupt zip, ...
        raise DataError(
            f"{path}: not a valid .npz file ({type(e).__name__}: {e}); expected an archive "
            f"written by np.savez(path, x=..., y=...) with keys {_NPZ_LAYOUTS}"
        ) from e
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path}: holds a single .npy array, expected an .npz archive with keys "
            f"{_NPZ_LAYOUTS}; save it with np.savez(path, x=..., y=...)"
        )
    with npz:
        keys = set(npz.files)
        found = ", ".join(sorted(keys)) or "none"
        given = {"x_train", "y_train", "x_test", "y_test"}
        if {"x", "y"} <= keys and not keys & (given | {"x_val", "y_val"}):
            wanted = ["x", "y"]
        elif given <= keys and not keys & {"x", "y"}:
            wanted = ["x_train", "y_train", "x_test", "y_test"]
            if keys & {"x_val", "y_val"}:
                if not {"x_val", "y_val"} <= keys:
                    raise DataError(
                        f"{path}: has only one of x_val / y_val (keys found: {found}); "
                        f"expected both or neither"
                    )
                wanted += ["x_val", "y_val"]
        else:
            raise DataError(
                f"{path}: keys found: {found}; expected exactly one layout: {_NPZ_LAYOUTS}"
            )
        arrays: dict[str, np.ndarray] = {}
        for key in wanted:
            try:
                arrays[key] = npz[key]
            except ValueError as e:
                raise DataError(
                    f"{path}: {key} is a pickled object array, which is refused for safety "
                    f"(allow_pickle=False); save plain numeric arrays, e.g. "
                    f"np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))"
                ) from e
            except Exception as e:
                raise DataError(
                    f"{path}: cannot read {key} ({type(e).__name__}: {e}); the file is corrupt; "
                    f"save it again with np.savez"
                ) from e

    if "x" in arrays:
        validate_arrays(arrays["x"], arrays["y"], source=path)
        x, y = arrays["x"], arrays["y"]
        tr, va, te = _split_indices(y, val_fraction, test_fraction, seed, path)
        splits = {
            s: None if idx is None else (x[idx], y[idx]) for s, idx in zip(_SPLITS, (tr, va, te), strict=False)
        }
    else:
        splits = {}
        for s in _SPLITS:
            if f"x_{s}" not in arrays:
                splits[s] = None
                continue
            x, y = arrays[f"x_{s}"], arrays[f"y_{s}"]
            validate_arrays(x, y, source=path, x_name=f"x_{s}", y_name=f"y_{s}")
            splits[s] = (x, y)
        shape = splits["train"][0].shape[1:]
        for s in ("val", "test"):
            if splits[s] is not None and splits[s][0].shape[1:] != shape:
                raise DataError(
                    f"{path}: x_{s} has examples of shape {splits[s][0].shape[1:]} but x_train "
                    f"has {shape}; expected the same feature shape in every split"
                )
    for s, pair in splits.items():
        if pair is not None and pair[0].dtype.kind == "f":
            with np.errstate(over="ignore"):
                cast = pair[0].astype(dtype)
            if not np.isfinite(cast).all():
                raise DataError(
                    f"{path}: x_{s} has values too large for {np.dtype(dtype).name} (they become "
                    f"inf); rescale the data or pass dtype=np.float64"
                )
    num_classes = 1 + max(int(pair[1].max()) for pair in splits.values() if pair is not None)
    return _finish("npz", path, splits, num_classes, dtype)


# --------------------------------------------------------------------------- entry point


def _float_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise DataError(f"dtype={dtype!r} is not a numpy dtype; expected e.g. np.float32") from e
    if dt.kind != "f":
        raise DataError(f"dtype={dt} is not a float dtype; expected np.float32 or np.float64")
    return dt


def load_dataset(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    dtype: Any = np.float32,
) -> Dataset:
    """Loads and validates a dataset.

    Datasets (``DATASETS``):

    * ``"digits"`` (built in, default): scikit-learn's 1797 8x8 digits, D=64, C=10.
      Stratified train/val/test split, sizes ceil(fraction * 1797), so the defaults
      give 1257 / 180 / 360. Standardised per feature with training statistics only
      (zero-std features are divided by 1).
    * ``"random"`` (built in): the notebook data, 50 examples, D=3072, C=10, train
      only; drawn by ``random_data(seed=231 + seed)`` so the default seed=0 gives
      the notebook's exact arrays.
    * ``"cifar10"``: the official python or binary files in directory ``path`` (or
      its ``cifar-10-batches-py`` / ``-bin`` subdirectory). CS231n split: first
      49,000 training images train, next 1,000 val, test_batch test (with fewer
      than 50,000 training images the last max(1, n // 50) are val). The mean
      training image is subtracted from every split; D=3072 in (row, column,
      channel) order. ``val_fraction``/``test_fraction``/``seed`` are not used.
    * ``"npz"``: a ``.npz`` file at ``path`` holding ``x``, ``y`` (split by
      jaxnet: stratified when every class has enough members, else a plain
      shuffled split) or ``x_train``, ``y_train``, ``x_test``, ``y_test`` and
      optionally ``x_val``, ``y_val`` (used as given). Inputs (N, d1, ...) are
      flattened to (N, D). Not standardised. num_classes = max label + 1.

    Args:
        name: One of ``DATASETS``.
        path: Directory (cifar10) or file (npz); must be None for digits/random.
        val_fraction: Fraction of all examples held out for validation, in [0, 1);
            0 means no validation split (x_val/y_val None). digits and npz (x, y).
        test_fraction: Fraction of all examples held out for testing, in [0, 1);
            0 means no test split. digits and npz (x, y).
        seed: Seed of the split shuffle (digits, npz) or offset of the random data.
        dtype: Float dtype of the inputs (float32 default; float64 possible).

    Returns:
        A validated Dataset: x_* (N, D) of ``dtype``, y_* (N,) int32.

    Raises:
        DataError: Unknown name, missing or unexpected ``path``, bad fractions, or
            any file/array problem (the message names the file and the problem).
    """
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    _check_fractions(val_fraction, test_fraction)
    dt = _float_dtype(dtype)
    if key in ("digits", "random"):
        if path is not None:
            raise DataError(
                f"dataset {key!r} is built in and takes no path (got {os.fspath(path)!r}); "
                f"drop --data, or use 'npz' / 'cifar10' to load a file"
            )
        if key == "digits":
            return _load_digits(val_fraction, test_fraction, seed, dt)
        return random_data(seed=231 + seed, dtype=dt)
    if path is None:
        what = "a CIFAR-10 directory" if key == "cifar10" else "an .npz file"
        raise DataError(f"dataset {key!r} needs --data PATH ({what}); none was given")
    p = os.fspath(path)
    if key == "cifar10":
        return _load_cifar10(p, dt)
    return _load_npz(p, val_fraction, test_fraction, seed, dt)
