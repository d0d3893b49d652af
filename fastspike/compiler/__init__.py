"""The neuron compiler: a neuron written as a Python step function, traced once, run as fused kernels.

``compile_neuron(step_fn, num_states, num_params=0)`` traces ``step_fn(*inputs, *states, *params) ->
(*outputs, *new_states)`` into a small SSA IR (tracer.py, ir.py), derives its backward through time by
reverse-mode differentiation of the IR, and generates a fused multi-step forward and backward: C++ compiled
once per neuron into ``$FASTSPIKE_CACHE/neurons`` (cpp.py, cache.py) and Triton (triton_gen.py), run as
``torch.library`` custom ops ``fastspike::compiled_<hash>_<backend>`` (kernel_op.py) so that torch.compile traces
them. See docs/neuron_compiler.md.
"""
from .cache import KernelBuildError
from .function import CompiledNeuron, compile_neuron
from .tracer import NeuronTraceError, spike

__all__ = ["CompiledNeuron", "KernelBuildError", "NeuronTraceError", "compile_neuron", "spike"]
