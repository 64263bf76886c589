"""CIFAR-10 from the official python or binary files, with a pickle reader that runs no code."""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from jaxnet.data.dataset import DataError, Dataset
from jaxnet.data.validate import make_dataset

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


def load_cifar10(path: str, dtype: np.dtype) -> Dataset:
    """CIFAR-10 from a local directory with the CS231n split, raw pixel values.

    The first 49,000 training images are train, the next 1,000 val, test_batch is
    test (with fewer than 50,000 training images the last max(1, n // 50) are val).
    Features are the pixel values 0..255, not centred (the training job's
    standardisation does that), flattened in (row, column, channel) order like the
    CS231n loader, i.e. ``x.reshape(-1, 32, 32, 3)`` recovers the images.

    Args:
        path: The directory holding the batches, or its parent holding
            ``cifar-10-batches-py`` / ``cifar-10-batches-bin``.
        dtype: Float dtype of the inputs.

    Returns:
        The Dataset, D=3072, ``classes = np.arange(10)``.

    Raises:
        DataError: Missing, incomplete, corrupt or unsafe files (the message names the file).
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
    n_train = n - (1000 if n >= 50000 else max(1, n // 50))
    splits = {
        "train": (hwc(x_all[:n_train]), y_all[:n_train]),
        "val": (hwc(x_all[n_train:]), y_all[n_train:]),
        "test": (hwc(x_test), y_test),
    }
    return make_dataset("cifar10", d, splits, dtype, classes=np.arange(_CIFAR_CLASSES))
