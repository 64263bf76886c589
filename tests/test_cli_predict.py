"""`jaxnet predict` and `jaxnet evaluate`: a trained run put to work on files, and bad inputs."""

import csv
import hashlib
import json

import numpy as np
import pytest
from conftest import one_line_error
from sklearn.datasets import load_iris, load_wine
from sklearn.metrics import confusion_matrix

from jaxnet import fitting
from jaxnet.cli import main
from jaxnet.config import TrainConfig

pytestmark = pytest.mark.slow  # every test predicts with a fitted run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ["--layers", "2", "--hidden", "16", "--epochs", "5", "--quiet"]


def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """A `jaxnet train` run on wine (an x, y .npz), and its test split saved as files."""
    base = tmp_path_factory.mktemp("wine")
    x, y = load_wine(return_X_y=True)
    np.savez(base / "wine.npz", x=x, y=y)
    assert main(["train", "--dataset", "npz", "--data", str(base / "wine.npz"),
                 "--out", str(base / "run"), *SMALL]) == 0
    data = fitting.load_data(TrainConfig(dataset="npz", data_path=str(base / "wine.npz")))
    x_test, y_test = data.x_test, data.classes[data.y_test]
    np.savez(base / "test.npz", x=x_test, y=y_test)
    np.save(base / "test.npy", x_test)
    metrics = json.loads((base / "run" / "metrics.json").read_text())
    return {"base": base, "run": base / "run", "x_test": x_test, "y_test": y_test,
            "metrics": metrics}


