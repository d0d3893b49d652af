"""SpikeZIP-TF's layers (``SpikeZIPTFQANNRecipe``): a quantised ANN's Linear/Conv2d/Embedding/LayerNorm/Softmax
as temporal-difference operators. Linear and Conv2d release their bias spread over ``bias_steps`` steps (the
weights act on the running input sum); the embedding emits the looked-up vectors at the first step and zeros
afterwards. Numbers and state are SpikingJelly 2.0's."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from fastspike import base
from ..operators import TDConv2d, TDLayerNorm, TDLinear, TDSoftmax

__all__ = ["SpikeZIPLinear", "SpikeZIPConv2d", "SpikeZIPEmbedding", "SpikeZIPLayerNorm", "SpikeZIPSoftmax",
           "matmul_delta", "matmul_sequence_delta"]


def matmul_delta(a: torch.Tensor, b: torch.Tensor, a_sum: torch.Tensor, b_sum: torch.Tensor,
                 transpose_b: bool = False) -> torch.Tensor:
    """One step's change of the product of running sums: ``A_t B_t - A_{t-1} B_{t-1}`` from the step inputs
    ``a``, ``b`` and the sums ``a_sum = A_t``, ``b_sum = B_t``."""
    if transpose_b:
        b, b_sum = b.transpose(-1, -2), b_sum.transpose(-1, -2)
    return a_sum @ b + a @ b_sum - a @ b


def matmul_sequence_delta(a_seq: torch.Tensor, b_seq: torch.Tensor, transpose_b: bool = False) -> torch.Tensor:
    """:func:`matmul_delta` for whole sequences [T, ...] (from zero sums): the differences over time of the
    products of the cumulative sums."""
    b_sum = b_seq.cumsum(0)
    if transpose_b:
        b_sum = b_sum.transpose(-1, -2)
    product = a_seq.cumsum(0) @ b_sum
    return torch.diff(product, dim=0, prepend=torch.zeros_like(product[:1]))


class _BiasRelease:
    """Mixin of SpikeZIPLinear/SpikeZIPConv2d: bias ``spikezip_bias / bias_steps`` added at each of the first
    ``bias_steps`` steps after a reset (memory ``realize_time`` counts the steps left)."""

    def _init_bias(self, source: nn.Module, level: int, bias_steps: Optional[int]) -> None:
        if source.bias is None:
            self.register_parameter("spikezip_bias", None)
        else:
            self.spikezip_bias = nn.Parameter(source.bias.detach().clone())
        self.level = int(level)
        self.bias_steps = self.level if bias_steps is None else int(bias_steps)
        if self.bias_steps <= 0:
            raise ValueError(f"{type(self).__name__}: bias_steps must be positive, but got {self.bias_steps} "
                             f"(level={self.level}).")
        self.register_memory("realize_time", self.bias_steps)

    def _bias_view(self, y: torch.Tensor, sequence: bool) -> torch.Tensor:
        raise NotImplementedError

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        outputs, td_states = super().single_step_functional_forward(inputs, states[:2], **kwargs)
        y, realize_time = outputs[0], states[2]
        if self.spikezip_bias is not None and realize_time > 0:
            y = y + self._bias_view(y, False) / self.bias_steps
            realize_time -= 1
        return (y,), (*td_states, realize_time)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        (y_seq,), td_states = super().multi_step_functional_forward(inputs, states[:2], **kwargs)
        steps = min(inputs[0].shape[0], states[2]) if self.spikezip_bias is not None else 0
        if steps > 0:
            y_seq[:steps] = y_seq[:steps] + self._bias_view(y_seq, True) / self.bias_steps
        return (y_seq,), (*td_states, states[2] - steps)


class SpikeZIPLinear(_BiasRelease, TDLinear):
    """``nn.Linear`` ``linear`` as a TD linear map without bias plus the bias released over ``bias_steps`` steps
    (default ``level``)."""

    def __init__(self, linear: nn.Linear, level: int, bias_steps: Optional[int] = None, step_mode: str = "s") -> None:
        TDLinear.__init__(self, linear.in_features, linear.out_features, bias=False, device=linear.weight.device,
                          dtype=linear.weight.dtype, step_mode=step_mode)
        with torch.no_grad():
            self.weight.copy_(linear.weight)
        self._init_bias(linear, level, bias_steps)

    def _bias_view(self, y: torch.Tensor, sequence: bool) -> torch.Tensor:
        bias = self.spikezip_bias.to(device=y.device, dtype=y.dtype)
        return bias.view((1,) * (y.dim() - 1) + (bias.numel(),)) if sequence else bias


class SpikeZIPConv2d(_BiasRelease, TDConv2d):
    """``nn.Conv2d`` ``conv`` as a TD convolution without bias plus the bias released over ``bias_steps`` steps
    (default ``level``)."""

    def __init__(self, conv: nn.Conv2d, level: int, bias_steps: Optional[int] = None, step_mode: str = "s") -> None:
        TDConv2d.__init__(self, conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                          padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=False,
                          padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
                          step_mode=step_mode)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
        self._init_bias(conv, level, bias_steps)

    def _bias_view(self, y: torch.Tensor, sequence: bool) -> torch.Tensor:
        bias = self.spikezip_bias.to(device=y.device, dtype=y.dtype)
        return bias.view(1, 1, -1, 1, 1) if sequence else bias.view(1, -1, 1, 1)


class SpikeZIPEmbedding(base.MemoryModule):
    """``embedding`` (kept as the submodule ``embedding``) looked up at the first step after a reset; zeros
    afterwards. Memory ``t``: 0 before the first step."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = embedding
        self.step_mode = "s"
        self.register_memory("t", 0)

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        x = inputs[0]
        if states[0] == 0:
            return (self.embedding(x),), (1,)
        y = torch.zeros(*x.shape, self.embedding.embedding_dim, device=x.device, dtype=self.embedding.weight.dtype)
        return (y,), (states[0],)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        x_seq = inputs[0]
        if x_seq.shape[0] == 0:
            raise ValueError(f"SpikeZIPEmbedding expects a non-empty sequence, but got shape {tuple(x_seq.shape)}.")
        y0 = self.embedding(x_seq[0])
        y_seq = torch.zeros(x_seq.shape[0], *y0.shape, device=y0.device, dtype=y0.dtype)
        y_seq[0] = y0
        return (y_seq,), (x_seq.shape[0],)


class SpikeZIPLayerNorm(TDLayerNorm):
    """``source`` (an ``nn.LayerNorm``) as a TD LayerNorm in step mode 's', with its state_dict."""

    def __init__(self, source: nn.LayerNorm) -> None:
        weight = source.weight
        super().__init__(source.normalized_shape, eps=source.eps, elementwise_affine=source.elementwise_affine,
                         bias=source.bias is not None, device=None if weight is None else weight.device,
                         dtype=None if weight is None else weight.dtype, step_mode="s")
        self.load_state_dict(source.state_dict())


class SpikeZIPSoftmax(TDSoftmax):
    """A TD softmax over ``dim`` in step mode 's'."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__(dim=dim, step_mode="s")
