"""The multi-step gated LIF neuron (GLIF, SpikingJelly's GatedLIFNode): validation, backend choice, the per-channel
coefficients, and the call into the op contract.

``multistep_gated_lif`` takes X [T, *], the initial potential (a tensor of shape [*] or a number), the gates and
coefficients after their sigmoid (0-d, or [C] per channel of a step [N, C, *]) and conduct [T] or [T, C], and
returns (spikes [T, *], V after the last step [*]). From the gates it computes, with differentiable torch ops on
the [C] vectors, the coefficients the kernels take -- L = 1 - alpha (1 - tau), K = (1 - alpha) linear_decay,
gamma, R = (1 - gamma) v_subreset, v_threshold, and inc[t] = 1 - beta (1 - conduct[t]) -- exactly as SpikingJelly
computes them, so autograd carries the kernels' per-channel gradients back to every gate. The kernels and the
autograd formula are in ``autograd.py`` (custom ops ``fastspike::gated_lif_cpp`` / ``fastspike::gated_lif_triton``),
the C++ launchers in ``cpu.py`` (csrc/gated_lif.cpp), the Triton kernels in kernels/gated_lif.py;
ops/reference/gated_lif.py is the oracle and the fallback.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch

from .. import _backend, _validate, reference
from ..bits.known import mark_binary
from .autograd import OPS

__all__ = ["multistep_gated_lif"]

_OP = "multistep_gated_lif"
_GATES = ("alpha", "beta", "gamma", "tau", "v_threshold", "linear_decay", "v_subreset")


def _check(x_seq, v_init, gates: dict, conduct) -> Tuple[int, int, int]:
    """Validates the arguments (metadata only) and returns the layout (NB, C, S) of a step."""
    _validate.tensor(_OP, "x_seq", x_seq)
    _validate.floating(_OP, "x_seq", x_seq)
    if x_seq.dim() < 1:
        raise ValueError(f"{_OP}: x_seq must have a leading time dimension [T, *], but got a 0-d tensor.")
    shape = None
    for name, g in (*gates.items(), ("conduct", conduct)):
        _validate.tensor(_OP, name, g)
        _validate.floating(_OP, name, g)
        _validate.same_device(_OP, ("x_seq", x_seq), (name, g))
    for name, g in gates.items():
        if g.dim() > 1:
            raise ValueError(f"{_OP}: {name} must be 0-d (one value for every neuron) or [C] (one per channel), but "
                             f"got shape {tuple(g.shape)}.")
        if shape is None:
            shape = g.shape
        elif g.shape != shape:
            raise ValueError(f"{_OP}: the gates must share one shape, but alpha has {tuple(shape)} and {name} has "
                             f"{tuple(g.shape)}.")
    T = x_seq.shape[0]
    if conduct.shape != (T, *shape):
        raise ValueError(f"{_OP}: conduct must have shape {(T, *shape)} (T, then the gates' shape), but got "
                         f"{tuple(conduct.shape)}.")
    if isinstance(v_init, torch.Tensor):
        if v_init.shape != x_seq.shape[1:]:
            raise ValueError(f"{_OP}: v_init must be a tensor of shape {tuple(x_seq.shape[1:])} (x_seq without T), "
                             f"but got {tuple(v_init.shape)}. If the batch size changed, call "
                             "functional.reset_net(net) between batches.")
        _validate.same_device(_OP, ("x_seq", x_seq), ("v_init", v_init))
    elif isinstance(v_init, bool) or not isinstance(v_init, (int, float)) or not math.isfinite(v_init):
        raise ValueError(f"{_OP}: v_init must be a tensor of shape {tuple(x_seq.shape[1:])} or a finite number, "
                         f"but got {v_init!r}.")
    M = math.prod(x_seq.shape[1:])
    if len(shape) == 0:
        return 1, 1, M
    C = shape[0]
    if x_seq.dim() < 3 or x_seq.shape[2] != C:
        raise ValueError(f"{_OP}: per-channel gates of length {C} need x_seq of shape [T, N, {C}, *] (channels at "
                         f"dim 2), but got {tuple(x_seq.shape)}.")
    return x_seq.shape[1], C, M // max(x_seq.shape[1] * C, 1)


def multistep_gated_lif(
    x_seq: torch.Tensor,
    v_init: Union[torch.Tensor, float],
    alpha: torch.Tensor,
    beta: torch.Tensor,
    gamma: torch.Tensor,
    tau: torch.Tensor,
    v_threshold: torch.Tensor,
    linear_decay: torch.Tensor,
    v_subreset: torch.Tensor,
    conduct: torch.Tensor,
    surrogate_function=None,
    backend: Optional[str] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run GLIF over T steps (equations: ops/reference/gated_lif.py). The gates and coefficients are the values
    after the sigmoid, 0-d or [C] (C = x_seq.shape[2]); conduct [T] or [T, C]. v_init: the potential before the
    first step, a tensor of shape x_seq.shape[1:] (differentiable) or a number. Returns (spike_seq [T, *], v_last
    [*]), with gradients to x_seq, v_init and every gate. fp16/bf16 x_seq computes in fp32 and returns its dtype.
    ``backend``: 'auto' (default: triton for CUDA, cpp for CPU, the reference for float64), 'torch', 'triton' or
    'cpp'. A surrogate that the kernels do not fuse runs the reference (default surrogate: Sigmoid(alpha=4))."""
    gates = dict(zip(_GATES, (alpha, beta, gamma, tau, v_threshold, linear_decay, v_subreset)))
    nb, c, s = _check(x_seq, v_init, gates, conduct)
    if surrogate_function is None:
        spec = (0, (4.0, 0.0))
    else:
        kernel_spec = getattr(surrogate_function, "kernel_spec", None)
        spec = kernel_spec() if kernel_spec is not None else None
    name = _backend.resolve(backend, (x_seq,), _OP)
    if spec is None:
        name = _backend.unfused_surrogate(_OP, surrogate_function, backend, name)
    T = x_seq.shape[0]
    M = nb * c * s
    if name == "torch" or T == 0 or M == 0:
        return reference.multistep_gated_lif(x_seq, v_init, alpha, beta, gamma, tau, v_threshold, linear_decay,
                                             v_subreset, conduct, surrogate_function)
    f32 = torch.float32
    a, g = alpha.to(f32), gamma.to(f32)
    leak = 1 - a * (1 - tau.to(f32))
    coef = torch.stack([leak, (1 - a) * linear_decay.to(f32), g, (1 - g) * v_subreset.to(f32),
                        v_threshold.to(f32)]).reshape(5, c)
    inc = (1 - beta.to(f32) * (1 - conduct.to(f32))).reshape(T, c)
    x = x_seq.reshape(T, M)
    x = x if x.is_contiguous() else x.contiguous()
    v0, v0_value = (v_init.reshape(M), 0.0) if isinstance(v_init, torch.Tensor) else (None, float(v_init))
    need_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, v0, coef, inc))
    sg, (sg_a, sg_b) = spec
    spikes, v_last = OPS[name](x, v0, coef, inc, v0_value, nb, c, s, int(sg), float(sg_a), float(sg_b),
                               need_grad)[:2]
    mark_binary(spikes)  # Heaviside forward: a following synapse layer may keep them as bits without a check
    return spikes.view(x_seq.shape), v_last.view(x_seq.shape[1:])
