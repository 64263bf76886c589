"""jaxnet.load and TrainedModel: the run's best parameters, preprocessing and classes, put to use."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_iris, load_wine

import jaxnet
from jaxnet import checkpoint as ckpt
from jaxnet import fitting, model, trained
from jaxnet.config import TrainConfig
from jaxnet.data import DataError
from jaxnet.data.columns import IgnoredColumnsWarning

pytestmark = pytest.mark.slow  # every test but one loads a fitted run

SMALL = {"hidden": (16,), "epochs": 4}


def _assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


@pytest.fixture(scope="module")
def wine_file(tmp_path_factory):
    """scikit-learn's wine data as an x, y .npz: 13 raw features on very different scales."""
    x, y = load_wine(return_X_y=True)
    path = tmp_path_factory.mktemp("data") / "wine.npz"
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="module")
def wine_run(wine_file, tmp_path_factory):
    """(config, raw data, fit result, run folder) of a short run on wine."""
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(dataset="npz", data_path=str(wine_file), **SMALL)
    data = fitting.load_data(config)
    return config, data, fitting.fit(config, data, out_dir=out), out


@pytest.fixture(scope="module")
def wine_model(wine_run):
    return jaxnet.load(wine_run[3])


def test_load_returns_the_runs_best_parameters_config_and_preprocessing(wine_run, wine_model):
    config, _, result, _ = wine_run
    assert isinstance(wine_model, jaxnet.TrainedModel)
    assert wine_model.config == config
    _assert_trees_equal(wine_model.params, result.params)
    _assert_trees_equal(wine_model.bn_state, result.bn_state)
    np.testing.assert_array_equal(wine_model.classes, [0, 1, 2])
    assert wine_model.num_features == 13 == wine_model.preprocessing.num_features
    np.testing.assert_array_equal(wine_model.preprocessing.mean, result.preprocessing.mean)


def test_repr_shows_the_shape_not_the_weights(wine_run, wine_model):
    config, _, result, _ = wine_run
    dims = (13, *config.hidden, 3)
    assert repr(wine_model) == (
        f"TrainedModel(dims={dims}, classes=3, feature_names=None, dataset='npz', "
        f"optimizer='{config.optimizer}', lr={config.lr:g}, dtype='float32')")
    metrics = result.metrics
    assert repr(result) == (
        f"TrainResult(dims={dims}, epochs_run={config.epochs}, best_epoch="
        f"{metrics['best_epoch']}, diverged=False, train_accuracy={metrics['train_accuracy']:.4f}, "
        f"val_accuracy={metrics['val_accuracy']:.4f}, test_accuracy={metrics['test_accuracy']:.4f})")


def test_evaluate_on_the_test_split_gives_the_numbers_of_metrics_json(wine_run, wine_model):
    _, data, result, out = wine_run
    saved = ckpt.json.loads((out / fitting.METRICS_FILE).read_text())
    scores = wine_model.evaluate(data.x_test, data.classes[data.y_test])
    assert scores["examples"] == len(data.x_test) == 36
    assert scores["accuracy"] == pytest.approx(saved["test_accuracy"], abs=1e-6)
    assert scores["loss"] == pytest.approx(saved["test_loss"], rel=1e-5)
    assert result.metrics["test_accuracy"] == saved["test_accuracy"]
    val = wine_model.evaluate(data.x_val, data.classes[data.y_val])
    assert val["accuracy"] == pytest.approx(saved["val_accuracy"], abs=1e-6)


@pytest.mark.parametrize("batch_size", [1, 5, 7, 36, 1024])
def test_batching_pads_the_last_batch_and_drops_no_row(wine_run, wine_model, batch_size):
    _, data, _, _ = wine_run
    x = data.x_test  # 36 rows: not a multiple of 5 or 7
    expected = wine_model.predict_proba(x, batch_size=1024)
    got = wine_model.predict_proba(x, batch_size=batch_size)
    assert got.shape == (36, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5])
def test_a_bad_batch_size_is_refused(wine_model, batch_size):
    with pytest.raises(ValueError, match="expected a positive integer"):
        wine_model.predict(np.zeros((2, 13)), batch_size=batch_size)


def test_one_row_and_no_rows(wine_run, wine_model):
    _, data, _, _ = wine_run
    whole = wine_model.predict_proba(data.x_test)
    one = wine_model.predict_proba(data.x_test[5:6])
    assert one.shape == (1, 3)
    np.testing.assert_allclose(one[0], whole[5], rtol=1e-5, atol=1e-7)
    with pytest.raises(DataError, match=r"for a single example use x.reshape\(1, -1\)"):
        wine_model.predict(data.x_test[5])  # 1-D is ambiguous, as in scikit-learn
    assert wine_model.predict_proba(np.zeros((0, 13))).shape == (0, 3)


def test_predict_is_the_most_probable_class_in_the_original_labels(wine_run, wine_model):
    _, data, _, _ = wine_run
    proba = wine_model.predict_proba(data.x_test)
    np.testing.assert_array_equal(wine_model.predict(data.x_test),
                                  wine_model.classes[np.argmax(proba, axis=1)])


