"""SpikingJelly 2.0's ``neuron.plif`` name: ParametricLIFNode (defined, with its fused kernels, in
fastspike.neuron.node)."""
from .node import ParametricLIFNode

__all__ = ["ParametricLIFNode"]
