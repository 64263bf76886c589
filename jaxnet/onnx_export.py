"""ONNX: a trained run as one graph from raw input columns to probabilities and labels.

The graph holds the whole path from the cells a user has to the run's answer: a table's
column rules (missing cells filled with the training median plus their ``(missing)``
indicator, booleans read as 0/1, categories one-hot encoded with an unseen value giving all
zeros), the standardisation, the network in eval mode (Gemm, BatchNormalization, Relu) and a
softmax. It is built with the ``onnx`` package's helpers, for the standard opset ``OPSET``
and ``ai.onnx.ml`` opset ``ML_OPSET`` (its LabelEncoder), so ONNX Runtime 1.17 or newer
runs it; the batch dimension ``N`` is dynamic.

Inputs (``inputs(model)`` lists them; each has a doc string in the file):

* A run without a table (digits, npz, arrays): one input ``x``, float (N, D), the raw
  features in training order.
* A run trained on a table (a CSV file): one input per column the model reads, named by
  the column, shape (N, 1):

  - number: float, NaN for a missing cell;
  - boolean: string, ``true``/``false``/``yes``/``no`` in any case; anything else
    (empty, ``NA``, ``nan``) is a missing cell;
  - category: string, the cell as text (numbers written as jaxnet writes them: ``3``, not
    ``3.0``); a value never seen in training gives all zeros; an empty cell or ``NA``,
    ``N/A``, ``NaN``, ``null``, ``None`` (any case) is the ``(missing)`` category;
  - date: a host-side step, as ONNX has no date parser: three float inputs
    ``COLUMN.year``, ``COLUMN.dayofyear`` (1-366) and ``COLUMN.dayofweek`` (0 is Monday),
    the date read in UTC (pandas: ``d = pd.to_datetime(cells, utc=True)``, then
    ``d.dt.year``, ``d.dt.day_of_year``, ``d.dt.day_of_week``); NaN for a missing date.

  Text cells are matched as given: strip surrounding spaces first (the CSV reader does).
  The columns a run leaves out (identifiers, ``drop``) have no input.

Outputs: ``probabilities``, float (N, C), column j for the class ``classes[j]``; and
``label``, (N,), the class with the highest probability, in the run's own labels (int64 or
string). Float is the run's dtype (float32, or float64 for a float64 run).

A model trained with ``impute=False`` has no rule for missing cells (jaxnet refuses them): in
the graph a missing number gives NaN probabilities and a missing category all zeros.
"""

from __future__ import annotations

import itertools
import os
import pathlib
from typing import Any

import numpy as np

from jaxnet.checkpoint import json_text, write_bytes
from jaxnet.errors import JaxnetError

OPSET = 17  # the standard ONNX operator set the graph uses
ML_OPSET = 3  # ai.onnx.ml, for LabelEncoder (string -> index or 0/1)
INSTALL = "pip install 'jaxnet[onnx]'"
OUTPUTS = ("probabilities", "label")
BATCH = "N"  # the name of the dynamic batch dimension


class MissingExtraError(JaxnetError, ImportError):
    """The optional packages a feature needs are not installed."""


def _import_onnx():
    try:
        import onnx
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
    except ImportError as exc:
        raise MissingExtraError(
            f"writing ONNX needs the onnx package ({exc}); install the ONNX extra with "
            f"{INSTALL} (it brings onnx and onnxruntime)") from None
    return onnx


def _case_variants(words) -> list[str]:
    """Every upper/lower-case spelling of each word ("na" -> "na", "nA", "Na", "NA")."""
    return sorted({"".join(chars) for word in words
                   for chars in itertools.product(*({c.lower(), c.upper()} for c in word))})


