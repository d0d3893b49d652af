"""Modules that NIR graphs need and fastspike's core does not define: SumPool2d, Scale, a current-based LIF
neuron (CubaLIFNode), and the executor of an imported graph (GraphModule)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import surrogate
from fastspike.base import MemoryModule, StepModule

__all__ = ["SumPool2d", "Scale", "CubaLIFNode", "GraphModule"]


class SumPool2d(nn.AvgPool2d):
    """Sum pooling: ``kernel_h * kernel_w`` times average pooling (zero padding counted, as in NIR)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding, ceil_mode=False, count_include_pad=True)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, False, True, divisor_override=1)


class Scale(nn.Module):
    """Element-wise multiplication by a fixed per-feature tensor (NIR's Scale)."""

    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x):
        return x * self.scale


def _param(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float32)


class CubaLIFNode(MemoryModule):
    """Current-based LIF neuron, the forward-Euler discretisation of NIR's CubaLIF (all times in steps):

        I[t] = I[t-1] + (w_in * X[t] - I[t-1]) / tau_syn
        H[t] = V[t-1] + (v_leak - V[t-1] + r * I[t]) / tau_mem
        S[t] = H[t] >= v_threshold
        V[t] = H[t] (1 - S[t]) + v_reset S[t]          (hard reset, v_reset a number)
        V[t] = H[t] - v_threshold S[t]                  (soft reset, v_reset None)

    Parameters may be numbers or per-neuron tensors (buffers). step_mode 's' takes [N, *], 'm' [T, N, *].
    """

    def __init__(self, tau_syn=2.0, tau_mem=2.0, r=1.0, w_in=1.0, v_leak=0.0, v_threshold=1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=surrogate.Sigmoid(), step_mode: str = "s"):
        super().__init__()
        for name, value in (("tau_syn", tau_syn), ("tau_mem", tau_mem), ("r", r), ("w_in", w_in),
                            ("v_leak", v_leak), ("v_threshold", v_threshold)):
            self.register_buffer(name, _param(value))
        if v_reset is not None:
            self.register_buffer("v_reset", _param(v_reset))
        else:
            self.v_reset = None
        self.register_memory("i", 0.0)
        self.register_memory("v", 0.0)
        self.surrogate_function = surrogate_function
        self.step_mode = step_mode

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.i = self.i + (self.w_in * x - self.i) / self.tau_syn
        h = self.v + (self.v_leak - self.v + self.r * self.i) / self.tau_mem
        s = self.surrogate_function(h - self.v_threshold)
        if self.v_reset is None:
            self.v = h - s * self.v_threshold
        else:
            self.v = h * (1.0 - s) + self.v_reset * s
        return s

    def extra_repr(self):
        return f"soft_reset={self.v_reset is None}, step_mode={self.step_mode}"


def _module_keys(names: List[str]) -> Dict[str, str]:
    """ModuleDict keys for graph node names: the name with '.' -> '_' when every such key is usable, otherwise
    ``n<i>_<name>`` for all (empty names, duplicates after the replacement, and names that ModuleDict already
    uses as attributes, such as 'keys' or 'training', cannot be keys)."""
    keys = {name: name.replace(".", "_") for name in names}
    reserved = set(dir(nn.ModuleDict()))
    if len(set(keys.values())) != len(keys) or any(not k or k in reserved for k in keys.values()):
        keys = {name: f"n{i}_{name.replace('.', '_')}" for i, name in enumerate(names)}
    return keys


def _is_stateful(m: nn.Module) -> bool:
    return isinstance(m, MemoryModule)


class GraphModule(nn.Module, StepModule):
    """Runs a dataflow graph of modules; a node's input is the sum of its sources' outputs (NIR semantics).

    ``step_mode`` 's': forward(x [N, *]) runs one step; 'm': forward(x_seq [T, N, *]) runs T steps, stateless
    nodes on the folded [T*N, *] batch and neurons in their multi-step mode. Setting ``step_mode`` sets it on
    every neuron. State persists until :meth:`reset` (or ``functional.reset_net``).
    """

    def __init__(self, modules: Dict[str, nn.Module], order: Sequence[Tuple[str, List[str]]], input_name: str,
                 output_sources: List[str], step_mode: str = "s"):
        super().__init__()
        self._keys = _module_keys([name for name, _ in order])
        self.nodes = nn.ModuleDict({self._keys[name]: modules[name] for name, _ in order})
        self._order = [(name, list(srcs)) for name, srcs in order]
        self._input = input_name
        self._outputs = list(output_sources)
        self._step_mode = "s"
        self.step_mode = step_mode

    @property
    def step_mode(self) -> str:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if value not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' or 'm', but got {value!r}.")
        self._step_mode = value
        for m in self.nodes.values():
            if _is_stateful(m) and hasattr(m, "step_mode"):
                m.step_mode = value

    def node(self, name: str) -> nn.Module:
        """The module of the graph node ``name`` (its NIR node name)."""
        return self.nodes[self._keys[name]]

    def node_names(self) -> List[str]:
        return [name for name, _ in self._order]

    def reset(self) -> None:
        for m in self.modules():
            if isinstance(m, MemoryModule):
                m.reset()

    def _run(self, x: torch.Tensor, named_errors: bool) -> torch.Tensor:
        vals = {self._input: x}
        multi = self._step_mode == "m"
        for name, srcs in self._order:
            m = self.nodes[self._keys[name]]
            try:
                inp = vals[srcs[0]]
                for s in srcs[1:]:
                    inp = inp + vals[s]
                if multi and not _is_stateful(m):
                    t, n = inp.shape[:2]
                    y = m(inp.flatten(0, 1))
                    y = y.reshape(t, n, *y.shape[1:])
                else:
                    y = m(inp)
            except (RuntimeError, ValueError, IndexError) as e:
                if not named_errors:
                    raise
                shapes = " + ".join(f"{s} {tuple(vals[s].shape[1:])}" for s in srcs if s in vals)
                raise ValueError(f"from_nir: node {name!r} ({type(m).__name__}) cannot take its input ({shapes}, "
                                 f"per sample): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                                 ) from e
            vals[name] = y
        out = vals[self._outputs[0]]
        for s in self._outputs[1:]:
            out = out + vals[s]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, named_errors=False)

    def check_run(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` that turns a failure inside a node into a ValueError naming the node and its input
        shapes (used by ``from_nir``'s dry run)."""
        return self._run(x, named_errors=True)

    def extra_repr(self) -> str:
        edges = ", ".join(f"{'+'.join(s)}->{n}" for n, s in self._order)
        return f"step_mode={self._step_mode}, graph: {edges}"
