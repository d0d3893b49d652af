"""Event-driven synapses: ``synapse_linear`` and ``synapse_conv2d``, ``F.linear`` / ``F.conv2d`` for spike inputs.

``event_driven``: True takes the event-driven path (work follows the spikes) and refuses a non-binary input with
a ValueError; False takes torch's dense layer; 'auto' takes the event path when the input is binary and at
most as dense as the calibrated crossover (crossover_store.py), else the dense path. What runs where:

* CPU ('cpp' backend): the C++ kernels decide 'auto' while they build their spike lists (no separate pass); in
  training every setting keeps the input for the weight gradient in its smallest exact form (bits for spikes,
  bytes for spike counts; formula.py).
* CUDA ('triton'): 'auto' and False are torch's own dense layer (deciding would cost a device-to-host
  synchronisation; the dense path wins there but for Linear inference at 1% density, docs/synapses.md), with
  the input saved as torch saves it. True runs the sync-free Triton kernels; their binarity check reads one
  flag back to the host, except under torch.compile and while a CUDA graph is being captured, where a
  non-binary input gives NaN outputs instead of an error.
* 'torch': the reference (float64 and other dtypes the kernels do not take).

The results equal F.linear / F.conv2d's up to float summation order, NaN and inf included (a weight that is not
finite poisons the outputs F.* poisons). Files: autograd.py (custom ops and formula), formula.py (what is kept
for the backward, the weight-gradient decision), cpu.py (C++ launchers), weights.py (weight-layout cache),
dense.py (the CPU GEMM workarounds), crossover_store.py (the per-machine crossover store); the Triton kernels are in
kernels/synapse.py and the references in ops/reference/synapse.py.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F

from .. import _backend, _validate
from .._contract import opaque
from ..bits import known_binary, may_sync, pack_bits, spike_stats, unpack_bits
from .autograd import CONV2D, LINEAR, NOT_BINARY_MESSAGE
from .crossover_store import DEFAULT_CROSSOVER, calibration_path, crossover, machine_key, save_crossover
from .formula import AUTO, DENSE, EVENT_MODE, NOT_BINARY

__all__ = ["synapse_linear", "synapse_conv2d", "pack_bits", "unpack_bits", "spike_stats", "crossover",
           "save_crossover", "calibration_path", "machine_key", "DEFAULT_CROSSOVER", "EVENT_DRIVEN_CHOICES"]

EVENT_DRIVEN_CHOICES = ("auto", True, False)


def _mode(op: str, event_driven) -> int:
    _validate.choice(op, "event_driven", event_driven, EVENT_DRIVEN_CHOICES)
    return EVENT_MODE if event_driven is True else (DENSE if event_driven is False else AUTO)


def _autocast(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]):
    """torch.autocast's rule for F.linear / F.conv2d, which these ops stand in for: inside an autocast region of
    x's device type, floating inputs other than float64 run in the region's dtype (so bf16 activations stay bf16
    from layer to layer, and the casts are differentiable: fp32 weights get fp32 gradients)."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return x, weight, bias
    dtype = torch.get_autocast_dtype(device)

    def cast(t):
        eligible = t is not None and t.is_floating_point() and t.dtype not in (torch.float64, dtype)
        return t.to(dtype) if eligible else t
    return cast(x), cast(weight), cast(bias)


def _run(op: str, ops: dict, be: str, x: torch.Tensor, weight: torch.Tensor, bias, mode: int, *conf,
         known: bool = False):
    """Call the custom op of backend ``be``; returns the output. Triton's binarity flag is read when allowed.
    ``known``: x is spikes a fastspike neuron produced (Triton's DENSE path then keeps their bits)."""
    train = torch.is_grad_enabled() and weight.requires_grad
    # bits come out of the forward in EVENT_MODE; in eager 'auto' too (the C++ Linear packs them while it builds its
    # spike lists), but not under torch.compile, where 'auto' keeps x as it is (autograd.py)
    want_bits = train and (known or (mode != DENSE and (mode == EVENT_MODE or not opaque(x))))
    grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or
                                        (bias is not None and bias.requires_grad))
    if grad or opaque(x):
        out, _, status = ops[be](x, weight, bias, mode, train, want_bits, *conf)
    else:  # inference in eager mode: the forward kernel alone (autograd's Function costs ~5 us a call)
        out, _, status = ops[be].forward_kernel(x, weight, bias, mode, train, want_bits, *conf)
    if be == "triton" and mode == EVENT_MODE and may_sync(x) and int(status[0]) == NOT_BINARY:
        raise ValueError(NOT_BINARY_MESSAGE.format(op))
    return out


