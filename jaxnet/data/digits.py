"""scikit-learn's built-in 8x8 digits, raw pixel values, split stratified by jaxnet."""

from __future__ import annotations

import numpy as np

from jaxnet.data.dataset import Dataset
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
    # Imported here: scikit-learn takes about as long to import as JAX itself.
    from sklearn import datasets

    x, y = datasets.load_digits(return_X_y=True)
    return split_arrays(
        "digits", "digits", np.asarray(x, dtype=np.float64), y, val_fraction=val_fraction,
        test_fraction=test_fraction, seed=seed, dtype=dtype,
    )
