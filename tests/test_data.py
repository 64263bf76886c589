"""Tests for jaxnet.data: built-in datasets, CIFAR-10 and npz readers, labels, validation."""

from __future__ import annotations

import os
import pickle
import shlex

import numpy as np
import pytest
from conftest import run_python, succeeded
from sklearn.datasets import load_digits

from jaxnet.data import DATASETS, DataError, Dataset, load_dataset, random_data, validate_arrays
from jaxnet.data import split as split_mod
from jaxnet.data.split import split_indices
from jaxnet.errors import JaxnetError

# ----------------------------------------------------------------------------- helpers


def _tiny_cifar(seed: int = 0, per_batch: int = 20, n_test: int = 10):
    """Five training batches and one test batch of random uint8 CHW images."""
    rng = np.random.default_rng(seed)
    batches = [
        (
            rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            rng.integers(0, 10, size=per_batch),
        )
        for _ in range(5)
    ]
    test = (rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8), rng.integers(0, 10, n_test))
    return batches, test


def _write_python(directory, batches, test, protocol: int = 2) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, (x, y) in zip(names, [*batches, test], strict=False):
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in y],
            b"data": x,
            b"filenames": [f"img{i}.png".encode() for i in range(len(x))],
        }
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)


def _write_binary(directory, batches, test) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name, (x, y) in zip(names, [*batches, test], strict=False):
        records = np.concatenate([np.asarray(y, np.uint8)[:, None], x], axis=1)
        (directory / name).write_bytes(records.tobytes())


def _hwc(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(len(x), -1)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def cifar_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    batches, test = _tiny_cifar()
    _write_python(root / "py", batches, test)
    _write_binary(root / "bin", batches, test)
    return root, batches, test


# ----------------------------------------------------------------------------- random


def test_random_data_matches_notebook_and_is_deterministic():
    ds = random_data()
    rng = np.random.RandomState(231)
    x, y = rng.randn(50, 3 * 32 * 32), rng.randint(10, size=50)
    assert ds.x_train.shape == (50, 3072) and ds.x_train.dtype == np.float32
    assert ds.y_train.shape == (50,) and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.x_train, x.astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, y)
    assert ds.y_train.min() >= 0 and ds.y_train.max() < 10 and ds.num_classes == 10
    np.testing.assert_array_equal(ds.classes, np.arange(10))
    assert ds.x_val is ds.y_val is ds.x_test is ds.y_test is None
    again = random_data()
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    assert not np.array_equal(random_data(seed=1).x_train, ds.x_train)
    # load_dataset("random") with the default seed gives the notebook data.
    np.testing.assert_array_equal(load_dataset("random").x_train, ds.x_train)
    assert random_data(dtype=np.float64).x_train.dtype == np.float64
    assert ds.summary() == "random: 50 train / no val / no test, 3072 features, 10 classes"


# ----------------------------------------------------------------------------- digits


def test_digits_default_split_sizes_and_summary(digits):
    assert (len(digits.y_train), len(digits.y_val), len(digits.y_test)) == (1257, 180, 360)
    assert digits.num_features == 64 and digits.num_classes == 10
    assert digits.summary() == "digits: 1257 train / 180 val / 360 test, 64 features, 10 classes"
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int32
    np.testing.assert_array_equal(digits.classes, np.arange(10))


@pytest.mark.parametrize(
    "val_fraction, test_fraction", [(0.1, 0.2), (0.0, 0.2), (0.25, 0.25), (0.05, 0.0)]
)
def test_digits_splits_add_up_and_are_stratified(val_fraction, test_fraction):
    ds = load_dataset("digits", val_fraction=val_fraction, test_fraction=test_fraction, seed=3)
    ys = [y for y in (ds.y_train, ds.y_val, ds.y_test) if y is not None]
    assert sum(len(y) for y in ys) == 1797
    assert (ds.y_val is None) == (val_fraction == 0)
    assert (ds.y_test is None) == (test_fraction == 0)
    for y in ys:
        assert set(np.unique(y)) == set(range(10))


