"""One step of spike-timing-dependent plasticity (SpikingJelly 2.0.0's ``functional.learning``).

Traces follow SpikingJelly: STDP's decay by ``1 - 1/tau`` per step (``tr = tr - tr / tau + s``), the
reward-modulated rules' (MSTDP, MSTDPET) by ``exp(-1/tau)``. With f_pre, f_post the weight-dependence
functions (identity by default) and W the weight:

* STDP:  dW = f_post(W) * sum_batch(out ⊗ trace_pre) - f_pre(W) * sum_batch(trace_post ⊗ in)
* MSTDP: the same per sample, not summed (the eligibility [N, out, in]); MSTDPET: one sample (1-D spikes).

The convolution forms are the same sums over every position a kernel tap sees: a convolution weight gradient
(``torch.nn.grad.conv*d_weight``) of trace_pre against the output spikes and of the input spikes against
trace_post. Inputs must be padded already (the learners pad them as the layer does).

:func:`stdp_traces` and :func:`stdp_multi_step_delta` are the multi-step forms the learners use: the traces of
T steps are one linear recurrence, solved by ``fastspike.ops.linear_scan``, and the T weight updates are one
contraction over time and batch.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.grad as nn_grad

from ..ops import linear_scan

__all__ = ["stdp_linear_step", "mstdp_linear_step", "mstdpet_linear_step", "stdp_conv1d_step", "stdp_conv2d_step",
           "mstdpet_reward_step"]

Trace = Tuple[torch.Tensor, torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def check_time_constants(fn: str, exponential: bool, **taus: float) -> None:
    """STDP traces need tau >= 1 (a decay factor 1 - 1/tau in [0, 1)); exponential traces need tau > 0."""
    for name, tau in taus.items():
        if isinstance(tau, bool) or not isinstance(tau, (int, float)):
            raise TypeError(f"{fn}: {name} must be a number of time steps, but got {type(tau).__name__}.")
        bound_ok = tau > 0 if exponential else tau >= 1
        if not math.isfinite(tau) or not bound_ok:
            raise ValueError(f"{fn}: {name} must be finite and {'> 0' if exponential else '>= 1'} time steps, "
                             f"but got {tau!r}.")


def _check(fn: str, in_spike, out_spike, trace, weight, ndim: int) -> None:
    for name, t in (("in_spike", in_spike), ("out_spike", out_spike), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor, but got {type(t).__name__}.")
    layout = {1: "[in]/[out]", 2: "[N, in]/[N, out]", 3: "[N, C, L]", 4: "[N, C, H, W]"}[ndim]
    if in_spike.dim() != ndim or out_spike.dim() != ndim:
        raise ValueError(f"{fn}: in_spike and out_spike must both be {layout}, but got shapes "
                         f"{tuple(in_spike.shape)} and {tuple(out_spike.shape)}.")
    if weight.dim() != max(2, ndim):
        raise ValueError(f"{fn}: weight must have {max(2, ndim)} dimensions, but got shape {tuple(weight.shape)}.")
    ch = 0 if ndim == 1 else 1
    if in_spike.shape[ch] != weight.shape[1] or out_spike.shape[ch] != weight.shape[0] or (
            ndim > 1 and in_spike.shape[0] != out_spike.shape[0]):
        raise ValueError(f"{fn}: in_spike {tuple(in_spike.shape)} and out_spike {tuple(out_spike.shape)} do not "
                         f"match weight {tuple(weight.shape)} (channels) or each other (batch).")
    if not isinstance(trace, (tuple, list)) or len(trace) != 2:
        raise TypeError(f"{fn}: trace must be a (trace_pre, trace_post) pair of tensors.")
    for name, spike, state in (("trace[0] (pre)", in_spike, trace[0]), ("trace[1] (post)", out_spike, trace[1])):
        if not isinstance(state, torch.Tensor) or state.shape != spike.shape:
            raise ValueError(f"{fn}: {name} must have the shape of its spikes {tuple(spike.shape)}, but got "
                             f"{tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__}; "
                             "reset the learner before changing the batch size.")
        if spike.device != weight.device or state.device != weight.device:
            raise ValueError(f"{fn}: spikes, traces and weight must be on one device, but got {spike.device}, "
                             f"{state.device} and {weight.device}.")


def _decay_stdp(trace: torch.Tensor, spike: torch.Tensor, tau: float) -> torch.Tensor:
    return trace - trace / tau + spike


def _decay_exp(trace: torch.Tensor, spike: torch.Tensor, tau: float) -> torch.Tensor:
    return trace * math.exp(-1.0 / tau) + spike


def stdp_linear_step(in_spike: torch.Tensor, out_spike: torch.Tensor, trace: Trace, weight: torch.Tensor, *,
                     tau_pre: float, tau_post: float, f_pre: Callable = _identity,
                     f_post: Callable = _identity) -> Tuple[torch.Tensor, Trace]:
    """One STDP step of a Linear synapse: spikes [N, in] and [N, out], weight [out, in].

    :return: (delta_w [out, in], (trace_pre, trace_post)) with the traces after this step
    """
    check_time_constants("stdp_linear_step", False, tau_pre=tau_pre, tau_post=tau_post)
    _check("stdp_linear_step", in_spike, out_spike, trace, weight, 2)
    tr_pre = _decay_stdp(trace[0], in_spike, tau_pre)
    tr_post = _decay_stdp(trace[1], out_spike, tau_post)
    dw = f_post(weight) * (out_spike.t() @ tr_pre) - f_pre(weight) * (tr_post.t() @ in_spike)
    return dw, (tr_pre, tr_post)


def mstdp_linear_step(in_spike: torch.Tensor, out_spike: torch.Tensor, trace: Trace, weight: torch.Tensor, *,
                      tau_pre: float, tau_post: float, f_pre: Callable = _identity,
                      f_post: Callable = _identity) -> Tuple[torch.Tensor, Trace]:
    """One reward-modulated STDP step (Florian 2007) of a Linear synapse, exponential traces.

    :return: (eligibility [N, out, in] per sample, (trace_pre, trace_post))
    """
    check_time_constants("mstdp_linear_step", True, tau_pre=tau_pre, tau_post=tau_post)
    _check("mstdp_linear_step", in_spike, out_spike, trace, weight, 2)
    tr_pre = _decay_exp(trace[0], in_spike, tau_pre)
    tr_post = _decay_exp(trace[1], out_spike, tau_post)
    elig = (f_post(weight) * (out_spike.unsqueeze(2) * tr_pre.unsqueeze(1))
            - f_pre(weight) * (tr_post.unsqueeze(2) * in_spike.unsqueeze(1)))
    return elig, (tr_pre, tr_post)


def mstdpet_linear_step(in_spike: torch.Tensor, out_spike: torch.Tensor, trace: Trace, weight: torch.Tensor, *,
                        tau_pre: float, tau_post: float, f_pre: Callable = _identity,
                        f_post: Callable = _identity) -> Tuple[torch.Tensor, Trace]:
    """One MSTDPET step (reward-modulated STDP with an eligibility trace) for one sample: spikes [in], [out].

    :return: (eligibility [out, in], (trace_pre, trace_post))
    """
    check_time_constants("mstdpet_linear_step", True, tau_pre=tau_pre, tau_post=tau_post)
    _check("mstdpet_linear_step", in_spike, out_spike, trace, weight, 1)
    tr_pre = _decay_exp(trace[0], in_spike, tau_pre)
    tr_post = _decay_exp(trace[1], out_spike, tau_post)
    elig = f_post(weight) * torch.outer(out_spike, tr_pre) - f_pre(weight) * torch.outer(tr_post, in_spike)
    return elig, (tr_pre, tr_post)


def _conv_delta(fn: str, in_spike, out_spike, tr_pre, tr_post, weight, stride, f_pre, f_post) -> torch.Tensor:
    grad_w = nn_grad.conv2d_weight if weight.dim() == 4 else nn_grad.conv1d_weight
    pre_part = grad_w(in_spike, weight.shape, tr_post, stride=stride)
    post_part = grad_w(tr_pre, weight.shape, out_spike, stride=stride)
    return f_post(weight) * post_part - f_pre(weight) * pre_part


def _check_conv(fn: str, in_spike, out_spike, weight, stride) -> Tuple[int, ...]:
    nd = weight.dim() - 2
    stride = tuple(stride) if isinstance(stride, (tuple, list)) else (stride,) * nd
    if len(stride) != nd or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in stride):
        raise ValueError(f"{fn}: stride must be {nd} positive ints, but got {stride!r}.")
    expected = tuple((size - k) // s + 1 for size, k, s in zip(in_spike.shape[2:], weight.shape[2:], stride))
    if tuple(out_spike.shape[2:]) != expected:
        raise ValueError(f"{fn}: out_spike's spatial shape {tuple(out_spike.shape[2:])} does not match the kernel "
                         f"{tuple(weight.shape[2:])} and stride {stride} on in_spike {tuple(in_spike.shape[2:])} "
                         f"(expected {expected}; pad in_spike first).")
    return stride


def stdp_conv2d_step(in_spike: torch.Tensor, out_spike: torch.Tensor, trace: Trace, weight: torch.Tensor, *,
                     stride: Tuple[int, int], tau_pre: float, tau_post: float, f_pre: Callable = _identity,
                     f_post: Callable = _identity) -> Tuple[torch.Tensor, Trace]:
    """One STDP step of a Conv2d synapse (groups=1, dilation=1): in_spike [N, Cin, H, W] (padded),
    out_spike [N, Cout, Ho, Wo], weight [Cout, Cin, KH, KW]."""
    check_time_constants("stdp_conv2d_step", False, tau_pre=tau_pre, tau_post=tau_post)
    _check("stdp_conv2d_step", in_spike, out_spike, trace, weight, 4)
    stride = _check_conv("stdp_conv2d_step", in_spike, out_spike, weight, stride)
    tr_pre = _decay_stdp(trace[0], in_spike, tau_pre)
    tr_post = _decay_stdp(trace[1], out_spike, tau_post)
    dw = _conv_delta("stdp_conv2d_step", in_spike, out_spike, tr_pre, tr_post, weight, stride, f_pre, f_post)
    return dw, (tr_pre, tr_post)


def stdp_conv1d_step(in_spike: torch.Tensor, out_spike: torch.Tensor, trace: Trace, weight: torch.Tensor, *,
                     stride: Tuple[int], tau_pre: float, tau_post: float, f_pre: Callable = _identity,
                     f_post: Callable = _identity) -> Tuple[torch.Tensor, Trace]:
    """One STDP step of a Conv1d synapse (groups=1, dilation=1): in_spike [N, Cin, L] (padded),
    out_spike [N, Cout, Lo], weight [Cout, Cin, K]."""
    check_time_constants("stdp_conv1d_step", False, tau_pre=tau_pre, tau_post=tau_post)
    _check("stdp_conv1d_step", in_spike, out_spike, trace, weight, 3)
    stride = _check_conv("stdp_conv1d_step", in_spike, out_spike, weight, stride)
    tr_pre = _decay_stdp(trace[0], in_spike, tau_pre)
    tr_post = _decay_stdp(trace[1], out_spike, tau_post)
    dw = _conv_delta("stdp_conv1d_step", in_spike, out_spike, tr_pre, tr_post, weight, stride, f_pre, f_post)
    return dw, (tr_pre, tr_post)


def mstdpet_reward_step(reward: Union[torch.Tensor, float], eligibility: torch.Tensor, trace_e: torch.Tensor, *,
                        tau_trace: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """MSTDPET's eligibility trace and weight change: ``trace_e' = exp(-1/tau_trace) trace_e + eligibility /
    tau_trace``, ``delta_w = reward * trace_e'``.

    :return: (delta_w, trace_e')
    """
    check_time_constants("mstdpet_reward_step", True, tau_trace=tau_trace)
    trace_e = trace_e * math.exp(-1.0 / tau_trace) + eligibility / tau_trace
    return reward * trace_e, trace_e


# ----------------------------------------------------------------------------------------------------
# multi-step forms (used by fastspike.learning's learners in step mode 'm')
# ----------------------------------------------------------------------------------------------------
def stdp_traces(spike_seq: torch.Tensor, trace0: Optional[torch.Tensor], tau: float) -> torch.Tensor:
    """The STDP trace after every step of ``spike_seq`` [T, *]: tr[t] = (1 - 1/tau) tr[t-1] + s[t],
    tr[-1] = trace0 (zeros when None), one ``linear_scan``."""
    return linear_scan(1.0 - 1.0 / tau, spike_seq, trace0)


def stdp_multi_step_delta(in_seq: torch.Tensor, out_seq: torch.Tensor, trace: Sequence[Optional[torch.Tensor]],
                          weight: torch.Tensor, *, tau_pre: float, tau_post: float, f_pre: Callable = _identity,
                          f_post: Callable = _identity, stride: Optional[Tuple[int, ...]] = None
                          ) -> Tuple[torch.Tensor, Trace]:
    """The sum of T :func:`stdp_linear_step` / ``stdp_conv*d_step`` updates for spikes [T, N, ...] (inputs
    already padded for a convolution, ``stride`` given), computed as one scan per trace and one contraction.

    :return: (delta_w, (trace_pre, trace_post) after the last step)
    """
    tr_pre = stdp_traces(in_seq, trace[0], tau_pre)
    tr_post = stdp_traces(out_seq, trace[1], tau_post)
    flat = lambda t: t.flatten(0, 1)  # noqa: E731  ([T, N, ...] -> [T*N, ...]: the sum over t and n)
    if weight.dim() == 2:
        dw = f_post(weight) * (flat(out_seq).t() @ flat(tr_pre)) - f_pre(weight) * (flat(tr_post).t() @ flat(in_seq))
    else:
        dw = _conv_delta("stdp_multi_step_delta", flat(in_seq), flat(out_seq), flat(tr_pre), flat(tr_post), weight,
                         stride, f_pre, f_post)
    return dw, (tr_pre[-1], tr_post[-1])
