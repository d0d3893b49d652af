"""Building blocks of converted SNNs: spike scaling (layer-wise and channel-wise), spike max pooling, fixed channel
affine maps, and the calibration observers (fastspike's ``StatisticObserver``; SpikingJelly's ``VoltageHook``)."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import base

__all__ = ["VoltageScaler", "ChannelVoltageScaler", "VoltageHook", "SpikeMaxPool", "ChannelAffine", "StatisticObserver",
           "quantile"]


class VoltageScaler(nn.Module, base.StepModule):
    """Multiply the input by a constant ``scale`` (a buffer). Element-wise, so 's' and 'm' behave alike.

    In a converted SNN it follows each IF neuron whose threshold is the layer's activation statistic
    lambda: a spike (0/1) leaves the layer as ``lambda``, in the ANN's units.
    """

    def __init__(self, scale: float = 1.0, step_mode: str = "s"):
        super().__init__()
        value = scale.detach().clone() if isinstance(scale, torch.Tensor) else torch.tensor(float(scale))
        self.register_buffer("scale", value)
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(dtype=x.dtype)

    def extra_repr(self) -> str:
        scale = f"{float(self.scale):g}" if self.scale.numel() == 1 else f"shape {tuple(self.scale.shape)}"
        return f"scale={scale}, step_mode={self.step_mode}"


class ChannelAffine(nn.Module):
    """y = x * weight[c] + bias[c] along dimension 1: an eval-mode BatchNorm frozen into a fixed map.

    Used where a BatchNorm has no preceding conv/linear to fold into (it stays linear, so rates pass through).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> "ChannelAffine":
        """The eval-mode ``bn`` as a fixed map: BatchNorm folded into an identity per channel."""
        from fastspike.export import fold_bn_weights

        ref = bn.running_mean
        return cls(*fold_bn_weights(torch.ones_like(ref), torch.zeros_like(ref), bn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[1] = -1
        return x * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"channels={self.weight.numel()}"


class SpikeMaxPool(base.MemoryModule):
    """Max pooling for rate-coded spikes, gated by the accumulated input (Rueckauer et al., 2017).

    Per step it adds the input to a running sum ``acc`` (a memory) and, in each pooling window, passes on the
    *current* input of the position whose running sum is largest. Once the rates settle, the selected position
    is the one with the largest mean input, so the output rate approaches the max of the input rates.
    Plain max pooling of spikes would instead pass the OR of the window's spike trains, whose rate exceeds the
    max. The approximation errs while the winner is still changing (the first steps) and when two positions
    tie. Single-step only; ``reset()`` between samples.
    """

    def __init__(self, pool: nn.Module):
        super().__init__()
        if not isinstance(pool, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
            raise TypeError(f"SpikeMaxPool wraps an nn.MaxPool*/nn.AdaptiveMaxPool* module, got {type(pool).__name__}.")
        name = type(pool).__name__
        self.ndim = int(name[-2])
        self.adaptive = isinstance(pool, nn.modules.pooling._AdaptiveMaxPoolNd)
        if self.adaptive:
            self.kwargs = {"output_size": pool.output_size}
        else:
            self.kwargs = dict(kernel_size=pool.kernel_size, stride=pool.stride, padding=pool.padding,
                               dilation=pool.dilation, ceil_mode=pool.ceil_mode)
        self.register_memory("acc", 0.0)
        self.step_mode = "s"

    def supported_step_mode(self):
        return ("s",)

    def _pool_indices(self, acc: torch.Tensor) -> torch.Tensor:
        fn = {
            (1, False): F.max_pool1d, (2, False): F.max_pool2d, (3, False): F.max_pool3d,
            (1, True): F.adaptive_max_pool1d, (2, True): F.adaptive_max_pool2d, (3, True): F.adaptive_max_pool3d,
        }[(self.ndim, self.adaptive)]
        return fn(acc, return_indices=True, **self.kwargs)[1]

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        unbatched = x.dim() == self.ndim + 1
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != self.ndim + 2:
            raise ValueError(f"SpikeMaxPool ({self.ndim}d) expects input of {self.ndim + 2} dims [N, C, ...], "
                             f"got shape {tuple(x.shape)}.")
        acc = self.acc
        if isinstance(acc, torch.Tensor) and acc.shape != x.shape:
            raise ValueError(f"SpikeMaxPool state has shape {tuple(acc.shape)} but the input has shape "
                             f"{tuple(x.shape)}: call functional.reset_net(net) between batches of different size.")
        acc = x.detach() + acc
        self.acc = acc
        idx = self._pool_indices(acc)
        out = x.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        kind = "adaptive " if self.adaptive else ""
        return f"{kind}{self.ndim}d, " + ", ".join(f"{k}={v}" for k, v in self.kwargs.items())


class StatisticObserver(nn.Module):
    """ReLU that records a per-batch statistic of its output (used while calibrating a conversion)."""

    def __init__(self, mode, clip: Optional[float] = None):
        super().__init__()
        self.mode = mode
        self.clip = clip  # ReLU6 / Hardtanh(0, clip) sites record the clipped activation
        self.values: List[float] = []

    @staticmethod
    def statistic(x: torch.Tensor, mode) -> float:
        x = x.detach().float().flatten()
        if x.numel() == 0:
            return 0.0
        if isinstance(mode, str) and mode.endswith("%"):
            q = float(mode[:-1]) / 100.0
            if x.numel() > 4_000_000:  # sort cost: subsample very large activations (deterministic stride)
                x = x[:: x.numel() // 4_000_000 + 1]
            k = min(max(int(round(q * (x.numel() - 1))) + 1, 1), x.numel())
            return float(torch.kthvalue(x, k).values)
        value = float(x.max())
        if not isinstance(mode, str):  # float in (0, 1]: that fraction of the maximum (SpikingJelly)
            value *= float(mode)
        return value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(x) if self.clip is None else torch.clamp(x, 0.0, self.clip)
        self.values.append(self.statistic(y, self.mode))
        return y

    def result(self, momentum: Optional[float] = None) -> Optional[float]:
        if not self.values:
            return None
        if momentum is not None:  # SpikingJelly's running estimate: s <- (1 - m) s + m s_batch
            value = self.values[0]
            for v in self.values[1:]:
                value = (1.0 - momentum) * value + momentum * v
            return value
        if isinstance(self.mode, str) and self.mode.endswith("%"):
            return sum(self.values) / len(self.values)
        return max(self.values)


_UNDEFINED_MODE = ("mode must be 'Max' (any case), a percentile string such as '99.9%' (0 to 100) or a float in "
                   "(0, 1]")
_QUANTILE_LIMIT = 1 << 24  # torch.quantile refuses larger inputs


def check_mode(mode) -> None:
    """SpikingJelly's statistic modes: 'max', 'P%' (0 <= P <= 100) or a float in (0, 1]; NotImplementedError
    otherwise (SpikingJelly's exception type), naming the value."""
    if isinstance(mode, str):
        if mode.lower() == "max":
            return
        if mode.endswith("%"):
            try:
                if 0.0 <= float(mode[:-1]) <= 100.0:
                    return
            except ValueError:
                pass
    elif isinstance(mode, (int, float)) and not isinstance(mode, bool) and 0 < mode <= 1:
        return
    raise NotImplementedError(f"{_UNDEFINED_MODE}, but got mode={mode!r}.")


def quantile(x: torch.Tensor, q: float, dim: Optional[int] = None) -> torch.Tensor:
    """``torch.quantile`` (linear interpolation), also for inputs above its 2**24-element limit."""
    if x.numel() <= _QUANTILE_LIMIT:
        return torch.quantile(x, q) if dim is None else torch.quantile(x, q, dim=dim)
    v = x.flatten() if dim is None else x
    d = 0 if dim is None else dim
    v = torch.sort(v, dim=d).values
    pos = q * (v.shape[d] - 1)
    lo, hi = int(pos // 1), min(int(pos // 1) + 1, v.shape[d] - 1)
    a, b = v.select(d, lo), v.select(d, hi)
    return a + (b - a) * (pos - lo)


class VoltageHook(nn.Module):
    """SpikingJelly's calibration observer: records a running activation scale and returns its input unchanged.

    Per batch (in training mode only) it takes the statistic ``s`` of the whole tensor: its max (``mode='Max'``),
    its percentile (``'99.9%'``) or ``mode`` times its max (a float in (0, 1]); the first batch sets ``scale = s``,
    later ones ``scale = (1 - momentum) * scale + momentum * s``. ``num_batches_tracked`` counts samples.
    """

    def __init__(self, scale=1.0, momentum=0.1, mode="Max"):
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale))
        self.mode = mode
        self.num_batches_tracked = 0
        self.momentum = momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        check_mode(self.mode)
        if isinstance(self.mode, str) and self.mode.endswith("%"):
            values = x.detach()
            if values.dtype in (torch.float16, torch.bfloat16):
                values = values.float()
            if values.numel() == 0:
                raise ValueError("VoltageHook: cannot take a percentile of an empty activation tensor.")
            s_t = quantile(values, float(self.mode[:-1]) / 100.0).to(x.dtype)
        else:
            s_t = x.max().detach()
            if not isinstance(self.mode, str):
                s_t = s_t * self.mode
        if self.num_batches_tracked == 0:
            self.scale = s_t
        else:
            self.scale = (1 - self.momentum) * self.scale + self.momentum * s_t
        self.num_batches_tracked += x.shape[0] if x.dim() > 0 else 1
        return x


class ChannelVoltageScaler(nn.Module, base.StepModule):
    """Multiply the input by a per-channel ``scale`` (a finite positive scalar or 1-D tensor, a buffer), broadcast
    along ``channel_dim`` of a single step (in 'm' mode the step's dimension, after time). SpikingJelly's name."""

    def __init__(self, scale=1.0, channel_dim: int = 1, step_mode: str = "s"):
        super().__init__()
        if isinstance(channel_dim, bool) or not isinstance(channel_dim, int):
            raise ValueError(f"ChannelVoltageScaler: channel_dim must be an int, but got {channel_dim!r}.")
        t = torch.as_tensor(scale).detach().clone()
        if t.dim() > 1 or t.numel() == 0:
            raise ValueError(f"ChannelVoltageScaler: scale must be a scalar or a non-empty 1-D tensor, but got shape "
                             f"{tuple(t.shape)}.")
        if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
            raise ValueError(f"ChannelVoltageScaler: scale must hold finite positive values, but got {t.tolist()}.")
        self.register_buffer("scale", t)
        self.channel_dim = channel_dim
        self.step_mode = step_mode

    def _view_scale(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale.dim() == 0:
            return self.scale
        d = self.channel_dim + x.dim() if self.channel_dim < 0 else self.channel_dim
        if not 0 <= d < x.dim():
            raise ValueError(f"ChannelVoltageScaler: channel_dim={self.channel_dim} is out of range for an input of "
                             f"shape {tuple(x.shape)}.")
        if x.shape[d] != self.scale.numel():
            raise ValueError(f"ChannelVoltageScaler: the input has {x.shape[d]} channels along dim {d} but scale has "
                             f"{self.scale.numel()}.")
        shape = [1] * x.dim()
        shape[d] = -1
        return self.scale.reshape(shape)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._view_scale(x).to(dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self._forward(x)
        from fastspike import functional

        return functional.seq_to_ann_forward(x, self._forward)

    def extra_repr(self) -> str:
        return f"scale_shape={tuple(self.scale.shape)}, channel_dim={self.channel_dim}, step_mode={self.step_mode}"
