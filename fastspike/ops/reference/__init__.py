"""Pure-PyTorch implementations of every op: the oracle of the tests and the fallback of last resort.

One module per op, each function named after the public op it checks (``reference.psn`` is the reference of
``ops.psn``). Nothing here imports from the implementations (ops/<op>/, kernels/, csrc/) or shares code with
them. Each function computes in float32 (float64 when given float64) and casts its outputs back to the input
dtype; autograd provides the gradients, with the surrogate function's own autograd rule for the spike.
"""
from .bits import is_binary, pack_bits, spike_stats, unpack_bits
from .gated_lif import multistep_gated_lif
from .neuron import multistep_neuron
from .neuron2 import multistep_neuron2
from .pool import max_pool
from .psn import band_mask, psn
from .scan import linear_scan
from .stbif import stbif
from .synapse import synapse_conv2d, synapse_conv2d_grad_weight, synapse_linear, synapse_linear_grad_weight

__all__ = ["multistep_neuron", "multistep_neuron2", "multistep_gated_lif", "psn", "band_mask", "linear_scan",
           "pack_bits", "unpack_bits", "spike_stats", "is_binary", "synapse_linear", "synapse_conv2d",
           "synapse_linear_grad_weight", "synapse_conv2d_grad_weight", "max_pool", "stbif"]
