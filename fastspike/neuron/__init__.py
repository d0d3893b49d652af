"""Spiking neuron modules with SpikingJelly 2.0.0's names, arguments, defaults and state_dict keys."""
from .node import *  # noqa: F401,F403
from .psn import *  # noqa: F401,F403
from .nonspiking import *  # noqa: F401,F403
