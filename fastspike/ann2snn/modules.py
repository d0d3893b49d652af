"""Building blocks of converted SNNs: spike scaling, spike max pooling, fixed channel affine maps."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import base

__all__ = ["VoltageScaler", "SpikeMaxPool", "ChannelAffine", "StatisticObserver"]


class VoltageScaler(nn.Module, base.StepModule):
    """Multiply the input by a constant ``scale`` (a buffer). Element-wise, so 's' and 'm' behave alike.

    In a converted SNN it follows each IF neuron whose threshold is the layer's activation statistic
    lambda: a spike (0/1) leaves the layer as ``lambda``, in the ANN's units.
    """

    def __init__(self, scale: float = 1.0, step_mode: str = "s"):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(float(scale)))
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"scale={float(self.scale):g}, step_mode={self.step_mode}"


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
