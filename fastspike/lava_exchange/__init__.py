"""Lava / Loihi exchange with SpikingJelly 2.0's ``activation_based.lava_exchange`` names.

Without Lava (lava-dl needs Python < 3.11, so it is not installed here):

* ``quantize_8b``/``quantize_8bit``, ``right_shift_to_zero``, ``step_quantize``: Loihi's 8-bit weight grid
  (``2k / scale``, k in -128..127) and sign-magnitude shifts;
* ``LeakyIntegratorStep``: one integer leaky-integration step ``y = sgn((s x) (4096 - d)) >> 12 + s x`` in
  units of ``1/s`` (``s`` = the state scale), with a straight-through style backward;
* ``CubaLIFNode``: Lava's current-based LIF (``I = (1 - a_I) I + X``, ``V = (1 - a_V) V + I``, spike when
  ``V >= v_th + 0.01/s``, reset to 0) on that integer grid, optionally with Lava's weight-scale ``BatchNorm2d``;
* ``BlockContainer``: a synapse (Conv2d/Linear without bias, ``SumPool2d``, Flatten) plus a ``CubaLIFNode`` (an
  ``IFNode``/``LIFNode(decay_input=False)`` with ``v_reset=0`` is converted), the unit Lava trains and deploys;
  weights are quantized to the 8-bit grid in the forward pass;
* ``TNX_to_NXT``/``NXT_to_TNX`` (Lava's time-last layout), ``check_instance``, ``check_no_bias``,
  ``to_lava_neuron_param_dict``;
* fastspike's bridge to its own Loihi 2 exporter: ``BlockContainer.to_loihi_block()`` and
  ``export_netx(blocks, path, input_shape)`` write the lava-dl netx HDF5 file of ``fastspike.export.to_loihi``
  (no Lava needed), which ``fastspike.export.loihi.simulate`` runs bit-accurately.

With Lava installed: ``to_lava_neuron``, ``*_to_lava_synapse_*``, ``to_lava_block_*``, ``to_lava_blocks``,
``BlockContainer.to_lava_block`` and ``BatchNorm2d.to_lava`` build lava-dl slayer objects; without it they raise
an ImportError that says so. They follow slayer's public API and are not exercised here (docs/export.md).
"""
from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import base, quantize, surrogate
from .._apply import fast_apply

from ._lava_dl import (_LAVA_SCALE, _conv_args, _decays, _slayer, avgpool2d_to_lava_synapse_pool,
                       check_instance, check_no_bias, conv2d_to_lava_synapse_conv, linear_to_lava_synapse_dense,
                       to_lava_block_conv, to_lava_block_dense, to_lava_block_flatten, to_lava_block_pool,
                       to_lava_blocks, to_lava_neuron, to_lava_neuron_param_dict)

__all__ = ["quantize_8b", "quantize_8bit", "step_quantize", "right_shift_to_zero", "BatchNorm2d", "LeakyIntegratorStep",
           "CubaLIFNode", "TNX_to_NXT", "NXT_to_TNX", "lava_neuron_forward", "check_instance", "check_no_bias",
           "to_lava_neuron_param_dict", "to_lava_neuron", "linear_to_lava_synapse_dense", "conv2d_to_lava_synapse_conv",
           "avgpool2d_to_lava_synapse_pool", "to_lava_block_dense", "to_lava_block_conv", "to_lava_block_pool",
           "to_lava_block_flatten", "to_lava_blocks", "SumPool2d", "BlockContainer", "export_netx"]

_hw_bits = 12
step_quantize = quantize.step_quantize


def __getattr__(name: str):
    """``lava_exchange.slayer`` is lava-dl's ``lava.lib.dl.slayer`` module, as in SpikingJelly, where it exists only
    when lava-dl is installed: without lava-dl it is an AttributeError that says what to install."""
    if name == "slayer":
        try:
            return _slayer()
        except ImportError as e:
            raise AttributeError(f"fastspike.lava_exchange.slayer is lava-dl's lava.lib.dl.slayer module: {e}") from e
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def quantize_8b(x: torch.Tensor, scale, descale: bool = False) -> torch.Tensor:
    """``x`` on the grid ``2k / scale``, k in -128..127 (straight-through gradient); times ``scale`` with
    ``descale=True``."""
    y = step_quantize(x, step=2 / scale).clamp(-256 / scale, 255 / scale)
    return y * scale if descale else y


