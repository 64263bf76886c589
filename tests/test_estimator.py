"""jaxnet.MLPClassifier: scikit-learn's own estimator checks, jaxnet train's defaults and
results, reproducibility, tiny inputs, and use in Pipeline, cross_val_score, GridSearchCV,
clone and pickle."""

import dataclasses
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import jaxnet
from jaxnet import fitting
from jaxnet.config import TrainConfig
from jaxnet.data import Dataset
from jaxnet.data.split import split_indices
from jaxnet.estimator import NOT_PARAMETERS, MLPClassifier

# Small and short: the checks fit ~50 models, and a fit of new shapes is mostly compilation.
# Every other parameter keeps jaxnet train's default.
SMALL = {"hidden": (16,), "epochs": 30}


# Every check passes, so none is marked as an expected failure (scikit-learn >= 1.6 takes
# them as `expected_failed_checks=lambda estimator: {"check_name": "reason"}`). Two checks
# skip themselves when their optional dependency is missing (pandas; SCIPY_ARRAY_API).
@pytest.mark.slow
@parametrize_with_checks([MLPClassifier(**SMALL, random_state=0)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def test_parameters_are_the_train_config_fields_with_their_defaults():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(MLPClassifier().get_params()) == (fields - set(NOT_PARAMETERS)
                                                 | {"random_state", "n_members", "search"})
    assert MLPClassifier(random_state=0).train_config() == TrainConfig(
        dataset="npz", test_fraction=0.0, seed=0)
    assert MLPClassifier(hidden=50).train_config().hidden == (50,)


@pytest.mark.slow
def test_same_config_and_split_give_the_same_model_as_jaxnet_fit():
    """The estimator with its defaults is `jaxnet train`'s run: same split -> same model."""
    digits = jaxnet.load_dataset("digits")  # jaxnet train's data and split (seed 0)
    x = np.concatenate([digits.x_train, digits.x_val])
    y = np.concatenate([digits.y_train, digits.y_val])
    estimator = MLPClassifier(random_state=0).fit(x, digits.classes[y])

    # The split the estimator makes of what it is given: val_fraction of it, stratified.
    train, val, _ = split_indices(y, 0.1, 0.0, 0, "test")
    data = Dataset("digits", x[train], y[train], x[val], y[val], digits.x_test, digits.y_test,
                   digits.classes)
    result = fitting.fit(TrainConfig(), data)

    assert estimator.n_iter_ == result.metrics["epochs_run"]
    assert estimator.best_epoch_ == result.metrics["best_epoch"]
    assert estimator.loss_curve_ == [row["loss"] for row in result.history]
    for mine, theirs in zip(estimator.model_.params, result.params, strict=True):
        for name in mine:
            np.testing.assert_array_equal(mine[name], np.asarray(theirs[name]))
    test_labels = digits.classes[digits.y_test]
    assert estimator.score(digits.x_test, test_labels) == pytest.approx(
        result.metrics["test_accuracy"], abs=1e-6)
    assert result.metrics["test_accuracy"] > 0.9


@pytest.mark.slow
def test_random_state_makes_fit_reproducible(iris):
    x, y = iris
    first = MLPClassifier(**SMALL, random_state=7).fit(x, y).predict_proba(x)
    second = MLPClassifier(**SMALL, random_state=7).fit(x, y).predict_proba(x)
    np.testing.assert_array_equal(first, second)
    other = MLPClassifier(**SMALL, random_state=8).fit(x, y).predict_proba(x)
    assert not np.array_equal(first, other)
    state = np.random.RandomState(0)
    MLPClassifier(**SMALL, random_state=state).fit(x, y)  # a RandomState draws the seed


@pytest.mark.slow
def test_fitted_attributes_and_string_labels(iris):
    x, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MLPClassifier(**SMALL, random_state=0).fit(x, names)
    np.testing.assert_array_equal(clf.classes_, ["setosa", "versicolor", "virginica"])
    np.testing.assert_array_equal(clf.model_.preprocessing.classes, clf.classes_)
    assert clf.n_features_in_ == 4 and clf.n_iter_ == 30 == len(clf.loss_curve_)
    assert len(clf.validation_scores_) == 30 and 1 <= clf.best_epoch_ <= 30
    proba = clf.predict_proba(x)
    assert proba.shape == (150, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert set(clf.predict(x)) <= set(clf.classes_)
    assert clf.score(x, names) > 0.8


@pytest.mark.slow
def test_tiny_inputs(iris):
    x, y = iris
    with pytest.raises(ValueError, match="n_samples=1"):
        MLPClassifier(**SMALL).fit(x[:1], y[:1])
    with pytest.raises(ValueError, match="one class"):
        MLPClassifier(**SMALL).fit(x[:10], y[:10])
    one_feature = MLPClassifier(**SMALL, random_state=0).fit(x[:, 2:3], y)
    assert one_feature.predict(x[:5, 2:3]).shape == (5,)
    two = x[[0, 50]], y[[0, 50]]
    with pytest.raises(ValueError, match="val_fraction"):  # 1 val leaves 1 to train on
        MLPClassifier(**SMALL).fit(*two)
    MLPClassifier(**SMALL, val_fraction=0.0, random_state=0).fit(*two)


def test_bad_parameter_is_a_value_error_at_fit(iris):
    clf = MLPClassifier(lr=-1.0)  # __init__ stores it; fit refuses it
    with pytest.raises(ValueError, match="lr=-1.0 is invalid"):
        clf.fit(*iris)


@pytest.mark.slow
def test_divergence_warns(iris):
    with pytest.warns(ConvergenceWarning, match="diverged"):
        MLPClassifier(**SMALL, lr=1e30, random_state=0).fit(*iris)


@pytest.mark.slow
def test_pipeline_cross_validation_grid_search_clone_and_pickle(iris):
    x, y = iris
    pipe = make_pipeline(StandardScaler(), MLPClassifier(**SMALL, random_state=0))
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8

    search = GridSearchCV(MLPClassifier(**SMALL, random_state=0), {"lr": [1e-3, 1e-2]}, cv=2)
    search.fit(x, y)
    assert search.best_params_["lr"] in (1e-3, 1e-2) and search.best_score_ > 0.8

    fitted = search.best_estimator_
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "classes_")
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(x), fitted.predict_proba(x))


@pytest.mark.slow
def test_a_dataframe_records_its_column_names_and_reordering_follows_scikit_learn(iris):
    pd = pytest.importorskip("pandas")
    x, y = iris
    columns = ["sepal length", "sepal width", "petal length", "petal width"]
    frame = pd.DataFrame(x, columns=columns)
    clf = MLPClassifier(**SMALL, random_state=0).fit(frame, y)
    np.testing.assert_array_equal(clf.feature_names_in_, columns)
    assert clf.model_.feature_names == tuple(columns)
    expected = clf.predict_proba(frame)
    with pytest.warns(UserWarning, match="does not have valid feature names"):  # scikit-learn's
        np.testing.assert_array_equal(clf.predict_proba(x), expected)
    reordered = frame[columns[::-1]]
    # scikit-learn's rule for estimators: another column order is refused, never misread
    with pytest.raises(ValueError, match="same order"):
        clf.predict(reordered)
    # the fitted TrainedModel matches the columns by name
    np.testing.assert_array_equal(clf.model_.predict_proba(reordered), clf.model_.predict_proba(x))
    assert MLPClassifier(**SMALL, random_state=0).fit(x, y).model_.feature_names is None
