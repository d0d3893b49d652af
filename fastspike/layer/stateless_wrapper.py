"""Stateless torch layers with a ``step_mode`` (SpikingJelly 2.0.0's ``layer.stateless_wrapper``: the same module
path, names, arguments, defaults and state_dict keys; its BatchNorm1d/2d/3d are in ``layer.bn``, as there).

Each class subclasses the torch layer and :class:`fastspike.base.StepModule`:

* step_mode 's': the input is one step [N, *] (or what the torch layer accepts) and goes straight to it;
* step_mode 'm': the input is a sequence [T, N, *]; it is folded to [T*N, *], run through the torch layer
  once, and unfolded to [T, N, *out] (``functional.seq_to_ann_forward``). Linear runs on [T, N, *, C]
  directly (``nn.Linear`` takes any leading dimensions).

Parameters and buffers are the torch layer's, so state_dicts load across torch, SpikingJelly and fastspike.
The per-batch computation is the method ``_stateless_forward``: a subclass (e.g. an event-driven synapse)
overrides it and keeps the step-mode handling.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import base, functional
from ..ops.pool import max_pool
from ..ops.synapse import synapse_conv2d, synapse_linear

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Linear",
    "GroupNorm",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "Flatten",
    "Upsample",
    "WSConv2d",
    "WSLinear",
]

# one-step layouts by spatial rank; the 'm' layout is "T, " + the batched one
_LAYOUT = {1: "N, C, L", 2: "N, C, H, W", 3: "N, C, D, H, W"}


class _StepModeWrapper(base.StepModule):
    """Step-mode dispatch shared by every wrapper. Subclasses set:

    * ``_ndim_s``: the input ranks accepted in 's' mode (None: any rank);
    * ``_ndim_m``: the ranks accepted in 'm' mode (None: the largest 's' rank plus one; any rank >= 2 when
      ``_ndim_s`` is None too);
    * ``_layout_s``, ``_layout_m``: the layouts shown in errors, e.g. "N, C, H, W" (``_layout_m`` defaults to
      "T, " + ``_layout_s``);
    * ``_fold_time``: fold [T, N] into the batch in 'm' mode (False: the layer takes [T, N, *] as it is).
    """

    _ndim_s: Optional[tuple] = None
    _ndim_m: Optional[tuple] = None
    _layout_s: str = "N, *"
    _layout_m: Optional[str] = None  # None: "T, " + _layout_s
    _fold_time: bool = True

    def _stateless_forward(self, *args):
        # the torch layer's own forward (next in the MRO after this mixin and StepModule)
        return super().forward(*args)

    def _check_ndim(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        layout_m = self._layout_m or f"T, {self._layout_s}"
        if self._step_mode == "s":
            if self._ndim_s is not None and x.dim() not in self._ndim_s:
                hint = ""
                if x.dim() == max(self._ndim_s) + 1:
                    hint = (f" A sequence [{layout_m}] needs step_mode='m' "
                            "(functional.set_step_mode(net, 'm')).")
                raise ValueError(f"{name} (step_mode='s') expects x with shape [{self._layout_s}], "
                                 f"but got x with shape {tuple(x.shape)}.{hint}")
            return
        if self._ndim_m is not None:
            ok = x.dim() in self._ndim_m
        elif self._ndim_s is not None:
            ok = x.dim() == max(self._ndim_s) + 1
        else:
            ok = x.dim() >= 2
        if not ok:
            hint = ""
            if self._ndim_s is not None and x.dim() == max(self._ndim_s):
                hint = f" One step [{self._layout_s}] needs step_mode='s'."
            raise ValueError(f"{name} (step_mode='m') expects x with shape [{layout_m}], "
                             f"but got x with shape {tuple(x.shape)}.{hint}")

    def forward(self, x: torch.Tensor, *args):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__}: x must be a torch.Tensor, but got {type(x).__name__}.")
        self._check_ndim(x)
        if self._step_mode == "s" or not self._fold_time:
            return self._stateless_forward(x, *args)
        return functional.seq_to_ann_forward(x, self._stateless_forward)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", step_mode={self.step_mode}"


def _check_event_driven(layer, value) -> None:
    if not (value is True or value is False or value == "auto"):
        raise ValueError(f"{type(layer).__name__}: event_driven must be 'auto', True or False, but got {value!r}.")


# ------------------------------------------------------------------------------------------------
# convolutions
# ------------------------------------------------------------------------------------------------
class Conv1d(_StepModeWrapper, nn.Conv1d):
    _ndim_s, _layout_s = (2, 3), _LAYOUT[1]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding: Union[str, int] = 0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 step_mode: str = "s") -> None:
        nn.Conv1d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                           padding_mode)
        self.step_mode = step_mode


def _compact_training(layer, x: torch.Tensor) -> bool:
    """Whether the dense path should go through the synapse op so that its saved input is stored compactly
    (bits for spikes, bytes for spike counts; ops/synapse/formula.py): training on the CPU. The forward and every
    gradient are the same torch convolution / GEMM calls either way."""
    return x.is_cpu and torch.is_grad_enabled() and layer.weight.requires_grad and x.dtype == torch.float32


class Conv2d(_StepModeWrapper, nn.Conv2d):
    """``event_driven`` (fastspike extension): False (default) computes exactly ``nn.Conv2d``; True runs the
    event-driven spike-gather kernel (binary input only, ValueError otherwise); 'auto' measures the input's spike
    density and picks the event or the dense path by the calibrated crossover (docs/synapses.md). In training on
    the CPU every setting keeps the input for the weight gradient compactly when it holds spikes (1 bit each)
    or spike counts (1 byte each), and as it is otherwise."""

    _ndim_s, _layout_s = (3, 4), _LAYOUT[2]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding: Union[str, int] = 0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 step_mode: str = "s", event_driven: Union[str, bool] = False) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                           padding_mode)
        self.step_mode = step_mode
        _check_event_driven(self, event_driven)
        if event_driven is True and padding_mode != "zeros":
            raise ValueError(f"Conv2d: event_driven=True needs padding_mode='zeros', but got {padding_mode!r}.")
        self.event_driven = event_driven

    def _stateless_forward(self, x):
        if self.padding_mode != "zeros" or (self.event_driven is False and not _compact_training(self, x)):
            return super()._stateless_forward(x)
        return synapse_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                              event_driven=self.event_driven)

    def extra_repr(self) -> str:
        extra = f", event_driven={self.event_driven!r}" if self.event_driven is not False else ""
        return super().extra_repr() + extra


class Conv3d(_StepModeWrapper, nn.Conv3d):
    _ndim_s, _layout_s = (4, 5), _LAYOUT[3]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding: Union[str, int] = 0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 step_mode: str = "s") -> None:
        nn.Conv3d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                           padding_mode)
        self.step_mode = step_mode


class ConvTranspose1d(_StepModeWrapper, nn.ConvTranspose1d):
    _ndim_s, _layout_s = (2, 3), _LAYOUT[1]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros",
                 step_mode: str = "s") -> None:
        nn.ConvTranspose1d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, output_padding,
                                    groups, bias, dilation, padding_mode)
        self.step_mode = step_mode


class ConvTranspose2d(_StepModeWrapper, nn.ConvTranspose2d):
    _ndim_s, _layout_s = (3, 4), _LAYOUT[2]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros",
                 step_mode: str = "s") -> None:
        nn.ConvTranspose2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, output_padding,
                                    groups, bias, dilation, padding_mode)
        self.step_mode = step_mode


class ConvTranspose3d(_StepModeWrapper, nn.ConvTranspose3d):
    _ndim_s, _layout_s = (4, 5), _LAYOUT[3]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros",
                 step_mode: str = "s") -> None:
        nn.ConvTranspose3d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, output_padding,
                                    groups, bias, dilation, padding_mode)
        self.step_mode = step_mode


# ------------------------------------------------------------------------------------------------
# linear
# ------------------------------------------------------------------------------------------------
class Linear(_StepModeWrapper, nn.Linear):
    """``nn.Linear`` with a step mode; it takes [N, *, C] and [T, N, *, C] alike (no folding needed).
    ``event_driven`` and the compact storage of the saved input in training are as in :class:`Conv2d`."""

    _fold_time = False

    def __init__(self, in_features: int, out_features: int, bias: bool = True, step_mode: str = "s",
                 event_driven: Union[str, bool] = False) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias)
        self.step_mode = step_mode
        _check_event_driven(self, event_driven)
        self.event_driven = event_driven  # fastspike extension; see Conv2d and docs/synapses.md

    def _stateless_forward(self, x):
        if self.event_driven is False and not _compact_training(self, x):
            return super()._stateless_forward(x)
        return synapse_linear(x, self.weight, self.bias, event_driven=self.event_driven)

    def extra_repr(self) -> str:
        extra = f", event_driven={self.event_driven!r}" if self.event_driven is not False else ""
        return super().extra_repr() + extra


# ------------------------------------------------------------------------------------------------
# normalisation (BatchNorm1d/2d/3d live in layer/bn.py, as in SpikingJelly)
# ------------------------------------------------------------------------------------------------
class GroupNorm(_StepModeWrapper, nn.GroupNorm):
    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 step_mode: str = "s"):
        nn.GroupNorm.__init__(self, num_groups, num_channels, eps, affine)
        self.step_mode = step_mode


# ------------------------------------------------------------------------------------------------
# pooling
# ------------------------------------------------------------------------------------------------
class _MaxPoolMixin:
    """In training, max pooling through ``ops.max_pool``: torch's result and gradient, but only narrow argmax
    indices kept for the backward (ops/pool/). With ``return_indices`` or without a gradient: torch's layer."""

    _pool_dims = 2

    def _stateless_forward(self, x):
        if self.return_indices or not (torch.is_grad_enabled() and x.requires_grad):
            return super()._stateless_forward(x)
        return max_pool(x, self._pool_dims, self.kernel_size, self.stride, self.padding, self.dilation,
                        self.ceil_mode)


