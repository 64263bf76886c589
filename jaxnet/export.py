"""Weights for PyTorch under `nn.Sequential`'s names in safetensors; `export_run` picks ONNX by extension."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from jaxnet import ensemble, predict
from jaxnet.checkpoint import CheckpointError, json_text, writable, write_bytes
from jaxnet.errors import UsageError

FORMAT = "jaxnet-torch"
VERSION = "1"
# Hidden layer i is the modules 4i (Linear), 4i+1 (BatchNorm1d), 4i+2 (ReLU) and 4i+3
# (Dropout, there even when its p is 0, so the indices never depend on the dropout rate);
# the output Linear is module 4L after the L hidden layers.
MODULES_PER_HIDDEN = 4
# The file formats `export_run` writes, by extension.
FORMATS = {".safetensors": "PyTorch weights", ".onnx": "an ONNX graph with the preprocessing"}
# How an ensemble's members make its answer, as its header says.
COMBINE = "mean of the members' softmax probabilities"
HEADER_KEYS = ("format", "version", "architecture", "dtype", "preprocessing", "classes",
               "config")


def architecture(model: predict.TrainedModel) -> list[dict[str, Any]]:
    """The modules of the `torch.nn.Sequential` that computes `model`'s logits, in order.

    Args:
      model: a TrainedModel (`jaxnet.predict.load(run_dir)`, or `MLPClassifier.model_`).

    Returns:
      One dict per module: `{"module": "Linear", "in_features", "out_features"}`,
      `{"module": "BatchNorm1d", "num_features", "eps", "momentum"}`, `{"module": "ReLU"}`
      or `{"module": "Dropout", "p"}`; the keys besides "module" are the constructor's
      keyword arguments. PyTorch's `momentum` is `1 - config.bn_momentum` (jaxnet weighs
      the old running value, PyTorch the new batch).
    """
    if isinstance(model, ensemble.EnsembleModel):  # every member has the same modules
        model = model.members[0]
    config = model.config
    torch_momentum = float(f"{1 - config.bn_momentum:.12g}")  # 0.1, not 0.09999999999999998
    modules: list[dict[str, Any]] = []
    for layer in model.params[:-1]:
        out_features, in_features = np.shape(layer["w"])
        modules += [
            {"module": "Linear", "in_features": in_features, "out_features": out_features},
            {"module": "BatchNorm1d", "num_features": out_features, "eps": config.bn_eps,
             "momentum": torch_momentum},
            {"module": "ReLU"},
            {"module": "Dropout", "p": config.dropout},
        ]
    out_features, in_features = np.shape(model.params[-1]["w"])
    modules.append({"module": "Linear", "in_features": in_features,
                    "out_features": out_features})
    return modules


def to_torch_state_dict(model: predict.TrainedModel) -> dict[str, np.ndarray]:
    """`model`'s parameters under the `state_dict` names of `architecture(model)`'s Sequential.

    With L hidden layers, hidden layer i gives `{4i}.weight` (w, (out, in): jaxnet already
    stores weights as `nn.Linear.weight` does), `{4i}.bias`, and for its BatchNorm1d
    `{4i+1}.weight` (gamma), `{4i+1}.bias` (beta), `{4i+1}.running_mean`,
    `{4i+1}.running_var` and `{4i+1}.num_batches_tracked` (int64 0: PyTorch reads it only
    when momentum is None); the output layer gives `{4L}.weight` and `{4L}.bias`.

    jaxnet's running variance averages the biased batch variance (divided by N), PyTorch's
    the unbiased one (N - 1) when it trains. Eval mode reads only the stored values, so the
    eval-mode logits are equal; further training in PyTorch continues with its own rule.

    An ensemble (`jaxnet.ensemble.EnsembleModel`) gives each member k's tensors under the
    prefix `members.{k}.` (`members.0.0.weight`, ...): the names of a module holding the
    members' Sequentials in an `nn.ModuleList` called `members` (`torch_module`).

    Returns:
      Name -> C-contiguous numpy array, float in the run's dtype.
    """
    if isinstance(model, ensemble.EnsembleModel):
        return {f"members.{k}.{name}": array for k, member in enumerate(model.members)
                for name, array in to_torch_state_dict(member).items()}
    tensors: dict[str, np.ndarray] = {}
    hidden = len(model.params) - 1
    for i, (layer, stats) in enumerate(zip(model.params[:-1], model.bn_state, strict=True)):
        linear, norm = MODULES_PER_HIDDEN * i, MODULES_PER_HIDDEN * i + 1
        tensors.update({
            f"{linear}.weight": layer["w"], f"{linear}.bias": layer["b"],
            f"{norm}.weight": layer["gamma"], f"{norm}.bias": layer["beta"],
            f"{norm}.running_mean": stats["mean"], f"{norm}.running_var": stats["var"],
        })
        tensors[f"{norm}.num_batches_tracked"] = np.zeros((), np.int64)
    last = MODULES_PER_HIDDEN * hidden
    tensors[f"{last}.weight"], tensors[f"{last}.bias"] = model.params[-1]["w"], model.params[-1]["b"]
    return {name: np.asarray(value, order="C") for name, value in tensors.items()}


def header(model: predict.TrainedModel) -> dict[str, str]:
    """The safetensors header metadata `save` writes; every value is a (JSON) string.

    Keys: "format" ("jaxnet-torch"), "version", "architecture" (JSON of `architecture`),
    "dtype" ("float32" or "float64"), "preprocessing" (JSON `{"standardize", "mean",
    "scale", "feature_names", "table"}`: the network's input is `(x - mean) / scale`, or x
    itself when standardize is false and mean/scale are null; feature_names: the input columns
    in order, or null for a model trained on unnamed arrays; table: null, or how a table's
    columns became x (`jaxnet.data.table.Table.to_json`: each column's kind, median fill,
    missing indicator and one-hot categories, in feature order)), "classes" (JSON list: logit j is `classes[j]`) and
    "config" (JSON of the run's TrainConfig). An ensemble's header adds "ensemble" (JSON
    `{"members": K, "seeds", "best_epochs", "combine"}`): "architecture" is then each
    member's Sequential, and the ensemble's probabilities are the mean of the members'
    softmax (`combine` says so).
    """
    prep = model.preprocessing
    extra = {}
    if isinstance(model, ensemble.EnsembleModel):
        extra["ensemble"] = json_text({"members": model.n_members, "seeds": list(model.seeds),
                                       "best_epochs": list(model.best_epochs),
                                       "combine": COMBINE})
    return {**extra,
        "format": FORMAT,
        "version": VERSION,
        "architecture": json_text(architecture(model)),
        "dtype": model.config.dtype,
        "preprocessing": json_text({
            "standardize": prep.standardize,
            "mean": None if prep.mean is None else prep.mean.tolist(),
            "scale": None if prep.scale is None else prep.scale.tolist(),
            "feature_names": None if prep.feature_names is None else list(prep.feature_names),
            "table": None if prep.table is None else prep.table.to_json(),
        }),
        "classes": json_text(prep.classes.tolist()),
        "config": json_text(model.config.to_dict()),
    }


def save(model: predict.TrainedModel, path: str | os.PathLike, *,
         overwrite: bool = False) -> pathlib.Path:
    """Writes `model` for PyTorch: `to_torch_state_dict` tensors and the `header` metadata.

    The file is written to a temporary file next to `path`, flushed and renamed over it, so
    a reader never sees half a file.

    Args:
      model: a TrainedModel (`jaxnet.predict.load(run_dir)`, or `MLPClassifier.model_`).
      path: the .safetensors file to write.
      overwrite: replace `path` if it exists.

    Returns:
      `path` as a Path.

    Raises:
      OutputExistsError (a FileExistsError): `path` exists and `overwrite` is False.
      CheckpointError: the file could not be written (no space, read-only folder).
    """
    path = writable(path, overwrite)
    write_bytes(path, safetensors.numpy.save(to_torch_state_dict(model), metadata=header(model)))
    return path


def export_torch(run_dir: str | os.PathLike, path: str | os.PathLike, *,
                 overwrite: bool = False) -> pathlib.Path:
    """Writes the best parameters of the `jaxnet train` run in `run_dir` for PyTorch.

    `save(jaxnet.predict.load(run_dir), path, overwrite=overwrite)`; the `jaxnet export`
    command. Load the file with `torch_module(path)`, or with plain PyTorch from its header.

    Raises:
      CheckpointError: `run_dir` holds no trained run; or as `save`.
    """
    writable(path, overwrite)  # before loading: a refusal costs nothing
    return save(predict.load(run_dir), path, overwrite=overwrite)


def export_run(run_dir: str | os.PathLike, path: str | os.PathLike, *,
               overwrite: bool = False) -> pathlib.Path:
    """The `jaxnet export` command: the run in `run_dir` written in the format `path`'s
    extension names (`FORMATS`): .safetensors for PyTorch (`export_torch`), .onnx for ONNX
    Runtime (`jaxnet.onnx_export.export_onnx`, which needs the onnx extra).

    Raises:
      UsageError: another extension; or what the chosen writer raises.
    """
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: expected a file name ending in "
                         f"{' or '.join(FORMATS)} ({'; '.join(FORMATS.values())})")
    if suffix == ".onnx":
        from jaxnet import onnx_export  # its onnx import happens only here

        return onnx_export.export_onnx(run_dir, path, overwrite=overwrite)
    return export_torch(run_dir, path, overwrite=overwrite)


def load_header(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded header of a file `save` wrote: the `header` keys, JSON values parsed, and
    "ensemble" (None for a single network).

    Raises:
      CheckpointError: a missing file, or one that is not a jaxnet PyTorch export.
    """
    path = pathlib.Path(path)
    try:
        with safe_open(path, framework="numpy") as file:
            meta = file.metadata() or {}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file; pass a file `jaxnet export` wrote") from None
    except SafetensorError as exc:
        raise CheckpointError(f"{path} is not a safetensors file ({exc}); pass a file "
                              "`jaxnet export` wrote") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc}); check that it is a file you may "
                              "read") from None
    if meta.get("format") != FORMAT or not set(HEADER_KEYS) <= set(meta):
        raise CheckpointError(f"{path} is not a jaxnet PyTorch export (its header lacks "
                              f"format={FORMAT!r} or one of {', '.join(HEADER_KEYS)}); pass a "
                              "file `jaxnet export` wrote")
    if meta["version"] != VERSION:
        raise CheckpointError(f"{path} has export version {meta['version']}, this jaxnet reads "
                              f"version {VERSION}; upgrade jaxnet")
    head = {key: meta[key] if key in ("format", "version", "dtype") else json.loads(meta[key])
            for key in HEADER_KEYS}
    head["ensemble"] = json.loads(meta["ensemble"]) if "ensemble" in meta else None
    return head


