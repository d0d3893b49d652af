"""Synaptic plasticity learners (SpikingJelly 2.0.0's ``learning.plasticity``).

A learner watches one synapse (``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d``, fastspike's layers included) and
the spiking layer after it through monitors, keeps the pre- and postsynaptic traces as memories
(``functional.reset_net`` clears them), and on ``step()`` turns the spikes recorded since the last step into a
weight change: added to ``weight.grad`` as ``-delta_w`` (so an optimizer step with learning rate lr moves the
weight by ``lr * delta_w``) or returned (``on_grad=False``).

* :class:`STDPLearner`: pair-based STDP, step mode 's' or 'm'. In 'm' the traces of the whole sequence are one
  linear recurrence solved by ``fastspike.ops.linear_scan`` and the T updates one contraction over time and
  batch (``functional.learning.stdp_multi_step_delta``), instead of a Python loop over steps.
* :class:`MSTDPLearner` / :class:`MSTDPETLearner`: reward-modulated STDP (Florian 2007) without / with an
  eligibility trace; ``step(reward)`` once per time step, step mode 's', Linear synapses.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import base, monitor
from ..functional import learning as fl

__all__ = ["STDPLearner", "MSTDPLearner", "MSTDPETLearner"]

Synapse = Union[nn.Conv1d, nn.Conv2d, nn.Linear]


def _trace(value, like: torch.Tensor) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.full_like(like, 0.0 if value is None else value)


def _pad(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input as the convolution sees it (its padding applied); x [N, C, *] or [T, N, C, *]."""
    pad = conv._reversed_padding_repeated_twice
    if not any(pad):
        return x
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    nd = conv.weight.dim() - 2
    lead = x.shape[: x.dim() - nd - 1]
    y = F.pad(x.reshape(-1, *x.shape[-nd - 1:]), pad, mode=mode)
    return y.reshape(*lead, *y.shape[1:])


def _add_to_grad(synapse: nn.Module, delta_w: torch.Tensor) -> None:
    w = synapse.weight
    w.grad = -delta_w if w.grad is None else w.grad - delta_w


class _Learner(base.MemoryModule):
    """Monitors, open/close/enable/disable and record bookkeeping shared by the three learners."""

    def _attach(self, step_mode: str, synapse: nn.Module, sn: nn.Module, tau_pre, tau_post, f_pre, f_post) -> None:
        self.step_mode = step_mode
        self.tau_pre = tau_pre
        self.tau_post = tau_post
        self.f_pre = f_pre
        self.f_post = f_post
        self.synapse = synapse
        self.in_spike_monitor = monitor.InputMonitor(synapse, function_on_input=torch.Tensor.detach)
        self.out_spike_monitor = monitor.OutputMonitor(sn, function_on_output=torch.Tensor.detach)
        self.register_memory("trace_pre", None)
        self.register_memory("trace_post", None)

    def reset(self) -> None:
        super().reset()
        self.in_spike_monitor.clear_recorded_data()
        self.out_spike_monitor.clear_recorded_data()

    def disable(self) -> None:
        """Stop recording spikes (e.g. during evaluation); ``enable()`` resumes."""
        self.in_spike_monitor.disable()
        self.out_spike_monitor.disable()

    def enable(self) -> None:
        self._check_open()
        self.in_spike_monitor.enable()
        self.out_spike_monitor.enable()

    def close(self) -> None:
        """Remove the monitors' hooks and clear the state; a closed learner cannot be used again."""
        self.in_spike_monitor.close()
        self.out_spike_monitor.close()
        self.reset()

    def _check_open(self) -> None:
        if not self.in_spike_monitor.hooks or not self.out_spike_monitor.hooks:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new learner to resume.")

    def _pairs(self):
        pre, post = self.in_spike_monitor.records, self.out_spike_monitor.records
        if len(pre) != len(post):
            raise RuntimeError(f"{type(self).__name__}.step: the synapse recorded {len(pre)} inputs but the neurons "
                               f"{len(post)} outputs; they must run once each per forward call.")
        return list(zip(pre, post))

    def _clear(self) -> None:
        self.in_spike_monitor.clear_recorded_data()
        self.out_spike_monitor.clear_recorded_data()

    def extra_repr(self) -> str:
        return f"tau_pre={self.tau_pre}, tau_post={self.tau_post}, step_mode={self.step_mode}"


