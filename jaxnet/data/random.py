"""The CS231n notebook's random data: a fixed-seed Gaussian toy problem, training split only."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxnet.data.dataset import DataError, Dataset
from jaxnet.data.validate import float_dtype, make_dataset


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
        ``classes = np.arange(C)`` (even if some class was not drawn) and no
        val/test split.

    Raises:
        DataError: If n, d or c is not a positive integer.
    """
    for label, v in (("n", n), ("d", d), ("c", c)):
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1):
            raise DataError(f"random_data: {label}={v!r} must be a positive integer")
    dtype = float_dtype(dtype)
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d)
    y = rng.randint(c, size=n)
    return make_dataset("random", "random data", {"train": (x, y)}, dtype, classes=np.arange(c))
