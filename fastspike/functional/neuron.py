"""Neuron dynamics as functions of explicit state (SpikingJelly 2.0.0's ``functional.neuron``).

* IF, LIF and ParametricLIF run on fastspike's fused kernel ``fastspike.ops.multistep_neuron`` (C++ on the
  CPU, Triton on the GPU, the PyTorch reference for float64 or a surrogate the kernels do not fuse):
  ``if_multi_step``, ``lif_multi_step``, ``plif_multi_step`` are the op over T steps and ``if_step``,
  ``lif_step``, ``plif_step`` its T = 1 case.
* QIF and EIF run on the same op (modes 'qif' and 'eif') when their parameters are numbers.
* Izhikevich runs on the two-state op ``fastspike.ops.multistep_neuron2`` (model 'izhikevich') when its
  parameters are numbers in the op's domain and the surrogate is one the kernels fuse; ST-BIF on
  ``fastspike.ops.stbif`` (forward only) when its thresholds are one-element tensors and the states are shaped
  like one step.
* Otherwise, and for the other models (I-LIF, activation-aware IF), the multi-step functions loop the one-step
  functions of ``_neuron_models.py`` (re-exported here with every other one-step model) over time.

Every multi-step function returns ``(spike_seq [T, *], v after the last step, v_seq [T, *] or None)``
(Izhikevich also returns its recovery variable), as SpikingJelly's do.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from .. import _ext
from ..ops import multistep_neuron, multistep_neuron2, stbif
from ..surrogate import MultiLevelSpikeCount, Sigmoid
from ._neuron_models import (activation_aware_if_step, clif_step, cuba_lif_step, eif_step, gated_lif_step, ilif_step,
                             izhikevich_step, klif_step, lava_cuba_lif_step, liaf_step, lif_charge, masked_psn_step,
                             qif_step, raf_step, sliding_psn_step, stbif_step, ternary_if_step, ternary_lif_step,
                             voltage_reset)

__all__ = ["lif_multi_step", "if_multi_step", "plif_multi_step", "qif_multi_step", "eif_multi_step",
           "izhikevich_multi_step", "ilif_multi_step", "activation_aware_if_multi_step", "stbif_multi_step",
           "neuron_implementation", "lava_cuba_lif_step", "if_step", "ternary_if_step", "ternary_lif_step", "qif_step",
           "eif_step", "lif_charge", "lif_step", "liaf_step", "ilif_step", "plif_step", "izhikevich_step", "raf_step",
           "klif_step", "cuba_lif_step", "clif_step", "sliding_psn_step", "masked_psn_step", "gated_lif_step",
           "stbif_step", "activation_aware_if_step", "voltage_reset"]

_NEURON_TYPES = ("if", "lif", "plif", "qif", "eif", "izhikevich", "ilif", "activation_aware_if", "stbif", "clif")
_FUSED = ("if", "lif", "plif", "izhikevich", "stbif")


def neuron_implementation(neuron_type: str, device: torch.device, *, execution: str = "eager") -> dict:
    """Which implementation runs ``neuron_type`` on ``device``: ``{'implementation': name, 'unavailable':
    {name: reason}}``. IF/LIF/PLIF, Izhikevich and ST-BIF run the fused kernels ('cpp' on the CPU, 'triton' on
    CUDA; Izhikevich and ST-BIF when their arguments are ones the kernels take); the other models run
    'torch-reference' (a loop of one-step functions) everywhere."""
    if neuron_type not in _NEURON_TYPES:
        raise ValueError(f"neuron_implementation: neuron_type must be one of {_NEURON_TYPES}, but got {neuron_type!r}.")
    if execution not in ("eager", "compile"):
        raise ValueError(f"neuron_implementation: execution must be 'eager' or 'compile', but got {execution!r}.")
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"neuron_implementation: device must be a CPU or CUDA device, but got {device}.")
    if neuron_type not in _FUSED:
        return {"implementation": "torch-reference", "unavailable": {"cpp": "no fused kernel for this model",
                                                                    "triton": "no fused kernel for this model"}}
    if device.type == "cuda":
        return {"implementation": "triton", "unavailable": {}}
    if _ext.available():
        return {"implementation": "cpp", "unavailable": {"triton": "Triton kernels run on CUDA tensors"}}
    return {"implementation": "torch-reference",
            "unavailable": {"cpp": "the C++ extension fastspike._C is not built (pip install -e .)"}}


def _check_precision(fn: str, neuron_storage, neuron_fwd, neuron_bwd) -> None:
    """fastspike computes in fp32 and stores spikes and state in the input's dtype; SpikingJelly's explicit
    storage/compute precisions (a CUDA Triton feature there) are not offered."""
    if neuron_storage is not None or neuron_fwd != "fp32" or neuron_bwd != "fp32":
        raise ValueError(f"{fn}: neuron_storage, neuron_fwd and neuron_bwd must keep their defaults (None, 'fp32', "
                         f"'fp32'): fastspike computes neurons in fp32 and stores them in x_seq's dtype; got "
                         f"neuron_storage={neuron_storage!r}, neuron_fwd={neuron_fwd!r}, neuron_bwd={neuron_bwd!r}.")


def _check_seq(fn: str, x_seq, v) -> None:
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"{fn}: x_seq must be a torch.Tensor [T, *], but got {type(x_seq).__name__}.")
    if x_seq.dim() < 1 or x_seq.shape[0] == 0:
        raise ValueError(f"{fn}: x_seq must have shape [T, *] with T >= 1, but got {tuple(x_seq.shape)}.")
    if isinstance(v, torch.Tensor) and v.shape != x_seq.shape[1:]:
        raise ValueError(f"{fn}: v must have shape {tuple(x_seq.shape[1:])} (x_seq without T), but got "
                         f"{tuple(v.shape)}; call functional.reset_net(net) when the batch size changes.")


def lif_multi_step(x_seq: torch.Tensor, v: torch.Tensor, tau: float = 2.0, decay_input: bool = True,
                   v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, surrogate_function=None,
                   detach_reset: bool = False, store_v_seq: bool = False, *, neuron_storage=None,
                   neuron_fwd: str = "fp32", neuron_bwd: str = "fp32"):
    """LIF neurons over x_seq [T, *] from state v [*] (a tensor, or a number for every neuron) on the fused
    kernel. Returns (spike_seq, v_last, v_seq or None)."""
    _check_precision("lif_multi_step", neuron_storage, neuron_fwd, neuron_bwd)
    _check_seq("lif_multi_step", x_seq, v)
    return multistep_neuron(x_seq, v, mode="lif", tau=tau, decay_input=decay_input, v_threshold=v_threshold,
                            v_reset=v_reset, surrogate_function=surrogate_function, detach_reset=detach_reset,
                            store_v_seq=store_v_seq)


def if_multi_step(x_seq: torch.Tensor, v: torch.Tensor, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                  surrogate_function=None, detach_reset: bool = False, store_v_seq: bool = False, *,
                  neuron_storage=None, neuron_fwd: str = "fp32", neuron_bwd: str = "fp32"):
    """IF neurons over x_seq [T, *] on the fused kernel. Returns (spike_seq, v_last, v_seq or None)."""
    _check_precision("if_multi_step", neuron_storage, neuron_fwd, neuron_bwd)
    _check_seq("if_multi_step", x_seq, v)
    return multistep_neuron(x_seq, v, mode="if", v_threshold=v_threshold, v_reset=v_reset,
                            surrogate_function=surrogate_function, detach_reset=detach_reset, store_v_seq=store_v_seq)


def plif_multi_step(x_seq: torch.Tensor, v: torch.Tensor, w: torch.Tensor, decay_input: bool = True,
                    v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, surrogate_function=None,
                    detach_reset: bool = False, store_v_seq: bool = False, *, neuron_storage=None,
                    neuron_fwd: str = "fp32", neuron_bwd: str = "fp32"):
    """ParametricLIF neurons (1/tau = sigmoid(w), w a 1-element tensor that gets a gradient) over x_seq [T, *]
    on the fused kernel. Returns (spike_seq, v_last, v_seq or None)."""
    _check_precision("plif_multi_step", neuron_storage, neuron_fwd, neuron_bwd)
    _check_seq("plif_multi_step", x_seq, v)
    if not isinstance(w, torch.Tensor) or w.numel() != 1:
        raise ValueError(f"plif_multi_step: w must be a 1-element tensor (1/tau = sigmoid(w)), but got "
                         f"{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__}.")
    return multistep_neuron(x_seq, v, mode="plif", w=w, decay_input=decay_input, v_threshold=v_threshold,
                            v_reset=v_reset, surrogate_function=surrogate_function, detach_reset=detach_reset,
                            store_v_seq=store_v_seq)


def _one_step(multi, x, v, *args):
    """Run a multi-step function for the single step x [*] (0-d allowed): (spike [*], v')."""
    spikes, v_next, _ = multi(x.unsqueeze(0), v, *args)
    return spikes[0], v_next


def if_step(x, v, v_threshold, v_reset, surrogate_function, detach_reset=False) -> Tuple[torch.Tensor, torch.Tensor]:
    """One IF step (the fused kernel with T = 1): (spike, v')."""
    return _one_step(if_multi_step, x, v, v_threshold, v_reset, surrogate_function, detach_reset)


def lif_step(x, v, tau, decay_input, v_threshold, v_reset, surrogate_function,
             detach_reset=False) -> Tuple[torch.Tensor, torch.Tensor]:
    """One LIF step (the fused kernel with T = 1): (spike, v')."""
    return _one_step(lif_multi_step, x, v, tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset)


def plif_step(x, v, w, decay_input, v_threshold, v_reset, surrogate_function,
              detach_reset=False) -> Tuple[torch.Tensor, torch.Tensor]:
    """One ParametricLIF step (the fused kernel with T = 1): (spike, v')."""
    return _one_step(plif_multi_step, x, v, w, decay_input, v_threshold, v_reset, surrogate_function, detach_reset)


def _numbers(*values) -> bool:
    """Whether every parameter is a plain number (or None): the fused op takes those; tensors keep the loop."""
    return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)


