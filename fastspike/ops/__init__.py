"""Tensor-in, tensor-out operations, each under the op contract (ops/_contract.py, docs/design.md): a public
function that validates and picks the backend, custom ops per backend with fake implementations and a registered
autograd formula, launchers for the C++ (csrc/) and Triton (kernels/) kernels.

Every op takes ``backend='auto' | 'torch' | 'triton' | 'cpp'``; ``fastspike.ops.reference`` holds the
pure-PyTorch oracle of each, under the op's own name. ``empty_cache()`` / ``cached_bytes()`` manage the CPU
block cache that large kernel outputs come from (ops/_alloc.py).
"""
from ._alloc import cached_bytes, empty_cache
from ._backend import BACKENDS, get_default_backend, set_default_backend
from .bits import pack_bits, spike_stats, unpack_bits
from .gated_lif import multistep_gated_lif
from .neuron import multistep_neuron
from .neuron2 import multistep_neuron2
from .pool import max_pool
from .psn import psn
from .scan import linear_scan
from .stbif import stbif
from .synapse import synapse_conv2d, synapse_linear

__all__ = ["BACKENDS", "get_default_backend", "set_default_backend", "multistep_neuron", "multistep_neuron2",
           "multistep_gated_lif", "linear_scan", "psn", "synapse_linear", "synapse_conv2d", "pack_bits",
           "unpack_bits", "spike_stats", "max_pool", "stbif", "empty_cache", "cached_bytes"]
