"""scikit-learn's built-in 8x8 digits, raw pixel values, split stratified by jaxnet."""

from __future__ import annotations

import gzip
import importlib.util
import pathlib

import numpy as np

from jaxnet.data.dataset import DataError, Dataset
from jaxnet.data.split import split_arrays


def load_digits(
    *, val_fraction: float, test_fraction: float, seed: int, dtype: np.dtype
) -> Dataset:
    """The 1797 digits (D=64 pixel intensities 0..16, C=10), not standardised.

    Args:
        val_fraction: Validation fraction in [0, 1).
        test_fraction: Test fraction in [0, 1).
        seed: Seed of the stratified split.
        dtype: Float dtype of the inputs.

    Returns:
        The Dataset; the defaults (0.1, 0.2) give 1257 / 180 / 360 examples and
        ``classes = np.arange(10)``.
    """
    x, y = _digits_arrays()
    return split_arrays(
        "digits", "digits", x, y, val_fraction=val_fraction,
        test_fraction=test_fraction, seed=seed, dtype=dtype,
    )


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(x (1797, 64) float64, y (1797,) int): `sklearn.datasets.load_digits(return_X_y=True)`
    read from scikit-learn's own file, without importing scikit-learn (~1.2 s, as long as
    JAX): the file is found, not imported."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits data ships with scikit-learn, which is not installed; "
                        "install it (`pip install scikit-learn`)")
    path = pathlib.Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    with gzip.open(path, mode="rt", encoding="utf-8") as file:
        data = np.loadtxt(file, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int, copy=False)
