"""Multi-step IF / LIF / ParametricLIF op: validation, backend dispatch and the autograd Function.

``multistep_neuron`` takes X [T, *] and V0 [*] (or a number: every neuron starts there) and returns
(spikes [T, *], V after the last step, V after every step or None). The Triton kernels save only H for
the backward and recompute S from it; the C++ kernels save nothing new (X is kept) and recompute H per
block of neurons in the backward; ops/reference.py is the oracle and the fallback.

This op runs once per neuron layer per call, so its Python overhead is part of every small network's
step time: the configuration is validated once per distinct value (``_config`` is cached), the C++
launchers take [T, *] buffers as they come (no reshapes), and a constant V0 never becomes a tensor.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from .. import _ext
from . import _alloc, _backend, reference

__all__ = ["multistep_neuron", "NeuronConfig"]

_MODES = {"if": 0, "lif": 1, "plif": 2}
_warned_custom_surrogate = set()


@dataclass(frozen=True)
class NeuronConfig:
    """Everything a kernel needs besides tensors (hashable, so it can sit on the autograd ctx)."""
    mode_id: int
    tau: float
    decay_input: bool
    v_threshold: float
    v_reset_value: float  # 0.0 with soft reset
    soft_reset: bool
    detach_reset: bool
    surrogate_id: int
    surrogate_params: Tuple[float, float]
    backend: str


def _cpp_forward(x, v0, v0_value, k, cfg: NeuronConfig, store_v_seq: bool):
    """x [T, *] contiguous float32, v0 [*] float32 or None (constant v0_value). H is never stored: the C++
    backward recomputes it from X block by block."""
    C = _ext.get()
    T = x.shape[0]
    N = x.numel() // T if T else 0
    spikes = _alloc.empty_like(x)
    v_seq = _alloc.empty_like(x) if store_v_seq else None
    v_last = torch.empty(x.shape[1:])
    decay = k if cfg.mode_id == 2 else cfg.tau
    C.neuron_forward(x.data_ptr(), 0 if v0 is None else v0.data_ptr(), v0_value, spikes.data_ptr(), 0,
                     v_seq.data_ptr() if store_v_seq else 0, v_last.data_ptr(), T, N, cfg.mode_id, decay,
                     cfg.decay_input, cfg.v_threshold, cfg.v_reset_value, cfg.soft_reset, torch.get_num_threads())
    return spikes, None, v_seq, v_last


def _cpp_backward(gs, gv_seq, gv_last, x, v0, v0_value, k, cfg: NeuronConfig, need_gv0: bool):
    """Every tensor contiguous float32 in x's layout; returns (grad_x, grad_v0 or None, grad_k or None)."""
    C = _ext.get()
    T = x.shape[0]
    N = x.numel() // T if T else 0
    plif = cfg.mode_id == 2
    gx = _alloc.empty_like(x)
    gv0 = torch.empty(x.shape[1:]) if need_gv0 else None
    gk = torch.empty((max(1, -(-N // C.NEURON_BLOCK)),), dtype=torch.float64) if plif else None
    a, b = cfg.surrogate_params
    C.neuron_backward(gs.data_ptr(), gv_seq.data_ptr() if gv_seq is not None else 0,
                      gv_last.data_ptr() if gv_last is not None else 0, x.data_ptr(),
                      0 if v0 is None else v0.data_ptr(), v0_value, gx.data_ptr(),
                      gv0.data_ptr() if need_gv0 else 0, gk.data_ptr() if plif else 0, T, N, cfg.mode_id,
                      k if plif else cfg.tau, cfg.decay_input, cfg.v_threshold, cfg.v_reset_value, cfg.soft_reset,
                      cfg.detach_reset, cfg.surrogate_id, a, b, torch.get_num_threads())
    return gx, gv0, (gk.sum().float() if plif else None)


@functools.lru_cache(maxsize=512)
def _config(mode: str, tau, decay_input, v_threshold, v_reset, detach_reset, spec, backend: str) -> NeuronConfig:
    """Validate one configuration and freeze it (cached: a network repeats the same few every call)."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {tuple(_MODES)}, but got {mode!r}.")
    if mode == "lif" and not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and tau > 1.0):
        raise ValueError(f"tau must be a number > 1, but got {tau!r}.")
    return NeuronConfig(_MODES[mode], float(tau) if mode == "lif" else 1.0, bool(decay_input), float(v_threshold),
                        0.0 if v_reset is None else float(v_reset), v_reset is None, bool(detach_reset), spec[0],
                        spec[1], backend)


def _f32(t: torch.Tensor) -> torch.Tensor:
    if t.dtype is not torch.float32:
        t = t.float()
    return t if t.is_contiguous() else t.contiguous()


class _MultiStepNeuron(torch.autograd.Function):
    """x [T, *]; v0 [*] or None with the constant v0_value; k: ParametricLIF's decay sigmoid(w) (0-d) or None."""

    @staticmethod
    def forward(ctx, x, v0, k, cfg: NeuronConfig, store_v_seq: bool, v0_value: float):
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        ctx.set_materialize_grads(False)
        ctx.cfg, ctx.v0_value = cfg, v0_value
        ctx.x_dtype, ctx.x_shape = x.dtype, x.shape
        if cfg.backend == "cpp":
            x32 = _f32(x)
            v32 = None if v0 is None else _f32(v0)
            k_val = float(k) if k is not None else None
            spikes, _, v_seq, v_last = _cpp_forward(x32, v32, v0_value, k_val, cfg, store_v_seq)
            if needs_grad:
                ctx.save_for_backward(x, v0)
                ctx.k_val = k_val
            if x.dtype is not torch.float32:
                spikes, v_last = spikes.to(x.dtype), v_last.to(x.dtype)
                v_seq = v_seq.to(x.dtype) if v_seq is not None else None
        else:  # triton: [T, N] launchers, a V0 tensor, k as a device tensor (no host sync)
            from ..kernels import neuron as tk  # imported lazily: triton is optional on CPU machines
            T = x.shape[0]
            x2 = x.reshape(T, -1)
            v2 = (torch.full((x2.shape[1],), v0_value, dtype=x.dtype, device=x.device) if v0 is None
                  else v0.reshape(-1))
            k_val = k.detach().float().reshape(1).contiguous() if k is not None else None
            spikes, h, v_seq, v_last = tk.neuron_forward(x2, v2, k_val, cfg, needs_grad, store_v_seq)
            if needs_grad:
                # PLIF's dH/dk needs X as well as H
                ctx.save_for_backward(h, x2 if cfg.mode_id == 2 else None, v2)
                ctx.k_val = k_val
            shape = x.shape
            spikes, v_last = spikes.view(shape), v_last.view(shape[1:])
            v_seq = v_seq.view(shape) if v_seq is not None else None
        if v_seq is None:
            return spikes, v_last
        return spikes, v_last, v_seq

    @staticmethod
    def backward(ctx, gs, gv_last, gv_seq=None):
        cfg = ctx.cfg
        need_gv0 = ctx.needs_input_grad[1]
        if cfg.backend == "cpp":
            x, v0 = ctx.saved_tensors
            # gradients from autograd may be expanded/strided views or another dtype
            gs = _f32(gs) if gs is not None else torch.zeros(x.shape)
            gv_seq = _f32(gv_seq) if gv_seq is not None else None
            gv_last = _f32(gv_last) if gv_last is not None else None
            gx, gv0, gk = _cpp_backward(gs, gv_seq, gv_last, _f32(x), None if v0 is None else _f32(v0),
                                        ctx.v0_value, ctx.k_val, cfg, need_gv0)
        else:
            from ..kernels import neuron as tk
            h, x2, v2 = ctx.saved_tensors
            flat = lambda g: None if g is None else g.reshape(h.shape).contiguous()  # noqa: E731
            gs2 = flat(gs) if gs is not None else torch.zeros(h.shape, dtype=torch.float32, device=h.device)
            gv_last2 = None if gv_last is None else gv_last.reshape(-1).contiguous()
            gx, gv0, gk = tk.neuron_backward(gs2, flat(gv_seq), gv_last2, h, x2, v2, ctx.k_val, cfg)
            gx, gv0 = gx.view(ctx.x_shape), gv0.view(ctx.x_shape[1:])
        if ctx.x_dtype is not torch.float32:
            gx = gx.to(ctx.x_dtype)
        gv0 = gv0.to(ctx.x_dtype) if need_gv0 and gv0 is not None else None
        gk_out = gk.reshape(()) if (gk is not None and ctx.needs_input_grad[2]) else None
        return gx, gv0, gk_out, None, None, None


def multistep_neuron(
    x_seq: torch.Tensor,
    v_init: Union[torch.Tensor, float],
    *,
    mode: str = "lif",
    tau: float = 2.0,
    w: Optional[torch.Tensor] = None,
    decay_input: bool = True,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = 0.0,
    surrogate_function=None,
    detach_reset: bool = False,
    store_v_seq: bool = False,
    backend: Optional[str] = None,
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Run an IF ('if'), LIF ('lif') or ParametricLIF ('plif', decay sigmoid(w)) neuron over T steps.

    v_init: the membrane potential before the first step, a tensor of shape x_seq.shape[1:] or a number
    (the same start for every neuron; it gets no gradient). Returns (spike_seq [T, *], v_last [*],
    v_seq [T, *] or None). ``backend``: 'auto' (default: triton for CUDA, cpp for CPU, the reference for
    float64), 'torch', 'triton' or 'cpp'. A surrogate that the kernels do not fuse (a custom class,
    spiking=False, tensor parameters) runs the reference.
    """
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"x_seq must be a torch.Tensor, but got {type(x_seq).__name__}.")
    if not x_seq.is_floating_point():
        raise TypeError(f"x_seq must be a floating-point tensor, but got dtype {x_seq.dtype}.")
    if x_seq.ndim < 1:
        raise ValueError("x_seq must have a leading time dimension [T, *], but got a 0-d tensor.")
    if isinstance(v_init, torch.Tensor):
        if v_init.shape != x_seq.shape[1:]:
            raise ValueError(f"v_init must be a tensor of shape {tuple(x_seq.shape[1:])} (x_seq without T), but got "
                             f"{tuple(v_init.shape)}. If the batch size changed, call functional.reset_net(net) "
                             "between batches.")
        if x_seq.device != v_init.device:
            raise ValueError(f"x_seq is on {x_seq.device} but v_init on {v_init.device}.")
        v0, v0_value = v_init, 0.0
    elif isinstance(v_init, (int, float)) and not isinstance(v_init, bool):
        v0, v0_value = None, float(v_init)
    else:
        raise ValueError(f"v_init must be a tensor of shape {tuple(x_seq.shape[1:])} (x_seq without T) or a number, "
                         f"but got {type(v_init).__name__}.")
    if mode == "plif" and (not isinstance(w, torch.Tensor) or w.numel() != 1):
        raise ValueError("w must be a 1-element tensor (1/tau = sigmoid(w)) for mode='plif'.")

    if surrogate_function is None:
        spec = (0, (4.0, 0.0))  # Sigmoid(alpha=4), SpikingJelly's default
    else:
        kernel_spec = getattr(surrogate_function, "kernel_spec", None)
        spec = kernel_spec() if kernel_spec is not None else None
    name = _backend.resolve(backend, (x_seq,), "multistep_neuron")
    if spec is None and name != "torch":
        if backend not in (None, "auto"):
            raise ValueError(f"multistep_neuron: backend={backend!r} fuses only the built-in surrogates with "
                             f"spiking=True and float parameters; {surrogate_function!r} needs backend='torch' or 'auto'.")
        key = type(surrogate_function).__name__
        if key not in _warned_custom_surrogate:
            _warned_custom_surrogate.add(key)
            warnings.warn(f"{key} is not fused into fastspike's kernels (custom class, spiking=False or tensor "
                          "parameters); using the slower pure-PyTorch path.", RuntimeWarning, stacklevel=3)
        name = "torch"
    if name == "torch":
        _config(mode, tau, decay_input, v_threshold, v_reset, detach_reset, (0, (0.0, 0.0)), name)  # validation
        from ..surrogate import Sigmoid
        if v0 is None:
            v0 = torch.full(x_seq.shape[1:], v0_value, dtype=x_seq.dtype, device=x_seq.device)
        return reference.neuron_multistep(x_seq, v0, mode, tau, w, decay_input, v_threshold, v_reset,
                                          surrogate_function if surrogate_function is not None else Sigmoid(),
                                          detach_reset, store_v_seq)

    cfg = _config(mode, tau, decay_input, v_threshold, v_reset, detach_reset, spec, name)
    if not x_seq.is_contiguous():
        x_seq = x_seq.contiguous()
    if v0 is not None and not v0.is_contiguous():
        v0 = v0.contiguous()
    k = torch.sigmoid(w.reshape(())) if cfg.mode_id == 2 else None
    out = _MultiStepNeuron.apply(x_seq, v0, k, cfg, store_v_seq, v0_value)
    return out[0], out[1], (out[2] if store_v_seq else None)
