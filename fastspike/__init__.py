"""fastspike: fast spiking neural networks for PyTorch.

Drop-in for SpikingJelly's ``activation_based`` API::

    from fastspike import neuron, surrogate, functional, layer
"""
__version__ = "0.1.0"

from . import base, ops, surrogate, neuron, functional, layer

__all__ = ["base", "ops", "surrogate", "neuron", "functional", "layer", "__version__"]
