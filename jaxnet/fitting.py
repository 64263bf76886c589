"""Training jobs: data in, preprocessing, resume, the loop, then checkpoint, metrics and plots out."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import checkpoint as ckpt
from jaxnet import executables, optim, rng, runlock, train
from jaxnet.config import TrainConfig
from jaxnet.data import Dataset, load_dataset
from jaxnet.distributed import DeviceEnv, to_host
from jaxnet.errors import ConfigError
from jaxnet.preload import preload
from jaxnet.preprocess import Preprocessing
from jaxnet.train import program_config as program_config  # fit's rule, used by sweeps too

METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"


@dataclasses.dataclass
class TrainResult:
    """What `fit` returns: the best parameters (the best epoch, `train.improves`) and the record."""

    params: Any  # best params (best epoch by `train.improves`: val accuracy, then val loss; the last without a val set)
    bn_state: Any  # the batchnorm statistics that belong to `params`
    final: train.TrainState  # the state after the last finite epoch
    history: list[dict]  # per epoch: loss, train/val loss and accuracy (test: in metrics, once)
    metrics: dict  # summary, as written to metrics.json
    diverged: bool
    # Why training stopped early (divergence, no improvement), if it did; the settings it
    # names are in backticks (`lr=0.01`), as in JaxnetError, for the CLI to show as flags.
    message: str | None
    preprocessing: Preprocessing | None = None  # how inputs and labels were mapped

    def __repr__(self) -> str:
        # The record in one line, not the arrays (the generated repr printed every weight).
        dims = (int(self.params[0]["w"].shape[1]), *(int(p["w"].shape[0]) for p in self.params))
        scores = ", ".join(f"{split}_accuracy={_score(self.metrics.get(f'{split}_accuracy'))}"
                           for split in ("train", "val", "test"))
        return (f"TrainResult(dims={dims}, epochs_run={len(self.history)}, "
                f"best_epoch={self.metrics.get('best_epoch')}, diverged={self.diverged}, {scores})")


def _score(value) -> str:
    return "None" if value is None else f"{value:.4f}"


def load_data(config: TrainConfig, columns=None, table=None) -> Dataset:
    """Loads the dataset `config` names, raw (before preprocessing).

    `columns`: a trained model's `feature_names`, to read a csv file's columns by name;
    `table`: its `jaxnet.data.table.Table`, to make them features as in training.
    """
    csv = {"table": table} if table is not None else (
        {"categorical": config.categorical, "drop": config.drop, "impute": config.impute}
        if config.dataset == "csv" else {})
    return load_dataset(config.dataset, config.data_path, val_fraction=config.val_fraction,
                        test_fraction=config.test_fraction, seed=config.seed,
                        dtype=np.dtype(config.dtype), target=config.target, columns=columns,
                        **csv)


def prepare(config: TrainConfig, data: Dataset) -> tuple[Dataset, Preprocessing]:
    """Fits the preprocessing on the training split and applies it to every split."""
    prep = Preprocessing.fit(data.x_train, data.classes, standardize=config.standardize,
                             feature_names=data.feature_names, table=data.table)
    return prep.apply(data, dtype=np.dtype(config.dtype)), prep


def fingerprint(data: Dataset) -> str:
    """SHA-256 of every split's arrays: a resumed run must see the same data."""
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        array = getattr(data, name)
        digest.update(name.encode())
        if array is not None:
            digest.update(str((array.dtype.str, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _check_data(config: TrainConfig, data: Dataset):
    if len(data.x_train) < 2:
        raise ConfigError(f"the training set has {len(data.x_train)} example(s); batchnorm needs "
                          "at least 2; use a dataset with more training examples")
    if config.patience is not None and data.x_val is None:
        raise ConfigError(
            f"`patience={config.patience}` stops on the validation accuracy, but the {data.name} "
            "data has no validation set; set `val_fraction` above 0 or drop `patience`"
        )


def fit(config: TrainConfig, data: Dataset | None = None, *, out_dir=None, resume=False,
        on_epoch: Callable[[dict], None] | None = None, env: DeviceEnv | None = None) -> TrainResult:
    """Trains a network as `config` says and returns the best parameters and the record.

    Args:
      config: the run's settings (validated here, before any work).
      data: a loaded, raw Dataset; None loads `config.dataset`. Inputs are standardised
        here with training statistics when `config.standardize`.
      out_dir: when given, `checkpoint.safetensors` is written there atomically after every
        epoch, and `metrics.json` and `curves.png` at the end (by process 0 only). On small
        data (`train.epochs_per_call`) several epochs run per compiled call and the
        checkpoint is written after each call: a killed run loses at most that call's
        epochs (16 at most; the results are the same as one epoch per call).
      resume: continue from the checkpoint in `out_dir` (same config and data).
      on_epoch: called after each epoch (once a checkpoint holding it, or a later epoch of
        its call, is written) with a copy of that epoch's history row plus "best_epoch",
        "best_val_accuracy" (None without a val set), "stale_epochs" (epochs since the last
        improvement) and "seconds" (the epoch's wall time, its call's shared evenly among
        the epochs of a call; the first epoch includes compilation), for progress reports.
      env: devices to shard each minibatch over (data parallelism); None: one device.

    With `config.class_weight="balanced"` the training loss weights each class by
    n_train / (C * its count in the training split) (`train.class_weights`; recorded as
    "class_weights" in the metrics and the checkpoint's metadata), and so do the losses and
    accuracies it reports and chooses the best epoch by (`train.evaluate`).

    Returns:
      A TrainResult. Its history scores train and val per epoch; the test score is reported
      once, for the kept epoch (metrics' `test_accuracy` and `test_loss`). A non-finite
      loss or state stops training; `diverged` is then True,
      `message` names the step and learning rate, the state is the one after the last
      finite epoch, and the metrics' losses and accuracies are None (as in `sweep`).
      Patience stops training early; `params`/`bn_state` are the best epoch's.

    Raises:
      ConfigError: a bad config value, patience without a validation set, or a resume whose
        config or data differ from the checkpoint's.
      CheckpointError: `resume` with a missing, corrupt or mismatched checkpoint.
      FolderInUseError: another process is writing into `out_dir` (`jaxnet.runlock`): it is
        held from the start of `fit` to its end.
    """
    lead = env is None or env.is_lead
    with runlock.hold(out_dir if lead else None, "jaxnet.fit", create=not resume):
        return _fit(config, data, out_dir=out_dir, resume=resume, on_epoch=on_epoch, env=env)


def _fit(config, data, *, out_dir, resume, on_epoch, env) -> TrainResult:
    started = time.perf_counter()
    config.validate()
    if resume:
        if out_dir is None:
            raise ConfigError("`resume=True` needs `out_dir`, the folder holding the checkpoint "
                              "to continue; pass it")
        check_resumable(config, ckpt.load_metadata(out_dir), out_dir)  # before any work
    data = load_data(config) if data is None else data
    _check_data(config, data)
    raw_fingerprint = fingerprint(data)
    data, prep = prepare(config, data)
    env = DeviceEnv(None) if env is None else env
    n_train, dims = len(data.x_train), train.dims_for(config, data)
    optimizer, epoch_fn, eval_fn = _jitted(program_config(config), n_train, env.batch_sharding)
    chunk = train.epochs_per_call(config, dims, n_train)
    epochs_fn = (_jitted_epochs(program_config(config), n_train, env.batch_sharding, chunk)
                 if chunk > 1 else None)
    # An argument of the compiled epoch (in the state), derived from the training labels;
    # checkpoints leave it out (a resume derives it again from the same data).
    weights = train.class_weights(config, data.y_train, data.num_classes)
    splits = train.device_splits(data, jnp.dtype(config.dtype), env)
    key = rng.seed_key(config.seed)
    if env.batch_sharding is None:
        fresh = _jitted_fresh_state(program_config(config), n_train, dims, config.init,
                                    config.weight_scale)
        # Compiling: side by side. Loading (a warm run, known by the initial state's file):
        # one after the other, as called; threads made it slower on a busy 2-core machine.
        if executables.keeping() and not fresh.on_disk(key):
            _start_programs(config, fresh, key, epochs_fn or epoch_fn, eval_fn, splits,
                            weights, chunked=epochs_fn is not None)
        state = fresh(key)
    else:
        state = train.init_train_state(config, dims, optimizer, key)
    progress = train.new_progress(_with_hyperparams(config, state))
    if resume:
        progress = _resume(config, out_dir, progress, raw_fingerprint, prep)
    progress.state = train.with_class_weight(progress.state, weights)
    progress.state, progress.best = env.replicate((progress.state, progress.best))
    meta = {"config": config.to_dict(), "dims": list(dims), "data_fingerprint": raw_fingerprint,
            "preprocessing": prep.to_json()}
    if weights is not None:
        meta["class_weights"] = weights.tolist()

    def save(progress: train.Progress):
        tree = {"train_state": train.with_class_weight(progress.state, None),
                "best": progress.best}
        ckpt.save_checkpoint(out_dir, to_host({**tree, "preprocessing": prep.to_arrays()}),
                             {**meta, **progress.meta()})

    if out_dir is not None and env.is_lead:
        preload("jaxnet.plots")  # imported while the epochs run, drawn after them
    loop = train.train_loop(
        config, splits, progress, epoch_fn=epoch_fn, eval_fn=eval_fn, epochs_fn=epochs_fn,
        max_epochs=chunk, on_save=save if out_dir is not None and env.is_lead else None,
        on_epoch=None if on_epoch is None else lambda p: on_epoch(_epoch_report(p)))
    metrics = summarize(config, loop, splits, eval_fn, n_train)
    metrics.update(wall_seconds=time.perf_counter() - started, devices=env.num_devices,
                   message=loop.message)
    if weights is not None:
        metrics["class_weights"] = weights.tolist()
    if out_dir is not None and env.is_lead:
        write_outputs(out_dir, metrics)
    p = loop.progress
    return TrainResult(p.best["params"], p.best["bn_state"], p.state, p.history, metrics,
                       loop.diverged, loop.message, prep)


def _with_hyperparams(config: TrainConfig, state: train.TrainState) -> train.TrainState:
    """A fresh state of `config`'s program with `config`'s own optimizer values."""
    return state._replace(opt_state=optim.set_hyperparams(
        state.opt_state, **train.injected_hyperparams(config)))


def _start_programs(config, fresh, key, run_fn, eval_fn, splits, weights, *, chunked):
    """Starts compiling (or loading) fit's three programs side by side
    (`executables.Kept.prepare`), from the shapes of the state they will get: the epoch or
    chunk program (the longest: digits' ~3.7 s of ~5.4 s of compile, in one thread), the
    initial state's and the evaluation's (~1.0 and ~0.7 s), which a free core hides."""
    state = jax.eval_shape(
        lambda k: train.with_class_weight(_with_hyperparams(config, fresh.plain(k)), weights),
        key)
    if chunked:
        run_fn.prepare(state, splits, *train.chunk_arguments(splits))
    else:
        run_fn.prepare(state, *splits["train"])
    fresh.prepare(key)
    eval_fn.prepare(state.params, state.bn_state, splits,
                    *(() if weights is None else (state.hyper["class_weight"],)))


def _epoch_report(progress: train.Progress) -> dict:
    best = progress.history[progress.best_epoch - 1] if progress.best_epoch else {}
    return {**progress.history[-1], "best_epoch": progress.best_epoch,
            "best_val_accuracy": best.get("val_accuracy"), "stale_epochs": progress.stale,
            "seconds": progress.seconds}


@functools.lru_cache(maxsize=8)
def _jitted(config: TrainConfig, n_train: int, batch_sharding):
    """(optimizer, jitted epoch, jitted evaluation) for `config` (a `program_config`) on
    `n_train` examples. Kept across calls, so fits of one program and shapes (another lr or
    seed, cross-validation folds, refits, scikit-learn's estimator checks) compile once; the
    optimizer's state gets the fit's own hyperparameters (`train.injected_hyperparams`).
    """
    optimizer = train.make_optimizer(config, n_train)
    epoch = train.make_epoch(config, optimizer, n_train, batch_sharding)
    evaluate = functools.partial(train.evaluate_splits, config=config)
    if batch_sharding is not None:
        return optimizer, jax.jit(epoch, donate_argnums=0), jax.jit(evaluate)
    # One device: kept on disk when the command's compilation cache is on.
    described = f"{config!r} n_train={n_train}"
    epoch_fn = executables.Kept(epoch, "epoch", described,
                                lambda ts, x, y: jax.tree.structure((ts, 0)), donate_argnums=0)
    eval_fn = executables.Kept(evaluate, "evaluate", described,
                               lambda p, b, splits, *w: jax.tree.structure(_scores(splits)))
    return optimizer, epoch_fn, eval_fn


def _scores(splits) -> dict:
    """The structure of `train.evaluate_splits`' result on `splits` (leaves: 0)."""
    return {name: (0, 0) for name, split in splits.items() if split is not None}


@functools.lru_cache(maxsize=8)
def _jitted_epochs(config: TrainConfig, n_train: int, batch_sharding, max_epochs: int):
    """Jitted `train.make_epochs` for small data (`train.epochs_per_call`), kept across
    calls like `_jitted`'s programs; it uses the same optimizer."""
    optimizer = _jitted(config, n_train, batch_sharding)[0]
    epochs = train.make_epochs(config, optimizer, n_train, batch_sharding, max_epochs=max_epochs)
    if batch_sharding is not None:
        return jax.jit(epochs, donate_argnums=0)

    def out_tree(ts, splits, *scalars):  # (state, saved, best, record)
        best = {"params": ts.params, "bn_state": ts.bn_state}
        return jax.tree.structure((ts, ts, best, {"losses": 0, "step": 0,
                                                  "scores": _scores(splits)}))

    return executables.Kept(epochs, "epochs",
                            f"{config!r} n_train={n_train} max_epochs={max_epochs}", out_tree,
                            donate_argnums=0)


@functools.lru_cache(maxsize=8)
def _jitted_fresh_state(config: TrainConfig, n_train: int, dims: tuple, init: str,
                        weight_scale: float):
    """`train.init_train_state(...)` of `config` (a `program_config`) as a function of the
    key, kept on disk as `_jitted`'s programs are (`executables.Kept`)."""
    optimizer = _jitted(config, n_train, None)[0]

    def fresh(key):
        return train.init_train_state(dataclasses.replace(config, init=init,
                                                          weight_scale=weight_scale),
                                      dims, optimizer, key)

    return executables.Kept(
        fresh, "fresh_state", f"{config!r} n_train={n_train} dims={dims} "
        f"init={init!r} weight_scale={weight_scale!r}",
        None, plain=fresh)  # the state's structure: from the file's description


def _resume(config, out_dir, progress: train.Progress, raw_fingerprint: str,
            prep: Preprocessing) -> train.Progress:
    template = {"train_state": progress.state, "best": progress.best,
                "preprocessing": prep.to_arrays()}
    tree, meta = ckpt.load_checkpoint(out_dir, template)
    check_resumable(config, meta, out_dir)
    if meta.get("data_fingerprint") != raw_fingerprint:
        raise ConfigError(
            f"the checkpoint in {out_dir} was trained on different data than {config.dataset}"
            + (f" {config.data_path}" if config.data_path else "") + " holds now (the arrays' "
            "SHA-256 differs); resume with the data it was trained on, or start a fresh run "
            "in a new folder")
    return train.Progress(tree["train_state"], tree["best"], list(meta["history"]),
                          meta["best_epoch"], meta["best_score"], meta["stale_epochs"])


def check_resumable(config: TrainConfig, meta: dict, out_dir) -> int:
    """Checks that checkpoint metadata `meta` can be continued with `config`.

    Returns the number of epochs the checkpoint holds.
    """
    if isinstance(meta.get("ensemble"), dict):
        raise ConfigError(
            f"{out_dir} holds an ensemble of {meta['ensemble'].get('members')} seeds (`jaxnet "
            "train --seeds`), trained in one call with no epoch-by-epoch checkpoint, so it "
            "cannot be resumed; train it again with more `epochs` into a new folder")
    needed = ("config", "epoch", "history", "best_epoch", "best_score", "stale_epochs")
    missing = [k for k in needed if k not in meta]
    if missing or not isinstance(meta["config"], dict):
        raise ckpt.CheckpointError(
            f"the checkpoint in {out_dir} is not from jaxnet's fit (its metadata lacks "
            f"{', '.join(missing) or 'a config'}); point to the folder of a training run, or "
            "start a fresh run")
    try:
        saved = TrainConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as err:
        raise ckpt.CheckpointError(f"the checkpoint in {out_dir} holds an unreadable config "
                                   f"({err}); start a fresh run") from None
    changed = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name != "epochs" and getattr(saved, f.name) != getattr(config, f.name)]
    if changed:
        diffs = "; ".join(f"{name}: saved {getattr(saved, name)!r}, now {getattr(config, name)!r}"
                          for name in changed)
        raise ConfigError(
            f"the checkpoint in {out_dir} was written with a different config ({diffs}); resume "
            "with the saved settings (only epochs may change), or start a fresh run in a new folder")
    if config.lr_schedule == "cosine" and config.num_epochs != saved.num_epochs:
        raise ConfigError(
            f"the checkpoint in {out_dir} follows a cosine schedule laid over {saved.num_epochs} "
            f"epochs; resuming with `epochs={config.epochs}` would stretch it and change every "
            f"later step's rate, so the run would not equal an uninterrupted one; resume with "
            f"`epochs={saved.num_epochs}`, or start a fresh run")
    done = int(meta["epoch"])
    if config.num_epochs < done:
        raise ConfigError(
            f"the checkpoint in {out_dir} already holds {done} epochs but "
            f"`epochs={config.epochs}`; pass `epochs` >= {done} to continue it")
    return done


def summarize(config: TrainConfig, loop: train.LoopResult, splits, eval_fn, n_train) -> dict:
    """The metrics.json summary: the best parameters' losses and accuracies on every split
    (the test set's only here, once, for the kept epoch), and the record."""
    p = loop.progress
    metrics: dict[str, Any] = {"final_loss": p.history[-1]["loss"] if p.history else None,
                               "best_epoch": p.best_epoch, "epochs_run": len(p.history),
                               "diverged": loop.diverged}
    unscored = {f"{name}_{what}": None for name in splits for what in ("loss", "accuracy")}
    metrics.update(unscored)
    metrics.update(train.split_scores(eval_fn, p.best["params"], p.best["bn_state"], splits,
                                      p.state.hyper.get("class_weight")))
    if loop.diverged:  # reported as `sweep` and `train --seeds` report a diverged run
        metrics["final_loss"] = None
        metrics.update(unscored)
    examples = loop.timed_epochs * train.steps_per_epoch(config, n_train) * train.batch_size(config, n_train)
    metrics["examples_per_second"] = examples / loop.train_seconds if loop.train_seconds else None
    metrics["history"] = p.history
    metrics["config"] = config.to_dict()
    return metrics


def write_outputs(out_dir, metrics: dict):
    """metrics.json and curves.png in `out_dir`."""
    from jaxnet import plots

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt.write_json(out_dir / METRICS_FILE, metrics)
    if metrics["history"]:
        history = metrics["history"]
        # The parameters kept: the best epoch's; without a val set, the last epoch's.
        kept = metrics["best_epoch"] if "val_accuracy" in history[-1] else history[-1]["epoch"]
        plots.training_curves(history, out_dir / CURVES_FILE, kept_epoch=kept or None,
                              test_accuracy=metrics.get("test_accuracy"))


def check_seeds(config: TrainConfig, seeds: int) -> None:
    """Raises ConfigError for what `fit_seeds(config, seeds)` would refuse, before any work."""
    config.validate()
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"`seeds={seeds!r}` is invalid: expected an integer >= 1")
    if config.patience is not None:
        raise ConfigError(f"`patience={config.patience}` stops one run early, but the {seeds} "
                          "seeds train together for the same epochs (each keeps its best epoch "
                          "by val accuracy); drop `patience` or train seeds one by one")


@dataclasses.dataclass
class EnsembleResult:
    """What `fit_ensemble` returns."""

    model: Any  # a jaxnet.ensemble.EnsembleModel of the K members
    metrics: dict  # as written to metrics.json: `sweep.train_seeds`'s, plus "ensemble"
    loss_curves: np.ndarray  # (K, steps) each member's training loss per step


def fit_seeds(config: TrainConfig, seeds: int, data: Dataset | None = None, *,
              out_dir=None) -> dict:
    """`fit_ensemble(config, seeds, data, out_dir=out_dir).metrics`: K seeds of one network
    in one vmapped call; the folder `out_dir` (when given) holds the ensemble of the K
    members as a loadable model (`jaxnet.load`) and metrics.json."""
    return fit_ensemble(config, seeds, data, out_dir=out_dir).metrics


def fit_ensemble(config: TrainConfig, seeds: int, data: Dataset | None = None, *,
                 out_dir=None) -> EnsembleResult:
    """K seeds of one network trained in one vmapped call (`sweep.sweep(..., seeds=K,
    keep_params=True)`), with the same data preparation as `fit`, kept as one model: an
    ensemble whose probabilities are the mean of its members'.

    Seed k is `config.seed + k` (initial weights, shuffles, dropout masks); the data split
    and the preprocessing are the same for every member. Every member trains
    `config.epochs` epochs (`sweep.DEFAULT_EPOCHS` when None: members trained together
    share one length) and keeps its own best epoch by validation (`train.improves`, as a
    sweep's runs do; the last epoch without a val set); `patience` is refused.

    Args:
      config: the run's settings.
      seeds: K >= 1 members.
      data: a loaded, raw Dataset; None loads `config.dataset`.
      out_dir: when given, the ensemble's checkpoint.safetensors (`jaxnet.ensemble.save`,
        with the data's fingerprint) and metrics.json are written there atomically, held
        (`jaxnet.runlock`) while the seeds train. When a member diverged only metrics.json
        is written: a model with a diverged member is no model.

    Returns:
      An EnsembleResult. Its metrics are `sweep.train_seeds`'s (means and stds over the
      members, per-seed lists) plus "ensemble": {"members", "seeds", "best_epochs",
      "diverged_seeds", "early_stopping", and the ensemble's own "SPLIT_accuracy" and
      "SPLIT_loss" on each split (unweighted, also with `class_weight`; None when a member
      diverged)}.

    Raises:
      ConfigError: what `check_seeds` refuses; FolderInUseError: `out_dir` is in use.
    """
    from jaxnet import ensemble
    from jaxnet.sweep import DEFAULT_EPOCHS, seed_metrics, sweep

    started = time.perf_counter()
    check_seeds(config, seeds)
    with runlock.hold(out_dir, "jaxnet.fit_seeds"):
        raw = load_data(config) if data is None else data
        prepared, prep = prepare(config, raw)
        config = dataclasses.replace(config, epochs=config.epochs or DEFAULT_EPOCHS)
        result = sweep(config, prepared, [{}], seeds=seeds, keep_params=True)
        metrics = seed_metrics(config, result, seeds)
        model = ensemble.EnsembleModel(
            result.params["params"], result.params["bn_state"], config, prep,
            tuple(config.seed + k for k in range(seeds)),
            tuple(int(e) for e in result.best_epochs))
        diverged = [r["seed"] for r in result.runs if r["diverged"]]
        summary: dict[str, Any] = {"members": seeds, "seeds": list(model.seeds),
                                   "best_epochs": list(model.best_epochs),
                                   "diverged_seeds": diverged,
                                   "early_stopping": ensemble.EARLY_STOPPING}
        usable = model.on_features()
        for split in ("train", "val", "test"):
            x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
            scored = None if diverged or x is None else usable.evaluate(x, raw.classes[y])
            for what in ("accuracy", "loss"):
                summary[f"{split}_{what}"] = None if scored is None else scored[what]
        metrics["ensemble"] = summary
        metrics["wall_seconds"] = time.perf_counter() - started
        if out_dir is not None:
            pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
            if not diverged:
                extra = {"data_fingerprint": fingerprint(raw)}
                weights = train.class_weights(config, prepared.y_train, prepared.num_classes)
                if weights is not None:
                    extra["class_weights"] = weights.tolist()
                ensemble.save(model, out_dir, extra_metadata=extra)
            ckpt.write_json(pathlib.Path(out_dir) / METRICS_FILE, metrics)
    return EnsembleResult(model, metrics, result.loss_curves)
