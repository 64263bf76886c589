"""MLPClassifier: a scikit-learn estimator that trains a jaxnet network with `jaxnet.fitting.fit`."""

from __future__ import annotations

import dataclasses
import numbers
import warnings

import jax
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d

from jaxnet import fitting
from jaxnet.config import TrainConfig
from jaxnet.data import Dataset
from jaxnet.data.split import split_indices
from jaxnet.data.validate import clean_labels
from jaxnet.predict import TrainedModel

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6 has the method instead of the function
    def validate_data(estimator, X="no_validation", y="no_validation", **kwargs):
        if kwargs.pop("skip_check_array", False):
            kwargs["cast_to_ndarray"] = False
        return estimator._validate_data(X, y, **kwargs)

# TrainConfig fields that are not estimator parameters: `fit`'s arrays are the data (so no
# dataset, file, label column or test split), and `random_state` stands for the seed.
NOT_PARAMETERS = ("dataset", "data_path", "target", "categorical", "drop", "impute", "test_fraction",
                  "seed")
# Rows per compiled prediction call. Inputs are padded to a multiple of it, so one compiled
# shape serves every call and a row's output does not depend on the rows sent with it.
PREDICT_CHUNK = 256
_DEFAULTS = TrainConfig()  # the estimator's defaults are TrainConfig's, written there only


