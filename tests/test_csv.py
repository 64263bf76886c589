"""Tests for the CSV reader (jaxnet.data.csv): parsing, labels, the split, every refusal, predict's inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnet.config import TrainConfig
from jaxnet.data import DataError, dataset_for, load_dataset
from jaxnet.data.columns import IgnoredColumnsWarning
from jaxnet.data.csv import csv_columns, read_csv
from jaxnet.data.features import read_features

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
            ["line 4, column 'f1'", "'abc' is not a number", "the column holds numbers",
             "name it in categorical"],
        ),
        (
            _bad(lambda r: r.__setitem__(3, (3, "", "b"))),
            ("label", False),
            ["line 5, column 'f1'", "missing value", "impute=False refuses"],
        ),
        (
            _bad(lambda r: r.__setitem__(0, ("NA", 1, "b"))),
            ("label", False),
            ["line 2, column 'f0'", "missing value"],
        ),
        (
            _bad(lambda r: r.__setitem__(5, (5, 1, ""))),
            ("label", False),
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
        (_bad(lambda r: None), None, ["no target column given", "(target=COLUMN)", "'f0', 'f1', 'label'"]),
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
    target, impute = target if isinstance(target, tuple) else (target, True)
    with pytest.raises(DataError) as err:
        load_dataset("csv", path, target=target, val_fraction=0.0, test_fraction=0.0,
                     **({} if impute else {"impute": False}))
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


# ------------------------------------------------------------------ one reader, two paths

_CELLS = ["1", "2.5", "-3", "+4", "1e3", ".5", "5.", "3.0", "0.00000000000001953", "  12  ",
          "\t3", '"7"', ' "8" ', "", " ", "nan", "NA", "None", "inf", "-inf", "1e400", "x",
          "cat", "1_000", "0x1", "True", "18446744073709551615", '"a,b"', '""']


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_pandas_and_the_row_loop_read_alike(tmp_path_factory, data):
    """Wherever pandas' reading is used, it equals the Python row loop's (the rule's text)."""
    from jaxnet.data import csv as reader

    width = data.draw(st.integers(1, 4))
    has_header = data.draw(st.booleans())
    common = st.sampled_from(_CELLS[:10])
    any_cell = st.sampled_from(_CELLS)
    rows = [["f", "label", "g", "h"][:width]] if has_header else []
    for _ in range(data.draw(st.integers(0, 5))):
        n = data.draw(st.sampled_from([width] * 8 + [width - 1, width + 1]))
        rows.append([data.draw(st.one_of(common, any_cell)) for _ in range(max(n, 1))])
        if data.draw(st.integers(0, 9)) == 0:
            rows.append([data.draw(st.sampled_from(["", "  ", ","]))])
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    path.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    targets = ["label", None] if has_header and width > 1 else [None]
    for target in targets:
        try:
            layout = reader._layout(str(path), target, True if has_header else None)
        except DataError:
            continue
        fast = reader._read_fast(str(path), layout)
        if fast is None:
            continue  # the row loop reads or refuses the file
        exact = reader._read_exact(str(path), layout, target)
        assert fast.x.dtype == exact.x.dtype == np.float64
        np.testing.assert_array_equal(fast.x, exact.x)
        assert (fast.names, fast.columns) == (exact.names, exact.columns)
        if target is None:
            assert fast.y is None and exact.y is None
        else:
            assert fast.y.dtype == exact.y.dtype
            np.testing.assert_array_equal(fast.y, exact.y)


def test_a_clean_file_is_read_by_pandas_alone(iris_csv, monkeypatch):
    from jaxnet.data import csv as reader

    path, x, y = iris_csv
    monkeypatch.setattr(reader, "_read_exact", lambda *a: pytest.fail("row loop used"))
    got_x, got_y, names = read_csv(path, target="species")
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    assert names == ["sepal", "petal", "width"]


def test_numbers_pandas_does_not_read_are_read_as_float_reads_them(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("a,b\n1_000,2\n3,\u0663\n")  # an underscore, an Arabic-Indic digit
    x, _, _ = read_csv(path, target=None)
    np.testing.assert_array_equal(x, [[1000, 2], [3, 3]])


def test_a_too_large_value_names_its_line_after_blank_lines(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("f0,label\n1,a\n\n\n2,b\n1e300,a\n4,b\n")
    with pytest.raises(DataError, match=r"line 6, column 'f0': 1e\+300 is too large"):
        load_dataset("csv", path, target="label", val_fraction=0, test_fraction=0)


# ------------------------------------------------------------------ inputs to predict


@pytest.mark.parametrize("text", [
    "a,b\n1,2\n3,4\n",
    "1,2\n3,4\n",  # no header: the first row is all numbers
    "\ufeff a , b \n\n1, 2 \n  \n3,\"4\"\n",  # the training rules: BOM, spaces, blank lines
    "\ufeff1,2\n3,4\n",
])
def test_predict_inputs_follow_the_training_rules(tmp_path, text):
    path = tmp_path / "x.csv"
    path.write_text(text, encoding="utf-8")
    np.testing.assert_array_equal(read_features(path), [[1, 2], [3, 4]])


@pytest.mark.parametrize("text, expected", [
    ("1,2,3\nnan,2,3\n", "line 2, column 1: missing value ('nan')"),
    ("a,b\n1,2\n\n3,\n", "line 4, column 'b': missing value (empty cell)"),
    ("a,b\n1,2\n3,oops\n", "line 3, column 'b': 'oops' is not a number"),
    ("a,b\n1,inf\n", "line 2, column 'b': 'inf' is infinite"),
    ("1,2,3\n4,5\n", "line 2 has 2 cells but line 1 has 3"),
    ("a,b,c\n1,2\n", "line 2 has 2 cells but the header (line 1) has 3 columns"),
    ("a,b\n", "has a header (line 1) but no data rows"),
    ("\n", "the file is empty"),
])
def test_predict_inputs_are_refused_naming_line_and_column(tmp_path, text, expected):
    path = tmp_path / "x.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_features(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_predict_inputs_that_are_not_text(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xff\xfe\x00 not numpy, not text")
    with pytest.raises(DataError, match="cannot be read as CSV: not UTF-8 text"):
        read_features(path)


# ------------------------------------------------------------------ columns by name


def test_columns_are_read_by_name_in_the_order_asked(iris_csv):
    path, x, _ = iris_csv
    with pytest.warns(IgnoredColumnsWarning, match="'species'"):
        got, y, names = read_csv(path, target=None, columns=["width", "sepal", "petal"])
    assert y is None and names == ["width", "sepal", "petal"]
    np.testing.assert_array_equal(got, x[:, [2, 0, 1]])


def test_other_columns_are_left_out_with_one_note_naming_them(iris_csv, tmp_path):
    path, x, y = iris_csv
    with pytest.warns(IgnoredColumnsWarning) as caught:
        got = read_features(path, ["sepal", "petal", "width"])  # 'species' holds text
    np.testing.assert_array_equal(got, x)
    assert len(caught) == 1 and "'species'" in str(caught[0].message)
    # the target that is read as labels is not "ignored"; an id column is
    _write(tmp_path / "id.csv", ["id", "sepal", "species", "petal", "width"],
           [(i, a, label, b, c) for i, ((a, b, c), label) in enumerate(zip(x, y, strict=True))])
    with pytest.warns(IgnoredColumnsWarning, match=r"1 column .*: 'id'$"):
        data = load_dataset("csv", tmp_path / "id.csv", target="species",
                            columns=["width", "petal", "sepal"])
    assert data.feature_names == ("width", "petal", "sepal")


def test_a_missing_column_is_refused_naming_it_and_the_columns_found(iris_csv):
    path, _, _ = iris_csv
    with pytest.raises(DataError) as err:
        read_features(path, ["sepal", "petal", "length"])
    message = str(err.value)
    assert "no column 'length'" in message
    assert "columns found: 'sepal', 'species', 'petal', 'width'" in message


def test_a_file_without_names_keeps_the_count_check(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(read_features(path, ["c", "b", "a"]), [[1, 2, 3], [4, 5, 6]])
    # a first row of numbers that holds every feature name is a header all the same
    path.write_text("2,1\n10,20\n")
    np.testing.assert_array_equal(read_features(path, ["1", "2"]), [[20, 10]])


def test_training_records_the_feature_names_and_refuses_repeated_ones(iris_csv, tmp_path):
    path, _, _ = iris_csv
    assert load_dataset("csv", path, target="species").feature_names == ("sepal", "petal", "width")
    assert load_dataset("digits").feature_names is None
    _write(tmp_path / "twice.csv", ["a", "a", "label"], [(1, 2, "x"), (3, 4, "y")] * 5)
    with pytest.raises(DataError, match="column 'a' appears 2 times in the header"):
        load_dataset("csv", tmp_path / "twice.csv", target="label")


def test_the_extension_selects_the_dataset_unless_one_is_given():
    assert dataset_for("iris.csv") == "csv" and dataset_for("X.NPZ") == "npz"
    assert dataset_for("folder") is None and dataset_for(None) is None
    assert TrainConfig(data_path="iris.csv", target="species").dataset == "csv"
    assert TrainConfig(data_path="x.npz").dataset == "npz"
    assert TrainConfig().dataset == "digits"
    assert TrainConfig(dataset="digits", data_path="x.csv").dataset == "digits"  # given: wins
    with pytest.raises(DataError, match="dataset 'digits' is built in and takes no path"):
        load_dataset("digits", "x.csv")
