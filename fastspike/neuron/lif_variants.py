"""LIF variants (SpikingJelly 2.0's ``neuron.lif_variants``), on the per-step functions of
fastspike.neuron.dynamics:

* ``GatedLIFNode`` (GLIF, Yao et al. 2022): learnable gates (alpha, beta, gamma) mixing leak, input
  conductance and reset modes, learnable tau / threshold / linear decay / sub-reset / per-step conductance,
  all through a sigmoid. Multi-step only, T fixed; parameters scalar or per channel (``inplane``) of a
  [T, N, C, H, W] input. States (v, u), u holding the last v. Fused (ops.multistep_gated_lif, gradients to every
  parameter) with a fused surrogate and float32 parameters; otherwise the Python step loop.
* ``KLIFNode``: LIF with a learnable scale k, H = relu(k H) (parameter ``k``). Fused (ops.multistep_neuron,
  fire='klif') in both step modes with a fused surrogate.
* ``ComplementaryLIFNode`` (CLIF): LIF with a complementary state m that raises the reset after recent spikes;
  states (v, m); in eval mode a spiking surrogate fires with the plain Heaviside.
* ``CUBALIFNode``: current-based LIF, C = c_decay C + X, H = v_decay V + C; states (v, c).
* ``LIAFNode``: LIF whose output is act(H - v_threshold) (threshold_related) or act(H), not the spike. Fused
  (fire='analog') in both step modes when act is relu, sigmoid or identity (torch functions or nn modules) and the
  surrogate is fused; any other act runs the Python step.

CLIF and CUBALIFNode run both step modes through the fused op ``ops.multistep_neuron2`` (models 'clif' / 'cuba')
when the kernels take their configuration (fastspike/neuron/_two_state.py).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import surrogate
from ..base import BackendMixin, MemoryModule
from ..ops.gated_lif import multistep_gated_lif
from . import _checks
from ._fused import FusedStepNode
from ._two_state import _FusedTwoStateNode, common_kwargs
from .dynamics import clif_step, cuba_lif_step, gated_lif_step, klif_step, liaf_step
from .node import BaseNode, LIFNode, state_tensor

__all__ = ["GatedLIFNode", "KLIFNode", "ComplementaryLIFNode", "CUBALIFNode", "LIAFNode"]


def _logit(p: float) -> float:
    return -math.log(1 / p - 1)


class GatedLIFNode(MemoryModule, BackendMixin):
    """Gated LIF neuron (see the module docstring)."""

    def __init__(self, T: int, inplane=None, init_linear_decay=None, init_v_subreset=None, init_tau: float = 0.25,
                 init_v_threshold: float = 0.5, init_conduct: float = 0.5,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(), step_mode="m"):
        _checks.number("GatedLIFNode", "init_tau", init_tau, lt=1.0)
        if isinstance(T, bool) or not isinstance(T, int):
            raise TypeError(f"GatedLIFNode: T must be an int, but got {T!r}.")
        if inplane is not None and (isinstance(inplane, bool) or not isinstance(inplane, int)):
            raise TypeError(f"GatedLIFNode: inplane must be an int (the channel count) or None, but got {inplane!r}.")
        for name, value in (("init_linear_decay", init_linear_decay), ("init_v_subreset", init_v_subreset)):
            if value is not None:
                _checks.number("GatedLIFNode", name, value, lt=1.0)
        _checks.multi_step_only("GatedLIFNode", step_mode)
        super().__init__()
        self.surrogate_function = surrogate_function
        self.step_mode = step_mode
        self.backend = "auto"
        self.T = T
        self.register_memory("v", 0.0)
        self.register_memory("u", 0.0)
        shape = () if inplane is None else (inplane,)
        # gates start near sigmoid(0) = 0.5: 0.2 (U(0, 1) - 0.5), drawn from numpy's global RNG as SpikingJelly does
        self.alpha, self.beta, self.gamma = [
            nn.Parameter(torch.tensor(0.2 * (np.random.rand(*shape) - 0.5), dtype=torch.float)) for _ in range(3)]
        init_linear_decay = init_v_threshold / (T * 2) if init_linear_decay is None else init_linear_decay
        init_v_subreset = init_v_threshold if init_v_subreset is None else init_v_subreset
        self.tau = nn.Parameter(torch.full(shape, _logit(init_tau), dtype=torch.float))
        self.v_threshold = nn.Parameter(torch.full(shape, _logit(init_v_threshold), dtype=torch.float))
        self.linear_decay = nn.Parameter(torch.full(shape, _logit(init_linear_decay), dtype=torch.float))
        self.v_subreset = nn.Parameter(torch.full(shape, _logit(init_v_subreset), dtype=torch.float))
        self.conduct = nn.Parameter(torch.full((T, *shape), _logit(init_conduct), dtype=torch.float))

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", tau={self.tau}, v_subreset={self.v_subreset}, "
                f"linear_decay={self.linear_decay}, conduct={self.conduct}")

    def materialize_states(self, inputs, states, step_mode):
        v = states[0]
        if not isinstance(v, torch.Tensor):
            v = torch.full_like(inputs[0][0], v)
        return (v, states[1])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        x_seq = inputs[0]
        if x_seq.shape[0] < self.T:
            raise ValueError(f"GatedLIFNode was built with T={self.T}, but the input has only {x_seq.shape[0]} "
                             f"time steps (shape {tuple(x_seq.shape)}).")
        v = states[0]
        fused = self._fused_inputs(x_seq[:self.T], v)
        if fused is not None:
            x, v, params = fused
            spikes, v = multistep_gated_lif(x, v, *params, surrogate_function=self.surrogate_function,
                                            backend=self.backend)
            return (spikes,), (v, v)

        def gate(p):  # scalar or per-channel parameter, broadcast over [N, C, H, W]
            return p.view(1, -1, 1, 1).sigmoid()

        alpha, beta, gamma = gate(self.alpha), gate(self.beta), gate(self.gamma)
        tau, v_threshold = gate(self.tau), gate(self.v_threshold)
        linear_decay, v_subreset = gate(self.linear_decay), gate(self.v_subreset)
        spike = torch.zeros(x_seq.shape[1:], device=x_seq.device, dtype=x_seq.dtype)
        spikes = []
        for t in range(self.T):
            spike, v = gated_lif_step(x_seq[t], v, spike, alpha, beta, gamma, tau, v_threshold, linear_decay,
                                      v_subreset, gate(self.conduct[t]), self.surrogate_function)
            spikes.append(spike)
        return (torch.stack(spikes),), (v, v)


    def _fused_inputs(self, x: torch.Tensor, v):
        """(x, v, sigmoid of every parameter) shaped for ops.multistep_gated_lif, or None for the Python loop: a
        surrogate the kernels fuse, float32 parameters, no subclass redefining the forward, and an input whose
        steps SpikingJelly's [1, C, 1, 1] broadcast leaves in shape (any input with scalar parameters, viewed as
        that broadcast gives; [T, N, C, H, W] with per-channel ones)."""
        spec = getattr(self.surrogate_function, "kernel_spec", None)
        if (spec is None or spec() is None or self.alpha.dtype is not torch.float32
                or type(self).multi_step_functional_forward is not GatedLIFNode.multi_step_functional_forward):
            return None
        scalar = self.alpha.numel() == 1
        if scalar:
            step = torch.broadcast_shapes((1, 1, 1, 1), x.shape[1:])
            x = x.reshape(x.shape[0], *step)
        elif x.dim() != 5 or x.shape[2] != self.alpha.numel():
            return None
        if isinstance(v, torch.Tensor):
            if v.numel() != x[0].numel():
                return None
            v = v.reshape(x.shape[1:])
        dtype = torch.promote_types(x.dtype, torch.float32)
        x = x.to(dtype)
        v = v.to(dtype) if isinstance(v, torch.Tensor) else v
        params = [p.sigmoid() for p in (self.alpha, self.beta, self.gamma, self.tau, self.v_threshold,
                                        self.linear_decay, self.v_subreset, self.conduct)]
        if scalar:
            params = [p.reshape(()) for p in params[:7]] + [params[7].reshape(-1)]
        return x, v, params


class KLIFNode(FusedStepNode):
    """LIF with a learnable scale k (initially 1): H = relu(k * LIF charge)."""

    def __init__(self, scale_reset: bool = False, tau: float = 2.0, decay_input: bool = True,
                 v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False):
        tau = _checks.number("KLIFNode", "tau", tau, gt=1.0)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq)
        self.scale_reset = scale_reset
        self.tau = tau
        self.decay_input = decay_input
        self.k = nn.Parameter(torch.as_tensor(1.0))

    def _python_step(self, x, v):
        return klif_step(x, v, self.k, self.tau, self.decay_input, self.scale_reset, self.v_threshold, self.v_reset,
                         self.surrogate_function, self.detach_reset)

    def _op_kwargs(self) -> dict:
        return dict(mode="lif", fire="klif", tau=self.tau, decay_input=bool(self.decay_input),
                    scale_reset=bool(self.scale_reset), **_common(self))

    def _op_per_call(self) -> dict:
        return {"k": self.k}


KLIFNode._fused_class = KLIFNode


class ComplementaryLIFNode(_FusedTwoStateNode):
    """Complementary LIF: soft reset raised by sigmoid(m), m a decaying spike memory; no v_seq, but
    ``store_state_seqs=True`` keeps [v_seq, m_seq] in ``state_seqs``."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Rect(alpha=1.0),
                 step_mode: str = "s", store_state_seqs: bool = False) -> None:
        tau = _checks.number("ComplementaryLIFNode", "tau", tau, gt=1.0)
        super().__init__(v_threshold, None, surrogate_function, False, step_mode, False)
        self.tau = tau
        self.register_memory("m", 0.0)
        self.store_state_seqs = store_state_seqs

    @property
    def store_state_seqs(self) -> bool:
        return self._store_state_seqs

    @store_state_seqs.setter
    def store_state_seqs(self, value: bool) -> None:
        self._store_state_seqs = value
        self.state_seqs = None

    def reset(self) -> None:
        super().reset()
        self.state_seqs = None

    def materialize_states(self, inputs, states, step_mode):
        v, m = super().materialize_states(inputs, states, step_mode)
        if isinstance(m, torch.Tensor) and m.ndim == 0:
            m = m.to(dtype=v.dtype, device=v.device).expand_as(v)
        return v, state_tensor(self, m, v, "m")

    def _eval_heaviside(self) -> bool:
        return not self.training and getattr(self.surrogate_function, "spiking", False)

    def _python_step(self, x, v, m):
        fire = surrogate.heaviside if self._eval_heaviside() else self.surrogate_function
        return clif_step(x, v, m, self.tau, self.v_threshold, fire)

    def _op2_kwargs(self) -> dict:
        return dict(model="clif", tau=self.tau, v_threshold=self.v_threshold, v_reset=None,
                    surrogate_function=self.surrogate_function, backend=self.backend)

    def _v_seq_source(self):
        return None

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not self.store_state_seqs:
            return super().multi_step_forward(x_seq, *args, **kwargs)
        self._check_input(x_seq, 2)
        states = self.materialize_states((x_seq,), tuple(self._memories.values()), "m")
        (spikes,), states, v_seq, m_seq = self._multi_step_with_seqs((x_seq,), states)
        self._store_states(states)
        self.state_seqs = [v_seq, m_seq]
        return spikes

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}"


