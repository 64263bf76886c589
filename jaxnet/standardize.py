"""Feature means and scales as scikit-learn's StandardScaler computes them, in NumPy."""

from __future__ import annotations

import numpy as np


def mean_and_scale(x: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The (D,) float64 `mean_` and `scale_` of `StandardScaler().partial_fit` called on
    each `rows`-row float64 chunk of `x` ((N, D), finite) in turn: the same numbers
    (tests/test_preprocess.py compares them), without importing scikit-learn and SciPy
    (~1.2 s, as long as JAX) for a few sums.

    The steps are scikit-learn's `_incremental_mean_and_var` (Chan, Golub and LeVeque's
    corrected two-pass update), `_is_constant_feature` and `_handle_zeros_in_scale`:
    a feature whose variance is within rounding of 0 gets scale 1.
    """
    mean = var = count = None
    for start in range(0, len(x), rows):
        chunk = np.asarray(x[start:start + rows], np.float64)
        new_sum = np.sum(chunk, axis=0)
        new_count = np.full(chunk.shape[1], float(len(chunk)))
        temp = chunk - new_sum / new_count
        correction = np.sum(temp, axis=0)
        temp **= 2
        new_unnormalized = np.sum(temp, axis=0) - correction**2 / new_count
        if count is None:
            count, mean, var = new_count, (0.0 + new_sum) / new_count, new_unnormalized / new_count
            continue
        last_sum = mean * count
        updated = count + new_count
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = count / new_count
            unnormalized = (var * count + new_unnormalized
                            + ratio / updated * (last_sum / ratio - new_sum) ** 2)
        mean, var, count = (last_sum + new_sum) / updated, unnormalized / updated, updated
    eps = np.finfo(np.float64).eps
    constant = var <= count * eps * var + (count * mean * eps) ** 2
    scale = np.sqrt(var)
    scale[constant] = 1.0
    return mean, scale
