"""Spiking neuron modules with SpikingJelly 2.0.0's names, arguments, defaults and state_dict keys.

The submodules carry SpikingJelly's module names (``fastspike.neuron.lif_variants`` for
``spikingjelly.activation_based.neuron.lif_variants``, ...); ``dynamics`` holds every neuron's step function.
"""
from .node import *  # noqa: F401,F403
from .psn import *  # noqa: F401,F403
from .nonspiking import *  # noqa: F401,F403
from .base_node import *  # noqa: F401,F403
from .integrate_and_fire import *  # noqa: F401,F403
from .lif import *  # noqa: F401,F403
from .plif import *  # noqa: F401,F403
from .ilif import *  # noqa: F401,F403
from .adapt import *  # noqa: F401,F403
from .nonlinear_if import *  # noqa: F401,F403
from .resonate import *  # noqa: F401,F403
from .flexsn import *  # noqa: F401,F403
from .few_spike import *  # noqa: F401,F403
from .ternary import *  # noqa: F401,F403
from .spikezip import *  # noqa: F401,F403
from .dsr import *  # noqa: F401,F403
from .inter_layer_connection import *  # noqa: F401,F403
from .lif_variants import *  # noqa: F401,F403
from .mpbn import *  # noqa: F401,F403
from .noisy import *  # noqa: F401,F403
from .online_learning import *  # noqa: F401,F403
