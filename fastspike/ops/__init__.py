"""Tensor-in, tensor-out operations: one autograd.Function per op, with backend dispatch.

Every op takes ``backend='auto' | 'torch' | 'triton' | 'cpp'``; ``fastspike.ops.reference`` lists the
pure-PyTorch oracle of each.
"""
from ._backend import BACKENDS, get_default_backend, set_default_backend
from .neuron import multistep_neuron
from .psn import psn
from .scan import linear_scan
from .synapse import pack_bits, synapse_conv2d, synapse_linear, unpack_bits

__all__ = ["BACKENDS", "get_default_backend", "set_default_backend", "multistep_neuron", "linear_scan", "psn",
           "synapse_linear", "synapse_conv2d", "pack_bits", "unpack_bits"]