def test_digits_are_raw_pixels_in_a_stratified_partition(digits):
    x_raw, y_raw = load_digits(return_X_y=True)
    tr, va, te = split_indices(y_raw, 0.1, 0.2, 0, "digits")
    # The split is a partition of all 1797 examples.
    assert not set(tr) & set(va) and not set(tr) & set(te) and not set(va) & set(te)
    assert len(set(tr) | set(va) | set(te)) == 1797
    np.testing.assert_array_equal(digits.y_train, y_raw[tr])
    np.testing.assert_array_equal(digits.y_test, y_raw[te])
    # Standardisation is the training job's (jaxnet.preprocess), not the loader's.
    for x, idx in ((digits.x_train, tr), (digits.x_val, va), (digits.x_test, te)):
        np.testing.assert_array_equal(x, x_raw[idx].astype(np.float32))
    assert digits.x_train.min() == 0 and digits.x_train.max() == 16


def test_digits_seed_and_dtype():
    a = load_dataset("digits", seed=1, dtype=np.float64)
    b = load_dataset("digits", seed=1, dtype=np.float64)
    c = load_dataset("digits", seed=2)
    assert a.x_train.dtype == np.float64
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_train, c.y_train)


# ----------------------------------------------------------------------------- cifar10


@pytest.mark.parametrize("fmt", ["py", "bin"])
def test_cifar_tiny_split_raw_pixels_and_labels(cifar_dirs, fmt):
    root, batches, test = cifar_dirs
    ds = load_dataset("cifar10", root / fmt)
    x_all = np.concatenate([b[0] for b in batches])
    y_all = np.concatenate([b[1] for b in batches])
    # 100 training images: the last 100 // 50 = 2 are validation.
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (98, 2, 10)
    assert ds.num_features == 3072 and ds.num_classes == 10 and ds.x_train.dtype == np.float32
    np.testing.assert_array_equal(ds.classes, np.arange(10))
    np.testing.assert_array_equal(ds.y_train, y_all[:98])
    np.testing.assert_array_equal(ds.y_val, y_all[98:])
    np.testing.assert_array_equal(ds.y_test, test[1])
    # Raw pixel values in (row, column, channel) order: no mean image is subtracted.
    np.testing.assert_array_equal(ds.x_train, _hwc(x_all[:98]).astype(np.float32))
    np.testing.assert_array_equal(ds.x_val, _hwc(x_all[98:]).astype(np.float32))
    np.testing.assert_array_equal(ds.x_test, _hwc(test[0]).astype(np.float32))


def test_cifar_python_and_binary_formats_agree(cifar_dirs, tmp_path):
    root, batches, test = cifar_dirs
    a = load_dataset("cifar10", root / "py")
    b = load_dataset("cifar10", str(root / "bin"))
    # The python format from a modern pickle protocol, found in the archive's subdirectory.
    _write_python(tmp_path / "cifar-10-batches-py", batches, test, protocol=5)
    c = load_dataset("cifar10", tmp_path)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        np.testing.assert_array_equal(getattr(a, field), getattr(c, field))


