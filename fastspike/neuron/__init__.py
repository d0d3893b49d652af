"""Spiking neuron modules with SpikingJelly 2.0.0's names, arguments, defaults and state_dict keys.

The submodules carry SpikingJelly's module names (``fastspike.neuron.lif_variants`` for
``spikingjelly.activation_based.neuron.lif_variants``, ...); ``dynamics`` holds every neuron's step function.
"""
from .node import *
from .psn import *
from .nonspiking import *
from .base_node import *
from .integrate_and_fire import *
from .lif import *
from .plif import *
from .ilif import *
from .adapt import *
from .nonlinear_if import *
from .resonate import *
from .flexsn import *
from .few_spike import *
from .ternary import *
from .spikezip import *
from .dsr import *
from .inter_layer_connection import *
from .lif_variants import *
from .mpbn import *
from .noisy import *
from .online_learning import *