def _loop(step, x_seq, v, store_v_seq):
    """Apply ``step(x, v) -> (spike, v')`` over the T steps; (spike_seq, v_last, v_seq or None)."""
    spikes, vs = [], []
    for x in x_seq.unbind(0):
        s, v = step(x, v)
        spikes.append(s)
        if store_v_seq:
            vs.append(v)
    return torch.stack(spikes), v, (torch.stack(vs) if store_v_seq else None)


def qif_multi_step(x_seq: torch.Tensor, v: torch.Tensor, tau: float = 2.0, v_threshold: float = 1.0,
                   v_reset: Optional[float] = 0.0, v_rest: float = 0.0, v_c: float = 0.8, a0: float = 1.0,
                   detach_reset: bool = False, surrogate_function=None, store_v_seq: bool = False):
    """Quadratic IF neurons over x_seq [T, *] (see :func:`qif_step`)."""
    _check_seq("qif_multi_step", x_seq, v)
    sg = Sigmoid() if surrogate_function is None else surrogate_function
    if _numbers(tau, v_threshold, v_reset, v_rest, v_c, a0) and tau > 1 and a0 > 0:  # the op's domain
        return multistep_neuron(x_seq, v, mode="qif", tau=tau, v_threshold=v_threshold, v_reset=v_reset,
                                surrogate_function=sg, detach_reset=detach_reset, store_v_seq=store_v_seq, a0=a0,
                                v_c=v_c, v_rest=v_rest)
    return _loop(lambda x, u: qif_step(x, u, tau, a0, v_rest, v_c, v_threshold, v_reset, sg, detach_reset),
                 x_seq, v, store_v_seq)


