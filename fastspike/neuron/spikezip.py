"""SpikeZIP's signed, bounded IF neuron (SpikingJelly 2.0's ``neuron.spikezip``), an inference-only
neuron for converted transformers.

``STBIFNode(q_threshold, level, sym=False, pos_max=None, neg_min=None)``: q (starting at 0.5) accumulates
x / q_threshold; a +1 spike fires when q >= 1 while the spike count acc_q is below pos_max, a -1 spike when
q < 0 while acc_q is above neg_min (fastspike.neuron.dynamics.stbif_step). The output is spike * q_threshold,
so the outputs summed over time give the quantised activation ``accumulated``. States (q, acc_q, cur_output);
buffers q_threshold, pos_max, neg_min. No autograd (inputs and buffers must not require gradients).

Both step modes run the fused forward-only op ``fastspike.ops.stbif`` (C++ on the CPU, Triton on CUDA, the
reference for float64; single step = T = 1 with the states carried), which computes in float32: for fp16/bf16
input SpikingJelly computes in the input dtype instead (docs/neurons.md says where that differs). A subclass that
redefines a functional forward keeps its own.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..base import MemoryModule
from ..ops import stbif
from .dynamics import stbif_step

__all__ = ["STBIFNode"]


def _scalar(value) -> torch.Tensor:
    return (value if torch.is_tensor(value) else torch.tensor(value)).detach().clone()


class STBIFNode(MemoryModule):
    """Signed bounded IF neuron of SpikeZIP (see the module docstring)."""

    def __init__(self, q_threshold, level: int, sym: bool = False, pos_max=None, neg_min=None,
                 step_mode: str = "s") -> None:
        super().__init__()
        if isinstance(level, bool) or int(level) < 2:
            raise ValueError(f"STBIFNode: level (the SpikeZIP quantizer level) must be >= 2, but got {level!r}.")
        self.level = int(level)
        self.sym = bool(sym)
        if pos_max is None:
            pos_max = self.level // 2 - 1 if self.sym else self.level - 1
        if neg_min is None:
            neg_min = -self.level // 2 if self.sym else 0
        self.register_buffer("q_threshold", _scalar(q_threshold).float())
        self.register_buffer("pos_max", _scalar(pos_max).float())
        self.register_buffer("neg_min", _scalar(neg_min).float())
        self.step_mode = step_mode
        self.register_memory("q", None)
        self.register_memory("acc_q", None)
        self.register_memory("cur_output", None)

    @classmethod
    def from_quantizer(cls, quantizer: nn.Module) -> "STBIFNode":
        """Build from a SpikeZIP quantizer (attributes s, sym, pos_max, neg_min and optionally level)."""
        pos_max, neg_min = quantizer.pos_max, quantizer.neg_min
        default_level = int(_scalar(pos_max).item()) - int(_scalar(neg_min).item()) + 1
        return cls(quantizer.s, level=int(getattr(quantizer, "level", default_level)), sym=bool(quantizer.sym),
                   pos_max=pos_max, neg_min=neg_min)

    def materialize_states(self, inputs, states, step_mode):
        x = inputs[0] if step_mode == "s" else inputs[0][0]
        q, acc_q, cur_output = states
        if q is None or q.shape != x.shape:
            return torch.full_like(x, 0.5), torch.zeros_like(x), torch.zeros_like(x)
        return q.to(x), acc_q.to(x), cur_output.to(x)

    def _check(self, x: torch.Tensor, q: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"STBIFNode: input must be a floating-point tensor, but got {x!r:.80}.")
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x, q, self.q_threshold, self.pos_max,
                                                                     self.neg_min)):
            raise RuntimeError("STBIFNode is an inference neuron and does not support autograd: run it under "
                               "torch.no_grad() with inputs that do not require gradients.")

    def single_step_functional_forward(self, inputs, states, **kwargs):
        x = inputs[0]
        q, acc_q, cur_output = states
        self._check(x, q)
        if not self._fused():
            out, q, acc_q, cur_output = stbif_step(x, q, acc_q, self.q_threshold, self.pos_max, self.neg_min)
            return (out,), (q, acc_q, cur_output)
        out, q, acc_q, cur_output = stbif(x.unsqueeze(0), q, acc_q, self.q_threshold, self.pos_max, self.neg_min)
        return (out[0],), (q, acc_q, cur_output)

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        x_seq = inputs[0]
        if x_seq.dim() < 2 or x_seq.shape[0] == 0:
            raise ValueError(f"STBIFNode: multi-step input must be a nonempty sequence [T, N, *], but got shape "
                             f"{tuple(x_seq.shape)}.")
        if not self._fused():
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        q, acc_q, _ = states
        self._check(x_seq, q)
        out, q, acc_q, cur_output = stbif(x_seq, q, acc_q, self.q_threshold, self.pos_max, self.neg_min)
        return (out,), (q, acc_q, cur_output)

    def _fused(self) -> bool:
        """Whether the op runs this neuron: its functional forwards are STBIFNode's and its buffers are scalars."""
        cls = type(self)
        return (cls.single_step_functional_forward is STBIFNode.single_step_functional_forward
                and cls.multi_step_functional_forward is STBIFNode.multi_step_functional_forward
                and all(t.numel() == 1 for t in (self.q_threshold, self.pos_max, self.neg_min)))

    @property
    def accumulated(self) -> torch.Tensor:
        """The quantised activation represented so far: acc_q * q_threshold."""
        if self.acc_q is None:
            raise RuntimeError("STBIFNode has no accumulated state before its first forward.")
        return self.acc_q * self.q_threshold.to(dtype=self.acc_q.dtype)
