"""IF, LIF and ParametricLIF neurons (SpikingJelly 2.0.0 ``activation_based.neuron`` compatible).

Multi-step mode ('m', input [T, N, *]) runs the fused multi-step op (fastspike.ops.multistep_neuron);
single-step mode ('s', input [N, *]) runs the same kernels with T = 1. Subclasses that override
``neuronal_charge`` / ``neuronal_fire`` / ``neuronal_reset`` (SpikingJelly's way of defining a custom
neuron) run those hooks compiled into fused kernels when they trace (neuron/_hook_kernels.py), else the
Python methods step by step.

``BaseNode`` also has SpikingJelly 2.0's functional-state API (``functional_forward``,
``single_step_functional_forward``, ``multi_step_functional_forward``, ``materialize_states``,
``apply_hard_reset``, ``apply_soft_reset``). A subclass written in SpikingJelly 2.0's style (overriding
``single_step_functional_forward``) runs through it: ``forward`` materialises the stored states, calls the
functional step (or its ``multi_step_functional_forward``) and stores the new states. The neurons of
fastspike.neuron's other files are written that way.
"""
from __future__ import annotations

import math
import weakref
from typing import Optional

import torch
import torch.nn as nn

from .. import surrogate
from . import _checks
from ..base import BackendMixin, MemoryModule
from ..ops.neuron import plan_neuron, run_neuron
from ._hook_kernels import hook_kernel, run_hook_kernel

__all__ = ["BaseNode", "IFNode", "LIFNode", "ParametricLIFNode"]

_STYLE = weakref.WeakKeyDictionary()  # class -> _functional_style(class)
_NOT_CONFIG = ("v_seq", "store_v_seq", "_store_v_seq")


def state_tensor(module: nn.Module, value, x: torch.Tensor, name: str) -> torch.Tensor:
    """A stored state of ``module`` as a tensor shaped like one input step ``x``: a number fills a new tensor,
    a tensor is moved to x's dtype and device; a tensor of another shape means that the batch changed without
    a reset, which raises an error saying so."""
    if not isinstance(value, torch.Tensor):
        return torch.full_like(x, float(value))
    if value.shape != x.shape:
        raise RuntimeError(
            f"{type(module).__name__}: the stored state {name} has shape {tuple(value.shape)} but this input step "
            f"has shape {tuple(x.shape)}. The batch or feature size changed without a reset: call "
            "functional.reset_net(net) between independent batches.")
    if value.dtype != x.dtype or value.device != x.device:
        value = value.to(dtype=x.dtype, device=x.device)
    return value


def _functional_style(cls) -> bool:
    """True when ``cls`` (a BaseNode subclass) defines its dynamics through SpikingJelly 2.0's functional
    methods, so that ``forward`` must run them (cached per class: every call asks)."""
    style = _STYLE.get(cls)
    if style is None:
        style = (cls.single_step_functional_forward is not BaseNode.single_step_functional_forward
                 or cls.multi_step_functional_forward is not BaseNode.multi_step_functional_forward)
        _STYLE[cls] = style
    return style


