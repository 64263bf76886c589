"""Seed ensembles: K networks of one architecture, trained together, their probabilities averaged."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import jax
import numpy as np

from jaxnet import checkpoint as ckpt
from jaxnet import train
from jaxnet.config import TrainConfig
from jaxnet.preprocess import Preprocessing
from jaxnet.trained import DEFAULT_BATCH, TrainedModel, _precision, scores

# How each member chose the parameters it keeps, as the metadata states it.
EARLY_STOPPING = ("each member keeps its own best epoch by validation accuracy, a tie going to "
                  "the lower validation loss (the last epoch without a validation set); all "
                  "members train the same number of epochs (no patience)")


@dataclasses.dataclass(frozen=True)
class EnsembleModel:
    """K trained networks of one architecture, differing only in their seed, used as one model.

    `predict_proba` is the mean of the members' probabilities, `predict` its argmax; the
    methods take raw inputs as `TrainedModel`'s do (one preprocessing, fitted on the
    training split, shared by every member). `members` gives each network as an ordinary
    TrainedModel.

    Attributes:
      params, bn_state: the members' parameters and batchnorm statistics, every leaf with a
        leading members axis (K, ...).
      config: the run's TrainConfig; member k was trained with seed `seeds[k]`.
      preprocessing: as `TrainedModel.preprocessing`.
      seeds: (K,) each member's seed (initial weights, shuffles, dropout masks).
      best_epochs: (K,) the 1-based epoch each member's parameters come from.
    """

    params: Any
    bn_state: Any
    config: TrainConfig
    preprocessing: Preprocessing
    seeds: tuple[int, ...]
    best_epochs: tuple[int, ...]

    @property
    def n_members(self) -> int:
        return len(self.seeds)

    @property
    def members(self) -> tuple[TrainedModel, ...]:
        """Each member as a TrainedModel (its config's seed is the member's own)."""
        return tuple(
            TrainedModel(*jax.tree.map(lambda a, k=k: a[k], (self.params, self.bn_state)),
                         dataclasses.replace(self.config, seed=seed), self.preprocessing)
            for k, seed in enumerate(self.seeds))

    @property
    def classes(self) -> np.ndarray:
        return self.preprocessing.classes

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """As `TrainedModel.feature_names`."""
        return self.preprocessing.feature_names

    @property
    def num_features(self) -> int:
        return int(self.params[0]["w"].shape[-1])

    def on_features(self) -> EnsembleModel:
        """As `TrainedModel.on_features`: the ensemble taking its table's features."""
        prep = self.preprocessing
        if prep.table is None:
            return self
        return dataclasses.replace(
            self, preprocessing=dataclasses.replace(prep, table=None, feature_names=None))

    def __repr__(self) -> str:
        dims = (self.num_features, *(int(layer["w"].shape[1]) for layer in self.params))
        c = self.config
        return (f"EnsembleModel(members={self.n_members}, dims={dims}, "
                f"classes={len(self.classes)}, seeds={list(self.seeds)}, "
                f"best_epochs={list(self.best_epochs)}, dataset={c.dataset!r}, "
                f"optimizer={c.optimizer!r}, lr={c.lr:g}, dtype={c.dtype!r})")

    def member_log_probas(self, x, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """(K, N, C) each member's log-probabilities of raw inputs x (N, ...)."""
        return np.stack([m.log_proba(x, batch_size=batch_size) for m in self.members])

    def predict_proba(self, x, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """(N, C) the mean of the members' class probabilities; column j is `classes[j]`."""
        return np.mean(np.exp(self.member_log_probas(x, batch_size=batch_size)), axis=0)

    def log_proba(self, x, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """(N, C) the log of `predict_proba`, computed stably (log-sum-exp)."""
        return _mean_log(self.member_log_probas(x, batch_size=batch_size))

    def predict(self, x, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """(N,) the labels of the highest mean probability, in the data's own label values."""
        return self.preprocessing.decode(np.argmax(self.log_proba(x, batch_size=batch_size), 1))

    def evaluate(self, x, y, *, batch_size: int = DEFAULT_BATCH) -> dict:
        """The ensemble's accuracy and mean cross-entropy (of its mean probabilities) on raw
        inputs x and labels y, and each member's.

        Returns:
          As `TrainedModel.evaluate`, plus "members": per member {"seed", "best_epoch",
          "accuracy", "loss"}.
        """
        y_idx = self.preprocessing.encode(np.asarray(y))
        each = self.member_log_probas(x, batch_size=batch_size)
        report = scores(_mean_log(each), y_idx)
        report["members"] = [
            {"seed": seed, "best_epoch": epoch,
             **{k: v for k, v in scores(lp, y_idx).items() if k in ("accuracy", "loss")}}
            for seed, epoch, lp in zip(self.seeds, self.best_epochs, each, strict=True)]
        return report


def _mean_log(log_probs: np.ndarray) -> np.ndarray:
    """log(mean over axis 0 of exp(log_probs)), in log_probs' dtype."""
    k = len(log_probs)
    # NumPy's own log-sum-exp (no SciPy import, ~0.5 s, for `jaxnet predict`).
    return (np.logaddexp.reduce(log_probs, axis=0) - np.log(k)).astype(log_probs.dtype)


def is_ensemble(meta: dict) -> bool:
    """Whether checkpoint metadata `meta` is an ensemble's (`save`)."""
    return isinstance(meta.get("ensemble"), dict)


def save(model: EnsembleModel, run_dir: str | os.PathLike, *,
         extra_metadata: dict | None = None) -> pathlib.Path:
    """Writes `model` to `run_dir/checkpoint.safetensors`, atomically (`checkpoint.save_checkpoint`).

    The arrays: `['members']['params'][i]['w']` etc. stacked on a leading members axis,
    and the preprocessing's arrays as a normal run stores them. The metadata: "config",
    "dims", "preprocessing" (as a normal run's) and "ensemble": {"members" (K), "seeds",
    "best_epochs", "early_stopping" (the rule, in words)}, plus `extra_metadata`.
    """
    dims = [model.num_features, *(int(layer["w"].shape[1]) for layer in model.params)]
    meta = {"config": model.config.to_dict(), "dims": dims,
            "preprocessing": model.preprocessing.to_json(),
            "ensemble": {"members": model.n_members, "seeds": list(model.seeds),
                         "best_epochs": list(model.best_epochs),
                         "early_stopping": EARLY_STOPPING},
            **(extra_metadata or {})}
    tree = {"members": {"params": model.params, "bn_state": model.bn_state},
            "preprocessing": model.preprocessing.to_arrays()}
    return ckpt.save_checkpoint(run_dir, jax.device_get(tree), meta)


def load(run_dir: str | os.PathLike, meta: dict | None = None) -> EnsembleModel:
    """Reads the ensemble `save` wrote in `run_dir` (`jaxnet.load` calls this for one).

    Raises:
      CheckpointError: the folder holds no ensemble, or a corrupt or mismatched file.
    """
    meta = ckpt.load_metadata(run_dir) if meta is None else meta
    if not is_ensemble(meta) or not {"config", "dims", "preprocessing"} <= set(meta):
        raise ckpt.CheckpointError(f"{run_dir} holds no jaxnet ensemble (its checkpoint has no "
                                   "ensemble, config, dims or preprocessing); pass the folder "
                                   "of a `jaxnet train --seeds K` run")
    config, dims = TrainConfig.from_dict(meta["config"]), tuple(meta["dims"])
    info = meta["ensemble"]
    k = int(info["members"])
    standardize = bool(meta["preprocessing"].get("standardize"))
    with _precision(config):
        ts = jax.eval_shape(lambda: train.init_train_state(
            config, dims, train.make_optimizer(config, 1)))
    stacked = jax.tree.map(lambda a: jax.ShapeDtypeStruct((k, *a.shape), a.dtype),
                           {"params": ts.params, "bn_state": ts.bn_state})
    template = {"members": stacked,
                "preprocessing": Preprocessing.array_shapes(dims[0], standardize)}
    tree, _ = ckpt.load_checkpoint(run_dir, template)
    prep = Preprocessing.from_saved(tree["preprocessing"], meta["preprocessing"])
    return EnsembleModel(tree["members"]["params"], tree["members"]["bn_state"], config, prep,
                         tuple(int(s) for s in info["seeds"]),
                         tuple(int(e) for e in info["best_epochs"]))
