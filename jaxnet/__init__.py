"""jaxnet: N-layer fully-connected networks in JAX with hand-written backprop."""

from jaxnet import layers as layers
from jaxnet.config import TrainConfig as TrainConfig
from jaxnet.data import Dataset as Dataset
from jaxnet.data import load_dataset as load_dataset
from jaxnet.errors import JaxnetError as JaxnetError
from jaxnet.export import export_torch as export_torch
from jaxnet.fitting import TrainResult as TrainResult
from jaxnet.fitting import fit as fit
from jaxnet.gradchecks import GradcheckReport as GradcheckReport
from jaxnet.gradchecks import check_layer as check_layer
from jaxnet.gradchecks import gradcheck as gradcheck
from jaxnet.gradchecks import gradcheck_network as gradcheck_network
from jaxnet.model import apply as apply
from jaxnet.model import init as init
from jaxnet.model import loss as loss
from jaxnet.model import manual_value_and_grad as manual_value_and_grad
from jaxnet.predict import TrainedModel as TrainedModel
from jaxnet.predict import load as load
from jaxnet.sweep import SweepResult as SweepResult
from jaxnet.sweep import make_settings as make_settings
from jaxnet.sweep import sweep as sweep
from jaxnet.sweep import train_seeds as train_seeds
from jaxnet.train import TrainState as TrainState
from jaxnet.train import make_train_step as make_train_step

__version__ = "0.2.0"


def __getattr__(name):
    # MLPClassifier subclasses scikit-learn's BaseEstimator; importing it lazily keeps
    # scikit-learn (about as slow to import as JAX) out of every `jaxnet` command's start.
    if name == "MLPClassifier":
        from jaxnet.estimator import MLPClassifier

        return MLPClassifier
    raise AttributeError(f"module 'jaxnet' has no attribute {name!r}")