def inputs(model) -> list[dict[str, Any]]:
    """The graph inputs `to_onnx(model)` declares, in order.

    Args:
      model: a TrainedModel (`jaxnet.predict.load(run_dir)`, or `MLPClassifier.model_`).

    Returns:
      One dict per input: "name", "type" ("float", "double" or "string"), "shape" (["N", k]),
      "column" (the table column it feeds, or None for `x`), "kind" (the column's kind, or
      "features") and "doc" (what to pass).
    """
    float_type = "double" if model.config.dtype == "float64" else "float"
    table = model.preprocessing.table
    if table is None:
        names = model.preprocessing.feature_names
        order = "in training order" if names is None else f"columns {', '.join(names)}"
        return [{"name": "x", "type": float_type, "shape": [BATCH, model.num_features],
                 "column": None, "kind": "features",
                 "doc": f"the {model.num_features} raw features, {order}"}]
    specs = []
    for column in table.columns:
        if column.kind == "date":
            for part in column.features[:3]:
                specs.append({"name": part, "type": float_type, "shape": [BATCH, 1],
                              "column": column.name, "kind": "date",
                              "doc": f"date column {column.name!r}: {part.rsplit('.', 1)[1]} "
                                     "of the date in UTC; NaN when missing"})
            continue
        doc = {"number": "a number; NaN when missing",
               "boolean": "text: true/false or yes/no, any case; other text is missing",
               "category": f"text, one of {len(column.categories)} training values; an unseen "
                           "value gives all zeros; empty or NA is missing"}[column.kind]
        specs.append({"name": column.name,
                      "type": float_type if column.kind == "number" else "string",
                      "shape": [BATCH, 1], "column": column.name, "kind": column.kind,
                      "doc": f"{column.kind} column {column.name!r}: {doc}"})
    return specs


class _Graph:
    """Nodes and constants of one graph, each result under a fresh name."""

    def __init__(self, onnx, dtype: np.dtype):
        self.onnx, self.dtype = onnx, dtype
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"jaxnet/{hint}_{self.count}"

    def const(self, hint: str, value: Any, dtype: Any = None) -> str:
        name = self.fresh(hint)
        array = np.asarray(value, dtype=dtype or self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *args: str, out: str | None = None, domain: str = "",
           **attrs) -> str:
        out = out or self.fresh(op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(args), [out], name=out,
                                                     domain=domain, **attrs))
        return out


def _filled(g: _Graph, raw: str, column) -> list[str]:
    """A number/boolean/date column's features: raw (N, k) with missing rows filled by the
    training median, then the 0/1 indicator when the column has one."""
    if not column.fill:  # impute=False: nothing to fill with (jaxnet refuses missing cells)
        return [raw]
    missing = g.op("IsNaN", raw)
    if column.kind == "date":  # a row is missing when any of its three parts is
        missing = g.op("Cast", g.op("ReduceMax", g.op("Cast", missing, to=g.onnx.TensorProto.INT32),
                                    axes=[1], keepdims=1), to=g.onnx.TensorProto.BOOL)
    out = [g.op("Where", missing, g.const("fill", [column.fill]), raw)]
    if column.indicator:
        out.append(g.op("Cast", missing, to=g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype)))
    return out


def _column_features(g: _Graph, column, inputs: list[str]) -> list[str]:
    """The ONNX tensors of `column`'s features, as `jaxnet.data.table.Column.encode` makes
    them, from the column's graph inputs."""
    from jaxnet.data.csv import _NA_CELLS  # the CSV reader's missing-cell words, every case
    from jaxnet.data.table import _FALSE, _TRUE, MISSING

    float_type = g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype)
    if column.kind == "number":
        return _filled(g, inputs[0], column)
    if column.kind == "date":
        return _filled(g, g.op("Concat", *inputs, axis=1), column)
    if column.kind == "boolean":
        true, false = _case_variants(_TRUE), _case_variants(_FALSE)
        value = g.op("LabelEncoder", inputs[0], domain="ai.onnx.ml",
                     keys_strings=true + false,
                     values_floats=[1.0] * len(true) + [0.0] * len(false),
                     default_float=float("nan"))
        return _filled(g, g.op("Cast", value, to=float_type), column)
    slots = {c: j for j, c in enumerate(column.categories)}
    if MISSING in slots:  # a missing cell is a category of its own
        slots.update({w: slots[MISSING] for w in _NA_CELLS if w not in slots})
    index = g.op("LabelEncoder", inputs[0], domain="ai.onnx.ml", keys_strings=list(slots),
                 values_int64s=list(slots.values()), default_int64=-1)
    # Equal, not OneHot: OneHot reads the unseen value's -1 as the last category.
    hot = g.op("Equal", index, g.const("slots", np.arange(len(column.categories)), np.int64))
    return [g.op("Cast", hot, to=float_type)]