def test_predict_and_evaluate_give_the_accuracy_of_metrics_json(wine, tmp_path, capsys):
    capsys.readouterr()
    expected = wine["metrics"]["test_accuracy"]
    # predict: one row per input, label then one probability per class
    assert main(["predict", str(wine["run"]), "--data", str(wine["base"] / "test.npz"),
                 "--out", str(tmp_path / "predictions.csv")]) == 0
    assert capsys.readouterr().out == f"36 predictions (3 classes) written to {tmp_path / 'predictions.csv'}\n"
    header, rows = _read_csv(tmp_path / "predictions.csv")
    assert header == ["label", "p_0", "p_1", "p_2"] and len(rows) == 36
    labels = np.array([int(r[0]) for r in rows])
    proba = np.array([[float(p) for p in r[1:]] for r in rows])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    assert np.mean(labels == wine["y_test"]) == pytest.approx(expected, abs=1e-6)

    # the same through .npy in and .npz out
    assert main(["predict", str(wine["run"]), "--data", str(wine["base"] / "test.npy"),
                 "--out", str(tmp_path / "predictions.npz")]) == 0
    with np.load(tmp_path / "predictions.npz") as saved:
        np.testing.assert_array_equal(saved["labels"], labels)
        np.testing.assert_allclose(saved["probabilities"], proba, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(saved["classes"], [0, 1, 2])

    # evaluate: the run's own test split by default
    capsys.readouterr()
    assert main(["evaluate", str(wine["run"]), "--out", str(tmp_path / "own")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"npz {wine['base'] / 'wine.npz'} test: accuracy {100 * expected:.2f}% | ")
    report = json.loads((tmp_path / "own" / "evaluation.json").read_text())
    assert report["accuracy"] == pytest.approx(expected, abs=1e-6) and report["examples"] == 36
    assert report["loss"] == pytest.approx(wine["metrics"]["test_loss"], rel=1e-5)
    np.testing.assert_array_equal(report["confusion_matrix"],
                                  confusion_matrix(wine["y_test"], labels, labels=[0, 1, 2]))
    assert [c["support"] for c in report["per_class"]] == [
        int(np.sum(wine["y_test"] == c)) for c in (0, 1, 2)]
    assert (tmp_path / "own" / "confusion.png").read_bytes().startswith(PNG_MAGIC)

    # evaluate on another file: all of its rows (here: exactly the test split again)
    assert main(["evaluate", str(wine["run"]), "--dataset", "npz", "--data",
                 str(wine["base"] / "test.npz"), "--out", str(tmp_path / "file")]) == 0
    assert " all: accuracy " in capsys.readouterr().out
    again = json.loads((tmp_path / "file" / "evaluation-on-test.json").read_text())
    assert again["examples"] == 36 and again["accuracy"] == report["accuracy"]
    assert again["confusion_matrix"] == report["confusion_matrix"]


def test_evaluate_writes_into_the_run_folder_by_default(wine, capsys):
    assert main(["evaluate", str(wine["run"]), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert (f"written: {wine['run'] / 'evaluation-val.json'}, "
            f"{wine['run'] / 'confusion-val.png'}") in out
    report = json.loads((wine["run"] / "evaluation-val.json").read_text())
    assert report["accuracy"] == pytest.approx(wine["metrics"]["val_accuracy"], abs=1e-6)
    assert report["split"] == "val" and report["data_path"] == str(wine["base"] / "wine.npz")


def test_evaluating_other_data_keeps_the_runs_evaluation_and_records_what_was_scored(
        wine, tmp_path, capsys):
    out, own_npz, test_npz = tmp_path / "ev", wine["base"] / "wine.npz", wine["base"] / "test.npz"
    assert main(["evaluate", str(wine["run"]), "--out", str(out)]) == 0
    own = (out / "evaluation.json").read_bytes()
    report = json.loads(own)
    assert (report["run"], report["dataset"], report["data_path"], report["split"]) == (
        str(wine["run"]), "npz", str(own_npz), "test")
    assert report["data_sha256"] == hashlib.sha256(own_npz.read_bytes()).hexdigest()

    for extra, name in (([], "on-test"), (["--split", "val"], "on-test-val")):
        assert main(["evaluate", str(wine["run"]), "--data", str(test_npz), "--out", str(out),
                     *extra]) == 0
        assert capsys.readouterr().out.endswith(
            f"written: {out / f'evaluation-{name}.json'}, {out / f'confusion-{name}.png'}\n")
        other = json.loads((out / f"evaluation-{name}.json").read_text())
        assert (other["dataset"], other["data_path"], other["split"]) == (
            "npz", str(test_npz), extra[-1] if extra else "all")
        assert other["data_sha256"] == hashlib.sha256(test_npz.read_bytes()).hexdigest()
        assert (out / f"confusion-{name}.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "evaluation.json").read_bytes() == own  # untouched
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion-on-test-val.png", "confusion-on-test.png", "confusion.png",
        "evaluation-on-test-val.json", "evaluation-on-test.json", "evaluation.json"]


def test_evaluate_never_replaces_an_earlier_evaluation_unless_told(wine, tmp_path, capsys):
    out, test_npz = tmp_path / "ev", wine["base"] / "test.npz"
    assert main(["evaluate", str(wine["run"]), "--data", str(test_npz), "--out", str(out)]) == 0
    names = ("evaluation-on-test.json", "confusion-on-test.png")
    saved = {name: (out / name).read_bytes() for name in names}
    # another file of the same name, or the same one again: refused before any work
    (tmp_path / "b").mkdir()
    np.savez(tmp_path / "b" / "test.npz", x=wine["x_test"][:10], y=wine["y_test"][:10])
    for data in (test_npz, tmp_path / "b" / "test.npz"):
        capsys.readouterr()
        assert main(["evaluate", str(wine["run"]), "--data", str(data), "--out", str(out)]) == 2
        assert (f"error: {out / names[0]} exists from an earlier evaluation (scoring {test_npz}, "
                "split all); pass --overwrite to replace it, or --out DIR to write elsewhere"
                ) in one_line_error(capsys)
        assert {name: (out / name).read_bytes() for name in names} == saved
    (out / names[0]).unlink()  # the plot alone protects its evaluation too
    assert main(["evaluate", str(wine["run"]), "--data", str(test_npz), "--out", str(out)]) == 2
    assert f"{out / names[1]} exists from an earlier evaluation;" in one_line_error(capsys)
    assert main(["evaluate", str(wine["run"]), "--data", str(tmp_path / "b" / "test.npz"),
                 "--out", str(out), "--overwrite"]) == 0
    replaced = json.loads((out / names[0]).read_text())
    assert replaced["examples"] == 10 and replaced["data_path"] == str(tmp_path / "b" / "test.npz")


def test_string_labels_of_a_csv_come_back_as_strings(tmp_path, capsys):
    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    columns = ["sepal length", "sepal width", "petal length", "petal width"]
    with open(tmp_path / "iris.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*columns[:2], "species", *columns[2:]])  # the target in the middle
        for row, name in zip(x, names, strict=True):
            writer.writerow([*row[:2], name, *row[2:]])
    with open(tmp_path / "new.csv", "w", newline="") as f:  # features only, with a header
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(x[::10])
    assert main(["train", "--dataset", "csv", "--data", str(tmp_path / "iris.csv"), "--target",
                 "species", "--out", str(tmp_path / "run"), *SMALL]) == 0
    assert main(["predict", str(tmp_path / "run"), "--data", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "predictions.csv")]) == 0
    header, rows = _read_csv(tmp_path / "predictions.csv")
    assert header == ["label", "p_setosa", "p_versicolor", "p_virginica"]
    assert len(rows) == 15 and {r[0] for r in rows} <= {"setosa", "versicolor", "virginica"}
    best = [header[1:][int(np.argmax([float(p) for p in r[1:]]))] for r in rows]
    assert [r[0] for r in rows] == [b.removeprefix("p_") for b in best]
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert [c["class"] for c in report["per_class"]] == ["setosa", "versicolor", "virginica"]
    assert "\nsetosa " in capsys.readouterr().out


# ------------------------------------------------------------------ bad inputs


def _write_bad(path, kind):
    if kind == "wrong_width":
        np.save(path, np.zeros((3, 12)))
    elif kind == "nan_row":
        path.write_text("1,2,3,4,5,6,7,8,9,10,11,12,13\n" + ",".join(["nan"] * 13) + "\n")
    elif kind == "inf_row":
        x = np.ones((3, 13))
        x[1, 4] = np.inf
        np.save(path, x)
    elif kind == "garbage":
        path.write_bytes(b"\xff\xfe\x00 not numpy, not text")
    elif kind == "text_cell":
        path.write_text("a,b\n1,2\n3,oops\n")
    elif kind == "ragged":
        path.write_text("1,2,3\n4,5\n")


@pytest.mark.parametrize("kind, name, expected", [
    ("wrong_width", "x.npy", "12 features per example, but the model was trained on 13"),
    ("nan_row", "x.csv", "line 2, column 1: missing value ('nan')"),
    ("inf_row", "x.npy", r"NaN or infinite values (first at row 1)"),
    ("garbage", "x.npz", "is not an .npz file"),
    ("garbage", "x.npy", "is not an .npy file"),
    ("garbage", "x.csv", "cannot be read as CSV"),
    ("text_cell", "x.csv", "line 3, column 'b': 'oops' is not a number"),
    ("ragged", "x.csv", "line 2 has 2 cells but line 1 has 3"),
    (None, "missing.npz", "missing.npz: not found"),
    (None, "x.txt", "unknown file type '.txt'"),
])
def test_predict_refuses_bad_inputs_with_one_line_and_writes_nothing(
        wine, tmp_path, capsys, kind, name, expected):
    if kind is not None:
        _write_bad(tmp_path / name, kind)
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(wine["run"]), "--data", str(tmp_path / name), "--out",
                 str(out)]) == 2
    err = one_line_error(capsys)
    assert expected in err and str(tmp_path / name) in err, err
    assert not out.exists()


@pytest.mark.parametrize("folder, expected", [
    ("nowhere", "nowhere: no such folder"),
    ("empty", "no checkpoint found"),
    ("sweep", "is the output folder of a jaxnet sweep (results.json, best.json), which keeps "
              "the scores of its runs but no trained network; train the setting you want (the "
              "best one is in {folder}/best.json) with `jaxnet train --out DIR`"),
])
def test_predict_and_evaluate_refuse_a_folder_without_a_trained_run(
        wine, tmp_path, capsys, folder, expected):
    if folder != "nowhere":
        (tmp_path / folder).mkdir()
    if folder == "sweep":
        (tmp_path / folder / "results.json").write_text("{}")
        (tmp_path / folder / "best.json").write_text("{}")
    expected = expected.format(folder=tmp_path / folder)
    assert main(["predict", str(tmp_path / folder), "--data", str(wine["base"] / "test.npz"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert expected in one_line_error(capsys)
    assert main(["evaluate", str(tmp_path / folder), "--out", str(tmp_path / "report")]) == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "report").exists()


def test_predict_never_replaces_an_existing_file_unless_told(wine, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    out.write_text("precious\n")
    argv = ["predict", str(wine["run"]), "--data", str(wine["base"] / "test.npz"), "--out", str(out)]
    assert main(argv) == 2
    assert "exists; choose another name or pass --overwrite" in one_line_error(capsys)
    assert out.read_text() == "precious\n"
    assert main([*argv, "--overwrite"]) == 0
    assert out.read_text().startswith("label,p_0,p_1,p_2\n")
    assert main(["predict", str(wine["run"]), "--data", str(wine["base"] / "test.npz"),
                 "--out", str(tmp_path / "p.json")]) == 2
    assert "expected a .csv or .npz file name" in one_line_error(capsys)


@pytest.mark.parametrize("kind, expected", [
    ("wrong_width", "has 12 features per example, but the model was trained on 13"),
    ("garbage", "not a valid .npz file"),
    ("unknown_label", "not among the classes the model was trained on (unknown: 7"),
    ("no_target", "--target names the label column"),
])
def test_evaluate_refuses_bad_data_with_one_line_and_writes_nothing(
        wine, tmp_path, capsys, kind, expected):
    path = tmp_path / "other.npz"
    if kind == "wrong_width":
        np.savez(path, x=np.zeros((20, 12)), y=np.arange(20) % 3)
    elif kind == "garbage":
        path.write_bytes(b"garbage")
    elif kind == "unknown_label":
        np.savez(path, x=wine["x_test"], y=np.where(np.arange(36) == 4, 7, wine["y_test"]))
    argv = ["evaluate", str(wine["run"]), "--out", str(tmp_path / "report")]
    argv += ["--target", "y"] if kind == "no_target" else ["--dataset", "npz", "--data", str(path)]
    assert main(argv) == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "report").exists()


# ------------------------------------------------------------------ columns by name

IRIS_COLUMNS = ["sepal length", "sepal width", "petal length", "petal width"]


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    """A run trained with `--data iris.csv --target species` (no --dataset: the extension
    selects csv), and files holding the same rows with other columns."""
    base = tmp_path_factory.mktemp("iris")
    x, y = load_iris(return_X_y=True)
    species = np.array(["setosa", "versicolor", "virginica"])[y]

    def write(name, columns):
        table = {**dict(zip(IRIS_COLUMNS, x.T, strict=True)), "species": species,
                 "id": np.arange(len(x))}
        with open(base / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(zip(*(table[c] for c in columns), strict=True))

    write("iris.csv", [*IRIS_COLUMNS[:2], "species", *IRIS_COLUMNS[2:]])  # the target inside
    write("reordered.csv", ["id", *IRIS_COLUMNS[::-1], "species"])
    write("missing.csv", ["id", *IRIS_COLUMNS[:3], "species"])
    assert main(["train", "--data", str(base / "iris.csv"), "--target", "species",
                 "--out", str(base / "run"), *SMALL]) == 0
    return base


def test_a_csv_is_matched_by_name_the_training_file_included(iris, tmp_path, capsys):
    capsys.readouterr()
    first, second = tmp_path / "train.csv", tmp_path / "reordered.csv"
    assert main(["predict", str(iris / "run"), "--data", str(iris / "iris.csv"), "--out",
                 str(first)]) == 0
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "ignored 1 column the model does not use: 'species'" in err
    assert len(_read_csv(first)[1]) == 150  # every row of the training file
    assert main(["predict", str(iris / "run"), "--data", str(iris / "reordered.csv"), "--out",
                 str(second)]) == 0
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "ignored 2 columns" in err and "'id', 'species'" in err
    assert second.read_bytes() == first.read_bytes()  # the same predictions


def test_a_missing_column_is_one_error_naming_it_and_nothing_is_written(iris, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(iris / "run"), "--data", str(iris / "missing.csv"), "--out",
                 str(out)]) == 2
    err = one_line_error(capsys)
    assert "no column 'petal width'" in err and "columns found: 'id', 'sepal length'" in err
    assert not out.exists()
    assert main(["evaluate", str(iris / "run"), "--data", str(iris / "missing.csv"),
                 "--target", "species", "--out", str(tmp_path / "ev")]) == 2
    assert "no column 'petal width'" in one_line_error(capsys)
    assert not (tmp_path / "ev").exists()


def test_evaluate_matches_columns_by_name(iris, tmp_path, capsys):
    reports = []
    for name in ("iris.csv", "reordered.csv"):
        assert main(["evaluate", str(iris / "run"), "--data", str(iris / name), "--target",
                     "species", "--out", str(tmp_path / name)]) == 0
        stem = name.removesuffix(".csv")
        reports.append(json.loads((tmp_path / name / f"evaluation-on-{stem}.json").read_text()))
    assert reports[0]["data_path"] == str(iris / "iris.csv")
    assert reports[1]["data_path"] == str(iris / "reordered.csv")
    for report in reports:  # the scores agree; the files scored differ
        del report["data_path"], report["data_sha256"]
    assert reports[0] == reports[1] and reports[0]["examples"] == 150
    err = capsys.readouterr().err
    assert "note:" in err and "'id'" in err  # the target is the labels here, not ignored


def test_quiet_drops_the_notes_of_predict_and_evaluate(iris, tmp_path, capsys):
    capsys.readouterr()
    assert main(["predict", str(iris / "run"), "--data", str(iris / "reordered.csv"), "--out",
                 str(tmp_path / "p.csv"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out == f"150 predictions (3 classes) written to {tmp_path / 'p.csv'}\n"
    assert main(["evaluate", str(iris / "run"), "--data", str(iris / "reordered.csv"), "--target",
                 "species", "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and " all: accuracy " in out and "written: " in out
