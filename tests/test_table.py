"""Column kinds and missing cells: jaxnet.data.table.Table, the CSV path and a run's schema."""

import json
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import make_table

from jaxnet.data import DataError, load_dataset
from jaxnet.data.columns import DataNote
from jaxnet.data.table import MISSING, Table

ROOT = pathlib.Path(__file__).resolve().parents[1]



def _frame(n=60):
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "id": [f"row-{i}" for i in range(n)],
        "when": [f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)],
        "city": rng.choice(["Oslo", "Rome", "Lima"], n).astype(object),
        "temp": rng.normal(10, 5, n),
        "windy": rng.choice(["yes", "no"], n).astype(object),
        "empty": [None] * n,
        "rooms": rng.integers(1, 4, n),
    })


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)
        return fn(*args, **kwargs)


def test_each_column_gets_its_kind_and_the_rest_are_left_out_with_one_note():
    with pytest.warns(DataNote, match=r"left out 2 columns: 'id' \(identifier-like.*'empty' "
                                      r"\(no value in the training rows\)"):
        table = Table.fit(_frame())
    kinds = {c.name: c.kind for c in table.columns}
    assert kinds == {"when": "date", "city": "category", "temp": "number", "windy": "boolean",
                     "rooms": "number"}
    assert [n for n, _ in table.left_out] == ["id", "empty"]
    assert table.features == ["when.year", "when.dayofyear", "when.dayofweek", "city=Lima",
                              "city=Oslo", "city=Rome", "temp", "windy", "rooms"]
    summary = table.summary()
    assert "date: when" in summary and "left out: id (identifier-like" in summary


def test_categorical_and_drop_override_the_kinds():
    table = _quiet(Table.fit, _frame(), categorical=["rooms", "id"], drop=["temp"])
    kinds = {c.name: c.kind for c in table.columns}
    assert kinds["rooms"] == "category" and kinds["id"] == "category" and "temp" not in kinds
    assert [f for f in table.features if f.startswith("rooms=")] == ["rooms=1", "rooms=2",
                                                                    "rooms=3"]
    assert ("temp", "dropped as asked") in table.left_out
    with pytest.raises(DataError, match="categorical names 'nope', not a feature column"):
        Table.fit(_frame(), categorical=["nope"])
    with pytest.raises(DataError, match="'temp' is both in categorical and in drop"):
        Table.fit(_frame(), categorical=["temp"], drop=["temp"])


def test_dates_become_year_day_of_year_and_weekday():
    frame = pd.DataFrame({"d": ["2012-01-01", "2024-12-31T23:30:00", "2021-03-01 08:00+02:00"],
                          "x": [1.0, 2.0, 3.0]})
    table = Table.fit(frame)
    out = table.encode(frame)
    # 2012-01-01 was a Sunday (6); 2024-12-31 a Tuesday, day 366 of a leap year; the third is
    # 06:00 UTC on Monday 1 March 2021, day 60.
    np.testing.assert_array_equal(out[:, :3], [[2012, 1, 6], [2024, 366, 1], [2021, 60, 0]])


def test_missing_cells_take_the_training_median_and_an_indicator():
    train = pd.DataFrame({"a": [1.0, None, 3.0, 10.0], "c": ["x", None, "y", "x"]})
    table = Table.fit(train)
    assert table.features == ["a", f"a {MISSING}", "c=x", "c=y", f"c={MISSING}"]
    out = table.encode(train)
    np.testing.assert_array_equal(out, [[1, 0, 1, 0, 0], [3, 1, 0, 0, 1], [3, 0, 0, 1, 0],
                                        [10, 0, 1, 0, 0]])


