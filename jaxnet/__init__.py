"""jaxnet: N-layer fully-connected networks in JAX with hand-written backprop."""

import importlib
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.2.0"

# Public name -> the module that defines it. Each is imported on first use (PEP 562), so
# `import jaxnet` (and `jaxnet --help`) costs no JAX or scikit-learn import; `from jaxnet
# import fit` works as before. The block under TYPE_CHECKING says the same for type
# checkers and editors (tests/test_cli_latency.py checks the two agree).
_EXPORTS = {
    "layers": "jaxnet.layers",  # a module
    "TrainConfig": "jaxnet.config",
    "Dataset": "jaxnet.data",
    "load_dataset": "jaxnet.data",
    "JaxnetError": "jaxnet.errors",
    "EnsembleModel": "jaxnet.ensemble",
    "MLPClassifier": "jaxnet.estimator",
    "export_torch": "jaxnet.export",
    "export_onnx": "jaxnet.onnx_export",
    "TrainResult": "jaxnet.fitting",
    "fit": "jaxnet.fitting",
    "fit_ensemble": "jaxnet.fitting",
    "GradcheckReport": "jaxnet.gradchecks",
    "check_layer": "jaxnet.gradchecks",
    "gradcheck": "jaxnet.gradchecks",
    "gradcheck_network": "jaxnet.gradchecks",
    "apply": "jaxnet.model",
    "init": "jaxnet.model",
    "loss": "jaxnet.model",
    "manual_value_and_grad": "jaxnet.model",
    "TrainedModel": "jaxnet.predict",
    "load": "jaxnet.predict",
    "SweepResult": "jaxnet.sweep",
    "make_settings": "jaxnet.sweep",
    "sweep": "jaxnet.sweep",
    "train_seeds": "jaxnet.sweep",
    "TrainState": "jaxnet.train",
    "make_train_step": "jaxnet.train",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from jaxnet import layers as layers
    from jaxnet.config import TrainConfig as TrainConfig
    from jaxnet.data import Dataset as Dataset
    from jaxnet.data import load_dataset as load_dataset
    from jaxnet.ensemble import EnsembleModel as EnsembleModel
    from jaxnet.errors import JaxnetError as JaxnetError
    from jaxnet.estimator import MLPClassifier as MLPClassifier
    from jaxnet.export import export_torch as export_torch
    from jaxnet.fitting import TrainResult as TrainResult
    from jaxnet.fitting import fit as fit
    from jaxnet.fitting import fit_ensemble as fit_ensemble
    from jaxnet.gradchecks import GradcheckReport as GradcheckReport
    from jaxnet.gradchecks import check_layer as check_layer
    from jaxnet.gradchecks import gradcheck as gradcheck
    from jaxnet.gradchecks import gradcheck_network as gradcheck_network
    from jaxnet.model import apply as apply
    from jaxnet.model import init as init
    from jaxnet.model import loss as loss
    from jaxnet.model import manual_value_and_grad as manual_value_and_grad
    from jaxnet.onnx_export import export_onnx as export_onnx
    from jaxnet.predict import TrainedModel as TrainedModel
    from jaxnet.predict import load as load
    from jaxnet.sweep import SweepResult as SweepResult
    from jaxnet.sweep import make_settings as make_settings
    from jaxnet.sweep import sweep as sweep
    from jaxnet.sweep import train_seeds as train_seeds
    from jaxnet.train import TrainState as TrainState
    from jaxnet.train import make_train_step as make_train_step


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxnet' has no attribute {name!r}")
    value = importlib.import_module(module)
    if module != f"{__name__}.{name}":  # a name defined in the module, not the module itself
        value = getattr(value, name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """`jaxnet.sweep` is the function, as the eager imports of jaxnet 0.2.0 made it, even
    though the subpackage of that name is imported later: the import system binds a
    subpackage to its parent's attribute when it loads it, and this property ignores that."""

    @property
    def sweep(self):
        if "_sweep" not in self.__dict__:
            self.__dict__["_sweep"] = importlib.import_module("jaxnet.sweep").sweep
        return self.__dict__["_sweep"]

    @sweep.setter
    def sweep(self, value):
        if not isinstance(value, types.ModuleType):  # e.g. a test's monkeypatch
            self.__dict__["_sweep"] = value


sys.modules[__name__].__class__ = _Package