class _Evil:
    """Unpickling this runs ``func(arg)``, which creates ``marker`` if it is allowed."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("how", ["os.system", "eval"])
def test_cifar_malicious_pickle_is_refused(tmp_path, how):
    batches, test = _tiny_cifar()
    _write_python(tmp_path, batches, test)
    marker = tmp_path / "pwned"
    if how == "os.system":
        evil = _Evil(os.system, f"touch {shlex.quote(str(marker))}")
    else:
        evil = _Evil(eval, f"open({str(marker)!r}, 'w').close()")
    payload = {b"data": batches[0][0], b"labels": evil}
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    with pytest.raises(DataError, match="refusing to unpickle") as err:
        load_dataset("cifar10", tmp_path)
    assert "data_batch_1" in str(err.value)
    assert not marker.exists()


def _truncate(path, n: int = 5) -> None:
    path.write_bytes(path.read_bytes()[:-n])


@pytest.mark.parametrize(
    "fmt, mutate, expected",
    [
        ("py", lambda d: os.remove(d / "data_batch_3"), ["data_batch_3", "missing"]),
        ("bin", lambda d: os.remove(d / "test_batch.bin"), ["test_batch.bin", "missing"]),
        (
            "bin",
            lambda d: _truncate(d / "data_batch_2.bin"),
            ["data_batch_2.bin", "multiple of 3073", "truncated"],
        ),
        (
            "bin",
            lambda d: (d / "data_batch_4.bin").write_bytes(bytes([10]) + bytes(3072)),
            ["data_batch_4.bin", "outside 0..9"],
        ),
        (
            "py",
            lambda d: (d / "data_batch_2").write_bytes(
                pickle.dumps({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]})
            ),
            ["data_batch_2", "shape (3, 100)", "uint8 array of shape (n, 3072)"],
        ),
        (
            "py",
            lambda d: (d / "data_batch_5").write_bytes(
                pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]})
            ),
            ["data_batch_5", "float32", "uint8"],
        ),
        (
            "py",
            lambda d: (d / "test_batch").write_bytes(
                pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]})
            ),
            ["test_batch", "outside 0..9"],
        ),
        (
            "py",
            lambda d: (d / "data_batch_1").write_bytes(b"this is not a pickle"),
            ["data_batch_1", "not a readable CIFAR-10 python batch"],
        ),
    ],
)
def test_cifar_file_errors_name_the_file(tmp_path, fmt, mutate, expected):
    batches, test = _tiny_cifar(per_batch=3, n_test=2)
    (_write_python if fmt == "py" else _write_binary)(tmp_path, batches, test)
    mutate(tmp_path)
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path)
    for text in expected:
        assert text in str(err.value)


def test_cifar_missing_or_empty_directory(tmp_path):
    with pytest.raises(DataError, match="not found") as err:
        load_dataset("cifar10", tmp_path / "nope")
    assert "nope" in str(err.value) and "cs.toronto.edu" in str(err.value)
    with pytest.raises(DataError, match="data_batch_1..5 and test_batch") as err:
        load_dataset("cifar10", tmp_path)
    assert str(tmp_path) in str(err.value)


# ----------------------------------------------------------------------------- npz


def test_npz_x_y_is_split_stratified_and_flattened(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=(60, 2, 3))
    y = np.repeat(np.arange(3), 20).astype(np.float64)  # whole-number float labels are accepted
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, y=y)
    ds = load_dataset("npz", path, seed=1)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (42, 6, 12)
    assert ds.num_features == 6 and ds.num_classes == 3
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    flat = x.reshape(60, 6).astype(np.float32)
    rows = {r.tobytes(): int(label) for r, label in zip(flat, y, strict=False)}
    seen = []
    for xs, ys in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert set(ys) == {0, 1, 2}  # stratified
        for r, label in zip(xs, ys, strict=False):  # not standardised: rows are the original rows
            assert rows[r.tobytes()] == label
            seen.append(r.tobytes())
    assert len(set(seen)) == 60  # no overlap between splits


def test_npz_x_y_falls_back_to_plain_split_for_rare_classes(tmp_path):
    x = np.arange(20.0).reshape(10, 2)
    y = np.array([0] * 9 + [1])  # class 1 has one member: stratification is impossible
    np.savez(tmp_path / "rare.npz", x=x, y=y)
    ds = load_dataset("npz", tmp_path / "rare.npz", val_fraction=0.0, test_fraction=0.3)
    assert (len(ds.y_train), ds.y_val, len(ds.y_test)) == (7, None, 3)
    assert ds.num_classes == 2


@pytest.mark.parametrize("with_val", [False, True])
def test_npz_explicit_splits_are_used_as_given(tmp_path, with_val):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.normal(size=(8, 4, 4)),
        "y_train": np.array([0, 1, 2, 0, 1, 9, 0, 1]),  # a gap: classes are 0, 1, 2, 9
        "x_test": rng.normal(size=(3, 4, 4)),
        "y_test": np.array([9, 0, 1]),
    }
    if with_val:
        arrays |= {"x_val": rng.normal(size=(2, 4, 4)), "y_val": np.array([1, 2])}
    np.savez(tmp_path / "given.npz", **arrays)
    ds = load_dataset("npz", tmp_path / "given.npz", dtype=np.float64)
    assert ds.num_classes == 4 and ds.num_features == 16
    np.testing.assert_array_equal(ds.classes, [0, 1, 2, 9])
    np.testing.assert_array_equal(ds.x_train, arrays["x_train"].reshape(8, 16))
    np.testing.assert_array_equal(ds.y_test, [3, 0, 1])
    np.testing.assert_array_equal(ds.classes[ds.y_train], arrays["y_train"])
    if with_val:
        np.testing.assert_array_equal(ds.x_val, arrays["x_val"].reshape(2, 16))
        np.testing.assert_array_equal(ds.y_val, [1, 2])
    else:
        assert ds.x_val is None and ds.y_val is None


@pytest.mark.parametrize("split", ["val", "test"])
def test_npz_label_never_seen_in_training_is_refused(tmp_path, split):
    arrays = {
        "x_train": np.zeros((4, 2)),
        "y_train": np.array(["cat", "dog", "cat", "dog"]),
        "x_test": np.zeros((2, 2)),
        "y_test": np.array(["dog", "cat"]),
        "x_val": np.zeros((2, 2)),
        "y_val": np.array(["cat", "dog"]),
    }
    arrays[f"y_{split}"] = np.array(["cat", "bird"])  # the largest label occurs only here
    np.savez(tmp_path / "given.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_dataset("npz", tmp_path / "given.npz")
    msg = str(err.value)
    for text in ("given.npz", f"y_{split}", "never seen in training", "'bird'", "row 1"):
        assert text in msg
    assert "'cat', 'dog'" in msg  # the training classes are listed


def _x_with(value, row=7, n=10):
    x = np.zeros((n, 3))
    x[row, 1] = value
    return x


_Y10 = np.arange(10) % 2


@pytest.mark.parametrize(
    "arrays, expected",
    [
        ({"x": _x_with(np.nan), "y": _Y10}, ["x holds 1 NaN or infinite values (first at row 7)"]),
        ({"x": _x_with(np.inf, row=2), "y": _Y10}, ["NaN or infinite", "row 2"]),
        (
            {
                "x_train": _x_with(-np.inf, row=3),
                "y_train": _Y10,
                "x_test": np.zeros((2, 3)),
                "y_test": [0, 1],
            },
            ["x_train holds 1 NaN or infinite values (first at row 3)"],
        ),
        ({"x": np.zeros((3, 2)), "y": [0.0, 1.5, 1.0]}, ["non-integer labels", "1.5", "row 1"]),
        ({"x": np.zeros((3, 2)), "y": [0.0, np.nan, 1.0]}, ["NaN or infinite labels", "row 1"]),
        ({"x": np.zeros((3, 2)), "y": [1, 1, 1]}, ["y holds a single class (1)", "two distinct"]),
        ({"x": np.zeros((3, 2)), "y": [1 + 2j, 0, 1]}, ["y has dtype complex128", "strings"]),
        (
            {
                "x_train": np.zeros((3, 2)),
                "y_train": ["a", "a", "a"],
                "x_test": np.zeros((2, 2)),
                "y_test": ["a", "b"],
            },
            ["y_train holds a single class ('a')"],
        ),
        ({"x": np.zeros((4, 2)), "y": [0, 1, 1]}, ["4 rows", "3 labels"]),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0, int)}, ["empty"]),
        ({"x": np.array([["a", "b"]] * 3), "y": [0, 1, 0]}, ["dtype <U1", "numbers"]),
        ({"x": np.zeros((3, 2)), "y": np.zeros((3, 2), int)}, ["y has shape (3, 2)", "(N,)"]),
        ({"features": np.zeros((3, 2)), "y": [0, 1, 0]}, ["keys found: features, y", "x, y"]),
        (
            {"x_train": np.zeros((3, 2)), "y_train": [0, 1, 0]},
            ["keys found: x_train, y_train", "x_test"],
        ),
        (
            {
                "x_train": np.zeros((3, 2)),
                "y_train": [0, 1, 0],
                "x_test": np.zeros((2, 5)),
                "y_test": [0, 1],
            },
            ["x_test has examples of shape (5,)", "(2,)"],
        ),
    ],
)
def test_npz_bad_contents_raise_data_error_naming_the_file(tmp_path, arrays, expected):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as err:
        load_dataset("npz", path)
    msg = str(err.value)
    assert "data.npz" in msg
    for text in expected:
        assert text in msg


def test_npz_unreadable_files(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match="not a valid .npz file") as err:
        load_dataset("npz", text)
    assert "notes.npz" in str(err.value)

    obj = tmp_path / "objects.npz"
    np.savez(obj, x=np.array([[1, "a"], [2, None]], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError, match="pickled object array") as err:
        load_dataset("npz", obj)
    assert "objects.npz" in str(err.value) and "x " in str(err.value)

    with pytest.raises(DataError, match="not found") as err:
        load_dataset("npz", tmp_path / "absent.npz")
    assert "absent.npz" in str(err.value)

    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros((3, 2)))
    with pytest.raises(DataError, match="single .npy array"):
        load_dataset("npz", npy)


def test_npz_values_overflowing_the_dtype(tmp_path):
    np.savez(tmp_path / "big.npz", x=_x_with(1e300), y=_Y10)
    with pytest.raises(DataError, match="too large for float32"):
        load_dataset("npz", tmp_path / "big.npz")
    ds = load_dataset("npz", tmp_path / "big.npz", dtype=np.float64, val_fraction=0)
    assert ds.x_train.dtype == np.float64


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "name, path, kwargs, expected",
    [
        ("mnist", None, {}, ", ".join(DATASETS)),
        ("cifar10", None, {}, "needs data_path=PATH"),
        ("npz", None, {}, "needs data_path=PATH"),
        ("digits", "some/dir", {}, "built in and takes no path"),
        ("random", "x.npz", {}, "built in and takes no path"),
        ("digits", None, {"val_fraction": -0.1}, "val_fraction=-0.1 is invalid: expected a fraction in [0, 1)"),
        ("digits", None, {"test_fraction": 1.0}, "test_fraction=1.0 is invalid: expected a fraction in [0, 1)"),
        ("digits", None, {"val_fraction": 0.5, "test_fraction": 0.5}, "leaves no training data"),
        ("digits", None, {"dtype": np.int32}, "not a float dtype"),
        ("csv", None, {"target": "y"}, "data_path=PATH (a .csv file)"),
        ("digits", None, {"target": "y"}, "drop target"),
        ("npz", "x.npz", {"target": "y"}, "is not csv"),
    ],
)
def test_load_dataset_argument_errors(name, path, kwargs, expected):
    # DataError for the source, ConfigError for the split fractions; the message names
    # settings as the library calls them (the CLI shows its flags).
    with pytest.raises(JaxnetError) as err:
        load_dataset(name, path, **kwargs)
    assert expected in str(err.value)


def test_validate_arrays_direct():
    x, labels = validate_arrays(np.zeros((3, 2)), np.array([0.0, 1.0, 2.0]), classes=[0, 1, 2])
    assert x.shape == (3, 2) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [0, 1, 2])
    with pytest.raises(DataError, match=r"src: y holds 1 labels never seen in training \(first 3"):
        validate_arrays(np.zeros((3, 2)), [0, 3, 1], classes=[0, 1, 2], source="src")
    with pytest.raises(DataError, match="NaN or infinite labels"):
        validate_arrays(np.zeros((2, 2)), [0, np.nan])
    with pytest.raises(DataError, match="x has shape"):
        validate_arrays(np.zeros(3), [0, 1, 2])
    assert issubclass(DataError, ValueError) and issubclass(DataError, JaxnetError)


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "y, classes",
    [
        ([3, 7, 100, 7, 3, 100] * 5, [3, 7, 100]),  # gaps
        ([-5, 0, -1, 0, -5, -1] * 5, [-5, -1, 0]),  # negatives
        ([2**40, 1, 2**62, 1, 2**40, 2**62] * 5, [1, 2**40, 2**62]),  # larger than int32
        ([3.0, 7.0, 100.0, 7.0, 3.0, 100.0] * 5, [3, 7, 100]),  # whole-number floats
        (["setosa", "virginica", "versicolor"] * 10, ["setosa", "versicolor", "virginica"]),
        ([b"no", b"yes", b"no"] * 10, ["no", "yes"]),  # bytes are decoded
    ],
)
def test_labels_are_mapped_to_classes_and_back(tmp_path, y, classes):
    y = np.asarray(y)
    x = np.arange(2.0 * len(y)).reshape(len(y), 2)
    np.savez(tmp_path / "labels.npz", x=x, y=y)
    ds = load_dataset("npz", tmp_path / "labels.npz", val_fraction=0.2, test_fraction=0.2)
    np.testing.assert_array_equal(ds.classes, classes)
    assert ds.num_classes == len(classes)  # the count of classes, not max + 1
    rows = {float(r[0]): label for r, label in zip(x, y.tolist(), strict=True)}
    for xs, ys in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert ys.dtype == np.int32 and ys.min() >= 0 and ys.max() < len(classes)
        back = ds.classes[ys].tolist()
        expect = [rows[float(r[0])] for r in xs]
        if isinstance(expect[0], bytes):
            expect = [v.decode() for v in expect]
        assert back == expect


def test_jaxnet_split_keeps_every_class_in_training(tmp_path):
    # Classes with one or two members: any held-out draw could take them all.
    y = np.array([0] * 20 + [1] * 20 + [2, 3, 3, 4])
    x = np.arange(len(y), dtype=np.float64)[:, None]
    np.savez(tmp_path / "rare.npz", x=x, y=y)
    for seed in range(10):
        ds = load_dataset("npz", tmp_path / "rare.npz", val_fraction=0.2, test_fraction=0.3,
                          seed=seed)
        assert set(ds.y_train.tolist()) == set(range(5))
        sizes = (len(ds.y_train), len(ds.y_val), len(ds.y_test))
        assert sizes == (44 - 9 - 14, 9, 14)
        seen = np.concatenate([ds.x_train, ds.x_val, ds.x_test])[:, 0]
        assert sorted(seen.tolist()) == list(range(44))


def test_split_too_small_for_every_class():
    with pytest.raises(DataError, match="fewer than the 4 classes"):
        split_indices(np.array([0, 1, 2, 3, 0, 1]), 0.2, 0.2, 0, "tiny")


def test_dataset_from_arrays():
    x, y = np.zeros((4, 3), np.float32), np.array([0, 2, 1, 2])
    ds = Dataset(name="mine", x_train=x, y_train=y, x_val=None, y_val=None, x_test=x[:2],
                 y_test=y[:2], classes=np.array(["a", "b", "c"]))
    assert ds.y_train.dtype == np.int32 and ds.num_classes == 3
    assert ds.summary() == "mine: 4 train / no val / 2 test, 3 features, 3 classes"
    # An int C is shorthand for np.arange(C).
    ds = Dataset("mine", x, y, None, None, None, None, 3)
    np.testing.assert_array_equal(ds.classes, [0, 1, 2])
    with pytest.raises(DataError, match="class index 2 at row 1, outside 0..1"):
        Dataset("mine", x, y, None, None, None, None, np.array([5, 9]))
    with pytest.raises(DataError, match="sorted and distinct"):
        Dataset("mine", x, y, None, None, None, None, np.array(["b", "a", "c"]))
    with pytest.raises(DataError, match="x_test and y_test must both be arrays"):
        Dataset("mine", x, y, None, None, x, None, 3)
    with pytest.raises(DataError, match="x_val has 2 features but x_train has 3"):
        Dataset("mine", x, y, x[:, :2], y, None, None, 3)


def _sklearn_holdout(n, n_hold, seed, stratify):
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(n), test_size=n_hold, random_state=seed,
                            stratify=stratify)


@pytest.mark.parametrize("case", range(40))
def test_the_split_draws_what_scikit_learns_train_test_split_draws(case):
    # jaxnet splits without importing scikit-learn (~1.2 s); the same seed must still give
    # scikit-learn's split, plain and stratified (ties in the class shares included).
    rng = np.random.default_rng(case)
    k = int(rng.integers(2, 6))
    counts = rng.integers(2, 30, size=k)
    counts[0] = counts[1] if case % 3 == 0 else counts[0]  # tied shares
    y = np.repeat(np.arange(k), counts)[rng.permutation(int(counts.sum()))]
    if case % 4 == 1:
        y = np.array(["setosa", "versicolor", "virginica", "x", "y"])[y]  # string labels
    n = len(y)
    n_hold = int(rng.integers(k, n - k + 1))
    seed = int(rng.integers(0, 2**31 - 1)) if case % 2 else case
    for stratify in (None, y):
        got = split_mod._shuffle_split(n, n_hold, seed, stratify)
        want = _sklearn_holdout(n, n_hold, seed, stratify)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


# What `jaxnet train` does before training (load, split, standardise) on digits and on a
# CSV file, in a fresh process: scikit-learn and SciPy take ~1.2 s to import, as long as JAX.
_PREPARE = """
import sys
import numpy as np
from jaxnet import TrainConfig, fitting
np.savetxt("t.csv", np.c_[np.arange(60.0).reshape(30, 2), np.arange(30) % 3], delimiter=",",
           header="a,b,label", comments="")
for config in (TrainConfig(), TrainConfig(dataset="csv", data_path="t.csv", target="label")):
    fitting.prepare(config, fitting.load_data(config))
print(sorted({m.split(".")[0] for m in sys.modules} & {"sklearn", "scipy", "matplotlib"}))
"""


@pytest.mark.slow
def test_loading_splitting_and_standardising_import_no_scikit_learn(tmp_path):
    out = succeeded(run_python(["-c", _PREPARE], cwd=tmp_path))
    assert out.stdout.strip() == "[]"
