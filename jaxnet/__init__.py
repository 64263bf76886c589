"""jaxnet: N-layer fully-connected networks in JAX with hand-written backprop."""

from jaxnet import layers as layers
from jaxnet.data import Dataset as Dataset
from jaxnet.data import load_dataset as load_dataset
from jaxnet.model import apply as apply
from jaxnet.model import init as init
from jaxnet.model import loss as loss
from jaxnet.model import manual_value_and_grad as manual_value_and_grad
from jaxnet.sweep import SweepResult as SweepResult
from jaxnet.sweep import make_settings as make_settings
from jaxnet.sweep import sweep as sweep
from jaxnet.sweep import train_seeds as train_seeds
from jaxnet.train import TrainConfig as TrainConfig
from jaxnet.train import TrainResult as TrainResult
from jaxnet.train import TrainState as TrainState
from jaxnet.train import fit as fit
from jaxnet.train import make_train_step as make_train_step

__version__ = "0.1.0"
