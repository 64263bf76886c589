"""A user's .npz archive: one (x, y) pair split by jaxnet, or ready-made splits."""

from __future__ import annotations

import os

import numpy as np

from jaxnet.data.dataset import SPLITS, DataError, Dataset
from jaxnet.data.split import split_arrays
from jaxnet.data.validate import make_dataset

_NPZ_LAYOUTS = "x, y (split by jaxnet) or x_train, y_train, x_test, y_test [, x_val, y_val]"


def _wanted_keys(path: str, keys: set[str]) -> list[str]:
    """The keys of the one layout that ``keys`` matches."""
    found = ", ".join(sorted(keys)) or "none"
    given = {"x_train", "y_train", "x_test", "y_test"}
    if {"x", "y"} <= keys and not keys & (given | {"x_val", "y_val"}):
        return ["x", "y"]
    if given <= keys and not keys & {"x", "y"}:
        wanted = ["x_train", "y_train", "x_test", "y_test"]
        if keys & {"x_val", "y_val"}:
            if not {"x_val", "y_val"} <= keys:
                raise DataError(
                    f"{path}: has only one of x_val / y_val (keys found: {found}); "
                    f"expected both or neither"
                )
            wanted += ["x_val", "y_val"]
        return wanted
    raise DataError(f"{path}: keys found: {found}; expected exactly one layout: {_NPZ_LAYOUTS}")


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of the layout the archive at ``path`` holds, without unpickling anything."""
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
    arrays: dict[str, np.ndarray] = {}
    with npz:
        for key in _wanted_keys(path, set(npz.files)):
            try:
                arrays[key] = npz[key]
            except ValueError as e:
                raise DataError(
                    f"{path}: {key} is a pickled object array, which is refused for safety "
                    f"(allow_pickle=False); save plain arrays, e.g. np.savez(path, "
                    f"x=x.astype(np.float32), y=y) with y of ints or of str"
                ) from e
            except Exception as e:
                raise DataError(
                    f"{path}: cannot read {key} ({type(e).__name__}: {e}); the file is corrupt; "
                    f"save it again with np.savez"
                ) from e
    return arrays


def load_npz(
    path: str, *, val_fraction: float, test_fraction: float, seed: int, dtype: np.dtype
) -> Dataset:
    """A user's .npz file, split by jaxnet (``x``, ``y``) or used as given (``x_train``, ...).

    Inputs (N, d1, ...) are flattened to (N, D) and not standardised. Labels may be
    whole numbers of any size and sign, or strings; ``classes`` are the distinct
    training labels.

    Args:
        path: The .npz file.
        val_fraction: Validation fraction in [0, 1) (``x``, ``y`` layout only).
        test_fraction: Test fraction in [0, 1) (``x``, ``y`` layout only).
        seed: Seed of the split (``x``, ``y`` layout only).
        dtype: Float dtype of the inputs.

    Returns:
        The Dataset.

    Raises:
        DataError: The file is missing or unreadable, has no known layout, or its
            arrays fail validation (the message names the file).
    """
    arrays = _read_npz(path)
    if "x" in arrays:
        return split_arrays(
            "npz", path, arrays["x"], arrays["y"], val_fraction=val_fraction,
            test_fraction=test_fraction, seed=seed, dtype=dtype,
        )
    splits = {
        s: (arrays[f"x_{s}"], arrays[f"y_{s}"]) if f"x_{s}" in arrays else None for s in SPLITS
    }
    return make_dataset("npz", path, splits, dtype)
