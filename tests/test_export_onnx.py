"""jaxnet.onnx_export and `jaxnet export RUN FILE.onnx`: the graph ONNX Runtime runs gives
jaxnet's probabilities and labels from raw rows, with the table's preprocessing inside."""

import itertools
import json
import pathlib
import sys
import warnings

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import make_table

import jaxnet
from jaxnet import onnx_export, predict
from jaxnet.cli import main
from jaxnet.config import TrainConfig
from jaxnet.data.columns import DataNote
from jaxnet.data.csv import read_frame
from jaxnet.data.split import split_indices
from jaxnet.data.table import Table
from jaxnet.preprocess import Preprocessing

ROOT = pathlib.Path(__file__).resolve().parents[1]



@pytest.fixture(scope="module")
def ort():
    """onnxruntime, the tests skipped without the onnx extra (`pip install 'jaxnet[onnx]'`)."""
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def _session(ort, path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check(path):
    """`onnx.checker` on the file as written, and its opsets."""
    import onnx

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert {(o.domain, o.version) for o in proto.opset_import} == {
        ("", onnx_export.OPSET), ("ai.onnx.ml", onnx_export.ML_OPSET)}
    return proto


def _assert_same_answers(model, raw, session, feeds):
    """ONNX Runtime's outputs equal jaxnet's predict_proba (1e-5) and predict."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)  # unseen values, missing cells: noted
        expected, labels = model.predict_proba(raw), model.predict(raw)
    probabilities, label = session.run(["probabilities", "label"], feeds)
    assert probabilities.dtype == np.float32 and probabilities.shape == expected.shape
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(label, labels)
    one, _ = session.run(None, {k: v[:1] for k, v in feeds.items()})  # the batch is dynamic
    np.testing.assert_allclose(one, expected[:1], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A short digits run with two hidden layers (two batchnorms), as `jaxnet train` saves it."""
    out = tmp_path_factory.mktemp("digits")
    jaxnet.fit(TrainConfig(hidden=(32, 16), epochs=2), out_dir=out)  # as test_export.py: one compile
    return out


@pytest.mark.slow
def test_a_digits_run_gives_jaxnets_probabilities_in_onnx_runtime(ort, digits_run, tmp_path):
    path = onnx_export.export_onnx(digits_run, tmp_path / "digits.onnx")
    proto = _check(path)
    model = predict.load(digits_run)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["jaxnet.version"] == jaxnet.__version__
    assert TrainConfig.from_dict(json.loads(meta["jaxnet.config"])) == model.config
    [x] = proto.graph.input
    assert x.name == "x"
    assert [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["N", 64]
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Gemm") == 3 and ops.count("BatchNormalization") == 2
    data = jaxnet.load_dataset("digits")  # the run's own split: its test rows are unseen
    _assert_same_answers(model, data.x_test, _session(ort, path),
                         {"x": data.x_test.astype(np.float32)})


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A short run on a customer table: an identifier (left out), a date, categories (one of
    them numbers), yes/no answers, empty cells and string labels."""
    folder = tmp_path_factory.mktemp("table")
    path = folder / "customers.csv"
    make_table(400, seed=3).to_csv(path, index=False)
    config = TrainConfig(data_path=str(path), target="churn", categorical=("support_calls",),
                         hidden=(16,), epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)
        jaxnet.fit(config, out_dir=folder / "run")
    return folder / "run", path


def _test_rows(model, path):
    """The raw cells of the run's test split, as the run's CSV reader read them."""
    config = model.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)
        frame = read_frame(path, target=config.target, categorical=config.categorical,
                           dtype=np.dtype(config.dtype))
        _, _, test = split_indices(frame.y, config.val_fraction, config.test_fraction,
                                   config.seed, source=str(path))
        raw = frame.x.iloc[test].reset_index(drop=True)
        data = jaxnet.load_dataset("csv", path, target=config.target, seed=config.seed,
                                   categorical=config.categorical)
        # the same rows the run tested on
        np.testing.assert_array_equal(model.preprocessing.table.encode(raw, dtype=np.float32),
                                      data.x_test)
    return raw


def _feeds(session, raw):
    """What a caller passes: numbers as float32 with NaN, text cells as strings (a missing one
    written as the CSV may hold it), a date as its three parts (the host-side step)."""
    spellings = ["", "NA", "nan", "None", "n/a", "NULL"]
    floats = {"tensor(float)": np.float32, "tensor(double)": np.float64}
    feeds = {}
    for spec in session.get_inputs():
        column, _, part = spec.name.partition(".")
        if part:  # signup_date.year, .dayofyear, .dayofweek
            when = pd.to_datetime(raw[column], utc=True, format="ISO8601")
            attribute = {"year": "year", "dayofyear": "day_of_year", "dayofweek": "day_of_week"}
            feeds[spec.name] = getattr(when.dt, attribute[part]).to_numpy(floats[spec.type])[:, None]
        elif spec.type in floats:
            feeds[spec.name] = raw[[column]].to_numpy(floats[spec.type])
        else:
            cells = [spellings[i % len(spellings)] if pd.isna(v) else str(v)
                     for i, v in enumerate(raw[column].astype(object))]
            feeds[spec.name] = np.array(cells, dtype=object)[:, None]
    return feeds


@pytest.mark.slow
def test_a_table_run_carries_its_preprocessing_into_onnx_runtime(ort, table_run, tmp_path):
    run, path = table_run
    model = predict.load(run)
    table = model.preprocessing.table
    kinds = {c.name: c.kind for c in table.columns}
    assert kinds["plan"] == kinds["region"] == kinds["support_calls"] == "category"
    assert kinds["autopay"] == "boolean" and kinds["signup_date"] == "date"
    assert next(c for c in table.columns if c.name == "region").categories[-1] == "(missing)"
    assert next(c for c in table.columns if c.name == "age").indicator

    out = onnx_export.export_onnx(run, tmp_path / "table.onnx")
    proto = _check(out)
    names = [i.name for i in proto.graph.input]
    assert "customer_id" not in names  # left out as an identifier: no input
    assert names[:3] == ["signup_date.year", "signup_date.dayofyear", "signup_date.dayofweek"]
    assert {"LabelEncoder", "IsNaN", "Where", "Equal"} <= {n.op_type for n in proto.graph.node}
    session = _session(ort, out)
    assert [o.name for o in session.get_outputs()] == ["probabilities", "label"]

    raw = _test_rows(model, path)
    assert raw.isna().any().any()  # missing cells in the test split itself
    raw.loc[0:4, "plan"] = "enterprise"  # never seen in training: all zeros
    raw.loc[5:7, "autopay"] = None  # had no missing cell in training: the median, no indicator
    raw.loc[8, "autopay"] = "YES"  # any case
    raw.loc[9, "signup_date"] = None
    raw.loc[10, "support_calls"] = 99  # an unseen number-category
    _assert_same_answers(model, raw, session, _feeds(session, raw))
    assert session.run(["label"], _feeds(session, raw))[0].dtype == object  # "left"/"stayed"


@pytest.mark.slow
def test_cli_writes_onnx_atomically_and_refuses_to_overwrite(ort, digits_run, tmp_path, capsys):
    out = tmp_path / "net.onnx"
    assert main(["export", str(digits_run), str(out)]) == 0
    assert "ONNX graph (opset 17) from 1 input (x) to probabilities and label" in (
        capsys.readouterr().out)
    before = out.read_bytes()
    assert main(["export", str(digits_run), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    out.write_bytes(b"stale")
    assert main(["export", str(digits_run), str(out), "--overwrite"]) == 0
    assert out.read_bytes() == before  # the same graph again, byte for byte
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file
    assert main(["export", str(digits_run), str(tmp_path / "net.pt")]) == 2
    assert ".safetensors or .onnx" in capsys.readouterr().err


def test_cli_says_how_to_install_the_onnx_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    out = tmp_path / "net.onnx"
    assert main(["export", str(tmp_path), str(out)]) == 2
    assert "pip install 'jaxnet[onnx]'" in capsys.readouterr().err
    assert not out.exists()


def _hand_built(frame, dtype="float32", classes=("cold", "mild", "warm")):
    """A TrainedModel on `frame`'s table with random weights and batchnorm statistics (no fit:
    the graph does not care how the numbers were learned)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)
        table = Table.fit(frame)
        x = table.encode(frame)
    prep = Preprocessing.fit(x, np.array(classes), table=table)
    rng, dims = np.random.default_rng(0), (table.width, 8, 8, len(classes))
    params, state = [], []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        layer = {"w": rng.normal(0, (2 / fan_in) ** 0.5, (fan_out, fan_in)),
                 "b": rng.normal(0, 0.1, fan_out)}
        if i < len(dims) - 2:
            layer |= {"gamma": rng.uniform(0.5, 1.5, fan_out), "beta": rng.normal(0, 0.3, fan_out)}
            state.append({"mean": rng.normal(0, 0.5, fan_out), "var": rng.uniform(0.5, 2, fan_out)})
        params.append(layer)
    params, state = jax.tree.map(lambda a: a.astype(dtype), (tuple(params), tuple(state)))
    return predict.TrainedModel(params, state, TrainConfig(hidden=dims[1:-1], dtype=dtype), prep)


