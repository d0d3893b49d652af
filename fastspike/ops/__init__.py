"""Tensor-in, tensor-out operations: one autograd.Function per op, with backend dispatch."""
from ._backend import BACKENDS, get_default_backend, set_default_backend
from .neuron import multistep_neuron

__all__ = ["BACKENDS", "get_default_backend", "set_default_backend", "multistep_neuron"]
