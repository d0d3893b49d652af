"""Spike-tensor operations (SpikingJelly 2.0.0's ``functional.spike``) on fastspike's kernels.

* :func:`bit_spike_compress` / :func:`bit_spike_decompress`: any tensor <-> 1 bit per element, flat and
  little-endian within a byte (element 8b + j is bit j of byte b, SpikingJelly's layout); nonzero is 1.
* :func:`bit_pack_spike_dense`: a spike matrix [M, K] -> uint8 [M, ceil(K / 8)] (a row per sample, bit = x > 0.5).
* :func:`packed_spike_linear`: ``Linear`` on packed spikes (gradients for weight and bias).
* :func:`sparse_linear`: ``Linear`` on spikes, ``strategy='sparse'`` through the event-driven synapse kernel.
* :func:`if_linear` / :func:`lif_linear`: an IF / LIF neuron layer fed x, whose spikes drive a Linear layer.

SpikingJelly runs the packed/sparse/fused forms on CUDA only; here they run on every device through
``fastspike.ops`` (pack_bits / unpack_bits, synapse_linear, multistep_neuron).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..ops import multistep_neuron, pack_bits, synapse_linear, unpack_bits

__all__ = ["bit_spike_compress", "bit_spike_decompress", "bit_pack_spike_dense", "packed_spike_linear",
           "sparse_linear", "if_linear", "lif_linear"]


def _tensor(fn: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, but got {type(t).__name__}.")


def bit_spike_compress(spike: torch.Tensor) -> torch.Tensor:
    """Pack every element of ``spike`` (nonzero -> 1) into a flat uint8 tensor of ceil(numel / 8) bytes."""
    _tensor("bit_spike_compress", "spike", spike)
    if spike.layout != torch.strided:
        raise ValueError(f"bit_spike_compress: spike must be a strided (dense) tensor, but got layout {spike.layout}.")
    return pack_bits((spike != 0).reshape(-1))


def bit_spike_decompress(packed: torch.Tensor, shape: Sequence[int], dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """Inverse of :func:`bit_spike_compress`: 0/1 values of ``shape`` in ``dtype``."""
    _tensor("bit_spike_decompress", "packed", packed)
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise ValueError("bit_spike_decompress: packed must be a one-dimensional uint8 tensor, but got "
                         f"dtype {packed.dtype} and shape {tuple(packed.shape)}.")
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"bit_spike_decompress: shape must have non-negative sizes, but got {shape}.")
    n = math.prod(shape)
    if packed.numel() != (n + 7) // 8:
        raise ValueError(f"bit_spike_decompress: packed holds {packed.numel()} bytes, but shape {shape} needs "
                         f"{(n + 7) // 8}.")
    return unpack_bits(packed, n, dtype=dtype).reshape(shape)


def bit_pack_spike_dense(spike: torch.Tensor) -> torch.Tensor:
    """Pack a spike matrix [M, K] row by row into uint8 [M, ceil(K / 8)] (bit j of byte b = column 8b + j,
    set where the value is > 0.5), the input of :func:`packed_spike_linear`."""
    _tensor("bit_pack_spike_dense", "spike", spike)
    if spike.dim() != 2:
        raise ValueError(f"bit_pack_spike_dense: spike must be 2-D [M, K], but got shape {tuple(spike.shape)}.")
    if not spike.is_floating_point():
        raise TypeError(f"bit_pack_spike_dense: spike must be a floating-point tensor, but got {spike.dtype}.")
    return pack_bits(spike > 0.5)


def packed_spike_linear(packed: torch.Tensor, weight: torch.Tensor,
                        bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear`` of the spikes held in ``packed`` (uint8 [M, ceil(K / 8)], see :func:`bit_pack_spike_dense`)
    with ``weight`` [N, K]: [M, N] in weight's dtype, differentiable in weight and bias."""
    _tensor("packed_spike_linear", "packed", packed)
    _tensor("packed_spike_linear", "weight", weight)
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError("packed_spike_linear: packed must be a 2-D uint8 tensor [M, ceil(K/8)], but got "
                         f"dtype {packed.dtype} and shape {tuple(packed.shape)}.")
    if weight.dim() != 2 or packed.shape[1] != (weight.shape[1] + 7) // 8:
        raise ValueError(f"packed_spike_linear: weight must be [N, K] with ceil(K/8) = {packed.shape[1]} "
                         f"(packed's width), but got shape {tuple(weight.shape)}.")
    spikes = unpack_bits(packed, weight.shape[1], dtype=weight.dtype)
    return synapse_linear(spikes, weight, bias)


