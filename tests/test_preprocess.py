"""Tests for jaxnet.preprocess: standardisation fitted on training data, label mapping, saving."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save
from sklearn.datasets import load_digits

from jaxnet.data import DataError, Dataset, load_dataset
from jaxnet.data.split import split_indices
from jaxnet.preprocess import Preprocessing


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def _dataset(x_train, y_train, classes, x_test=None, y_test=None) -> Dataset:
    return Dataset(name="toy", x_train=x_train, y_train=y_train, x_val=None, y_val=None,
                   x_test=x_test, y_test=y_test, classes=classes)


def test_digits_standardised_with_train_statistics_only(digits):
    prep = Preprocessing.fit(digits.x_train, digits.classes)
    ds = prep.apply(digits)
    assert ds.summary() == digits.summary() and ds.x_train.dtype == np.float32
    x_raw, y_raw = load_digits(return_X_y=True)
    tr, va, te = split_indices(y_raw, 0.1, 0.2, 0, "digits")
    mean, std = x_raw[tr].mean(axis=0), x_raw[tr].std(axis=0)
    constant = std == 0
    assert constant.any()  # digits has always-blank pixels: they must not produce NaN
    std[constant] = 1.0
    for x, idx in ((ds.x_train, tr), (ds.x_val, va), (ds.x_test, te)):
        np.testing.assert_allclose(x, (x_raw[idx] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0)[~constant], 1.0, atol=1e-4)
    np.testing.assert_array_equal(ds.x_train[:, constant], 0.0)
    # Test statistics were not used: the test set is not exactly centred.
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-3
    # Labels and classes are untouched.
    np.testing.assert_array_equal(ds.y_test, digits.y_test)
    np.testing.assert_array_equal(ds.classes, digits.classes)


def test_fit_statistics_constant_features_and_dtype():
    x = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 1e-3], [5.0, 5.0, 2e-3]])
    prep = Preprocessing.fit(x, np.array([0, 1]))
    assert prep.mean.dtype == np.float64 and prep.scale.dtype == np.float64
    np.testing.assert_allclose(prep.mean, [3.0, 5.0, 1e-3], rtol=1e-12)
    np.testing.assert_allclose(prep.scale, [np.sqrt(8 / 3), 1.0, np.sqrt(2 / 3) * 1e-3],
                               rtol=1e-12)
    out = prep.transform(x, dtype=np.float64)
    assert out.dtype == np.float64 and np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, 1], 0.0)  # the constant feature maps to 0, not NaN
    np.testing.assert_allclose(out.std(axis=0), [1.0, 0.0, 1.0], atol=1e-12)
    # A single training example: every feature is constant, nothing is NaN.
    one = Preprocessing.fit(x[:1], np.array(["a", "b"]))
    np.testing.assert_array_equal(one.scale, 1.0)
    np.testing.assert_array_equal(one.transform(x[:1]), 0.0)


def test_transform_reapplies_the_training_statistics():
    rng = np.random.default_rng(0)
    x_train = rng.normal(3.0, 2.0, size=(40, 2, 3))
    x_new = rng.normal(-1.0, 5.0, size=(7, 2, 3))
    prep = Preprocessing.fit(x_train, np.arange(3))
    assert prep.num_features == 6
    flat = x_train.reshape(40, 6)
    np.testing.assert_allclose(prep.mean, flat.mean(axis=0), rtol=1e-12)
    out = prep.transform(x_new)  # (N, 2, 3) is flattened
    assert out.shape == (7, 6) and out.dtype == np.float32
    expected = (x_new.reshape(7, 6) - flat.mean(axis=0)) / flat.std(axis=0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Transforming does not refit: the same input gives the same output, stats unchanged.
    np.testing.assert_array_equal(prep.transform(x_new), out)
    np.testing.assert_allclose(prep.mean, flat.mean(axis=0), rtol=1e-12)
    # uint8 images (e.g. CIFAR-10 pixels) standardise too, which centres them per pixel.
    pixels = rng.integers(0, 256, size=(50, 12), dtype=np.uint8)
    ds = Preprocessing.fit(pixels, np.arange(10)).apply(
        _dataset(pixels, rng.integers(0, 10, 50), 10))
    assert ds.x_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)


def test_standardisation_off_keeps_inputs():
    x = np.arange(12.0).reshape(4, 3)
    prep = Preprocessing.fit(x, np.array(["no", "yes"]), standardize=False)
    assert not prep.standardize and prep.mean is None and prep.scale is None
    np.testing.assert_array_equal(prep.transform(x, dtype=np.float64), x)
    assert prep.to_arrays() == {}
    with pytest.raises(DataError, match="x has 2 features per example, but the model was "
                                        "trained on 3"):
        prep.transform(x[:, :2])


@pytest.mark.parametrize(
    "x, expected",
    [
        (np.zeros((2, 5)), ["x has 5 features per example", "trained on 6", "same order"]),
        (np.zeros(6), ["x has shape (6,)", "x.reshape(1, -1)"]),
        (np.array([["a"] * 6]), ["dtype <U1", "numbers"]),
        (np.where(np.arange(18).reshape(3, 6) == 13, np.nan, 0.0), ["NaN", "first at row 2"]),
        (np.full((2, 6), 1e39), ["too large for float32", "row 0"]),
    ],
)
def test_transform_errors(x, expected):
    prep = Preprocessing.fit(np.arange(12.0).reshape(2, 6), np.arange(2))
    with pytest.raises(DataError) as err:
        prep.transform(x)
    for text in expected:
        assert text in str(err.value)


@pytest.mark.parametrize(
    "classes, labels",
    [
        ([3, 7, 100], [100, 3, 3, 7]),  # gaps
        ([-5, -1, 0], [0, -5, -1, -1]),  # negatives
        ([1, 2**40, 2**62], [2**62, 1, 2**40]),  # beyond int32
        (["setosa", "versicolor", "virginica"], ["virginica", "setosa", "setosa"]),  # strings
    ],
)
def test_encode_decode_round_trip(classes, labels):
    prep = Preprocessing.fit(np.zeros((2, 1)), np.array(classes))
    idx = prep.encode(labels)
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(idx, [classes.index(v) for v in labels])
    assert prep.decode(idx).tolist() == labels
    assert prep.decode(idx.reshape(1, -1)).shape == (1, len(labels))


def test_encode_decode_errors():
    prep = Preprocessing.fit(np.zeros((2, 1)), np.array([3, 7]))
    np.testing.assert_array_equal(prep.encode([7.0, 3.0]), [1, 0])  # whole floats match ints
    with pytest.raises(DataError, match="unknown: '3', 'cat'"):  # a string never matches an int
        prep.encode(np.array(["3", "cat"]))
    with pytest.raises(DataError) as err:
        prep.encode([3, 5, 7, 5])
    assert "5" in str(err.value) and "first at row 1" in str(err.value)
    assert "3, 7" in str(err.value)
    with pytest.raises(DataError, match="class index 2 is outside 0..1"):
        prep.decode([0, 2])
    with pytest.raises(DataError, match="expected integers"):
        prep.decode([0.0, 1.0])


def test_apply_remaps_a_dataset_with_fewer_classes():
    prep = Preprocessing.fit(np.zeros((3, 2)), np.array(["a", "b", "c"]), standardize=False)
    ds = _dataset(np.ones((2, 2)), np.array([0, 1]), np.array(["b", "c"]),
                  x_test=np.ones((1, 2)), y_test=np.array([1]))
    out = prep.apply(ds, dtype=np.float64)
    assert out.x_train.dtype == np.float64 and out.x_val is None
    np.testing.assert_array_equal(out.classes, ["a", "b", "c"])
    np.testing.assert_array_equal(out.y_train, [1, 2])
    np.testing.assert_array_equal(out.y_test, [2])
    unknown = _dataset(np.ones((2, 2)), np.array([0, 1]), np.array(["a", "z"]))
    with pytest.raises(DataError, match="'z'"):
        prep.apply(unknown)
    wide = _dataset(np.ones((2, 3)), np.array([0, 1]), np.array(["a", "b"]))
    with pytest.raises(DataError, match="toy: x_train has 3 features"):
        prep.apply(wide)


@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("classes", [np.array([-4, 0, 10**12]), np.array(["0", "1", "cat"])])
def test_saved_round_trip_through_safetensors(standardize, classes):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 4))
    prep = Preprocessing.fit(x, classes, standardize=standardize)
    # What a checkpoint does: numeric arrays in the file, the rest as a JSON string.
    blob = st_save(prep.to_arrays() or {"unused": np.zeros(1)},
                   metadata={"preprocessing": json.dumps(prep.to_json())})
    arrays = st_load(blob)
    meta = json.loads(json.dumps(prep.to_json()))
    back = Preprocessing.from_saved(arrays, meta)
    assert back.standardize == standardize and back.num_features == 4
    assert back.classes.dtype.kind == classes.dtype.kind
    assert back.classes.tolist() == classes.tolist()  # ints stay ints, "0" stays a string
    if standardize:
        assert back.mean.dtype == np.float64
        np.testing.assert_array_equal(back.mean, prep.mean)
        np.testing.assert_array_equal(back.scale, prep.scale)
    np.testing.assert_array_equal(back.transform(x), prep.transform(x))
    assert back.decode(back.encode(classes)).tolist() == classes.tolist()


def test_from_saved_refuses_damaged_state():
    prep = Preprocessing.fit(np.arange(6.0).reshape(3, 2), np.arange(2))
    meta = prep.to_json()
    without_classes = {k: v for k, v in meta.items() if k != "classes"}
    with pytest.raises(DataError, match="lack mean, scale"):
        Preprocessing.from_saved({}, meta)
    with pytest.raises(DataError, match="lacks or garbles 'classes'"):
        Preprocessing.from_saved(prep.to_arrays(), without_classes)
    with pytest.raises(DataError, match=r"mean has shape \(3,\), expected \(2,\)"):
        Preprocessing.from_saved({"mean": np.zeros(3), "scale": np.ones(3)}, meta)
    with pytest.raises(DataError, match=r"preprocessing: classes must be sorted and distinct, "
                                        r"like np.unique\(labels\); got \[2, 1\]"):
        Preprocessing.fit(np.zeros((2, 1)), np.array([2, 1]))
    with pytest.raises(DataError, match=r"classes has shape \(0,\), expected a non-empty"):
        Preprocessing.fit(np.zeros((2, 1)), np.array([], dtype=np.int64))


def test_datasets_and_preprocessing_share_one_rule_for_classes_and_inputs():
    from jaxnet.data import validate_arrays

    x = np.zeros((2, 3))
    for bad in (np.array(["b", "a"]), np.array([1, 1])):
        with pytest.raises(DataError) as from_dataset:
            Dataset("d", x, np.array([0, 1]), None, None, None, None, bad)
        with pytest.raises(DataError) as from_prep:
            Preprocessing.fit(x, bad)
        assert str(from_dataset.value).removeprefix("d: ") == str(
            from_prep.value).removeprefix("preprocessing: ")
    x[1, 2] = np.nan
    with pytest.raises(DataError) as from_data:
        validate_arrays(x, [0, 1], source="s", x_name="x")
    with pytest.raises(DataError) as from_prep:
        Preprocessing.fit(np.zeros((2, 3)), np.arange(2)).transform(x)
    assert str(from_data.value).removeprefix("s: ") == str(from_prep.value) == (
        "x holds 1 NaN or infinite values (first at row 1); the model needs finite numbers; "
        "clean or impute them first")


@pytest.mark.parametrize("rows", [1 << 16, 7, 1])
def test_standardisation_is_scikit_learns_standard_scaler_without_importing_it(rows):
    # jaxnet computes StandardScaler's numbers in NumPy (no 1.2 s scikit-learn import):
    # bitwise the same, over one chunk and over many (one partial_fit per chunk).
    from sklearn.preprocessing import StandardScaler

    from jaxnet.standardize import mean_and_scale

    rng = np.random.default_rng(rows)
    x = rng.normal(3.0, 2.0, size=(40, 6)) * np.array([1, 1e-9, 1e6, 1, 1, 1])
    x[:, 3] = 5.0  # a constant feature: scale 1
    x[:, 4] = np.round(x[:, 4])
    x = x.astype(np.float32) if rows == 7 else x
    scaler = StandardScaler()
    for start in range(0, len(x), rows):
        scaler.partial_fit(x[start:start + rows].astype(np.float64))
    mean, scale = mean_and_scale(x, rows)
    np.testing.assert_array_equal(mean, scaler.mean_)
    np.testing.assert_array_equal(scale, scaler.scale_)
    assert mean.dtype == scale.dtype == np.float64
    assert scale[3] == 1.0