def eif_multi_step(x_seq: torch.Tensor, v: torch.Tensor, tau: float = 2.0, v_threshold: float = 1.0,
                   v_reset: Optional[float] = 0.0, v_rest: float = 0.0, theta_rh: float = 1.0, delta_t: float = 1.0,
                   detach_reset: bool = False, surrogate_function=None, store_v_seq: bool = False):
    """Exponential IF neurons over x_seq [T, *] (see :func:`eif_step`)."""
    _check_seq("eif_multi_step", x_seq, v)
    sg = Sigmoid() if surrogate_function is None else surrogate_function
    if _numbers(tau, v_threshold, v_reset, v_rest, theta_rh, delta_t) and tau > 1 and delta_t > 0:
        return multistep_neuron(x_seq, v, mode="eif", tau=tau, v_threshold=v_threshold, v_reset=v_reset,
                                surrogate_function=sg, detach_reset=detach_reset, store_v_seq=store_v_seq,
                                delta_T=delta_t, theta_rh=theta_rh, v_rest=v_rest)
    return _loop(lambda x, u: eif_step(x, u, tau, delta_t, theta_rh, v_rest, v_threshold, v_reset, sg, detach_reset),
                 x_seq, v, store_v_seq)


def izhikevich_multi_step(x_seq: torch.Tensor, v: torch.Tensor, w: torch.Tensor, tau: float = 2.0,
                          v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, v_rest: float = 0.0,
                          a: float = 0.1, b: float = 0.2, tau_w: float = 2.0, v_c: float = 0.8, a0: float = 1.0,
                          detach_reset: bool = False, surrogate_function=None, store_state_seq: bool = False):
    """Izhikevich neurons over x_seq [T, *] (see :func:`izhikevich_step`).

    :return: (spike_seq, v_last, w_last, v_seq or None, w_seq or None)
    """
    _check_seq("izhikevich_multi_step", x_seq, v)
    sg = Sigmoid() if surrogate_function is None else surrogate_function
    if _izhikevich_fusable(x_seq, w, sg, tau, v_threshold, v_reset, v_rest, a, b, tau_w, v_c, a0):
        return multistep_neuron2(x_seq, v, w, model="izhikevich", v_threshold=v_threshold, v_reset=v_reset,
                                 surrogate_function=sg, detach_reset=detach_reset, store_seq=store_state_seq,
                                 tau=tau, a0=a0, v_rest=v_rest, v_c=v_c, tau_w=tau_w, a=a, b=b)
    spikes, vs, ws = [], [], []
    for x in x_seq.unbind(0):
        s, v, w = izhikevich_step(x, v, w, tau, a0, v_rest, v_c, tau_w, a, b, v_threshold, v_reset, sg, detach_reset)
        spikes.append(s)
        if store_state_seq:
            vs.append(v)
            ws.append(w)
    if store_state_seq:
        return torch.stack(spikes), v, w, torch.stack(vs), torch.stack(ws)
    return torch.stack(spikes), v, w, None, None