def sparse_linear(spike: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                  strategy: str = "torch") -> torch.Tensor:
    """``F.linear(spike, weight, bias)``. ``strategy='torch'``: the dense GEMM; ``'sparse'``: fastspike's
    event-driven synapse kernel, which touches only the weight rows of active inputs (the forward reads spikes
    as ``spike > 0.5``; the gradient reaches ``spike`` unchanged, as SpikingJelly's)."""
    if strategy not in ("torch", "sparse"):
        raise ValueError(f"sparse_linear: strategy must be 'torch' or 'sparse', but got {strategy!r}.")
    _tensor("sparse_linear", "spike", spike)
    if strategy == "torch":
        return F.linear(spike, weight, bias)
    binary = (spike > 0.5).to(spike.dtype)
    x = spike + (binary - spike).detach() if spike.requires_grad else binary
    return synapse_linear(x, weight, bias, event_driven=True)


def _projected_neuron(fn: str, x, v, weight_t, bias, surrogate_function, **neuron) -> Tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("x", x), ("v", v), ("weight_t", weight_t)):
        _tensor(fn, name, t)
    if x.dim() not in (2, 3):
        raise ValueError(f"{fn}: x must be [M, K] (one step) or [T, M, K], but got shape {tuple(x.shape)}.")
    if tuple(v.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"{fn}: v must have shape {tuple(x.shape[-2:])} ([M, K]), but got {tuple(v.shape)}.")
    if weight_t.dim() != 2 or weight_t.shape[0] != x.shape[-1]:
        raise ValueError(f"{fn}: weight_t must be [K={x.shape[-1]}, N], but got shape {tuple(weight_t.shape)}.")
    if surrogate_function is not None and not getattr(surrogate_function, "spiking", True):
        raise ValueError(f"{fn}: surrogate_function must have spiking=True.")
    single = x.dim() == 2
    x_seq = x.unsqueeze(0) if single else x
    spikes, v_last, _ = multistep_neuron(x_seq, v, surrogate_function=surrogate_function, **neuron)
    y = synapse_linear(spikes, weight_t.t(), bias)
    return (y[0] if single else y), v_last


def if_linear(x: torch.Tensor, v: torch.Tensor, weight_t: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
              v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, detach_reset: bool = False,
              surrogate_function=None, threads: int = 256) -> Tuple[torch.Tensor, torch.Tensor]:
    """IF neurons charged by ``x`` ([M, K] or [T, M, K]) from state ``v`` [M, K]; their spikes go through
    ``spikes @ weight_t + bias`` (weight_t [K, N]). Returns (y [M, N] or [T, M, N], v after the last step).
    ``threads`` (SpikingJelly's CUDA block size: 128, 256 or 512) is checked and otherwise unused."""
    if threads not in (128, 256, 512):
        raise ValueError(f"if_linear: threads must be 128, 256 or 512, but got {threads!r}.")
    return _projected_neuron("if_linear", x, v, weight_t, bias, surrogate_function, mode="if",
                             v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset)


def lif_linear(x: torch.Tensor, v: torch.Tensor, weight_t: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
               tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
               detach_reset: bool = False, surrogate_function=None, threads: int = 256) -> Tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
    """:func:`if_linear` with LIF neurons (``tau``, ``decay_input``)."""
    if threads not in (128, 256, 512):
        raise ValueError(f"lif_linear: threads must be 128, 256 or 512, but got {threads!r}.")
    return _projected_neuron("lif_linear", x, v, weight_t, bias, surrogate_function, mode="lif", tau=tau,
                             decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                             detach_reset=detach_reset)