def _seed(random_state) -> int:
    """A TrainConfig seed: an int is the seed itself (`random_state=0` is `jaxnet train`'s
    default run); None or a RandomState draws one."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """jaxnet's network as a scikit-learn classifier: `Pipeline`, `GridSearchCV`, pickle.

    Every parameter but `random_state` is the `TrainConfig` field of the same name, with the
    same default, so `MLPClassifier().fit(X, y)` trains as `jaxnet train` does: inputs
    standardised with training statistics, `val_fraction` of (X, y) held out (stratified) to
    pick the best epoch and stop when it no longer improves (`epochs=None`), and every
    example seen once per epoch. See `jaxnet.TrainConfig` for each parameter's meaning.

    Args:
      hidden: hidden-layer widths; an int is one hidden layer.
      class_weight: None, "balanced" or a dict {label: weight} (labels it leaves out weigh
        1), as in scikit-learn's other classifiers: the training loss is then the weighted
        mean `sum w[y_i] * nll_i / sum w[y_i]` (PyTorch's `CrossEntropyLoss(weight=w)`);
        "balanced" weighs class c by n / (C * count_c) over the training part of (X, y)
        (after the validation split). `validation_scores_` and the choice of the best epoch
        are then class-weighted too (with "balanced": the balanced accuracy).
      search: pick `hidden`, `lr` and `dropout` by successive halving on the validation
        part of (X, y) (`jaxnet.search.search`), then train the winner; those three keep
        their defaults (a value given for them is refused); the winner trains as the other
        parameters say (`epochs`, or until no improvement).
        `search_` records the search.
      n_members: K >= 1 networks. 1: one network, trained by `jaxnet.fitting.fit`. K > 1:
        an ensemble (`jaxnet.fitting.fit_ensemble`, as `jaxnet train --seeds K`): K seeds
        (seed, seed + 1, ...) trained together in one vmapped call on the same split, each
        for `epochs` epochs (30 when None: members share one length, so `patience` and a
        changed `max_epochs` are refused) keeping its own best epoch by validation;
        `predict_proba` is the mean of the members' probabilities.
      random_state: None, an int or a `np.random.RandomState`; it seeds the validation
        split, the initial weights, the shuffles and the dropout masks. An int is used as
        `TrainConfig.seed`, so fitting twice gives the same model.

    Attributes:
      classes_: (C,) the labels seen in `fit`, sorted; `predict` returns them.
      n_features_in_: the number of input features D.
      feature_names_in_: the column names, when X was a DataFrame with string names. As in
        scikit-learn, `predict` then refuses a DataFrame whose columns differ or come in
        another order (ValueError); `model_` (a `TrainedModel`) matches them by name.
        A DataFrame holding text, categories, booleans, dates or missing cells is read as
        a table, as `jaxnet train` reads a CSV file (`jaxnet.data.table`: each column's kind
        decided on the training rows, categories one-hot, missing cells filled with the
        training median plus an indicator); `model_.preprocessing.table` keeps it. A column
        of pandas' `category` dtype is a category whatever it holds.
      loss_curve_: the mean training loss of each epoch (with dropout and the L2 term; of an
        ensemble: averaged over its members).
      validation_scores_: the validation accuracy of each epoch (None when val_fraction=0,
        and for an ensemble, whose members' epochs are not scored one by one on the host).
      best_epoch_: the 1-based epoch whose parameters are kept (an ensemble: a list, one
        per member).
      n_iter_: the number of epochs run.
      search_: with `search=True`, the search's record (`SearchResult.summary()`: the
        chosen values, every candidate's val accuracy, rungs); else None.
      model_: the fitted `jaxnet.TrainedModel` (numpy parameters, batchnorm statistics,
        config and preprocessing), or with n_members > 1 a `jaxnet.ensemble.EnsembleModel`
        (`.members` gives each as a TrainedModel); `jaxnet.export.save(model_, path)`
        writes either for PyTorch.
    """

    def __init__(self, hidden=_DEFAULTS.hidden, *, epochs=_DEFAULTS.epochs,
                 max_epochs=_DEFAULTS.max_epochs, patience=_DEFAULTS.patience,
                 val_fraction=_DEFAULTS.val_fraction, standardize=_DEFAULTS.standardize,
                 init=_DEFAULTS.init, weight_scale=_DEFAULTS.weight_scale,
                 dropout=_DEFAULTS.dropout, reg=_DEFAULTS.reg,
                 class_weight=_DEFAULTS.class_weight, optimizer=_DEFAULTS.optimizer, lr=_DEFAULTS.lr,
                 momentum=_DEFAULTS.momentum, beta1=_DEFAULTS.beta1,
                 beta2=_DEFAULTS.beta2, eps=_DEFAULTS.eps, rms_decay=_DEFAULTS.rms_decay,
                 weight_decay=_DEFAULTS.weight_decay, lr_schedule=_DEFAULTS.lr_schedule,
                 lr_decay=_DEFAULTS.lr_decay, batch_size=_DEFAULTS.batch_size,
                 grad=_DEFAULTS.grad, dtype=_DEFAULTS.dtype,
                 bn_momentum=_DEFAULTS.bn_momentum, bn_eps=_DEFAULTS.bn_eps,
                 n_members=1, search=False, random_state=None):
        self.hidden = hidden
        self.epochs = epochs
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.standardize = standardize
        self.init = init
        self.weight_scale = weight_scale
        self.dropout = dropout
        self.reg = reg
        self.class_weight = class_weight
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.rms_decay = rms_decay
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.batch_size = batch_size
        self.grad = grad
        self.dtype = dtype
        self.bn_momentum = bn_momentum
        self.bn_eps = bn_eps
        self.n_members = n_members
        self.search = search
        self.random_state = random_state

    def train_config(self, classes=None) -> TrainConfig:
        """The validated TrainConfig `fit` trains with (a fresh seed each call when
        random_state is None).

        Args:
          classes: the sorted labels of y; a dict `class_weight` needs them to list one
            weight per class.

        Raises:
          ConfigError (a ValueError): a parameter value TrainConfig refuses.
        """
        return self._config(_per_class(self.class_weight, classes))

    def _config(self, class_weight) -> TrainConfig:
        values = {name: getattr(self, name) for name in self._get_param_names()
                  if name not in ("random_state", "n_members", "search")}
        values["class_weight"] = class_weight
        hidden = values["hidden"]
        values["hidden"] = (hidden,) if isinstance(hidden, numbers.Integral) else tuple(hidden)
        # "npz" is the kind of dataset that user arrays are; fit passes the arrays itself.
        return TrainConfig(dataset="npz", test_fraction=0.0, seed=_seed(self.random_state),
                           **values).validate()

    def fit(self, X, y):
        """Trains a fresh network on (X, y) with `jaxnet.fitting.fit`.

        Args:
          X: (N, D) numeric features; N >= 2 (batchnorm needs two examples).
          y: (N,) class labels (ints, strings, bools, whole floats), at least two classes.

        Returns:
          self, fitted. A run that diverges keeps its last finite parameters and warns with
          a ConvergenceWarning that says why.

        Raises:
          ValueError: a bad parameter (ConfigError), bad or too few data.
        """
        members = self.n_members
        if isinstance(members, bool) or not isinstance(members, numbers.Integral) or members < 1:
            raise ValueError(f"n_members={members!r}: expected an integer >= 1 (the networks "
                             "of the ensemble; 1 trains one network)")
        if members > 1 and self.max_epochs != _DEFAULTS.max_epochs:
            raise ValueError(f"max_epochs={self.max_epochs!r} bounds training until no "
                             f"improvement, but n_members={members} trains every member for "
                             f"the same `epochs`; set epochs instead, or n_members=1")
        if members > 1 and self.search:
            raise ValueError(f"search=True picks one network's settings, and n_members={members} "
                             "trains an ensemble of the settings given; use one of them (e.g. "
                             "search, then an ensemble with the chosen hidden, lr and dropout)")
        by_label = isinstance(self.class_weight, dict)
        config = self._config(None if by_label else self.class_weight)
        if members > 1:
            fitting.check_seeds(config, int(members))  # e.g. patience: before any work
        table = _is_table(X)
        if table:  # the frame as it is: its columns get kinds (jaxnet.data.table)
            validate_data(self, X, skip_check_array=True)
            y = column_or_1d(y, warn=True)
            check_consistent_length(X, y)
        else:
            X, y = validate_data(self, X, y, dtype=np.dtype(config.dtype))
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if by_label:  # the same seed, with the weights of the classes found
            config = dataclasses.replace(
                config, class_weight=_per_class(self.class_weight, classes)).validate()
        if len(X) < 2:
            raise ValueError(f"{type(self).__name__}.fit got n_samples={len(X)}; batchnorm "
                             "needs at least 2 training examples; pass more rows")
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__}.fit got y with one class "
                             f"({classes[0]!r}); a classifier needs at least 2 classes")
        names = getattr(self, "feature_names_in_", None)  # set by validate_data for a DataFrame
        data = (_table_dataset if table else _dataset)(X, y_idx.astype(np.int32), classes,
                                                        config)
        if names is not None and not table:  # a table's Dataset has its columns' names
            data = dataclasses.replace(data, feature_names=tuple(names))
        if members > 1:
            return self._fit_members(config, int(members), data, classes)
        if self.search:
            config, result, self.search_ = self._search(config, data)
        else:
            result, self.search_ = fitting.fit(config, data), None
        if result.diverged:
            warnings.warn(result.message, ConvergenceWarning, stacklevel=2)
        params, bn_state = jax.device_get((result.params, result.bn_state))
        self.model_ = TrainedModel(params, bn_state, config, result.preprocessing)
        self.classes_ = classes
        history = result.history
        self.loss_curve_ = [row["loss"] for row in history]
        self.validation_scores_ = ([row["val_accuracy"] for row in history]
                                   if config.val_fraction > 0 else None)
        self.best_epoch_ = result.metrics["best_epoch"]
        self.n_iter_ = len(history)
        return self

    def _search(self, config, data):
        from jaxnet import search

        fixed = ("hidden", "lr", "dropout")
        given = [name for name in fixed if getattr(config, name) != getattr(_DEFAULTS, name)]
        if given:
            raise ValueError(f"{type(self).__name__}(search=True) chooses hidden, lr and dropout "
                             f"itself, so it cannot take {', '.join(given)}; leave them at "
                             "their defaults, or set search=False")
        found = search.search(config, data)
        return found.config, found.fit, found.summary()

    def _fit_members(self, config: TrainConfig, members: int, data: Dataset, classes):
        result = fitting.fit_ensemble(config, members, data)
        ens = result.metrics["ensemble"]
        if ens["diverged_seeds"]:
            warnings.warn(f"the members of seed(s) {ens['diverged_seeds']} diverged (a "
                          f"non-finite loss or state); lower lr (now {config.lr:g})",
                          ConvergenceWarning, stacklevel=3)
        self.model_, self.search_ = result.model, None
        self.classes_ = classes
        epochs = result.model.config.epochs
        curves = result.loss_curves.reshape(members, epochs, -1)
        self.loss_curve_ = [float(v) for v in curves.mean(axis=(0, 2))]
        self.validation_scores_ = None
        self.best_epoch_ = list(result.model.best_epochs)
        self.n_iter_ = epochs
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (eval mode: running batchnorm statistics, no dropout).

        Args:
          X: (N, D) raw features, as given to `fit`.

        Returns:
          (N, C) float64 probabilities; column j is `classes_[j]`; rows sum to 1.
        """
        check_is_fitted(self)
        dtype = np.dtype(self.model_.config.dtype)
        table = self.model_.preprocessing.table
        if table is not None:  # checks the names and their order, then makes the features
            validate_data(self, X, reset=False, skip_check_array=True)
            X = table.encode(X, dtype=dtype, source=f"{type(self).__name__}.predict")
        else:
            X = validate_data(self, X, reset=False, dtype=dtype)
        padded = np.pad(X, ((0, -len(X) % PREDICT_CHUNK), (0, 0)))
        log_probs = self.model_.on_features().log_proba(padded, batch_size=PREDICT_CHUNK)[:len(X)]
        probs = np.exp(log_probs.astype(np.float64))
        return probs / probs.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """(N,) predicted labels, values of `classes_`."""
        indices = np.argmax(self.predict_proba(X), axis=1)
        return self.classes_[indices]


def _is_table(X) -> bool:
    """Whether X is a pandas DataFrame to read as a table: it holds a column that is not
    numbers (text, categories, booleans, dates) or a missing cell. A numeric DataFrame
    without missing cells is an array with column names, as before."""
    if not (hasattr(X, "columns") and hasattr(X, "dtypes") and hasattr(X, "iloc")):
        return False
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    numbers = all(is_numeric_dtype(t) and not is_bool_dtype(t) for t in X.dtypes)
    if numbers and not X.isna().to_numpy().any():
        return False
    if not all(isinstance(c, str) for c in X.columns):
        raise ValueError("X is a DataFrame with text or missing cells, read as a table by "
                         "column name, but not every column name is a string; name the "
                         "columns (X.columns = [...])")
    return True


def _table_dataset(X, y_idx: np.ndarray, classes: np.ndarray, config: TrainConfig) -> Dataset:
    """The DataFrame X as `_dataset` splits it, its columns made into features by a Table
    fitted on the training rows only."""
    from jaxnet.data.table import Table

    source = "MLPClassifier.fit"
    train, val, _ = split_indices(y_idx, config.val_fraction, 0.0, config.seed, source=source)
    table = Table.fit(X, rows=np.sort(train), source=source)
    dtype = np.dtype(config.dtype)

    def rows(idx):
        return None if idx is None else table.encode(X, rows=idx, dtype=dtype, source=source)

    return Dataset(name=source, x_train=rows(train), y_train=y_idx[train], x_val=rows(val),
                   y_val=None if val is None else y_idx[val], x_test=None, y_test=None,
                   classes=clean_labels(classes, y_name="classes"), feature_names=table.names,
                   table=table)


def _per_class(class_weight, classes):
    """A dict `class_weight` ({label: weight}) as one weight per class of `classes`, 1 for
    labels it leaves out (scikit-learn's rule); other values as they are."""
    if not isinstance(class_weight, dict):
        return class_weight
    if classes is None:
        raise ValueError("class_weight is a dict of labels: pass the classes (the sorted "
                         "labels of y) to train_config")
    known = set(np.asarray(classes).tolist())
    unknown = [label for label in class_weight if label not in known]
    if unknown:
        raise ValueError(f"class_weight names labels that are not in y: {unknown}; its keys "
                         f"must be labels of y ({sorted(known, key=str)})")
    return tuple(float(class_weight.get(label, 1.0)) for label in np.asarray(classes).tolist())


def _dataset(X: np.ndarray, y_idx: np.ndarray, classes: np.ndarray,
             config: TrainConfig) -> Dataset:
    """(X, y) with `config.val_fraction` held out as `jaxnet train` splits: stratified where
    every class can have a member on both sides, each class kept in training."""
    train, val, _ = split_indices(y_idx, config.val_fraction, 0.0, config.seed,
                                  source="MLPClassifier.fit")
    return Dataset(name="MLPClassifier.fit", x_train=X[train], y_train=y_idx[train],
                   x_val=None if val is None else X[val], y_val=None if val is None else y_idx[val],
                   x_test=None, y_test=None, classes=clean_labels(classes, y_name="classes"))