class MaxPool1d(_MaxPoolMixin, _StepModeWrapper, nn.MaxPool1d):
    _ndim_s, _layout_s = (2, 3), _LAYOUT[1]
    _pool_dims = 1

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False, step_mode: str = "s") -> None:
        nn.MaxPool1d.__init__(self, kernel_size, stride, padding, dilation, return_indices, ceil_mode)
        self.step_mode = step_mode


class MaxPool2d(_MaxPoolMixin, _StepModeWrapper, nn.MaxPool2d):
    _ndim_s, _layout_s = (3, 4), _LAYOUT[2]
    _pool_dims = 2

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False, step_mode: str = "s") -> None:
        nn.MaxPool2d.__init__(self, kernel_size, stride, padding, dilation, return_indices, ceil_mode)
        self.step_mode = step_mode


class MaxPool3d(_MaxPoolMixin, _StepModeWrapper, nn.MaxPool3d):
    _ndim_s, _layout_s = (4, 5), _LAYOUT[3]
    _pool_dims = 3

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False, step_mode: str = "s") -> None:
        nn.MaxPool3d.__init__(self, kernel_size, stride, padding, dilation, return_indices, ceil_mode)
        self.step_mode = step_mode


class _MaxUnpoolWrapper(_StepModeWrapper):
    def forward(self, x: torch.Tensor, indices: torch.Tensor, output_size: Optional[Sequence[int]] = None):
        self._check_ndim(x)
        if self._step_mode == "s":
            return self._stateless_forward(x, indices, output_size)
        if indices.shape != x.shape:
            raise ValueError(f"{type(self).__name__} (step_mode='m') expects indices with the shape of x "
                             f"{tuple(x.shape)}, but got indices with shape {tuple(indices.shape)}.")
        return functional.seq_to_ann_forward((x, indices), lambda v, i: self._stateless_forward(v, i, output_size))