class BaseNode(MemoryModule, BackendMixin):
    """Charge, fire (Heaviside with a surrogate gradient) and reset, with the membrane state ``v``
    kept between calls until ``reset()`` (``functional.reset_net``).

    v_reset: a number for hard reset (V <- v_reset after a spike), None for soft reset (V <- V - v_threshold).
    backend: 'auto' (triton on CUDA, C++ on CPU), 'torch', 'triton' or 'cpp'.
    """

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 backend: str = "auto"):
        if not isinstance(v_threshold, (int, float)) or isinstance(v_threshold, bool):
            raise TypeError(f"v_threshold must be a number, but got {type(v_threshold).__name__}.")
        if v_reset is not None and (not isinstance(v_reset, (int, float)) or isinstance(v_reset, bool)):
            raise TypeError(f"v_reset must be a number (hard reset) or None (soft reset), but got {v_reset!r}.")
        if not isinstance(detach_reset, bool):
            raise TypeError(f"detach_reset must be a bool, but got {detach_reset!r}.")
        if not callable(surrogate_function):
            raise TypeError(f"surrogate_function must be callable, but got {surrogate_function!r}.")
        super().__init__()
        self.register_memory("v", 0.0 if v_reset is None else float(v_reset))
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate_function = surrogate_function
        self.detach_reset = detach_reset
        self.step_mode = step_mode
        self.store_v_seq = store_v_seq
        self.backend = backend

    # -- attributes -------------------------------------------------------------------------------
    @property
    def store_v_seq(self) -> bool:
        return self._store_v_seq

    @store_v_seq.setter
    def store_v_seq(self, value: bool) -> None:
        self._store_v_seq = bool(value)
        self.v_seq = None

    def reset(self) -> None:
        super().reset()
        # v_seq is a plain attribute (store_v_seq's setter made it one): skip nn.Module.__setattr__, whose checks for
        # parameters, buffers and submodules cost more than the rest of a reset
        self.__dict__["v_seq"] = None

    def detach(self) -> None:
        super().detach()
        if isinstance(self.v_seq, torch.Tensor):
            self.v_seq = self.v_seq.detach()

    def extra_repr(self) -> str:
        return (f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, detach_reset={self.detach_reset}, "
                f"step_mode={self.step_mode}, backend={self.backend}")

    # -- SpikingJelly-style hooks (used as-is by custom subclasses) -----------------------------
    def neuronal_charge(self, x: torch.Tensor) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must implement single_step_functional_forward(inputs, states) (SpikingJelly 2.0 "
            "style) or neuronal_charge(x) (SpikingJelly 1.x style: update self.v from x).")

    def neuronal_fire(self) -> torch.Tensor:
        return self.surrogate_function(self.v - self.v_threshold)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        s = spike.detach() if self.detach_reset else spike
        if self.v_reset is None:
            self.v = self.v - s * self.v_threshold
        else:
            self.v = s * self.v_reset + (1.0 - s) * self.v

    # -- the fused path ---------------------------------------------------------------------------
    def _op_kwargs(self) -> Optional[dict]:
        """Arguments of ops.multistep_neuron for this neuron (numbers, flags, names, the surrogate), or None when it has
        no fused op. Cached until an attribute of this neuron is assigned."""
        return None

    def _op_per_call(self) -> dict:
        """Arguments of the op read on every call: parameters (``w``, ``k``: module conversions may replace them
        without an assignment to this neuron) and settings of other objects (a surrogate's), which are planned
        again when they change."""
        return {}

    def _fused_ok(self, kw: Optional[dict]) -> bool:
        """Whether the op runs this neuron with ``_op_kwargs()`` = kw: a subclass that redefines the dynamics
        runs its own Python code."""
        cls = type(self)
        owner = getattr(self, "_fused_class", None)
        return kw is not None and owner is not None and not _functional_style(cls) and (
            cls.neuronal_charge is owner.neuronal_charge and cls.neuronal_fire is BaseNode.neuronal_fire
            and cls.neuronal_reset is BaseNode.neuronal_reset)

    def _fused(self):
        """(the op's keyword arguments, [per-call settings, their plan]) or None when this neuron runs its Python
        code; cached until an attribute of this neuron is assigned (every call needs it: validating the arguments
        cost more than the kernels of a small layer)."""
        fused = self.__dict__.get("_fused_cache")
        if fused is None:
            kw = self._op_kwargs()
            fused = (kw, [None, None]) if self._fused_ok(kw) else False
            self.__dict__["_fused_cache"] = fused
        return fused or None

    def _run_fused(self, fused, x_seq: torch.Tensor, v_init, store_v_seq: bool = False):
        """ops.neuron.run_neuron with this neuron's cached plan (see ``_fused``) and its per-call arguments."""
        kw, slot = fused
        per_call = self._op_per_call()
        if not per_call:  # IF / LIF and most others: nothing read per call
            if slot[1] is None or slot[0]:
                slot[1], slot[0] = plan_neuron(**kw), {}
            return run_neuron(slot[1], x_seq, v_init, store_v_seq)
        tensors, settings = {}, {}
        for name, value in per_call.items():
            (tensors if isinstance(value, torch.Tensor) else settings)[name] = value
        if slot[1] is None or slot[0] != settings:
            slot[1] = plan_neuron(**kw, **settings)
            slot[0] = settings
        return run_neuron(slot[1], x_seq, v_init, store_v_seq, **tensors)

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        # memories (v), v_seq and store_v_seq (the Python loop toggles it) are not part of the configuration
        if name not in _NOT_CONFIG and name not in self.__dict__.get("_memories", ()):
            self.__dict__.pop("_fused_cache", None)
            self.__dict__.pop("_hook_kernel_cache", None)

    # -- SpikingJelly 2.0's functional-state API -------------------------------------------------
    @staticmethod
    def apply_hard_reset(v: torch.Tensor, spike: torch.Tensor, v_reset: float) -> torch.Tensor:
        """V <- v_reset where a spike was fired, else unchanged: (1 - S) V + S v_reset."""
        return (1.0 - spike) * v + spike * v_reset

    @staticmethod
    def apply_soft_reset(v: torch.Tensor, spike: torch.Tensor, v_threshold: float) -> torch.Tensor:
        """V <- V - v_threshold S."""
        return v - spike * v_threshold

    def materialize_states(self, inputs: tuple, states: tuple, step_mode: str) -> tuple:
        """The membrane state (the first memory) as a tensor shaped like one input step; other states as
        they are (subclasses with more state variables materialise theirs)."""
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        return (state_tensor(self, states[0], x, "v"), *states[1:])

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        """One step on explicit states ``(v, ...)``: the fused op for IF/LIF/PLIF, else the Python hooks
        ``neuronal_charge`` / ``neuronal_fire`` / ``neuronal_reset`` (SpikingJelly 1.x-style subclasses)."""
        x = inputs[0]
        fused = self._fused()
        if fused is not None:
            spikes, v, _ = self._run_fused(fused, x.unsqueeze(0), states[0])
            return (spikes[0],), (v, *states[1:])
        if type(self).neuronal_charge is BaseNode.neuronal_charge:
            self.neuronal_charge(x)  # raises the error that says what to define
        names = tuple(self._memories)
        saved = dict(self._memories)
        try:
            self._memories.update(zip(names, states))
            self.neuronal_charge(x)
            spike = self.neuronal_fire()
            self.neuronal_reset(spike)
            new_states = tuple(self._memories[n] for n in names)
        finally:
            self._memories.update(saved)
        return (spike,), new_states

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        """A sequence on explicit states: one fused call for IF/LIF/PLIF, else a loop over
        ``single_step_functional_forward``."""
        fused = self._fused()
        if fused is not None and len(inputs) == 1:
            spikes, v, _ = self._run_fused(fused, inputs[0], states[0])
            return (spikes,), (v, *states[1:])
        return super().multi_step_functional_forward(inputs, states, **kwargs)

    def _v_seq_source(self):
        """The tensor appended to ``v_seq`` after each step (None: this neuron keeps no v_seq)."""
        return self.v

    def _append_v_seq(self, v: torch.Tensor) -> None:
        step = v.unsqueeze(0)
        seq = self.v_seq
        if seq is None or seq.shape[1:] != step.shape[1:] or seq.dtype != step.dtype or seq.device != step.device:
            self.v_seq = step
        else:
            self.v_seq = torch.cat((seq, step))

    def _functional_single_step_forward(self, x: torch.Tensor, *args, **kwargs):
        outputs = MemoryModule.single_step_forward(self, x, *args, **kwargs)
        if self.store_v_seq:
            v = self._v_seq_source()
            if isinstance(v, torch.Tensor):
                self._append_v_seq(v)
        return outputs

    def _multi_step_with_v_seq(self, inputs: tuple, states: tuple, **kwargs):
        """``multi_step_functional_forward`` that also returns the state after every step:
        ``(outputs, new_states, v_seq)`` with v_seq the first state stacked over time. A fused kernel that
        writes V per step replaces this loop."""
        steps, v_steps = [], []
        for t in range(inputs[0].shape[0]):
            outputs, states = self.single_step_functional_forward(tuple(x[t] for x in inputs), states, **kwargs)
            steps.append(outputs)
            v_steps.append(states[0])
        return tuple(torch.stack(seq) for seq in zip(*steps)), states, torch.stack(v_steps)

    def _functional_multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs):
        if not self.store_v_seq:
            return MemoryModule.multi_step_forward(self, x_seq, *args, **kwargs)
        inputs = (x_seq, *args)
        states = self.materialize_states(inputs, tuple(self._memories.values()), "m")
        outputs, states, v_seq = self._multi_step_with_v_seq(inputs, states, **kwargs)
        self._store_states(states)
        self.v_seq = v_seq
        return outputs[0] if len(outputs) == 1 else outputs

    def _check_input(self, x, step_ndim: int) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a torch.Tensor, but got {type(x).__name__}.")
        if not x.is_floating_point():
            raise TypeError(f"{type(self).__name__}: input must be a floating-point tensor, but got {x.dtype}.")
        if x.ndim < step_ndim:
            want = "[T, N, *]" if self.step_mode == "m" else "[N, *]"
            raise ValueError(f"{type(self).__name__} in step_mode='{self.step_mode}' expects input of shape {want}, "
                             f"but got shape {tuple(x.shape)}.")

    def _initial_v(self, x: torch.Tensor, step_shape, as_tensor: bool = True):
        """The state before this call, checked against one input step of shape ``step_shape``; a state that
        is still the number it was reset to is returned as that number when ``as_tensor`` is False (the
        fused op takes it as it is)."""
        v = self._memories["v"]  # what ``self.v`` reads, without nn.Module's attribute miss first
        if not isinstance(v, torch.Tensor):
            return torch.full(step_shape, float(v), dtype=x.dtype, device=x.device) if as_tensor else float(v)
        if v.shape != step_shape:
            raise RuntimeError(
                f"{type(self).__name__}: the stored membrane state v has shape {tuple(v.shape)} but this input step "
                f"has shape {tuple(step_shape)}. The batch or feature size changed without a reset: call "
                "functional.reset_net(net) between independent batches.")
        if v.dtype != x.dtype or v.device != x.device:
            v = v.to(dtype=x.dtype, device=x.device)
        return v

    def single_step_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self._check_input(x, 1)
        fused = self._fused()  # not None: no functional-style or hook dynamics of a subclass (``_fused_ok``)
        if fused is not None and not args and not kwargs and not self._store_v_seq:  # the common case, per step
            spikes, v, _ = self._run_fused(fused, x.unsqueeze(0), self._initial_v(x, x.shape, False))
            self._memories["v"] = v
            return spikes[0]
        if _functional_style(type(self)):
            return self._functional_single_step_forward(x, *args, **kwargs)
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.single_step_forward takes one input tensor, but got "
                            f"{1 + len(args)} inputs and keyword arguments {sorted(kwargs)}.")
        hooks = hook_kernel(self, x) if fused is None else None
        ran = run_hook_kernel(self, hooks, x.unsqueeze(0)) if hooks is not None else None
        if ran is not None:
            spike = ran[0][0]
        elif fused is None:
            self.v = self._initial_v(x, x.shape)
            self.neuronal_charge(x)
            spike = self.neuronal_fire()
            self.neuronal_reset(spike)
        else:
            spikes, v, _ = self._run_fused(fused, x.unsqueeze(0), self._initial_v(x, x.shape, False))
            spike = spikes[0]
            self._memories["v"] = v
        if self.store_v_seq:
            v_step = self.v.unsqueeze(0)
            if self.v_seq is None or self.v_seq.shape[1:] != v_step.shape[1:]:
                self.v_seq = v_step
            else:
                self.v_seq = torch.cat((self.v_seq, v_step))
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self._check_input(x_seq, 2)
        fused = self._fused()  # not None: no functional-style or hook dynamics of a subclass (``_fused_ok``)
        if fused is not None and not args and not kwargs:  # the common case
            store = self._store_v_seq
            spikes, v, v_seq = self._run_fused(fused, x_seq, self._initial_v(x_seq, x_seq.shape[1:], False), store)
            self._memories["v"] = v
            if store:
                self.v_seq = v_seq
            return spikes
        if _functional_style(type(self)):
            return self._functional_multi_step_forward(x_seq, *args, **kwargs)
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.multi_step_forward takes one input tensor, but got "
                            f"{1 + len(args)} inputs and keyword arguments {sorted(kwargs)}.")
        # no fused op: the neuron compiler's kernels for hook-style dynamics, else the Python step loop
        hooks = hook_kernel(self, x_seq)
        ran = run_hook_kernel(self, hooks, x_seq, self.store_v_seq) if hooks is not None else None
        if ran is not None:
            if self.store_v_seq:
                self.v_seq = ran[1]
            return ran[0]
        spikes, vs = [], []
        keep = self.store_v_seq
        self.store_v_seq = False
        try:
            for x in x_seq:
                spikes.append(self.single_step_forward(x))
                vs.append(self.v)
        finally:
            self.store_v_seq = keep
        if keep:
            self.v_seq = torch.stack(vs)
        return torch.stack(spikes)