def _logits(g: _Graph, x: str, model, hint: str) -> str:
    """The eval-mode network of a TrainedModel on the standardised input `x`: Gemm, then
    BatchNormalization with the running statistics and Relu for each hidden layer."""
    import jax

    params, stats = jax.tree.map(np.asarray, (model.params, model.bn_state))
    h = x
    for i, layer in enumerate(params):
        h = g.op("Gemm", h, g.const(f"{hint}w{i}", layer["w"]),
                 g.const(f"{hint}b{i}", layer["b"]), transB=1)
        if i < len(stats):
            h = g.op("BatchNormalization", h, g.const(f"{hint}gamma{i}", layer["gamma"]),
                     g.const(f"{hint}beta{i}", layer["beta"]),
                     g.const(f"{hint}mean{i}", stats[i]["mean"]),
                     g.const(f"{hint}var{i}", stats[i]["var"]), epsilon=model.config.bn_eps)
            h = g.op("Relu", h)
    return h


def to_onnx(model):
    """`model` as one ONNX graph from raw inputs to `probabilities` and `label`.

    Args:
      model: a TrainedModel (`jaxnet.predict.load(run_dir)`, or `MLPClassifier.model_`),
        or an ensemble (`jaxnet.ensemble.EnsembleModel`): one network per member on the
        shared preprocessing, `probabilities` the mean of their softmax, `label` its argmax.

    Returns:
      The `onnx.ModelProto`, checked by `onnx.checker`; its metadata_props hold
      "jaxnet.version", "jaxnet.config" (the run's TrainConfig as JSON), "jaxnet.classes",
      "jaxnet.inputs" (`inputs(model)` as JSON), "jaxnet.table" (the table's JSON or null) and
      "jaxnet.ensemble" (null, or an ensemble's members, seeds and best epochs).

    Raises:
      MissingExtraError: the onnx package is not installed.
      JaxnetError: a table column's input would share its name with another input or an
        output (rename the column and train again).
    """
    onnx = _import_onnx()
    specs = inputs(model)
    _check_input_names([s["name"] for s in specs])
    g = _Graph(onnx, np.dtype(model.config.dtype))
    best = _probabilities(g, _network_input(g, model.preprocessing, specs), model)
    classes = model.preprocessing.classes
    proto = _model_proto(g, specs, len(classes), label_type=_label(g, classes, best))
    onnx.helper.set_model_props(proto, _metadata(model, specs))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _check_input_names(names: list[str]) -> None:
    """JaxnetError when an input's name is another input's, an output's or one of the graph's
    own ("jaxnet/...")."""
    clash = sorted({n for n in names if names.count(n) > 1 or n in OUTPUTS
                    or n.startswith("jaxnet/")})
    if clash:
        raise JaxnetError(f"the input name {clash[0]!r} clashes with another name in the ONNX "
                          f"graph (its inputs {', '.join(map(repr, names))}, its outputs "
                          f"{', '.join(OUTPUTS)}, its own names starting 'jaxnet/'); rename "
                          "that column and train again")


def _network_input(g: _Graph, prep, specs: list[dict[str, Any]]) -> str:
    """The network's input from the graph inputs `specs`: `x`, or the table's column features
    side by side, then standardised as `Preprocessing.transform` does."""
    if prep.table is None:
        x = "x"
    else:
        features: list[str] = []
        for column in prep.table.columns:
            own = [s["name"] for s in specs if s["column"] == column.name]
            features += _column_features(g, column, own)
        x = g.op("Concat", *features, axis=1) if len(features) > 1 else features[0]
    if prep.standardize:  # Sub then Div, in the run's dtype, as Preprocessing.transform does
        x = g.op("Div", g.op("Sub", x, g.const("mean", prep.mean.astype(g.dtype))),
                 g.const("scale", prep.scale.astype(g.dtype)))
    return x


def _probabilities(g: _Graph, x: str, model) -> str:
    """Adds the `probabilities` output of `model` on the network input `x`; returns the index
    of each row's best class (N,)."""
    members = getattr(model, "members", None)  # an ensemble (jaxnet.ensemble.EnsembleModel)
    if members is None:
        h = _logits(g, x, model, "")
        g.op("Softmax", h, axis=1, out="probabilities")
        return g.op("ArgMax", h, axis=1, keepdims=0)  # on the logits: ties as numpy's argmax
    # the mean of the members' probabilities, as EnsembleModel.predict_proba
    probs = [g.op("Softmax", _logits(g, x, m, f"m{k}_"), axis=1) for k, m in enumerate(members)]
    total = g.op("Sum", *probs) if len(probs) > 1 else probs[0]
    mean = g.op("Div", total, g.const("members", len(probs)), out="probabilities")
    return g.op("ArgMax", mean, axis=1, keepdims=0)