class MaxUnpool1d(_MaxUnpoolWrapper, nn.MaxUnpool1d):
    _ndim_s, _layout_s = (2, 3), _LAYOUT[1]

    def __init__(self, kernel_size, stride=None, padding=0, step_mode: str = "s") -> None:
        nn.MaxUnpool1d.__init__(self, kernel_size, stride, padding)
        self.step_mode = step_mode


class MaxUnpool2d(_MaxUnpoolWrapper, nn.MaxUnpool2d):
    _ndim_s, _layout_s = (3, 4), _LAYOUT[2]

    def __init__(self, kernel_size, stride=None, padding=0, step_mode: str = "s") -> None:
        nn.MaxUnpool2d.__init__(self, kernel_size, stride, padding)
        self.step_mode = step_mode


class MaxUnpool3d(_MaxUnpoolWrapper, nn.MaxUnpool3d):
    _ndim_s, _layout_s = (4, 5), _LAYOUT[3]

    def __init__(self, kernel_size, stride=None, padding=0, step_mode: str = "s") -> None:
        nn.MaxUnpool3d.__init__(self, kernel_size, stride, padding)
        self.step_mode = step_mode


class AvgPool1d(_StepModeWrapper, nn.AvgPool1d):
    _ndim_s, _layout_s = (2, 3), _LAYOUT[1]

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 step_mode: str = "s") -> None:
        nn.AvgPool1d.__init__(self, kernel_size, stride, padding, ceil_mode, count_include_pad)
        self.step_mode = step_mode


