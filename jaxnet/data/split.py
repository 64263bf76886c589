"""Train/val/test splitting of one labelled array pair, stratified where possible."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jaxnet.data.dataset import DataError, Dataset
from jaxnet.data.validate import check_classes, make_dataset, validate_arrays
from jaxnet.ranges import check_fractions as check_fractions  # the rule lives in ranges


def _holdout_size(fraction: float, n: int) -> int:
    """ceil(fraction * n) like scikit-learn, robust to float round-off (0.3 * 10 -> 3)."""
    return math.ceil(fraction * n - 1e-9) if fraction > 0 else 0


def _can_stratify(y: np.ndarray, n_hold: int) -> bool:
    _, counts = np.unique(y, return_counts=True)
    k = len(counts)
    return counts.min() >= 2 and n_hold >= k and len(y) - n_hold >= k


def _keep_every_class(
    rest: np.ndarray, held: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Swaps examples so that every class of ``held`` also has a member in ``rest``.

    A plain (or tightly stratified) split can hold out all members of a rare
    class, which would leave a val/test label unseen in training. Each such class
    trades one held-out example for a ``rest`` example whose class has a spare
    member. Sizes are unchanged; when ``len(rest)`` >= the number of classes a
    spare always exists (pigeonhole).
    """
    rest, held = rest.copy(), held.copy()
    for label in np.setdiff1d(y[held], y[rest]):
        values, counts = np.unique(y[rest], return_counts=True)
        i = int(np.flatnonzero(np.isin(y[rest], values[counts >= 2]))[0])
        j = int(np.flatnonzero(y[held] == label)[0])
        rest[i], held[j] = held[j], rest[i]
    return rest, held


def _holdout(
    idx: np.ndarray, y: np.ndarray, n_hold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``idx`` into (rest, held-out) with ``n_hold`` held out, stratified if possible."""
    labels = y[idx]
    stratify = labels if _can_stratify(labels, n_hold) else None
    rest, held = _shuffle_split(len(idx), n_hold, seed, stratify)
    return _keep_every_class(idx[rest], idx[held], y)


def _shuffle_split(
    n: int, n_hold: int, seed: int, stratify: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held-out) positions in 0..n-1: the draw of scikit-learn's
    ``train_test_split(test_size=n_hold, random_state=seed, stratify=stratify)``
    (its ``ShuffleSplit`` / ``StratifiedShuffleSplit``), the same numbers for the same
    seed (tests/test_data.py compares them), without importing scikit-learn and SciPy
    (~1.2 s, as long as JAX) for a split."""
    rng = np.random.RandomState(seed)
    if stratify is None:
        order = rng.permutation(n)
        return order[n_hold:], order[:n_hold]
    _, label_index, counts = np.unique(stratify, return_inverse=True, return_counts=True)
    members = np.split(np.argsort(label_index, kind="stable"), np.cumsum(counts)[:-1])
    n_rest = _approximate_mode(counts, n - n_hold, rng)
    n_held = _approximate_mode(counts - n_rest, n_hold, rng)
    rest: list = []
    held: list = []
    for group, r, h in zip(members, n_rest, n_held, strict=True):
        shuffled = group.take(rng.permutation(len(group)), mode="clip")
        rest.extend(shuffled[:r])
        held.extend(shuffled[r:r + h])
    return rng.permutation(rest), rng.permutation(held)


def _approximate_mode(counts: np.ndarray, draws: int, rng) -> np.ndarray:
    """How many of ``draws`` to take from each class of sizes ``counts``: scikit-learn's
    ``_approximate_mode`` (floors of the proportional shares, the rest to the largest
    remainders, ties broken with ``rng``)."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            add = min(len(tied), need)
            floored[rng.choice(tied, size=add, replace=False)] += 1
            need -= add
            if need == 0:
                break
    return floored.astype(int)


def split_indices(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Shuffled (train, val, test) index arrays; val/test None when their fraction is 0.

    Sizes are ceil(fraction * N) of the whole set; the test set is drawn first,
    then validation from the rest. Each draw is stratified when every class has
    >= 2 members and the sizes allow one example per class on both sides, else a
    plain shuffled draw; either way every class keeps at least one training example.

    Args:
        y: Labels, shape (N,) (any dtype ``np.unique`` sorts).
        val_fraction: Validation fraction in [0, 1).
        test_fraction: Test fraction in [0, 1).
        seed: Seed of the shuffles.
        source: Where the data came from; prefixes messages.

    Returns:
        (train, val, test) int index arrays into ``y``; together a partition of 0..N-1.

    Raises:
        DataError: If the training split would be smaller than the number of classes.
    """
    y = np.asarray(y)
    n = len(y)
    k = len(np.unique(y))
    n_test = _holdout_size(test_fraction, n)
    n_val = _holdout_size(val_fraction, n)
    if n - n_test - n_val < max(k, 1):
        raise DataError(
            f"{source}: {n} examples are too few for `val_fraction={val_fraction}` and "
            f"`test_fraction={test_fraction}` ({n_val} val + {n_test} test leaves "
            f"{n - n_test - n_val} for training, fewer than the {k} classes, and every class "
            f"needs a training example); use smaller fractions or more data"
        )
    rest = np.arange(n)
    test = val = None
    if n_test:
        rest, test = _holdout(rest, y, n_test, seed)
    if n_val:
        rest, val = _holdout(rest, y, n_val, seed)
    return rest, val, test


def split_arrays(
    name: str,
    source: str,
    x: Any,
    y: Any,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    dtype: np.dtype,
) -> Dataset:
    """Validates one (x, y) pair, splits it with ``split_indices`` and builds the Dataset.

    Args:
        name: Dataset name.
        source: Where the data came from (a file name); prefixes every message.
        x: Inputs, shape (N, d1, ...).
        y: Original labels, shape (N,): whole numbers or strings.
        val_fraction: Validation fraction in [0, 1).
        test_fraction: Test fraction in [0, 1).
        seed: Seed of the split.
        dtype: Float dtype of the inputs.

    Returns:
        The Dataset; ``classes`` are the distinct labels, all present in training.

    Raises:
        DataError: Invalid arrays, a single class, or too few examples to split.
    """
    x, labels = validate_arrays(x, y, source=source)
    classes = np.unique(labels)
    check_classes(classes, source=source, y_name="y")
    tr, va, te = split_indices(labels, val_fraction, test_fraction, seed, source)

    def part(idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        return None if idx is None else (x[idx], labels[idx])

    splits = {"train": part(tr), "val": part(va), "test": part(te)}
    return make_dataset(name, source, splits, dtype, classes=classes)