def synapse_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                   event_driven: Union[str, bool] = "auto", backend: Optional[str] = "auto") -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for spike inputs x [*, K]; see the module docstring for ``event_driven``."""
    op = "synapse_linear"
    mode = _mode(op, event_driven)
    _validate.tensor(op, "x", x)
    _validate.tensor(op, "weight", weight, ndim=(2,), layout="out_features, in_features")
    _validate.optional_tensor(op, "bias", bias)
    _validate.floating(op, "weight", weight)
    N, K = weight.shape
    if x.dim() < 1 or x.shape[-1] != K:
        raise ValueError(f"{op}: x must be [*, in_features={K}], but got shape {tuple(x.shape)}.")
    if bias is not None and tuple(bias.shape) != (N,):
        raise ValueError(f"{op}: bias must have shape ({N},), but got {tuple(bias.shape)}.")
    _validate.same_device(op, ("x", x), ("weight", weight), ("bias", bias))
    x, weight, bias = _autocast(x, weight, bias)
    if not x.is_floating_point():
        x = x.to(weight.dtype)
    lead = x.shape[:-1]
    x2 = x.reshape(math.prod(lead), K)
    be = _backend.resolve(backend, [x2, weight], op)
    if x2.numel() == 0 or N == 0:  # nothing to gather: torch's result (zeros plus the bias)
        return F.linear(x.to(weight.dtype), weight, bias)
    if be == "triton" and mode != EVENT_MODE:
        mode = DENSE  # on CUDA 'auto' takes torch's GEMM: deciding would synchronise with the host
    train = torch.is_grad_enabled() and weight.requires_grad
    known = be == "triton" and mode == DENSE and train and known_binary(x)  # spikes: keep their bits, no sync
    if mode == DENSE and not known and (be == "triton" or not train):
        return F.linear(x if x.dtype == weight.dtype else x.to(weight.dtype), weight, bias)
    return _run(op, LINEAR, be, x2, weight, bias, mode, known=known).reshape(*lead, N)


def _conv_args(op: str, x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, event_driven):
    s = _validate.pair(op, "stride", stride, minimum=1)
    d = _validate.pair(op, "dilation", dilation, minimum=1)
    if isinstance(padding, str):
        if event_driven is True:
            raise ValueError(f"{op}: event_driven=True does not support padding={padding!r}; give the padding as "
                             "ints, or use event_driven=False or 'auto'.")
        return s, padding, d
    p = _validate.pair(op, "padding", padding, minimum=0)
    KH, KW = weight.shape[2:]
    if KH == 0 or KW == 0:
        raise ValueError(f"{op}: the kernel must be at least 1x1, but weight has shape {tuple(weight.shape)}.")
    H, W = x.shape[2:]
    span = (d[0] * (KH - 1) + 1, d[1] * (KW - 1) + 1)
    if span[0] > H + 2 * p[0] or span[1] > W + 2 * p[1]:
        raise ValueError(f"{op}: the kernel ({KH}x{KW}, dilation {d}, so {span[0]}x{span[1]}) is larger than the "
                         f"padded input ({H + 2 * p[0]}x{W + 2 * p[1]}: input {H}x{W}, padding {p}).")
    return s, p, d


def synapse_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride=1,
                   padding=0, dilation=1, groups: int = 1, event_driven: Union[str, bool] = "auto",
                   backend: Optional[str] = "auto") -> torch.Tensor:
    """``F.conv2d`` for spike inputs x [B, Cin, H, W] (or [Cin, H, W]); see the module docstring."""
    op = "synapse_conv2d"
    mode = _mode(op, event_driven)
    _validate.tensor(op, "x", x)
    _validate.tensor(op, "weight", weight, ndim=(4,), layout="Cout, Cin/groups, KH, KW")
    _validate.optional_tensor(op, "bias", bias)
    _validate.floating(op, "weight", weight)
    groups = _validate.positive_int(op, "groups", groups)
    Cout = weight.shape[0]
    if Cout % groups:
        raise ValueError(f"{op}: groups must be a positive int dividing out_channels={Cout}, but got {groups!r}.")
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"{op}: x must be [B, Cin={weight.shape[1] * groups}, H, W], but got shape "
                         f"{tuple(x.shape if not unbatched else x.shape[1:])}.")
    if bias is not None and tuple(bias.shape) != (Cout,):
        raise ValueError(f"{op}: bias must have shape ({Cout},), but got {tuple(bias.shape)}.")
    _validate.same_device(op, ("x", x), ("weight", weight), ("bias", bias))
    x, weight, bias = _autocast(x, weight, bias)
    if not x.is_floating_point():
        x = x.to(weight.dtype)
    s, p, d = _conv_args(op, x, weight, stride, padding, dilation, event_driven)
    be = _backend.resolve(backend, [x, weight], op)
    if be == "triton" and mode != EVENT_MODE:
        mode = DENSE  # as in synapse_linear
    train = torch.is_grad_enabled() and weight.requires_grad
    known = be == "triton" and mode == DENSE and train and known_binary(x)  # as in synapse_linear
    if isinstance(p, str) or x.numel() == 0 or weight.numel() == 0 or (
            mode == DENSE and not known and (be == "triton" or not train)):
        out = F.conv2d(x.to(weight.dtype), weight, bias, s, p, d, groups)
    else:
        out = _run(op, CONV2D, be, x, weight, bias, mode, list(s), list(p), list(d), groups, known=known)
    return out.squeeze(0) if unbatched else out
