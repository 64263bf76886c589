"""A trained model on raw inputs: predict, score and evaluate (`jaxnet.predict.load` reads one)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any

import jax
import numpy as np

from jaxnet import model, train
from jaxnet.config import TrainConfig
from jaxnet.preprocess import Preprocessing

DEFAULT_BATCH = 1024  # rows per compiled call when predicting


def _precision(config: TrainConfig):
    """The JAX precision `config` computes in, for the duration of a `with` block.

    A float64 run needs 64-bit JAX: it gets it in this scope only (`jax.enable_x64` is
    thread-local and restored on exit), so loading or using a float64 model leaves the
    process's `jax_enable_x64` as it was. A float32 run changes nothing.
    """
    return jax.enable_x64(True) if config.dtype == "float64" else contextlib.nullcontext()


@functools.partial(jax.jit, static_argnames="eps")
def _log_probs(params, bn_state, x, *, eps):
    logits, _ = model.apply(params, bn_state, x, train=False, eps=eps)
    return jax.nn.log_softmax(train.widen(logits))


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A network with everything needed to use it on raw inputs.

    Its repr shows the layer sizes, the counts of classes and of named input columns and the
    config's essentials; the arrays are in `params`.

    A float64 model (`config.dtype == "float64"`) computes in float64 inside its methods
    whatever `jax_enable_x64` says, switching 64-bit JAX on for each call only; its `params`
    are float64 arrays (use them in your own JAX code within `jax.enable_x64(True)`).

    Attributes:
      params, bn_state: the run's best parameters and their batchnorm statistics.
      config: the run's TrainConfig.
      preprocessing: the input standardisation and the classes, fitted on the training set.
    """

    params: Any
    bn_state: Any
    config: TrainConfig
    preprocessing: Preprocessing

    @property
    def classes(self) -> np.ndarray:
        return self.preprocessing.classes

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """The input columns by name, in training order (like scikit-learn's
        `feature_names_in_`); None for a model trained on unnamed arrays.

        A pandas DataFrame given to `predict`, `predict_proba`, `log_proba` or `evaluate`
        is matched to them by name: any column order works, other columns (the target, an
        id) are left out with one `jaxnet.data.columns.IgnoredColumnsWarning`, and a
        missing one is a DataError naming it. An array is taken in training column order.
        """
        return self.preprocessing.feature_names

    def on_features(self) -> TrainedModel:
        """This model taking the D features its table makes (`jaxnet.data.table.Table.encode`,
        as `read_features(path, table=...)` and `load_dataset(..., table=...)` give them)
        instead of the table's raw columns; the model itself when it has no table."""
        prep = self.preprocessing
        if prep.table is None:
            return self
        return dataclasses.replace(
            self, preprocessing=dataclasses.replace(prep, table=None, feature_names=None))

    @property
    def num_features(self) -> int:
        return int(self.params[0]["w"].shape[1])

    def __repr__(self) -> str:
        # The shape of the thing, not its weights (the generated repr printed every array).
        dims = (self.num_features, *(int(layer["w"].shape[0]) for layer in self.params))
        names = None if self.feature_names is None else len(self.feature_names)
        c = self.config
        return (f"TrainedModel(dims={dims}, classes={len(self.classes)}, feature_names={names}, "
                f"dataset={c.dataset!r}, optimizer={c.optimizer!r}, lr={c.lr:g}, "
                f"dtype={c.dtype!r})")

    def log_proba(self, x, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """(N, C) log-probabilities of raw inputs x (N, ...), in eval mode.

        Rows run in batches of `batch_size` (the last one padded, so no row is dropped and one
        compiled shape serves every batch).
        """
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size={batch_size!r}: expected a positive integer (rows "
                             "per compiled call)")
        x = self.preprocessing.transform(x, dtype=np.dtype(self.config.dtype))
        n = len(x)
        size = min(batch_size, max(1, 1 << (n - 1).bit_length()))  # few shapes for small n
        out = []
        with _precision(self.config):
            for start in range(0, n, size):
                chunk = x[start:start + size]
                padded = np.pad(chunk, ((0, size - len(chunk)), (0, 0)))
                out.append(np.asarray(_log_probs(self.params, self.bn_state, padded,
                                                 eps=self.config.bn_eps))[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def predict_proba(self, x, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """(N, C) class probabilities; column j is `classes[j]`."""
        return np.exp(self.log_proba(x, batch_size=batch_size))

    def predict(self, x, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """(N,) predicted labels, in the training data's own label values."""
        return self.preprocessing.decode(np.argmax(self.log_proba(x, batch_size=batch_size), 1))

    def evaluate(self, x, y, *, batch_size: int = DEFAULT_BATCH) -> dict:
        """Accuracy and mean cross-entropy on raw inputs x and labels y (original values).

        Returns:
          {"accuracy", "loss", "examples", "labels" (true indices), "predictions" (indices)}.
        """
        y_idx = self.preprocessing.encode(np.asarray(y))
        return scores(self.log_proba(x, batch_size=batch_size), y_idx)


def scores(log_probs: np.ndarray, y_idx: np.ndarray) -> dict:
    """`evaluate`'s dict from (N, C) log-probabilities and (N,) true class indices."""
    pred = np.argmax(log_probs, axis=1)
    loss = -np.mean(np.take_along_axis(log_probs, y_idx[:, None], axis=1), dtype=np.float64)
    return {"accuracy": float(np.mean(pred == y_idx)), "loss": float(loss),
            "examples": len(y_idx), "labels": y_idx, "predictions": pred}