class CUBALIFNode(_FusedTwoStateNode):
    """Current-based LIF: C = c_decay C + X, H = v_decay V + C; states (v, c)."""

    def __init__(self, c_decay: float = 0.5, v_decay: float = 0.75, v_threshold: float = 0.5,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Rect()):
        super().__init__(v_threshold, v_reset, surrogate_function)
        self.register_memory("c", 0.0)
        self.c_decay = c_decay
        self.v_decay = v_decay

    def materialize_states(self, inputs, states, step_mode):
        states = super().materialize_states(inputs, states, step_mode)
        return (states[0], state_tensor(self, states[1], states[0], "c"), *states[2:])

    def _python_step(self, x, v, c):
        spike, c, v = cuba_lif_step(x, c, v, self.c_decay, self.v_decay, self.v_threshold, self.v_reset,
                                    self.surrogate_function, self.detach_reset)
        return spike, v, c

    def _op2_kwargs(self) -> dict:
        return dict(model="cuba", c_decay=self.c_decay, v_decay=self.v_decay, **common_kwargs(self))


ComplementaryLIFNode._fused_class = ComplementaryLIFNode
CUBALIFNode._fused_class = CUBALIFNode


def _act_name(act) -> Optional[str]:
    """The fused op's name for LIAF's activation, or None (the Python step runs it)."""
    if act is torch.relu or act is F.relu or (type(act) is nn.ReLU and not act.inplace):
        return "relu"
    if act is torch.sigmoid or act is F.sigmoid or type(act) is nn.Sigmoid:
        return "sigmoid"
    if type(act) is nn.Identity:
        return "identity"
    return None


class LIAFNode(FusedStepNode, LIFNode):
    """Leaky integrate-and-analog-fire: LIFNode's arguments after ``act`` (the output activation) and
    ``threshold_related`` (apply act to H - v_threshold instead of H)."""

    def __init__(self, act: Callable, threshold_related: bool, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.act = act
        self.threshold_related = threshold_related

    def _python_step(self, x, v):
        return liaf_step(x, v, self.tau, self.decay_input, self.v_threshold, self.v_reset, self.act,
                         self.threshold_related, self.surrogate_function, self.detach_reset)

    def _op_kwargs(self) -> Optional[dict]:
        act = _act_name(self.act)
        if act is None:
            return None
        return dict(mode="lif", fire="analog", act=act, threshold_related=bool(self.threshold_related), tau=self.tau,
                    decay_input=self.decay_input, **_common(self))


LIAFNode._fused_class = LIAFNode


def _common(node: BaseNode) -> dict:
    return dict(v_threshold=node.v_threshold, v_reset=node.v_reset, surrogate_function=node.surrogate_function,
                detach_reset=node.detach_reset, backend=node.backend)