def _common(node: BaseNode) -> dict:
    return dict(v_threshold=node.v_threshold, v_reset=node.v_reset, surrogate_function=node.surrogate_function,
                detach_reset=node.detach_reset, backend=node.backend)


class IFNode(BaseNode):
    """Integrate-and-fire: H[t] = V[t-1] + X[t]."""

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 backend: str = "auto"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq, backend)

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + x

    def _op_kwargs(self):
        return dict(mode="if", **_common(self))


IFNode._fused_class = IFNode


class LIFNode(BaseNode):
    """Leaky integrate-and-fire with time constant tau (> 1).

    decay_input=True:  H = V + (X - (V - V_reset)) / tau
    decay_input=False: H = V - (V - V_reset) / tau + X      (V_reset taken as 0 with soft reset)
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 backend: str = "auto"):
        _checks.tau("LIFNode", tau)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq, backend)
        self.tau = float(tau)
        self.decay_input = bool(decay_input)

    def extra_repr(self):
        return super().extra_repr() + f", tau={self.tau}"

    def neuronal_charge(self, x: torch.Tensor) -> None:
        vr = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            self.v = self.v + (x - (self.v - vr)) / self.tau
        else:
            self.v = self.v - (self.v - vr) / self.tau + x

    def _op_kwargs(self):
        return dict(mode="lif", tau=self.tau, decay_input=self.decay_input, **_common(self))


LIFNode._fused_class = LIFNode


class ParametricLIFNode(BaseNode):
    """LIF with a learnable time constant (Fang et al., ICCV 2021): 1/tau = sigmoid(w), w initialised
    to -log(init_tau - 1); ``w`` is the parameter's state_dict key, as in SpikingJelly."""

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 backend: str = "auto"):
        _checks.tau("ParametricLIFNode", init_tau, "init_tau")
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq, backend)
        self.decay_input = bool(decay_input)
        self.w = nn.Parameter(torch.as_tensor(-math.log(init_tau - 1.0)))

    def extra_repr(self):
        with torch.no_grad():
            tau = 1.0 / self.w.sigmoid()
        return super().extra_repr() + f", tau={tau}"

    def neuronal_charge(self, x: torch.Tensor) -> None:
        vr = 0.0 if self.v_reset is None else self.v_reset
        k = self.w.sigmoid()
        if self.decay_input:
            self.v = self.v + (x - (self.v - vr)) * k
        else:
            self.v = self.v - (self.v - vr) * k + x

    def _op_kwargs(self):
        return dict(mode="plif", decay_input=self.decay_input, **_common(self))

    def _op_per_call(self) -> dict:
        return {"w": self.w}


ParametricLIFNode._fused_class = ParametricLIFNode