def torch_module(path: str | os.PathLike):
    """The `torch.nn.Sequential` a `save`d file describes, with its weights, in eval mode.

    Needs PyTorch (imported here, not by jaxnet). The module computes logits from
    standardised inputs: apply `load_header(path)["preprocessing"]` first. For an
    ensemble's file, a module whose `members` (an `nn.ModuleList` of those Sequentials)
    each compute logits and whose forward returns the mean of their softmax
    probabilities (N, C), not logits.

    Args:
      path: a file written by `save`, `export_torch` or `jaxnet export`.

    Returns:
      The module, in the file's dtype, loaded with `load_state_dict(strict=True)`.
    """
    import safetensors.torch
    import torch

    head = load_header(path)
    dtype = getattr(torch, head["dtype"])

    def sequential():
        return torch.nn.Sequential(*[
            getattr(torch.nn, spec["module"])(**{k: v for k, v in spec.items() if k != "module"})
            for spec in head["architecture"]])

    if head["ensemble"] is None:
        module = sequential()
    else:
        class Ensemble(torch.nn.Module):
            """The members' softmax probabilities, averaged."""

            def __init__(self, members):
                super().__init__()
                self.members = torch.nn.ModuleList(members)

            def forward(self, x):
                return torch.stack([m(x).softmax(dim=1) for m in self.members]).mean(dim=0)

        module = Ensemble([sequential() for _ in range(head["ensemble"]["members"])])
    module = module.to(dtype)
    module.load_state_dict(safetensors.torch.load_file(path), strict=True)
    return module.eval()
