"""Tests for CSV input (jaxnet.data.csv): parsing, labels, the split and every refusal."""

from __future__ import annotations

import numpy as np
import pytest

from jaxnet.data import DataError, load_dataset
from jaxnet.data.csv import csv_columns, read_csv

_SPECIES = ("setosa", "versicolor", "virginica")


def _iris_like(n_per_class: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.array(_SPECIES), n_per_class)
    x = np.round(rng.normal(size=(len(y), 3)) + np.repeat(np.arange(3.0), n_per_class)[:, None], 3)
    return x, y


def _write(path, header, rows) -> None:
    lines = [",".join(header)] + [",".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def iris_csv(tmp_path):
    x, y = _iris_like()
    path = tmp_path / "iris.csv"
    # The target is the middle column: every other column is a feature, in file order.
    _write(path, ["sepal", "species", "petal", "width"],
           [(a, label, b, c) for (a, b, c), label in zip(x, y, strict=True)])
    return path, x, y


def test_csv_string_target_is_split_like_npz(iris_csv, tmp_path):
    path, x, y = iris_csv
    ds = load_dataset("csv", path, target="species", seed=1)
    assert ds.name == "csv" and ds.num_features == 3 and ds.num_classes == 3
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (42, 6, 12)
    np.testing.assert_array_equal(ds.classes, _SPECIES)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    rows = {r.tobytes(): label for r, label in zip(x.astype(np.float32), y, strict=True)}
    for xs, ys in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert set(ys.tolist()) == {0, 1, 2}  # stratified
        for r, index in zip(xs, ys, strict=True):
            assert rows[r.tobytes()] == ds.classes[index]
    # The same data in an .npz file with x, y gets exactly the same split.
    np.savez(tmp_path / "iris.npz", x=x, y=y)
    same = load_dataset("npz", tmp_path / "iris.npz", seed=1)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "classes"):
        np.testing.assert_array_equal(getattr(ds, field), getattr(same, field))


def test_csv_numeric_target_gives_int_classes(tmp_path):
    path = tmp_path / "grades.csv"
    labels = [100, -3, 7, 100.0, -3, 7] * 4  # gaps, a negative, a whole-number float
    _write(path, ["a", "b", "grade"], [(i, i * 2, g) for i, g in enumerate(labels)])
    ds = load_dataset("csv", path, target="grade", val_fraction=0, test_fraction=0.25)
    assert ds.classes.dtype == np.int64
    np.testing.assert_array_equal(ds.classes, [-3, 7, 100])
    np.testing.assert_array_equal(ds.classes[ds.y_train], [labels[int(r[0])] for r in ds.x_train])


def test_csv_layout_details(tmp_path):
    path = tmp_path / "odd.csv"
    text = (
        "\ufeff x , \"y, with comma\" ,label\n"  # byte-order mark, spaces, a quoted name
        "1, 2 ,cat\n"
        "\n"  # blank lines are skipped
        "3,4,\"dog\"\n"
        "5,6,cat\n"
        "7,8,dog\n"
    )
    path.write_text(text, encoding="utf-8")
    assert csv_columns(path) == ["x", "y, with comma", "label"]
    x, y, names = read_csv(path, target="label")
    np.testing.assert_array_equal(x, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert y.tolist() == ["cat", "dog", "cat", "dog"] and names == ["x", "y, with comma"]
    features = tmp_path / "features.csv"
    features.write_text("a,b\n1,2\n3,4\n")
    x, y, names = read_csv(features, target=None)
    assert y is None and names == ["a", "b"] and x.shape == (2, 2)


def _good_rows(n: int = 6) -> list[tuple]:
    return [(i, i + 0.5, "ab"[i % 2]) for i in range(n)]


def _bad(rows_edit):
    rows = _good_rows()
    rows_edit(rows)
    return "f0,f1,label\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)


@pytest.mark.parametrize(
    "text, target, expected",
    [
        (  # rows are lines 2..7; row index 2 is line 4
            _bad(lambda r: r.__setitem__(2, (2, "abc", "a"))),
            "label",
            ["line 4, column 'f1'", "'abc' is not a number", "only the target column 'label'"],
        ),
        (
            _bad(lambda r: r.__setitem__(3, (3, "", "b"))),
            "label",
            ["line 5, column 'f1'", "missing value (empty cell)", "impute"],
        ),
        (
            _bad(lambda r: r.__setitem__(0, ("NA", 1, "b"))),
            "label",
            ["line 2, column 'f0'", "missing value ('NA')"],
        ),
        (
            _bad(lambda r: r.__setitem__(5, (5, 1, ""))),
            "label",
            ["line 7, column 'label'", "missing label"],
        ),
        (
            _bad(lambda r: r.__setitem__(1, (1, "inf", "a"))),
            "label",
            ["line 3, column 'f1'", "'inf' is infinite"],
        ),
        (
            _bad(lambda r: r.__setitem__(4, (4, "a"))),
            "label",
            ["line 6 has 2 cells", "header (line 1) has 3 columns", "before column 'label'"],
        ),
        (
            _bad(lambda r: r.__setitem__(1, (1, 2, "a", "extra"))),
            "label",
            ["line 3 has 4 cells", "cell 4 ('extra') has no column"],
        ),
        (
            _bad(lambda r: None),
            "species",
            ["no column 'species'", "columns found: 'f0', 'f1', 'label'"],
        ),
        (_bad(lambda r: None), "Label", ["no column 'Label'", "did you mean 'label'?"]),
        (
            "f0;f1;label\n1;2;a\n",
            "label",
            ["no column 'label'", "columns found: 'f0;f1;label'", "separated by commas"],
        ),
        (_bad(lambda r: None), None, ["no target column given", "--target", "'f0', 'f1', 'label'"]),
        ("", "label", ["the file is empty", "header row"]),
        ("\n\n", "label", ["the file is empty"]),
        ("f0,f1,label\n\n", "label", ["has a header (line 1) but no data rows"]),
        ("label\na\nb\n", "label", ["the only column is the target 'label'"]),
        ("f0,label,label\n1,a,b\n", "label", ["column 'label' appears 2 times"]),
        (
            "f0,grade\n1,1\n2,2.5\n3,1\n",
            "grade",
            ["line 3, column 'grade'", "label '2.5' is not a whole number"],
        ),
        ("f0,label\n1,a\n2,a\n3,a\n", "label", ["column 'label' holds a single class ('a')"]),
        ("f0,label\n1e300,a\n2,b\n3,a\n", "label", ["line 2, column 'f0'", "too large for float"]),
    ],
)
def test_csv_errors_name_line_and_column(tmp_path, text, target, expected):
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_dataset("csv", path, target=target, val_fraction=0.0, test_fraction=0.0)
    msg = str(err.value)
    assert "data.csv" in msg and "\n" not in msg  # one line, naming the file
    for part in expected:
        assert part in msg


def test_csv_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="not found") as err:
        load_dataset("csv", tmp_path / "absent.csv", target="y")
    assert "absent.csv" in str(err.value)
    with pytest.raises(DataError, match="is a directory"):
        load_dataset("csv", tmp_path, target="y")
    binary = tmp_path / "model.csv"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="not UTF-8 text") as err:
        load_dataset("csv", binary, target="y")
    assert "model.csv" in str(err.value)


def test_csv_float64_keeps_large_values(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("f0,label\n1e300,a\n2,b\n3,a\n4,b\n")
    ds = load_dataset("csv", path, target="label", dtype=np.float64, val_fraction=0,
                      test_fraction=0)
    assert ds.x_train.dtype == np.float64 and ds.x_train.max() == 1e300
