"""Multi-step neurons with two state variables (Izhikevich, CUBA-LIF, CLIF): validation, backend choice, and the
call into the op contract.

``multistep_neuron2`` takes X [T, *], V0 and U0 (tensors of shape [*] or numbers: every neuron starts there) and
returns (spikes [T, *], V and U after the last step, V and U after every step or None). The kernels and the
autograd formula are in ``autograd.py`` (custom ops ``fastspike::neuron2_cpp`` / ``fastspike::neuron2_triton``),
the C++ launchers in ``cpu.py`` (csrc/neuron2.cpp), the Triton kernels in kernels/neuron2.py;
ops/reference/neuron2.py is the oracle and the fallback.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Tuple, Union

import torch

from .. import _backend, reference
from ..neuron import memory_order
from .autograd import OPS

__all__ = ["multistep_neuron2", "MODELS"]

MODELS = {"izhikevich": 0, "cuba": 1, "clif": 2}
_Out = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]


def _number(name: str, value, gt=None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, but got {value!r}.")
    if gt is not None and not value > gt:
        raise ValueError(f"{name} must be > {gt}, but got {value!r}.")
    return float(value)


@functools.lru_cache(maxsize=512)
def _config(model: str, v_threshold, v_reset, detach_reset, spec, params: tuple) -> tuple:
    """(mode, v_threshold, v_reset, soft_reset, detach_reset, sg, sg_a, sg_b, p0, ..., p6), validated. ``params``:
    (tau, a0, v_rest, v_c, tau_w, a, b, c_decay, v_decay)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {tuple(MODELS)}, but got {model!r}.")
    v_threshold = _number("v_threshold", v_threshold)
    if v_reset is not None:
        v_reset = _number("v_reset", v_reset)
    tau, a0, v_rest, v_c, tau_w, a, b, c_decay, v_decay = params
    if model == "izhikevich":
        p = (_number("tau", tau, gt=1.0), _number("a0", a0), _number("v_rest", v_rest), _number("v_c", v_c),
             _number("tau_w", tau_w, gt=0.0), _number("a", a), _number("b", b))
    elif model == "cuba":
        p = (_number("c_decay", c_decay), _number("v_decay", v_decay), 0.0, 0.0, 0.0, 0.0, 0.0)
    else:
        if v_reset is not None or detach_reset:
            raise ValueError("model='clif' has its own soft reset: v_reset must be None and detach_reset False, but "
                             f"got v_reset={v_reset!r}, detach_reset={detach_reset!r}.")
        p = (_number("tau", tau, gt=1.0), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    sg, (sg_a, sg_b) = spec
    return (MODELS[model], v_threshold, 0.0 if v_reset is None else v_reset, v_reset is None, bool(detach_reset),
            int(sg), float(sg_a), float(sg_b), *p)


def _initial(name: str, value, x_seq: torch.Tensor):
    """(tensor or None, number) for an initial state."""
    if isinstance(value, torch.Tensor):
        if value.shape != x_seq.shape[1:]:
            raise ValueError(f"{name} must be a tensor of shape {tuple(x_seq.shape[1:])} (x_seq without T), but got "
                             f"{tuple(value.shape)}. If the batch size changed, call functional.reset_net(net) "
                             "between batches.")
        if value.device != x_seq.device:
            raise ValueError(f"x_seq is on {x_seq.device} but {name} on {value.device}.")
        return value, 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return None, float(value)
    raise ValueError(f"{name} must be a tensor of shape {tuple(x_seq.shape[1:])} (x_seq without T) or a finite "
                     f"number, but got {value!r}.")


def multistep_neuron2(
    x_seq: torch.Tensor,
    v_init: Union[torch.Tensor, float],
    u_init: Union[torch.Tensor, float],
    *,
    model: str = "izhikevich",
    v_threshold: float = 1.0,
    v_reset: Optional[float] = 0.0,
    surrogate_function=None,
    detach_reset: bool = False,
    store_seq: bool = False,
    backend: Optional[str] = None,
    tau: float = 2.0,
    a0: float = 1.0,
    v_rest: float = 0.0,
    v_c: float = 0.8,
    tau_w: float = 2.0,
    a: float = 0.0,
    b: float = 0.0,
    c_decay: float = 0.5,
    v_decay: float = 0.75,
) -> _Out:
    """Run a neuron with two state variables, V and U, over T steps (equations: ops/reference/neuron2.py):

    * model='izhikevich' (U = the adaptation current w; tau, a0, v_rest, v_c, tau_w, a, b),
    * model='cuba' (current-based LIF, U = the current c; c_decay, v_decay),
    * model='clif' (complementary LIF, U = m; tau; v_reset must be None: its reset is its own).

    v_init / u_init: the states before the first step, tensors of shape x_seq.shape[1:] (differentiable) or
    numbers. Returns (spike_seq [T, *], v_last [*], u_last [*], v_seq [T, *] or None, u_seq [T, *] or None); the
    sequences hold the states after every step when ``store_seq``. ``backend``: 'auto' (default: triton for CUDA,
    cpp for CPU, the reference for float64), 'torch', 'triton' or 'cpp'. A surrogate that the kernels do not fuse
    runs the reference.
    """
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"x_seq must be a torch.Tensor, but got {type(x_seq).__name__}.")
    if not x_seq.is_floating_point():
        raise TypeError(f"x_seq must be a floating-point tensor, but got dtype {x_seq.dtype}.")
    if x_seq.ndim < 1:
        raise ValueError("x_seq must have a leading time dimension [T, *], but got a 0-d tensor.")
    v0, v0_value = _initial("v_init", v_init, x_seq)
    u0, u0_value = _initial("u_init", u_init, x_seq)
    if surrogate_function is None:
        spec = (0, (4.0, 0.0))  # Sigmoid(alpha=4), SpikingJelly's default
    else:
        kernel_spec = getattr(surrogate_function, "kernel_spec", None)
        spec = kernel_spec() if kernel_spec is not None else None
    name = _backend.resolve(backend, (x_seq,), "multistep_neuron2")
    if spec is None:
        name = _backend.unfused_surrogate("multistep_neuron2", surrogate_function, backend, name)
    config = _config.__wrapped__ if torch.compiler.is_compiling() else _config
    cfg = config(model, v_threshold, v_reset, detach_reset, spec or (0, (0.0, 0.0)),
                 (tau, a0, v_rest, v_c, tau_w, a, b, c_decay, v_decay))
    perm = memory_order(x_seq)
    if perm is not None:  # run on the contiguous view in memory order; permute the results back (views, no copy)
        x_seq = x_seq.permute(perm)
        step_perm = [d - 1 for d in perm[1:]]
        v0 = v0.permute(step_perm) if v0 is not None else None
        u0 = u0.permute(step_perm) if u0 is not None else None
    if name == "torch" or x_seq.numel() == 0:
        def full(t, value):
            return t if t is not None else torch.full(x_seq.shape[1:], value, dtype=x_seq.dtype, device=x_seq.device)
        out = reference.multistep_neuron2(
            x_seq, full(v0, v0_value), full(u0, u0_value), model, v_threshold, v_reset, surrogate_function,
            detach_reset, store_seq, tau=tau, a0=a0, v_rest=v_rest, v_c=v_c, tau_w=tau_w, a=a, b=b, c_decay=c_decay,
            v_decay=v_decay)
    else:
        if not x_seq.is_contiguous():
            x_seq = x_seq.contiguous()
        need_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x_seq, v0, u0))
        out = OPS[name](x_seq, v0, u0, v0_value, u0_value, *cfg, bool(store_seq), need_grad)[:5]
        if not store_seq:
            out = (*out[:3], None, None)
    if perm is not None:
        inverse = [perm.index(d) for d in range(len(perm))]
        step_inv = [d - 1 for d in inverse[1:]]
        out = (out[0].permute(inverse), out[1].permute(step_inv), out[2].permute(step_inv),
               out[3].permute(inverse) if out[3] is not None else None,
               out[4].permute(inverse) if out[4] is not None else None)
    return out
