"""A trained model: load a run's folder, then predict, score and evaluate with it."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp

from jaxnet import checkpoint as ckpt
from jaxnet import ensemble, train
from jaxnet.config import TrainConfig
from jaxnet.preprocess import Preprocessing
from jaxnet.trained import DEFAULT_BATCH as DEFAULT_BATCH
from jaxnet.trained import TrainedModel as TrainedModel
from jaxnet.trained import _precision
from jaxnet.trained import scores as scores


def load(run_dir):
    """Loads the model a `jaxnet train` run (or `jaxnet.fit(..., out_dir=...)`) saved.

    Args:
      run_dir: the run's folder (holding checkpoint.safetensors).

    Returns:
      A TrainedModel with the run's best parameters (its best epoch: `jaxnet.train.improves`);
      for the folder of a `jaxnet train --seeds K` run (`fitting.fit_ensemble`), a
      `jaxnet.ensemble.EnsembleModel` of its K members, used the same way.

    Raises:
      CheckpointError: the folder holds no trained run, or a corrupt or foreign file.
    """
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise ckpt.CheckpointError(f"{run_dir}: no such folder; pass the output folder of a "
                                   "jaxnet train run")
    meta = ckpt.load_metadata(run_dir)
    if isinstance(meta.get("ensemble"), dict):
        return ensemble.load(run_dir, meta)
    if not {"config", "dims", "preprocessing"} <= set(meta):
        raise ckpt.CheckpointError(f"{run_dir} holds a checkpoint that is not a jaxnet training "
                                   "run (no config, dims or preprocessing); pass a run's folder")
    config, dims = TrainConfig.from_dict(meta["config"]), tuple(meta["dims"])
    standardize = bool(meta["preprocessing"].get("standardize"))
    with _precision(config):
        # Shapes and dtypes only: jax.eval_shape traces the initialisation, allocating nothing.
        ts = jax.eval_shape(lambda: train.init_train_state(
            config, dims, train.make_optimizer(config, 1)))
        template = {"train_state": ts, "best": {"params": ts.params, "bn_state": ts.bn_state},
                    "preprocessing": Preprocessing.array_shapes(dims[0], standardize)}
        tree, _ = ckpt.load_checkpoint(run_dir, template)
        best = jax.tree.map(jnp.asarray, tree["best"])
    prep = Preprocessing.from_saved(tree["preprocessing"], meta["preprocessing"])
    return TrainedModel(best["params"], best["bn_state"], config, prep)
