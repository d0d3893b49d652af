"""Integrate-and-fire neurons (SpikingJelly 2.0's ``neuron.integrate_and_fire`` names).

IFNode and NonSpikingIFNode live in fastspike.neuron.node / .nonspiking (fused kernels); defined here, on
the per-step functions of fastspike.neuron.dynamics:

* ``SimpleIFNode``: H = V + X on SimpleBaseNode (the minimal, hook-based neuron).
* ``HalfThresholdIFNode``: IF with soft reset whose membrane starts (and resets) at v_threshold / 2, so a
  converted ANN's activations round to the nearest spike count instead of down.
* ``ActivationAwareIFNode``: IF whose firing test is H + v_offset >= v_threshold, with scalar or per-channel
  thresholds and offsets (buffers ``v_threshold`` and ``v_offset``), for ANN-to-SNN conversion. With a fused
  surrogate both step modes run the fused op (ops.multistep_neuron, mode 'if', fire 'offset'), scalar or per-channel
  thresholds and offsets alike (the per-channel ones as 1-D tensors along the op's ``channel_dim``).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Union

import torch

from .. import surrogate
from ..base import MemoryModule
from ..ops.neuron import multistep_neuron
from .base_node import SimpleBaseNode
from .dynamics import activation_aware_if_step, if_step
from .node import BaseNode, IFNode, state_tensor
from .nonspiking import NonSpikingIFNode

__all__ = ["SimpleIFNode", "IFNode", "HalfThresholdIFNode", "ActivationAwareIFNode", "NonSpikingIFNode"]


class SimpleIFNode(SimpleBaseNode):
    """SimpleBaseNode with H = V + X."""

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode)

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + x


class HalfThresholdIFNode(BaseNode):
    """IF with soft reset and V starting at v_threshold / 2 (also after ``reset()``)."""

    def __init__(self, v_threshold: float = 1.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False):
        if isinstance(v_threshold, torch.Tensor):
            if v_threshold.numel() != 1:
                raise ValueError(f"HalfThresholdIFNode: v_threshold must be one finite positive number, but got a "
                                 f"tensor of shape {tuple(v_threshold.shape)}.")
            v_threshold = float(v_threshold)
        elif not isinstance(v_threshold, numbers.Real) or isinstance(v_threshold, bool):
            raise TypeError(f"HalfThresholdIFNode: v_threshold must be a real number, but got {v_threshold!r}.")
        v_threshold = float(v_threshold)
        if not (v_threshold > 0.0 and v_threshold != float("inf")):
            raise ValueError(f"HalfThresholdIFNode: v_threshold must be finite and positive, but got {v_threshold}.")
        super().__init__(v_threshold, None, surrogate_function, detach_reset, step_mode, store_v_seq)
        self.set_reset_value("v", v_threshold / 2.0)
        self.v = v_threshold / 2.0

    def single_step_functional_forward(self, inputs, states, **kwargs):
        spike, v = if_step(inputs[0], states[0], self.v_threshold, None, self.surrogate_function, self.detach_reset)
        return (spike,), (v, *states[1:])


def _check_vector(name: str, value, positive: bool) -> torch.Tensor:
    t = torch.as_tensor(value).clone().detach()
    if t.dim() > 1:
        raise ValueError(f"ActivationAwareIFNode: {name} must be a scalar or 1D tensor, "
                         f"but got shape {tuple(t.shape)}.")
    f = t if t.is_floating_point() else t.to(torch.float)
    if not torch.isfinite(f).all() or (positive and not (f > 0).all()):
        raise ValueError(f"ActivationAwareIFNode: {name} must contain finite{' positive' if positive else ''} "
                         f"values, but got {value!r}.")
    return t


def _read_on_device(buf: torch.Tensor) -> bool:
    """Whether ActivationAwareIFNode hands a 0-d threshold / offset buffer to the op as a tensor (read by the kernels
    on its device) rather than as a number (a host read: a synchronisation on an accelerator)."""
    return buf.device.type != "cpu"


class ActivationAwareIFNode(MemoryModule):
    """IF with S = Heaviside(V + X + v_offset - v_threshold); reset to v_reset (hard) or by v_threshold (soft,
    the default). ``v_threshold`` / ``v_offset``: numbers or 1D tensors with one value per channel of the input
    (the channel axis is ``channel_dim`` of one step's input [N, *])."""

    def __init__(self, v_threshold: Union[float, torch.Tensor] = 1.0, v_offset: Union[float, torch.Tensor] = 0.0,
                 channel_dim: int = -1, v_reset: Optional[float] = None,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False):
        super().__init__()
        if step_mode not in ("s", "m"):
            raise ValueError(f"ActivationAwareIFNode: step_mode must be 's' or 'm', but got {step_mode!r}.")
        if v_reset is not None and (not isinstance(v_reset, numbers.Real) or isinstance(v_reset, bool)):
            raise ValueError(f"ActivationAwareIFNode: v_reset must be a float or None, but got {v_reset!r}.")
        for name, flag in (("detach_reset", detach_reset), ("store_v_seq", store_v_seq)):
            if not isinstance(flag, bool):
                raise ValueError(f"ActivationAwareIFNode: {name} must be a bool, but got {flag!r}.")
        if not isinstance(channel_dim, int) or isinstance(channel_dim, bool):
            raise ValueError(f"ActivationAwareIFNode: channel_dim must be an int, but got {channel_dim!r}.")
        self.register_buffer("v_threshold", _check_vector("v_threshold", v_threshold, True))
        self.register_buffer("v_offset", _check_vector("v_offset", v_offset, False))
        self.channel_dim = channel_dim
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = detach_reset
        self.surrogate_function = surrogate_function
        self.register_memory("v", 0.0 if v_reset is None else float(v_reset))
        self.store_v_seq = store_v_seq
        self.step_mode = step_mode

    @property
    def store_v_seq(self) -> bool:
        return self._store_v_seq

    @store_v_seq.setter
    def store_v_seq(self, value: bool) -> None:
        self._store_v_seq = value
        self.v_seq = None

    def reset(self) -> None:
        super().reset()
        self.v_seq = None

    def _channel_axis(self, param: torch.Tensor, shape, name: str) -> int:
        """The channel dimension of one input step of ``shape`` for a 1-D ``param``, checked."""
        dim = self.channel_dim + len(shape) if self.channel_dim < 0 else self.channel_dim
        if not 0 <= dim < len(shape):
            raise ValueError(f"ActivationAwareIFNode: channel_dim={self.channel_dim} is out of range for an input "
                             f"step with {len(shape)} dimensions.")
        if param.numel() != shape[dim]:
            raise ValueError(f"ActivationAwareIFNode: {name} has length {param.numel()}, but the input step of shape "
                             f"{tuple(shape)} has {shape[dim]} channels at channel_dim={self.channel_dim}.")
        return dim

    def _per_channel(self, param: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
        param = param.to(device=x.device, dtype=x.dtype)
        if param.dim() == 0:
            return param
        dim = self._channel_axis(param, x.shape, name)
        shape = [1] * x.dim()
        shape[dim] = param.numel()
        return param.view(shape)

    def materialize_states(self, inputs, states, step_mode):
        return (state_tensor(self, states[0], inputs[0][0] if step_mode == "m" else inputs[0], "v"),
                *states[1:])

    def _op_kwargs(self) -> Optional[dict]:
        """The fused op's arguments (multistep_neuron, mode 'if', fire 'offset') when it can run this neuron: a
        fused surrogate, no subclass redefining the step; else None. 1-D buffers go to the op as tensors along the
        op's ``channel_dim`` (the module's counts one step's dimensions, the op's x_seq's, so a non-negative one moves
        up by one); 0-d ones too when they live on an accelerator (the kernels read them there: no host
        synchronisation, so a CUDA graph can capture the layer), while on the CPU they are read as numbers (a NaN
        then takes the Python path)."""
        cls = type(self)
        if (cls.single_step_functional_forward is not ActivationAwareIFNode.single_step_functional_forward
                or cls.multi_step_functional_forward is not ActivationAwareIFNode.multi_step_functional_forward
                or self.v_threshold.dim() > 1 or self.v_offset.dim() > 1):
            return None
        spec = getattr(self.surrogate_function, "kernel_spec", None)
        if spec is None or spec() is None:
            return None
        params = []
        for buf in (self.v_threshold, self.v_offset):
            if buf.dim() or _read_on_device(buf):
                params.append(buf)
                continue
            value = float(buf)
            if not math.isfinite(value):
                return None
            params.append(value)
        return dict(mode="if", fire="offset", v_threshold=params[0], v_offset=params[1], v_reset=self.v_reset,
                    surrogate_function=self.surrogate_function, detach_reset=self.detach_reset,
                    channel_dim=self.channel_dim if self.channel_dim < 0 else self.channel_dim + 1,
                    backend=getattr(self, "backend", "auto"))

    def _check_channels(self, kw: dict, step_shape) -> dict:
        """``kw`` after the module's own checks of 1-D thresholds / offsets against one input step's shape."""
        for name in ("v_threshold", "v_offset"):
            if isinstance(kw[name], torch.Tensor) and kw[name].dim():
                self._channel_axis(kw[name], step_shape, name)
        return kw

    def single_step_functional_forward(self, inputs, states, **kwargs):
        x = inputs[0]
        kw = self._op_kwargs() if len(inputs) == 1 else None
        if kw is not None:
            spikes, v, _ = multistep_neuron(x.unsqueeze(0), states[0], **self._check_channels(kw, x.shape))
            return (spikes[0],), (v, *states[1:])
        spike, v = activation_aware_if_step(x, states[0], self._per_channel(self.v_threshold, x, "v_threshold"),
                                            self._per_channel(self.v_offset, x, "v_offset"), self.v_reset,
                                            self.surrogate_function, self.detach_reset)
        return (spike,), (v, *states[1:])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        kw = self._op_kwargs() if len(inputs) == 1 else None
        if kw is None:
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        spikes, v, _ = multistep_neuron(inputs[0], states[0], **self._check_channels(kw, inputs[0].shape[1:]))
        return (spikes,), (v, *states[1:])

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs):
        if not self.store_v_seq:
            self.v_seq = None
            return super().multi_step_forward(x_seq, *args, **kwargs)
        states = self.materialize_states((x_seq, *args), tuple(self._memories.values()), "m")
        kw = self._op_kwargs() if not args else None
        if kw is not None:
            kw = self._check_channels(kw, x_seq.shape[1:])
            spikes, v, v_seq = multistep_neuron(x_seq, states[0], store_v_seq=True, **kw)
            self._store_states((v, *states[1:]))
            self.v_seq = v_seq
            return spikes
        spikes, v_steps = [], []
        for x in x_seq:
            (spike,), states = self.single_step_functional_forward((x,), states, **kwargs)
            spikes.append(spike)
            v_steps.append(states[0])
        self._store_states(states)
        self.v_seq = torch.stack(v_steps)
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return (f"v_threshold_shape={tuple(self.v_threshold.shape)}, v_offset_shape={tuple(self.v_offset.shape)}, "
                f"channel_dim={self.channel_dim}, v_reset={self.v_reset}, detach_reset={self.detach_reset}, "
                f"step_mode={self.step_mode}")
