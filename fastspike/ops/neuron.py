"""Multi-step IF / LIF / ParametricLIF op: validation, backend dispatch and the autograd Function.

``multistep_neuron`` takes X [T, *] and V0 [*] and returns (spikes [T, *], V after the last step,
V after every step or None). The Triton kernels save only H for the backward and recompute S from it;
the C++ kernels save nothing new (X is kept) and recompute H per block of neurons in the backward;
ops/reference.py is the oracle and the fallback.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .. import _ext
from . import _backend, reference

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


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float32 and t.is_contiguous() else t.float().contiguous()


def _cpp_forward(x, v0, k, cfg: NeuronConfig, store_h: bool, store_v_seq: bool):
    # The C++ backward recomputes H from X block by block, so H is never stored (store_h is ignored).
    C = _ext.get()
    x32 = _f32(x)
    T, N = x32.shape
    spikes = torch.empty((T, N), dtype=torch.float32)
    v_seq = torch.empty((T, N), dtype=torch.float32) if store_v_seq else None
    v_last = torch.empty((N,), dtype=torch.float32)
    v0_32 = _f32(v0)
    decay = float(k) if cfg.mode_id == 2 else cfg.tau
    C.neuron_forward(x32.data_ptr(), v0_32.data_ptr(), spikes.data_ptr(), 0,
                     v_seq.data_ptr() if store_v_seq else 0, v_last.data_ptr(), T, N, cfg.mode_id, decay,
                     cfg.decay_input, cfg.v_threshold, cfg.v_reset_value, cfg.soft_reset, torch.get_num_threads())
    dt = x.dtype
    if dt == torch.float32:
        return spikes, None, v_seq, v_last
    return spikes.to(dt), None, (v_seq.to(dt) if store_v_seq else None), v_last.to(dt)


def _cpp_backward(gs, gv_seq, gv_last, h, x, v0, k, cfg: NeuronConfig):
    C = _ext.get()
    T, N = x.shape
    gs = _f32(gs)
    gv_seq = _f32(gv_seq) if gv_seq is not None else None
    gv_last = _f32(gv_last) if gv_last is not None else None
    plif = cfg.mode_id == 2
    x32 = _f32(x)
    v0_32 = _f32(v0)
    gx = torch.empty((T, N), dtype=torch.float32)
    gv0 = torch.empty((N,), dtype=torch.float32)
    nblocks = (N + C.NEURON_BLOCK - 1) // C.NEURON_BLOCK
    gk = torch.empty((nblocks,), dtype=torch.float64) if plif else None
    decay = float(k) if plif else cfg.tau
    a, b = cfg.surrogate_params
    C.neuron_backward(gs.data_ptr(), gv_seq.data_ptr() if gv_seq is not None else 0,
                      gv_last.data_ptr() if gv_last is not None else 0, x32.data_ptr(), v0_32.data_ptr(), gx.data_ptr(), gv0.data_ptr(),
                      gk.data_ptr() if plif else 0, T, N, cfg.mode_id, decay, cfg.decay_input, cfg.v_threshold,
                      cfg.v_reset_value, cfg.soft_reset, cfg.detach_reset, cfg.surrogate_id, a, b,
                      torch.get_num_threads())
    return gx, gv0, (gk.sum().float() if plif else None)


@functools.lru_cache(maxsize=512)
def _config(*args) -> NeuronConfig:
    return NeuronConfig(*args)  # one frozen instance per distinct configuration


def _launchers(backend: str):
    if backend == "cpp":
        return _cpp_forward, _cpp_backward
    from ..kernels import neuron as tk  # imported lazily: triton is optional on CPU machines
    return tk.neuron_forward, tk.neuron_backward


class _MultiStepNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, k, cfg: NeuronConfig, store_v_seq: bool):
        fwd, _ = _launchers(cfg.backend)
        needs_grad = any(ctx.needs_input_grad[:3])
        k_val = k.detach().float().reshape(1).contiguous() if k is not None else None
        spikes, h, v_seq, v_last = fwd(x, v0, k_val, cfg, needs_grad, store_v_seq)
        ctx.cfg = cfg
        ctx.set_materialize_grads(False)
        if needs_grad:
            # triton saves H; the C++ backward recomputes it from X (and PLIF's dH/dk needs X anyway)
            ctx.save_for_backward(h, x if (h is None or cfg.mode_id == 2) else None, v0, k_val)
        ctx.x_dtype, ctx.v0_dtype = x.dtype, v0.dtype
        if v_seq is None:
            return spikes, v_last
        return spikes, v_last, v_seq

    @staticmethod
    def backward(ctx, gs, gv_last, gv_seq=None):
        h, x, v0, k_val = ctx.saved_tensors
        cfg = ctx.cfg
        _, bwd = _launchers(cfg.backend)
        if gs is None:
            gs = torch.zeros(x.shape if h is None else h.shape, dtype=torch.float32, device=v0.device)
        # contiguity: gradients from autograd may be expanded/strided views
        gs = gs.contiguous()
        gv_seq = gv_seq.contiguous() if gv_seq is not None else None
        gv_last = gv_last.contiguous() if gv_last is not None else None
        gx, gv0, gk = bwd(gs, gv_seq, gv_last, h, x, v0, k_val, cfg)
        gk_out = gk.reshape(()) if (gk is not None and ctx.needs_input_grad[2]) else None
        gv0 = gv0.to(ctx.v0_dtype) if ctx.needs_input_grad[1] else None
        return gx.to(ctx.x_dtype), gv0, gk_out, None, None


def _surrogate_spec(surrogate_function) -> Optional[Tuple[int, Tuple[float, float]]]:
    if surrogate_function is None:
        return 0, (4.0, 0.0)
    fusable = getattr(surrogate_function, "fusable", None)
    if fusable is not None and fusable():
        return surrogate_function.kernel_id, surrogate_function.kernel_params()
    return None


def multistep_neuron(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
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

    Returns (spike_seq [T, *], v_last [*], v_seq [T, *] or None). ``backend``: 'auto' (default: triton
    for CUDA, cpp for CPU, the reference for float64), 'torch', 'triton' or 'cpp'. A surrogate that the
    kernels do not fuse (a custom class, spiking=False, tensor parameters) runs the reference.
    """
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"x_seq must be a torch.Tensor, but got {type(x_seq).__name__}.")
    if not x_seq.is_floating_point():
        raise TypeError(f"x_seq must be a floating-point tensor, but got dtype {x_seq.dtype}.")
    if x_seq.ndim < 1:
        raise ValueError("x_seq must have a leading time dimension [T, *], but got a 0-d tensor.")
    if not isinstance(v_init, torch.Tensor) or v_init.shape != x_seq.shape[1:]:
        got = tuple(v_init.shape) if isinstance(v_init, torch.Tensor) else type(v_init).__name__
        raise ValueError(f"v_init must be a tensor of shape {tuple(x_seq.shape[1:])} (x_seq without T), but got {got}. "
                         "If the batch size changed, call functional.reset_net(net) between batches.")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {tuple(_MODES)}, but got {mode!r}.")
    if mode == "lif" and not (isinstance(tau, (int, float)) and tau > 1.0):
        raise ValueError(f"tau must be a number > 1, but got {tau!r}.")
    if mode == "plif" and (not isinstance(w, torch.Tensor) or w.numel() != 1):
        raise ValueError("w must be a 1-element tensor (1/tau = sigmoid(w)) for mode='plif'.")
    if x_seq.device != v_init.device:
        raise ValueError(f"x_seq is on {x_seq.device} but v_init on {v_init.device}.")

    spec = _surrogate_spec(surrogate_function)
    name = _backend.resolve(backend, [x_seq], "multistep_neuron")
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
        from ..surrogate import Sigmoid
        return reference.neuron_multistep(x_seq, v_init, mode, tau, w, decay_input, v_threshold, v_reset,
                                          surrogate_function if surrogate_function is not None else Sigmoid(),
                                          detach_reset, store_v_seq)

    T = x_seq.shape[0]
    shape = x_seq.shape
    x2 = x_seq.reshape(T, -1)
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    v2 = v_init.reshape(-1).contiguous()
    cfg = _config(_MODES[mode], float(tau) if mode == "lif" else 1.0, bool(decay_input), float(v_threshold),
                  0.0 if v_reset is None else float(v_reset), v_reset is None, bool(detach_reset), spec[0],
                  spec[1], name)
    k = torch.sigmoid(w.reshape(())) if mode == "plif" else None
    out = _MultiStepNeuron.apply(x2, v2, k, cfg, store_v_seq)
    spikes, v_last = out[0].reshape(shape), out[1].reshape(shape[1:])
    v_seq = out[2].reshape(shape) if store_v_seq else None
    return spikes, v_last, v_seq