def _weather(n=80, seed=0):
    """Every column kind, missing cells in each, an identifier left out."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": [f"row-{i}" for i in range(n)],
        "when": [f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)],
        "city": rng.choice(["Oslo", "Rome", "Lima"], n).astype(object),
        "temp": rng.normal(10, 5, n),
        "windy": rng.choice(["yes", "no", "Yes"], n).astype(object),
        "rooms": rng.integers(1, 4, n).astype(float),
    })
    for column in ("when", "city", "temp", "windy", "rooms"):
        frame.loc[rng.random(n) < 0.1, column] = None
    return frame


@pytest.mark.x64
def test_a_float64_model_gives_its_probabilities_in_float64(ort, tmp_path):
    frame = _weather()
    model = _hand_built(frame, dtype="float64")
    path = onnx_export.save(model, tmp_path / "weather.onnx")
    _check(path)
    session = _session(ort, path)
    assert {i.type for i in session.get_inputs()} == {"tensor(double)", "tensor(string)"}
    new = _weather(40, seed=1)
    new.loc[0, "city"] = "Quito"  # unseen: all zeros
    feeds = _feeds(session, new)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)
        expected, labels = model.predict_proba(new), model.predict(new)
    probabilities, label = session.run(None, feeds)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(label, labels)


def test_a_column_named_like_an_output_is_refused_by_name(ort, tmp_path):
    model = _hand_built(_weather().rename(columns={"temp": "label"}))
    with pytest.raises(jaxnet.JaxnetError, match="input name 'label' clashes.*rename that column"):
        onnx_export.save(model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