def test_standardisation_is_stored_and_reapplied_to_raw_inputs(wine_run, wine_model):
    """Predictions on raw rows equal the network applied to rows standardised by hand with
    the training split's mean and std (which are what the run saved)."""
    _, data, _, _ = wine_run
    x_train = data.x_train.astype(np.float64)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    np.testing.assert_allclose(wine_model.preprocessing.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(wine_model.preprocessing.scale, std, rtol=1e-12)
    assert np.ptp(mean) > 100  # raw wine features are on very different scales
    by_hand = ((data.x_test - mean) / std).astype(np.float32)
    logits, _ = model.apply(wine_model.params, wine_model.bn_state, jnp.asarray(by_hand),
                            train=False)
    expected = np.asarray(jax.nn.softmax(logits))
    np.testing.assert_allclose(wine_model.predict_proba(data.x_test), expected, rtol=1e-5,
                               atol=1e-6)


def test_without_standardisation_raw_inputs_go_in_as_they_are(wine_file, tmp_path):
    config = TrainConfig(dataset="npz", data_path=str(wine_file), standardize=False, **SMALL)
    data = fitting.load_data(config)
    fitting.fit(config, data, out_dir=tmp_path)
    loaded = jaxnet.load(tmp_path)
    assert loaded.preprocessing.mean is None and not loaded.config.standardize
    logits, _ = model.apply(loaded.params, loaded.bn_state,
                            jnp.asarray(data.x_test.astype(np.float32)), train=False)
    np.testing.assert_allclose(loaded.predict_proba(data.x_test),
                               np.asarray(jax.nn.softmax(logits)), rtol=1e-5, atol=1e-6)


def test_string_labels_with_gaps_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    names = np.array(["setosa", "versicolor", "virginica"])
    y = names[rng.integers(0, 3, 90)]
    x = rng.normal(size=(90, 4)) + 3.0 * (y[:, None] == names).argmax(axis=1)[:, None]
    np.savez(tmp_path / "flowers.npz", x=x, y=y)
    config = TrainConfig(dataset="npz", data_path=str(tmp_path / "flowers.npz"), **SMALL)
    fitting.fit(config, out_dir=tmp_path / "run")
    loaded = jaxnet.load(tmp_path / "run")
    np.testing.assert_array_equal(loaded.classes, names)
    predicted = loaded.predict(x)
    assert predicted.dtype.kind == "U" and set(predicted) <= set(names)
    scores = loaded.evaluate(x, y)
    assert scores["accuracy"] == pytest.approx(np.mean(predicted == y))
    with pytest.raises(DataError, match=r"not among the classes.*'daisy'"):
        loaded.evaluate(x[:2], np.array(["setosa", "daisy"]))


def test_bad_rows_are_refused_with_the_reason(wine_model):
    with pytest.raises(DataError, match="12 features per example, but the model was trained on 13"):
        wine_model.predict(np.zeros((3, 12)))
    rows = np.ones((4, 13))
    rows[2, 5] = np.nan
    with pytest.raises(DataError, match=r"NaN or infinite values \(first at row 2\)"):
        wine_model.predict_proba(rows)
    rows[2, 5], rows[3, 0] = 1.0, np.inf
    with pytest.raises(DataError, match=r"first at row 3"):
        wine_model.predict(rows)
    with pytest.raises(DataError, match="expected numbers"):
        wine_model.predict(np.array([["a"] * 13]))


def test_loading_a_folder_without_a_trained_run_is_a_clear_error(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no such folder"):
        jaxnet.load(tmp_path / "nowhere")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint found"):
        jaxnet.load(tmp_path)
    ckpt.save_checkpoint(tmp_path, {"w": np.zeros(3)}, {"something": "else"})
    with pytest.raises(ckpt.CheckpointError, match="not a jaxnet training run"):
        jaxnet.load(tmp_path)


def test_predicting_compiles_once_per_batch_shape(wine_run, wine_model):
    _, data, _, _ = wine_run
    wine_model.predict(data.x_test, batch_size=8)  # 36 rows: 5 calls of one 8-row shape
    before = trained._log_probs._cache_size()
    wine_model.predict(data.x_test[:20], batch_size=8)
    wine_model.predict(data.x_test, batch_size=8)
    assert trained._log_probs._cache_size() == before


def test_a_float64_run_loads_and_predicts_in_float64_leaving_x64_as_it_was(wine_file, tmp_path):
    x, y = np.load(wine_file)["x"], np.load(wine_file)["y"]
    config = TrainConfig(dataset="npz", data_path=str(wine_file), dtype="float64", **SMALL)
    with jax.enable_x64(True):
        result = fitting.fit(config, fitting.load_data(config), out_dir=tmp_path)
        expected = np.asarray(jax.nn.log_softmax(model.apply(
            result.params, result.bn_state, result.preprocessing.transform(x, np.float64),
            train=False, eps=config.bn_eps)[0]))
    assert not jax.config.jax_enable_x64  # tests run as users do
    loaded = jaxnet.load(tmp_path)
    assert not jax.config.jax_enable_x64
    assert {leaf.dtype for leaf in jax.tree.leaves(loaded.params)} == {np.dtype(np.float64)}
    _assert_trees_equal(loaded.params, result.params)
    log_probs = loaded.log_proba(x)
    assert not jax.config.jax_enable_x64
    assert log_probs.dtype == np.float64
    # float64 all the way (float32 anywhere would be off by ~1e-7); padded batches vs one
    # eager call differ in the last bit only
    np.testing.assert_allclose(log_probs, expected, rtol=1e-13, atol=1e-15)
    report = loaded.evaluate(x, y)
    assert not jax.config.jax_enable_x64 and report["examples"] == len(y)


def test_loading_builds_no_network(wine_run, monkeypatch):
    """The checkpoint's template comes from jax.eval_shape: no network, optimizer or scaler."""
    from jaxnet import train
    from jaxnet.preprocess import Preprocessing

    built = []
    real = train.init_train_state
    monkeypatch.setattr(train, "init_train_state",
                        lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    monkeypatch.setattr(Preprocessing, "fit", lambda *a, **k: pytest.fail("scaler fitted"))
    loaded = jaxnet.load(wine_run[3])
    assert built and all(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(built))
    _assert_trees_equal(loaded.params, wine_run[2].params)


# ------------------------------------------------------------------ columns by name

IRIS_COLUMNS = ["sepal length", "sepal width", "petal length", "petal width"]


@pytest.fixture(scope="module")
def iris_table():
    """Iris as a DataFrame: four named features and a string target in the middle."""
    pd = pytest.importorskip("pandas")
    x, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(x, columns=IRIS_COLUMNS)
    frame.insert(2, "species", np.array(["setosa", "versicolor", "virginica"])[y])
    return frame


@pytest.fixture(scope="module")
def iris_csv_model(iris_table, tmp_path_factory):
    """A run trained on iris.csv (dataset chosen by the extension), loaded."""
    base = tmp_path_factory.mktemp("iris")
    iris_table.to_csv(base / "iris.csv", index=False)
    config = TrainConfig(data_path=str(base / "iris.csv"), target="species", **SMALL)
    fitting.fit(config, out_dir=base / "run")
    return base / "run", jaxnet.load(base / "run")


def test_a_csv_run_records_its_feature_names(iris_csv_model, wine_model):
    run, trained = iris_csv_model
    assert trained.config.dataset == "csv"
    assert trained.feature_names == tuple(IRIS_COLUMNS)
    assert ckpt.load_metadata(run)["preprocessing"]["feature_names"] == IRIS_COLUMNS
    assert wine_model.feature_names is None  # trained on an unnamed array


def test_a_dataframe_is_matched_by_name(iris_table, iris_csv_model):
    _, trained = iris_csv_model
    expected = trained.predict_proba(iris_table[IRIS_COLUMNS].to_numpy())
    reordered = iris_table[IRIS_COLUMNS[::-1]]
    np.testing.assert_array_equal(trained.predict_proba(reordered), expected)
    with pytest.warns(IgnoredColumnsWarning, match=r"1 column .*: 'species'$") as caught:
        np.testing.assert_array_equal(trained.predict_proba(iris_table), expected)
    assert len(caught) == 1
    with pytest.warns(IgnoredColumnsWarning):
        scores = trained.evaluate(iris_table, iris_table["species"])
    assert scores["examples"] == 150
    with pytest.raises(DataError, match="no column 'petal width'.*columns found: 'sepal length'"):
        trained.predict(iris_table[IRIS_COLUMNS[:3]])
    # an array keeps the count check, and is taken in training order
    np.testing.assert_array_equal(trained.predict_proba(iris_table[IRIS_COLUMNS].to_numpy()),
                                  expected)
    with pytest.raises(DataError, match=r"x has shape \(150, 3\); the model reads 4 columns"):
        trained.predict(iris_table[IRIS_COLUMNS[:3]].to_numpy())


def _drop_feature_names(run, out):
    """A copy of `run` as jaxnet wrote it before feature names (and column kinds) were
    recorded."""
    import json
    import shutil

    from safetensors import safe_open
    from safetensors.numpy import save_file

    shutil.copytree(run, out)
    path = out / ckpt.CHECKPOINT_FILE
    with safe_open(path, framework="numpy") as f:
        header = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    meta = json.loads(header["metadata"])
    del meta["preprocessing"]["feature_names"], meta["preprocessing"]["table"]
    save_file(tensors, path, metadata={**header, "metadata": json.dumps(meta)})


def test_an_old_run_without_names_loads_and_predicts_as_before(iris_table, iris_csv_model,
                                                              tmp_path):
    run, trained = iris_csv_model
    _drop_feature_names(run, tmp_path / "old")
    assert "feature_names" not in ckpt.load_metadata(tmp_path / "old")["preprocessing"]
    old = jaxnet.load(tmp_path / "old")
    assert old.feature_names is None
    x = iris_table[IRIS_COLUMNS]
    np.testing.assert_array_equal(old.predict_proba(x), trained.predict_proba(x))
    np.testing.assert_array_equal(old.predict_proba(x.to_numpy()), trained.predict_proba(x))