class STDPLearner(_Learner):
    """Pair-based STDP for a Linear, Conv1d or Conv2d synapse (groups=1, dilation=1) followed by spiking
    neurons ``sn``; traces decay by 1 - 1/tau per step. ``step(on_grad=True, scale=1.0)``."""

    def __init__(self, step_mode: str, synapse: Synapse, sn: nn.Module, tau_pre: float, tau_post: float,
                 f_pre: Callable = lambda x: x, f_post: Callable = lambda x: x) -> None:
        fl.check_time_constants("STDPLearner", False, tau_pre=tau_pre, tau_post=tau_post)
        if step_mode not in ("s", "m"):
            raise ValueError(f"STDPLearner: step_mode must be 's' or 'm', but got {step_mode!r}.")
        if not isinstance(synapse, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            raise NotImplementedError(f"STDPLearner: synapse must be a Linear, Conv1d or Conv2d layer, but got "
                                      f"{type(synapse).__name__}.")
        if isinstance(synapse, (nn.Conv1d,
                                nn.Conv2d)) and (any(d != 1 for d in synapse.dilation) or synapse.groups != 1):
            raise NotImplementedError(f"STDPLearner: convolutions need dilation=1 and groups=1, but got "
                                      f"dilation={synapse.dilation}, groups={synapse.groups}.")
        super().__init__()
        self._attach(step_mode, synapse, sn, tau_pre, tau_post, f_pre, f_post)

    def _check_record(self, pre: torch.Tensor, post: torch.Tensor) -> None:
        w = self.synapse.weight
        nd = 2 if isinstance(self.synapse, nn.Linear) else w.dim()
        want = nd + (self.step_mode == "m")
        if pre.dim() != want or post.dim() != want:
            layout = "[T, N, ...]" if self.step_mode == "m" else "[N, ...]"
            raise ValueError(f"STDPLearner.step: in step mode {self.step_mode!r} the spikes must be {layout} with "
                             f"{want} dimensions for this synapse, but got {tuple(pre.shape)} and {tuple(post.shape)}.")
        if self.step_mode == "m" and pre.shape[0] != post.shape[0]:
            raise ValueError(f"STDPLearner.step: input and output sequences have {pre.shape[0]} and {post.shape[0]} "
                             "time steps.")
        if pre.device != w.device or post.device != w.device:
            raise ValueError(f"STDPLearner.step: spikes ({pre.device}) and weight ({w.device}) must be on one device.")

    def _delta(self, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        self._check_record(pre, post)
        conv = not isinstance(self.synapse, nn.Linear)
        if conv:
            pre = _pad(self.synapse, pre)
        w = self.synapse.weight.detach()
        common = dict(tau_pre=self.tau_pre, tau_post=self.tau_post, f_pre=self.f_pre, f_post=self.f_post)
        if self.step_mode == "m":
            if pre.shape[0] == 0:
                return torch.zeros_like(w)
            trace0 = tuple(None if t is None else _trace(t, ref[0]) for t, ref in
                           ((self.trace_pre, pre), (self.trace_post, post)))
            dw, (self.trace_pre, self.trace_post) = fl.stdp_multi_step_delta(
                pre, post, trace0, w, stride=self.synapse.stride if conv else None, **common)
            return dw
        rule = fl.stdp_linear_step
        if conv:
            rule = fl.stdp_conv1d_step if isinstance(self.synapse, nn.Conv1d) else fl.stdp_conv2d_step
            common["stride"] = self.synapse.stride
        trace = (_trace(self.trace_pre, pre), _trace(self.trace_post, post))
        dw, (self.trace_pre, self.trace_post) = rule(pre, post, trace, w, **common)
        return dw

    @torch.no_grad()
    def step(self, on_grad: bool = True, scale: float = 1.0) -> Optional[torch.Tensor]:
        """Turn the spikes recorded since the last call into a weight change (None when nothing was recorded);
        ``on_grad``: add ``-delta_w`` to ``weight.grad`` and return None, else return ``delta_w``."""
        self._check_open()
        delta_w = None
        for pre, post in self._pairs():
            dw = self._delta(pre, post)
            if scale != 1.0:
                dw = dw * scale
            delta_w = dw if delta_w is None else delta_w + dw
        if delta_w is None:
            return None
        self._clear()
        if on_grad:
            _add_to_grad(self.synapse, delta_w)
            return None
        return delta_w


class _RewardLearner(_Learner):
    _name = ""

    def _check_init(self, step_mode, synapse):
        if step_mode != "s":
            raise ValueError(f"{self._name}: step_mode must be 's' (one step() per time step), but got {step_mode!r}.")
        if not isinstance(synapse, nn.Linear):
            raise NotImplementedError(f"{self._name}: synapse must be a Linear layer, "
                                      f"but got {type(synapse).__name__}.")

    def _one_pair(self):
        self._check_open()
        pairs = self._pairs()
        if not pairs:
            return None
        if len(pairs) != 1:
            raise RuntimeError(f"{self._name}.step: call step(reward) after every forward call (found {len(pairs)} "
                               "recorded steps).")
        return pairs[0]

    def _finish(self, delta_w: torch.Tensor, on_grad: bool, scale: float) -> Optional[torch.Tensor]:
        if scale != 1.0:
            delta_w = delta_w * scale
        self._clear()
        if on_grad:
            _add_to_grad(self.synapse, delta_w)
            return None
        return delta_w

    def _reward(self, reward) -> torch.Tensor:
        w = self.synapse.weight
        return torch.as_tensor(reward, device=w.device, dtype=w.dtype).detach()


class MSTDPLearner(_RewardLearner):
    """Reward-modulated STDP (MSTDP): exponential traces, a per-sample eligibility [N, out, in];
    ``step(reward)`` applies ``sum_n reward[n] * eligibility_prev[n]`` (reward a scalar or [N]) and stores the
    eligibility of the current step for the next call."""
    _name = "MSTDPLearner"

    def __init__(self, step_mode: str, synapse: nn.Linear, sn: nn.Module, tau_pre: float, tau_post: float,
                 f_pre: Callable = lambda x: x, f_post: Callable = lambda x: x) -> None:
        fl.check_time_constants("MSTDPLearner", True, tau_pre=tau_pre, tau_post=tau_post)
        self._check_init(step_mode, synapse)
        super().__init__()
        self._attach(step_mode, synapse, sn, tau_pre, tau_post, f_pre, f_post)
        self.register_memory("eligibility", None)

    @torch.no_grad()
    def step(self, reward: Union[float, torch.Tensor], on_grad: bool = True,
             scale: float = 1.0) -> Optional[torch.Tensor]:
        pair = self._one_pair()
        if pair is None:
            return None
        pre, post = pair
        elig, traces = fl.mstdp_linear_step(pre, post, (_trace(self.trace_pre, pre), _trace(self.trace_post, post)),
                                            self.synapse.weight.detach(), tau_pre=self.tau_pre, tau_post=self.tau_post,
                                            f_pre=self.f_pre, f_post=self.f_post)
        reward = self._reward(reward)
        if reward.dim() != 0 and tuple(reward.shape) != (pre.shape[0],):
            raise ValueError(f"MSTDPLearner.step: reward must be a scalar or of shape [N] = ({pre.shape[0]},), but got "
                             f"{tuple(reward.shape)}.")
        if self.eligibility is not None and self.eligibility.shape != elig.shape:
            raise ValueError("MSTDPLearner.step: the batch size changed; call functional.reset_net(net) first.")
        prev = torch.zeros_like(elig) if self.eligibility is None else self.eligibility
        delta_w = (reward.reshape(-1, 1, 1) * prev).sum(0)
        (self.trace_pre, self.trace_post), self.eligibility = traces, elig
        return self._finish(delta_w, on_grad, scale)


class MSTDPETLearner(_RewardLearner):
    """Reward-modulated STDP with an eligibility trace (MSTDPET) for one sample (spikes [in], [out]):
    ``step(reward)`` (a scalar) applies ``reward * trace_e``, where trace_e low-pass filters the eligibility
    with time constant ``tau_trace``."""
    _name = "MSTDPETLearner"

    def __init__(self, step_mode: str, synapse: nn.Linear, sn: nn.Module, tau_pre: float, tau_post: float,
                 tau_trace: float, f_pre: Callable = lambda x: x, f_post: Callable = lambda x: x) -> None:
        fl.check_time_constants("MSTDPETLearner", True, tau_pre=tau_pre, tau_post=tau_post, tau_trace=tau_trace)
        self._check_init(step_mode, synapse)
        super().__init__()
        self._attach(step_mode, synapse, sn, tau_pre, tau_post, f_pre, f_post)
        self.tau_trace = tau_trace
        self.register_memory("trace_e", None)
        self.register_memory("eligibility", None)

    @torch.no_grad()
    def step(self, reward: Union[float, torch.Tensor], on_grad: bool = True,
             scale: float = 1.0) -> Optional[torch.Tensor]:
        pair = self._one_pair()
        if pair is None:
            return None
        pre, post = pair
        elig, traces = fl.mstdpet_linear_step(pre, post, (_trace(self.trace_pre, pre), _trace(self.trace_post, post)),
                                              self.synapse.weight.detach(), tau_pre=self.tau_pre,
                                              tau_post=self.tau_post, f_pre=self.f_pre, f_post=self.f_post)
        reward = self._reward(reward)
        if reward.dim() != 0:
            raise ValueError(f"MSTDPETLearner.step: reward must be a scalar, but got shape {tuple(reward.shape)}.")
        prev = torch.zeros_like(elig) if self.eligibility is None else self.eligibility
        trace_e = torch.zeros_like(elig) if self.trace_e is None else self.trace_e
        delta_w, self.trace_e = fl.mstdpet_reward_step(reward, prev, trace_e, tau_trace=self.tau_trace)
        (self.trace_pre, self.trace_post), self.eligibility = traces, elig
        return self._finish(delta_w, on_grad, scale)
