"""jaxnet: N-layer fully-connected networks in JAX with hand-written backprop."""

from jaxnet import layers as layers
from jaxnet.model import apply as apply
from jaxnet.model import init as init
from jaxnet.model import loss as loss
from jaxnet.model import manual_value_and_grad as manual_value_and_grad

__version__ = "0.1.0"