quantize_8bit = quantize_8b


def right_shift_to_zero(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``sign(x) * (|x| >> bits)``: an arithmetic right shift rounding toward zero (int32/int64 tensors)."""
    if not isinstance(x, torch.Tensor) or x.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"right_shift_to_zero: x must be an int32 or int64 tensor, but got "
                        f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}.")
    return (torch.sign(x) * (torch.abs(x) >> bits)).to(x.dtype)


class LeakyIntegratorStep(torch.autograd.Function):
    """``apply(x, decay, state, w_scale)``: one leaky-integration step on Loihi's integer grid (module docstring).
    Backward: d/dx = 1, d/dstate = 1 - decay/4096, d/ddecay = -sum(state * g) / 4096."""

    generate_vmap_rule = True  # PyTorch operations only (setup_context style: torch.func transforms apply it)

    @staticmethod
    def forward(x, decay, state, w_scale):
        unity = 1 << _hw_bits
        scaled = (state * w_scale).to(torch.int64)
        out = right_shift_to_zero(scaled * (unity - decay.to(torch.int64)), _hw_bits) + (w_scale * x).to(torch.int64)
        return out / w_scale

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1], inputs[2])

    @staticmethod
    def backward(ctx, grad_output):
        decay, state = ctx.saved_tensors
        unity = 1 << _hw_bits
        return grad_output, (-state / unity * grad_output).sum(), (1 - decay / unity) * grad_output, None


_leaky_step = fast_apply(LeakyIntegratorStep)


class BatchNorm2d(nn.Module):
    """Lava's weight-scale BatchNorm (slayer ``WgtScaleBatchNorm``): ``(x - mean) / 2^ceil(log2 std)`` with the
    exponent clamped to +-``weight_exp_bits``, one variance for all channels, no affine parameters. In training
    the running statistics follow ``momentum``; ``pre_hook_fx`` quantizes the mean (CubaLIFNode sets it)."""

    def __init__(self, num_features: int, eps: float = 1e-05, momentum: float = 0.1, track_running_stats: bool = True,
                 weight_exp_bits: int = 3, pre_hook_fx: Callable = lambda x: x):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        self.weight_exp_bits = weight_exp_bits
        self.pre_hook_fx = pre_hook_fx
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.zeros(1))

    def to_lava(self):
        bn = _slayer().neuron.norm.WgtScaleBatchNorm(num_features=self.num_features, momentum=self.momentum,
                                                     weight_exp_bits=self.weight_exp_bits, eps=self.eps,
                                                     pre_hook_fx=self.pre_hook_fx)
        bn.load_state_dict(self.state_dict())
        return bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.track_running_stats and self.training:
            mean = torch.mean(x, dim=(0, 2, 3), keepdim=True)
            var = torch.var(x, unbiased=False)
            n = x.numel() / self.num_features
            with torch.no_grad():
                self.running_mean = (1.0 - self.momentum) * self.running_mean + self.momentum * mean.squeeze()
                self.running_var = (1.0 - self.momentum) * self.running_var + self.momentum * var * n / (n + 1)
        else:
            mean, var = self.running_mean.view(1, -1, 1, 1), self.running_var.view(1, -1, 1, 1)
        std = torch.sqrt(var + self.eps)
        std = torch.pow(2.0, torch.ceil(torch.log2(std)).clamp(-self.weight_exp_bits, self.weight_exp_bits))
        return (x - self.pre_hook_fx(mean)) / std


class CubaLIFNode(base.MemoryModule):
    """Lava's CUBA LIF neuron (module docstring), SpikingJelly's arguments: decays are fractions (stored times
    4096 as ``current_decay``/``voltage_decay``, trainable with ``requires_grad``), ``scale`` gives
    ``s_scale = scale * 64``; only ``v_reset = 0`` (hard reset). ``norm``: a :class:`BatchNorm2d` applied to the
    current. Memories ``current_state`` and ``voltage_state``."""

    def __init__(self, current_decay: Union[float, torch.Tensor], voltage_decay: Union[float, torch.Tensor],
                 v_threshold: float = 1.0, v_reset: float = 0.0, scale=1 << 6, requires_grad=False,
                 surrogate_function: Callable = surrogate.Sigmoid(), norm: BatchNorm2d = None, detach_reset=False,
                 step_mode="s", store_v_seq: bool = False, store_i_seq: bool = False):
        super().__init__()
        if v_reset != 0.0:
            raise ValueError(f"CubaLIFNode: Lava's CUBA neuron resets to 0, so v_reset must be 0.0, but got "
                             f"{v_reset!r}.")
        if norm is not None and not isinstance(norm, BatchNorm2d):
            raise NotImplementedError(f"CubaLIFNode: norm must be a fastspike.lava_exchange.BatchNorm2d, but got "
                                      f"{type(norm).__name__}.")
        self.lava_cuba_neuron_params = {"threshold": v_threshold, "current_decay": current_decay,
                                        "voltage_decay": voltage_decay, "scale": scale}
        self.v_threshold, self.v_reset = v_threshold, v_reset
        self.surrogate_function, self.detach_reset = surrogate_function, detach_reset
        self.step_mode, self.store_v_seq, self.store_i_seq = step_mode, store_v_seq, store_i_seq
        self.requires_grad = requires_grad
        self._scale, self._s_scale, self._p_scale = int(scale), int(scale * (1 << 6)), 1 << _hw_bits
        self.v_threshold_eps = 0.01 / self.s_scale  # Loihi fires on v > th; v + eps >= th approximates it
        cd = torch.tensor(self.p_scale * current_decay, dtype=torch.float32)
        vd = torch.tensor(self.p_scale * voltage_decay, dtype=torch.float32)
        if requires_grad:
            self.current_decay, self.voltage_decay = nn.Parameter(cd), nn.Parameter(vd)
        else:
            self.register_buffer("current_decay", cd)
            self.register_buffer("voltage_decay", vd)
        self.register_memory("current_state", 0.0)
        self.register_memory("voltage_state", 0.0)
        self.clamp_decay_parameters()
        self.norm = norm
        if norm is not None:
            norm.pre_hook_fx = self.quantize_8bit
        self.v_seq = self.i_seq = None

    scale = property(lambda self: self._scale)
    s_scale = property(lambda self: self._s_scale)
    p_scale = property(lambda self: self._p_scale)

    def quantize_8bit(self, x, descale=False):
        return quantize_8b(x, scale=self.scale, descale=descale)

    def clamp_decay_parameters(self):
        with torch.no_grad():
            self.current_decay.data.clamp_(min=0.0, max=self.p_scale)
            self.voltage_decay.data.clamp_(min=0.0, max=self.p_scale)

    def reset(self):
        super().reset()
        self.v_seq = self.i_seq = None

    def _state(self, value, x):
        if not isinstance(value, torch.Tensor) or value.shape != x.shape:
            return torch.zeros_like(x)
        return value.to(dtype=x.dtype, device=x.device)

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        cd, vd = self.current_decay, self.voltage_decay
        if self.requires_grad:
            cd, vd = cd.clamp(min=0.0, max=self.p_scale), vd.clamp(min=0.0, max=self.p_scale)
        i = _leaky_step(x, step_quantize(cd), self._state(self.current_state, x).contiguous(),
                                      self.s_scale)
        if self.norm is not None:
            i = self.norm(i)
        v = _leaky_step(i, step_quantize(vd), self._state(self.voltage_state, x).contiguous(),
                                      self.s_scale)
        spike = self.surrogate_function(v - (self.v_threshold + self.v_threshold_eps))
        s = spike.detach() if self.detach_reset else spike
        self.current_state, self.voltage_state = i, s * self.v_reset + (1.0 - s) * v
        return spike

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        spike = self._step(x)
        if self.store_v_seq:
            v = self.voltage_state.unsqueeze(0)
            self.v_seq = v if self.v_seq is None else torch.cat((self.v_seq, v))
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        spikes, vs, cs = [], [], []
        for t in range(x_seq.shape[0]):
            spikes.append(self._step(x_seq[t]))
            vs.append(self.voltage_state)
            cs.append(self.current_state)
        if self.store_v_seq:
            self.v_seq = torch.stack(vs)
        if self.store_i_seq:
            self.i_seq = torch.stack(cs)
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return (f"v_threshold={self.v_threshold}, scale={self.scale}, current_decay={float(self.current_decay):g}, "
                f"voltage_decay={float(self.voltage_decay):g}, step_mode={self.step_mode}")


def TNX_to_NXT(x_seq: torch.Tensor) -> torch.Tensor:
    """[T, N, *] -> [N, *, T] (Lava's layout)."""
    return x_seq.permute(*range(1, x_seq.dim()), 0)


def NXT_to_TNX(x_seq: torch.Tensor) -> torch.Tensor:
    """[N, *, T] -> [T, N, *]."""
    return x_seq.permute(x_seq.dim() - 1, *range(x_seq.dim() - 1))


def lava_neuron_forward(lava_neuron: nn.Module, x_seq: torch.Tensor, v: Union[torch.Tensor, float]):
    """Run a lava-dl neuron on [T, N, *] with initial voltage ``v``; returns (spikes [T, N, *], final v)."""
    squeeze = x_seq.dim() == 2
    if squeeze:
        x_seq = x_seq.unsqueeze(1)
    if isinstance(v, float):
        v = torch.full_like(x_seq[0], v)
    shape = x_seq.shape
    lava_neuron.voltage_state = v
    spike = lava_neuron(x_seq.flatten(2).permute(1, 2, 0)).permute(2, 0, 1).reshape(shape)
    v = lava_neuron.voltage_state.reshape(shape[1:])
    return (spike.squeeze(1), v.squeeze(1)) if squeeze else (spike, v)


class SumPool2d(nn.Module):
    """SpikingJelly's pooling for Lava blocks (the geometry of slayer's Pool). As in SpikingJelly 2.0.0, the
    forward averages (``F.avg_pool2d``) when ``dilation`` is 1 and sums with a dilated all-ones kernel otherwise."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        self.kernel_size = pair(kernel_size)
        self.stride = pair(kernel_size if stride is None else stride)
        self.padding, self.dilation = pair(padding), pair(dilation)
        self.weight = torch.ones(1, 1, *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dilation == (1, 1):
            return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
        n, c, h, w = x.shape
        y = F.conv2d(x.reshape(n * c, 1, h, w), self.weight.to(x), None, self.stride, self.padding, self.dilation)
        return y.reshape(n, c, *y.shape[2:])


class BlockContainer(nn.Module, base.StepModule):
    """A Lava block: ``synapse`` (Conv2d/Linear without bias, :class:`SumPool2d`, or Flatten(start_dim=1) with
    ``neu=None``) then ``neu`` (a :class:`CubaLIFNode`; an IFNode or LIFNode(decay_input=False) with v_reset=0 is
    converted). Forward quantizes the weights to the 8-bit grid (straight-through), as Lava deploys them."""

    def __init__(self, synapse: Union[nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.Flatten], neu: Optional[CubaLIFNode],
                 step_mode: str = "s"):
        super().__init__()
        if isinstance(synapse, nn.Flatten):
            if neu is not None:
                raise ValueError("BlockContainer: a Flatten block has no neuron (neu=None).")
            if synapse.start_dim != 1:
                raise ValueError(f"BlockContainer: Lava flattens from dimension 1 only, but got start_dim="
                                 f"{synapse.start_dim}.")
        else:
            if not isinstance(neu, CubaLIFNode):
                cd, vd = _decays(neu)
                neu = CubaLIFNode(current_decay=cd, voltage_decay=vd, v_threshold=neu.v_threshold,
                                  scale=getattr(neu, "lava_s_cale", _LAVA_SCALE))
            if isinstance(synapse, (nn.Conv2d, nn.Linear)):
                check_no_bias(synapse)
        self.synapse, self.neuron = synapse, neu
        self.step_mode = step_mode

    @property
    def step_mode(self):
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str):
        if value not in self.supported_step_mode():
            raise ValueError(f"BlockContainer: step_mode must be one of {self.supported_step_mode()}, but got "
                             f"{value!r}.")
        self._step_mode = value
        if isinstance(getattr(self, "neuron", None), base.StepModule):
            self.neuron.step_mode = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "m":
            T, N = x.shape[:2]
            x = x.flatten(0, 1)
        s = self.synapse
        if isinstance(s, nn.Conv2d):
            x = F.conv2d(x, self.neuron.quantize_8bit(s.weight), None, s.stride, s.padding, s.dilation, s.groups)
        elif isinstance(s, nn.Linear):
            x = F.linear(x, self.neuron.quantize_8bit(s.weight))
        elif isinstance(s, (SumPool2d, nn.Flatten)):
            x = s(x)
        else:
            raise NotImplementedError(f"BlockContainer: unsupported synapse {type(s).__name__}.")
        if self.step_mode == "m":
            x = x.reshape(T, N, *x.shape[1:])
        return self.neuron(x) if self.neuron is not None else x

    def to_lava_block(self):
        slayer = _slayer()
        params, s = self.neuron.lava_cuba_neuron_params if self.neuron is not None else None, self.synapse
        if isinstance(s, nn.Flatten):
            return slayer.block.cuba.Flatten()
        if isinstance(s, nn.Linear):
            block = slayer.block.cuba.Dense(params, s.in_features, s.out_features, delay_shift=False)
            block.synapse.weight.data[:, :, 0, 0, 0] = s.weight.data.clone()
        elif isinstance(s, nn.Conv2d):
            block = slayer.block.cuba.Conv(params, **_conv_args(s), delay_shift=False)
            block.synapse.weight.data[:, :, :, :, 0] = s.weight.data.clone()
        elif isinstance(s, SumPool2d):
            block = slayer.block.cuba.Pool(params, s.kernel_size, s.stride, s.padding, s.dilation, delay_shift=False)
        else:
            raise NotImplementedError(f"BlockContainer: unsupported synapse {type(s).__name__}.")
        if self.neuron.norm is not None:
            block.neuron.norm = self.neuron.norm.to_lava()
        return block

    def to_loihi_block(self, flatten_before: bool = False, name: str = ""):
        """This block as a ``fastspike.export.loihi.LoihiBlock`` (the integers of the netx file): weights
        ``2 * round(W * scale / 2)``, ``vThMant = round(v_threshold * scale)``, the decays as they are (x4096)."""
        from ..export.loihi import LoihiBlock

        s, n = self.synapse, self.neuron
        if not isinstance(s, (nn.Conv2d, nn.Linear)):
            raise ValueError(f"to_loihi_block: only Conv2d/Linear blocks become netx blocks (got {type(s).__name__}); "
                             "use strided convolutions instead of pooling.")
        if n.norm is not None:
            raise ValueError("to_loihi_block: blocks with a BatchNorm have no netx equivalent in fastspike's exporter.")
        w = torch.round(n.quantize_8bit(s.weight.detach(), descale=True)).to(torch.int64).numpy().astype(np.int32)
        conv = isinstance(s, nn.Conv2d)
        pair = lambda v: tuple(int(i) for i in v)  # noqa: E731
        return LoihiBlock("conv" if conv else "dense", w, (), int(round(float(step_quantize(n.current_decay)))),
                          int(round(float(step_quantize(n.voltage_decay)))), int(round(n.v_threshold * n.scale)),
                          None, pair(s.stride) if conv else (1, 1), pair(s.padding) if conv else (0, 0),
                          pair(s.dilation) if conv else (1, 1), s.groups if conv else 1, flatten_before,
                          float(n.scale), name)


def export_netx(blocks: Sequence[nn.Module], path: Union[str, os.PathLike], input_shape: Sequence[int]):
    """Write a sequence of :class:`BlockContainer` (Conv2d/Linear blocks and Flatten blocks) as the lava-dl netx
    HDF5 file of ``fastspike.export.to_loihi`` (written atomically; no Lava needed) and return the
    ``LoihiNetwork``; ``fastspike.export.loihi.simulate(path, spikes)`` runs it with Loihi's integer arithmetic.
    ``input_shape``: per-sample (C, H, W) or (F,)."""
    from ..export._util import atomic_write
    from ..export.loihi import LoihiNetwork, write_netx

    net = LoihiNetwork(tuple(int(v) for v in input_shape))
    shape, flatten = tuple(net.input_shape), False
    with torch.no_grad():
        for i, b in enumerate(blocks):
            if not isinstance(b, BlockContainer):
                raise TypeError(f"export_netx: blocks[{i}] must be a BlockContainer, but got {type(b).__name__}.")
            if isinstance(b.synapse, nn.Flatten):
                flatten, shape = True, (int(np.prod(shape)),)
                continue
            block = b.to_loihi_block(flatten_before=flatten, name=str(i))
            probe = b.synapse(torch.zeros(1, *shape)) if isinstance(b.synapse, nn.Conv2d) else None
            block.shape = tuple(probe.shape[1:]) if probe is not None else (b.synapse.out_features,)
            net.blocks.append(block)
            shape, flatten = block.shape, False
    if not net.blocks:
        raise ValueError("export_netx: no Conv2d/Linear block to export.")
    atomic_write(path, lambda tmp: write_netx(net, tmp))
    return net