def _label(g: _Graph, classes: np.ndarray, best: str):
    """Adds the `label` output, `classes[best]` in the run's own labels; returns its ONNX
    element type (string or int64)."""
    text = classes.dtype.kind == "U"
    class_array = classes.astype(object) if text else classes.astype(np.int64)
    g.op("Gather", g.const("classes", class_array, class_array.dtype), best, axis=0, out="label")
    return g.onnx.TensorProto.STRING if text else g.onnx.TensorProto.INT64


def _model_proto(g: _Graph, specs: list[dict[str, Any]], n_classes: int, *, label_type):
    """The ModelProto of `g`'s nodes, with the inputs `specs` and the two outputs."""
    from jaxnet import __version__

    onnx, helper = g.onnx, g.onnx.helper
    float_type = helper.np_dtype_to_tensor_dtype(g.dtype)
    graph_inputs = [helper.make_tensor_value_info(
        s["name"], float_type if s["type"] != "string" else onnx.TensorProto.STRING,
        s["shape"], doc_string=s["doc"]) for s in specs]
    graph_outputs = [
        helper.make_tensor_value_info("probabilities", float_type, [BATCH, n_classes],
                                      doc_string="column j is the probability of classes[j]"),
        helper.make_tensor_value_info("label", label_type, [BATCH],
                                      doc_string="the most probable class, as trained"),
    ]
    graph = helper.make_graph(g.nodes, "jaxnet", graph_inputs, graph_outputs,
                              initializer=g.initializers)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="jaxnet",
                             producer_version=__version__,
                             ir_version=helper.find_min_ir_version_for(opsets),
                             doc_string="A jaxnet run from raw input columns to "
                             "probabilities and labels; see jaxnet.onnx_export.")


def _metadata(model, specs: list[dict[str, Any]]) -> dict[str, str]:
    """The "jaxnet.*" metadata_props `to_onnx` documents."""
    from jaxnet import __version__

    prep, members = model.preprocessing, getattr(model, "members", None)
    return {
        "jaxnet.version": __version__,
        "jaxnet.config": json_text(model.config.to_dict()),
        "jaxnet.classes": json_text(prep.classes.tolist()),
        "jaxnet.inputs": json_text(specs),
        "jaxnet.table": json_text(None if prep.table is None else prep.table.to_json()),
        "jaxnet.ensemble": json_text(None if members is None else {
            "members": len(members), "seeds": list(model.seeds),
            "best_epochs": list(model.best_epochs)}),
    }


def save(model, path: str | os.PathLike, *, overwrite: bool = False) -> pathlib.Path:
    """Writes `to_onnx(model)` to the .onnx file `path` as `jaxnet.export.save` writes its
    .safetensors file: atomically, refusing an existing `path` unless `overwrite` is True.

    Args, Returns and Raises: as `jaxnet.export.save`'s (`model` may also be an ensemble),
    and MissingExtraError when the onnx package is not installed.
    """
    from jaxnet.checkpoint import writable

    path = writable(path, overwrite)
    write_bytes(path, to_onnx(model).SerializeToString())
    return path


def export_onnx(run_dir: str | os.PathLike, path: str | os.PathLike, *,
                overwrite: bool = False) -> pathlib.Path:
    """Writes the best parameters of the `jaxnet train` run in `run_dir` as an ONNX graph.

    `save(jaxnet.predict.load(run_dir), path, overwrite=overwrite)`, the refusals checked
    before the run is loaded.

    Raises:
      CheckpointError: `run_dir` holds no trained run; or as `save`.
    """
    from jaxnet import predict
    from jaxnet.checkpoint import writable

    writable(path, overwrite)
    _import_onnx()
    return save(predict.load(run_dir), path, overwrite=overwrite)


def inputs_of(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The inputs a file `save` wrote declares, as `inputs` lists them (from its metadata).

    Raises:
      MissingExtraError: the onnx package is not installed.
      JaxnetError: the file is not an ONNX model jaxnet wrote.
    """
    import json

    from google.protobuf.message import DecodeError  # onnx's own dependency

    onnx = _import_onnx()
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
        return json.loads({p.key: p.value for p in proto.metadata_props}["jaxnet.inputs"])
    except (OSError, KeyError, ValueError, DecodeError) as exc:
        raise JaxnetError(f"{path} is not an ONNX model written by jaxnet ({exc}); pass a "
                          "file `jaxnet export` wrote") from None