def _izhikevich_fusable(x_seq, w, sg, tau, *params) -> bool:
    """Whether ops.multistep_neuron2's 'izhikevich' model computes this call: finite number parameters in its
    domain (tau > 1, tau_w > 0), a surrogate the kernels fuse, and w a tensor shaped like one step (or a number)."""
    v_threshold, v_reset, v_rest, a, b, tau_w, v_c, a0 = params
    values = (tau, v_threshold, v_rest, a, b, tau_w, v_c, a0) + (() if v_reset is None else (v_reset,))
    if not (_numbers(*values) and all(math.isfinite(p) for p in values) and tau > 1 and tau_w > 0):
        return False
    spec = getattr(sg, "kernel_spec", None)
    if spec is None or spec() is None:
        return False
    if isinstance(w, torch.Tensor):
        return w.shape == x_seq.shape[1:] and w.device == x_seq.device
    return _numbers(w) and w is not None and math.isfinite(w)


def ilif_multi_step(x_seq: torch.Tensor, v: torch.Tensor, tau: float = 2.0, v_threshold: float = 1.0,
                    surrogate_function=None, detach_reset: bool = False, store_v_seq: bool = False):
    """Integer LIF neurons over x_seq [T, *]: multi-level spike counts (``surrogate_function`` must be a
    spiking MultiLevelSpikeCount; default MultiLevelSpikeCount(4)), soft reset."""
    _check_seq("ilif_multi_step", x_seq, v)
    sg = MultiLevelSpikeCount(4) if surrogate_function is None else surrogate_function
    if type(sg) is not MultiLevelSpikeCount or not sg.spiking:
        raise TypeError("ilif_multi_step: surrogate_function must be MultiLevelSpikeCount(spiking=True), but got "
                        f"{sg!r}.")
    return _loop(lambda x, u: ilif_step(x, u, tau, v_threshold, sg, detach_reset), x_seq, v, store_v_seq)