class AvgPool2d(_StepModeWrapper, nn.AvgPool2d):
    _ndim_s, _layout_s = (3, 4), _LAYOUT[2]

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: Optional[int] = None, step_mode: str = "s") -> None:
        nn.AvgPool2d.__init__(self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        self.step_mode = step_mode


class AvgPool3d(_StepModeWrapper, nn.AvgPool3d):
    _ndim_s, _layout_s = (4, 5), _LAYOUT[3]

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: Optional[int] = None, step_mode: str = "s") -> None:
        nn.AvgPool3d.__init__(self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        self.step_mode = step_mode


class AdaptiveAvgPool1d(_StepModeWrapper, nn.AdaptiveAvgPool1d):
    _ndim_s, _layout_s = (2, 3), _LAYOUT[1]

    def __init__(self, output_size, step_mode: str = "s") -> None:
        nn.AdaptiveAvgPool1d.__init__(self, output_size)
        self.step_mode = step_mode


class AdaptiveAvgPool2d(_StepModeWrapper, nn.AdaptiveAvgPool2d):
    _ndim_s, _layout_s = (3, 4), _LAYOUT[2]

    def __init__(self, output_size, step_mode: str = "s") -> None:
        nn.AdaptiveAvgPool2d.__init__(self, output_size)
        self.step_mode = step_mode


class AdaptiveAvgPool3d(_StepModeWrapper, nn.AdaptiveAvgPool3d):
    _ndim_s, _layout_s = (4, 5), _LAYOUT[3]

    def __init__(self, output_size, step_mode: str = "s") -> None:
        nn.AdaptiveAvgPool3d.__init__(self, output_size)
        self.step_mode = step_mode


# ------------------------------------------------------------------------------------------------
# shape
# ------------------------------------------------------------------------------------------------
class Flatten(_StepModeWrapper, nn.Flatten):
    """``nn.Flatten`` with a step mode; in 'm' mode ``start_dim``/``end_dim`` index the one-step [N, *] layout,
    so the default start_dim=1 turns [T, N, C, H, W] into [T, N, C*H*W]."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1, step_mode: str = "s") -> None:
        nn.Flatten.__init__(self, start_dim, end_dim)
        self.step_mode = step_mode


class Upsample(_StepModeWrapper, nn.Upsample):
    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners: Optional[bool] = None,
                 recompute_scale_factor: Optional[bool] = None, step_mode: str = "s") -> None:
        nn.Upsample.__init__(self, size, scale_factor, mode, align_corners, recompute_scale_factor)
        self.step_mode = step_mode


# ------------------------------------------------------------------------------------------------
# scaled weight standardisation (Brock et al., NF-Nets)
# ------------------------------------------------------------------------------------------------
def _standardize(weight: torch.Tensor, gain: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    dims = list(range(1, weight.dim()))
    fan_in = int(np.prod(weight.shape[1:]))
    mean = weight.mean(dim=dims, keepdim=True)
    var = weight.var(dim=dims, keepdim=True)  # unbiased, as SpikingJelly
    w = (weight - mean) / (var * fan_in + eps).sqrt()
    return w if gain is None else w * gain


class WSConv2d(Conv2d):
    """Conv2d whose weight is standardised per output channel (zero mean, variance 1/fan_in) times ``gain``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding: Union[str, int] = 0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", step_mode: str = "s",
                 gain: bool = True, eps: float = 1e-4) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, step_mode)
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1)) if gain else None
        self.eps = eps

    def get_weight(self) -> torch.Tensor:
        return _standardize(self.weight, self.gain, self.eps)

    def _stateless_forward(self, x):
        return F.conv2d(x, self.get_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class WSLinear(Linear):
    """Linear whose weight is standardised per output feature (zero mean, variance 1/fan_in) times ``gain``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, step_mode: str = "s",
                 gain: bool = True, eps: float = 1e-4) -> None:
        super().__init__(in_features, out_features, bias, step_mode)
        self.gain = nn.Parameter(torch.ones(self.out_features, 1)) if gain else None
        self.eps = eps

    def get_weight(self) -> torch.Tensor:
        return _standardize(self.weight, self.gain, self.eps)

    def _stateless_forward(self, x):
        return F.linear(x, self.get_weight(), self.bias)