def test_values_never_seen_in_training_give_zeros_and_a_note_never_an_error():
    table = Table.fit(pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": ["x", "y", "x"]}))
    new = pd.DataFrame({"c": ["z", None, "y"], "a": [None, 2.0, 5.0]})  # another order too
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = table.encode(new)
    notes = " ".join(str(w.message) for w in caught if issubclass(w.category, DataNote))
    assert "column 'c': 2 rows hold values never seen in training ('(missing)', 'z')" in notes
    assert "column 'a' has 1 missing cells; it had none in training" in notes
    np.testing.assert_array_equal(out, [[2, 0, 0], [2, 0, 0], [5, 0, 1]])


def test_the_schema_survives_json_and_encodes_the_same():
    frame = _frame()
    frame.loc[3, "temp"] = None
    table = _quiet(Table.fit, frame)
    again = Table.from_json(json.loads(json.dumps(table.to_json())))
    assert again == table
    np.testing.assert_array_equal(_quiet(again.encode, frame), _quiet(table.encode, frame))


def test_impute_false_refuses_missing_cells_naming_them():
    frame = pd.DataFrame({"a": [1.0, None, 3.0]})
    with pytest.raises(DataError, match=r"row 1, column 'a': missing value; impute=False"):
        Table.fit(frame, impute=False)
    table = Table.fit(pd.DataFrame({"a": [1.0, 2.0]}), impute=False)
    with pytest.raises(DataError, match="trained with impute=False"):
        table.encode(frame)


def test_a_number_column_with_a_few_text_cells_is_refused_not_guessed():
    frame = pd.DataFrame({"hp": ["130", "165", "?", "150"]})
    with pytest.raises(DataError, match=r"column 'hp': '\?' is not a number, but the column "
                                        r"holds numbers \(1 of 4 cells"):
        Table.fit(frame)
    assert Table.fit(frame, categorical=["hp"]).columns[0].kind == "category"


def test_a_csv_file_with_ids_dates_categories_and_empty_cells_trains(tmp_path):
    path = tmp_path / "customers.csv"
    make_table(400, seed=3).to_csv(path, index=False)
    with pytest.warns(DataNote, match="'customer_id' \\(identifier-like"):
        data = load_dataset("csv", path, target="churn")
    kinds = {c.name: c.kind for c in data.table.columns}
    assert kinds == {"signup_date": "date", "plan": "category", "region": "category",
                     "age": "number", "tenure_months": "number", "monthly_spend": "number",
                     "support_calls": "number", "autopay": "boolean"}
    assert data.num_features == data.table.width == 18
    assert np.isfinite(data.x_train).all() and np.isfinite(data.x_test).all()
    # the table is learned on the training split only: a value only in val/test is unseen
    assert data.feature_names == data.table.names


def test_a_row_without_a_label_is_left_out_with_a_note(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n1,x\n2,\n3,y\n4,x\n5,y\n")
    with pytest.warns(DataNote, match=r"left out 1 row whose label \(column 'label'\) is "
                                      r"missing \(first at line 3\)"):
        data = load_dataset("csv", path, target="label", val_fraction=0, test_fraction=0)
    assert len(data.y_train) == 4


def test_an_all_empty_column_is_left_out(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,gone,label\n1,,x\n2,NA,y\n3,,x\n4,,y\n")
    with pytest.warns(DataNote, match="'gone' \\(no value in the training rows\\)"):
        data = load_dataset("csv", path, target="label", val_fraction=0, test_fraction=0)
    assert data.table.names == ("a",)


@pytest.mark.slow
def test_train_then_predict_on_reordered_new_rows_with_unseen_values(tmp_path, capsys):
    # In this process (`jaxnet.cli.main`): the same commands, notes and exit statuses as a
    # child `python -m jaxnet` gives, without starting JAX six times.
    from jaxnet.cli import main

    def run_jaxnet(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    make_table(600, seed=0).to_csv(tmp_path / "train.csv", index=False)
    new = make_table(50, seed=1, new_rows=True)
    new.to_csv(tmp_path / "new.csv", index=False)
    ordered = new[sorted(new.columns)]
    ordered.to_csv(tmp_path / "ordered.csv", index=False)
    run = tmp_path / "run"
    code, _, err = run_jaxnet("train", "--data", tmp_path / "train.csv", "--target", "churn",
                              "--epochs", "3", "--hidden", "16", "--out", run)
    assert code == 0, err
    assert "date: signup_date" in err and "left out: customer_id" in err
    for name in ("new", "ordered"):
        code, _, err = run_jaxnet("predict", run, "--data", tmp_path / f"{name}.csv", "--out",
                                  tmp_path / f"{name}-pred.csv")
        assert code == 0, err
    assert "values never seen in training ('enterprise')" in err
    a = pd.read_csv(tmp_path / "new-pred.csv")
    b = pd.read_csv(tmp_path / "ordered-pred.csv")
    pd.testing.assert_frame_equal(a, b)
    import jaxnet

    model = jaxnet.load(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)
        proba = model.predict_proba(ordered)
    np.testing.assert_allclose(proba, b.iloc[:, 1:].to_numpy(), atol=1e-5)
    new.drop(columns="plan").to_csv(tmp_path / "short.csv", index=False)
    code, _, err = run_jaxnet("predict", run, "--data", tmp_path / "short.csv", "--out",
                              tmp_path / "short-pred.csv")
    assert code == 2 and "no column 'plan'" in err
    assert not (tmp_path / "short-pred.csv").exists()
    code, out, err = run_jaxnet("evaluate", run, "--data", tmp_path / "train.csv")
    assert code == 0 and "accuracy" in out, err
    code, _, err = run_jaxnet("predict", run, "--data", tmp_path / "train.csv", "--out",
                              tmp_path / "train-pred.csv")  # the file it trained on, label and all
    assert code == 0, err
    assert "ignored 2 columns the model does not use: 'customer_id', 'churn' (the target)" \
        in err


def test_table_settings_are_refused_without_a_csv_file():
    from jaxnet.config import TrainConfig
    from jaxnet.errors import ConfigError

    with pytest.raises(ConfigError, match="categorical=a,b names how a csv file's columns are "
                                          "read, but dataset='digits' is not a csv file"):
        TrainConfig(categorical=("a", "b")).validate()
    with pytest.raises(ConfigError, match="impute=False names"):
        TrainConfig(dataset="npz", data_path="x.npz", impute=False).validate()
    TrainConfig(data_path="t.csv", target="y", drop="id").validate()  # a csv file takes them


def test_an_on_off_setting_is_shown_as_its_flag():
    from jaxnet.errors import render

    flags = {"impute": "--impute"}.get
    assert render("`impute=False` refuses; drop `impute=False`", flags) == \
        "--no-impute refuses; drop --no-impute"
    assert render("`impute=True`", flags) == "--impute"


@pytest.mark.slow
def test_the_estimator_reads_a_dataframe_with_kinds_as_a_table():
    from sklearn.base import clone

    from jaxnet.estimator import MLPClassifier

    frame = make_table(400, seed=5)
    x, y = frame.drop(columns="churn"), frame["churn"]
    est = MLPClassifier(hidden=16, epochs=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)
        est.fit(x, y)
        kinds = {c.name: c.kind for c in est.model_.preprocessing.table.columns}
        assert kinds["plan"] == "category" and kinds["signup_date"] == "date"
        assert "customer_id" not in kinds  # left out, identifier-like
        assert list(est.feature_names_in_) == list(x.columns)
        proba = est.predict_proba(x.iloc[:20])
        # the loaded model (by name, any order) and the estimator agree
        np.testing.assert_allclose(est.model_.predict_proba(x.iloc[:20, ::-1]), proba,
                                   atol=1e-6)
        with pytest.raises(ValueError, match="feature names"):  # scikit-learn's order rule
            est.predict(x.iloc[:5, ::-1])
        assert set(est.predict(x.iloc[:20])) <= {"left", "stayed"}
        again = clone(est).fit(x, y)  # the same seed: the same model
    np.testing.assert_allclose(again.predict_proba(x.iloc[:20]), proba, atol=1e-6)