def activation_aware_if_multi_step(x_seq: torch.Tensor, v: torch.Tensor, v_threshold: torch.Tensor,
                                   v_offset: torch.Tensor, channel_size: int, inner_size: int,
                                   v_reset: Optional[float] = 0.0, store_v_seq: bool = False):
    """Activation-aware IF neurons over x_seq [T, *]: fire (Heaviside, inference) when H + v_offset >= v_threshold,
    with one threshold and offset per channel (tensors of 1 or ``channel_size`` elements; a neuron's channel is
    ``(flat index // inner_size) % channel_size``)."""
    _check_seq("activation_aware_if_multi_step", x_seq, v)
    for name, t in (("v_threshold", v_threshold), ("v_offset", v_offset)):
        if not isinstance(t, torch.Tensor) or t.numel() not in (1, channel_size):
            raise ValueError(f"activation_aware_if_multi_step: {name} must be a tensor of 1 or channel_size="
                             f"{channel_size} elements.")
    if channel_size < 1 or inner_size < 1:
        raise ValueError(f"activation_aware_if_multi_step: channel_size and inner_size must be >= 1, but got "
                         f"{channel_size} and {inner_size}.")
    if v.numel() % (channel_size * inner_size):
        raise RuntimeError(f"activation_aware_if_multi_step: channel_size * inner_size = {channel_size * inner_size} "
                           f"must divide the number of neurons {v.numel()}.")
    if any(t.requires_grad for t in (x_seq, v, v_threshold, v_offset)):
        raise RuntimeError("activation_aware_if_multi_step: an inference transition (Heaviside spikes); pass tensors "
                           "that do not require grad (torch.no_grad()).")
    channel = (torch.arange(v.numel(), device=x_seq.device) // inner_size % channel_size).reshape(v.shape)
    per = lambda t: t.reshape(-1)[channel] if t.numel() > 1 else t.reshape(())  # noqa: E731
    thr, off = per(v_threshold), per(v_offset)
    heaviside = lambda z: (z >= 0).to(z)  # noqa: E731
    return _loop(lambda x, u: activation_aware_if_step(x, u, thr, off, v_reset, heaviside, False), x_seq, v,
                 store_v_seq)


def stbif_multi_step(x_seq: torch.Tensor, q: torch.Tensor, acc_q: torch.Tensor, q_threshold: torch.Tensor,
                     pos_max: torch.Tensor, neg_min: torch.Tensor):
    """ST-BIF neurons over x_seq [T, *] (see :func:`stbif_step`; inference only).

    :return: (output_seq, q, acc_q, the last step's event)
    """
    if not isinstance(x_seq, torch.Tensor) or x_seq.dim() < 1 or x_seq.shape[0] == 0:
        raise ValueError("stbif_multi_step: x_seq must be a non-empty sequence [T, *] (T >= 1).")
    if any(t.requires_grad for t in (x_seq, q, acc_q, q_threshold, pos_max, neg_min)):
        raise RuntimeError("stbif_multi_step: ST-BIF is an inference transition and does not support autograd; "
                           "pass tensors that do not require grad (torch.no_grad()).")
    params = (q_threshold, pos_max, neg_min)
    if (all(isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() == 1 and t.device == x_seq.device
            for t in params) and x_seq.is_floating_point()
            and all(isinstance(t, torch.Tensor) and t.is_floating_point() and t.shape == x_seq.shape[1:]
                    and t.device == x_seq.device for t in (q, acc_q))):
        return stbif(x_seq, q, acc_q, q_threshold, pos_max, neg_min)  # the fused op (ops.stbif)
    outputs = []
    for x in x_seq.unbind(0):
        out, q, acc_q, event = stbif_step(x, q, acc_q, q_threshold, pos_max, neg_min)
        outputs.append(out.to(x_seq.dtype))
    return torch.stack(outputs), q, acc_q, event
