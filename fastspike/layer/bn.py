"""Time-aware batch normalisation for SNNs (SpikingJelly ``layer`` names, arguments and state_dict keys).

- ``ThresholdDependentBatchNorm{1,2,3}d(alpha, v_th, num_features, ...)`` (tdBN, Zheng et al., AAAI 2021):
  statistics over time and batch together (input [T, N, C, ...] is normalised as [T*N, C, ...]); the
  scale is initialised to ``alpha * v_th``. Multi-step only.
- ``TemporalEffectiveBatchNorm{1,2,3}d(T, num_features, ...)`` (TEBN, Duan et al., NeurIPS 2022): BN over
  [T*N, C, ...] followed by a learnable per-time-step scale ``scale[t]`` (initialised to 1). Multi-step only.
- ``BatchNormThroughTime{1,2,3}d(T, num_features, ...)`` (BNTT, Kim & Panda 2021): one BatchNorm per time
  step (``bn_list[t]``, without bias); the step counter ``t`` is a memory, so call ``reset()`` /
  ``functional.reset_net`` between sequences. Both step modes.
- ``NeuNorm(in_channels, height, width, k=0.9, shared_across_channels=False)`` (Wu et al., AAAI 2019):
  subtracts ``w * S`` from the input spikes, where the state ``S`` (a memory named ``x``) follows
  ``S[t] = k S[t-1] + (1 - k) / C**2 * sum_c X[t, c]``. Both step modes.

- ``BatchNorm1d/2d/3d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
  step_mode='s')``: torch's BatchNorm with a step mode. 's': one step goes straight to torch's layer; 'm': the
  sequence [T, N, C, ...] is folded to [T*N, C, ...], so the statistics are taken over time and batch together.
  ``super_forward(x)`` is torch's forward (SpikingJelly's name). Parameters, buffers and state_dict keys are
  torch's.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from .. import base
from .stateless_wrapper import _LAYOUT, _StepModeWrapper

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "ThresholdDependentBatchNorm1d",
    "ThresholdDependentBatchNorm2d",
    "ThresholdDependentBatchNorm3d",
    "TemporalEffectiveBatchNorm1d",
    "TemporalEffectiveBatchNorm2d",
    "TemporalEffectiveBatchNorm3d",
    "BatchNormThroughTime1d",
    "BatchNormThroughTime2d",
    "BatchNormThroughTime3d",
    "NeuNorm",
]


class _StepModeBatchNorm(_StepModeWrapper):
    """Step-mode dispatch of the plain BatchNorms (rank checks with clear errors; 'm' folds T into the batch)."""

    def super_forward(self, x: torch.Tensor) -> torch.Tensor:
        """torch's BatchNorm forward on ``x`` as it is (SpikingJelly's ``super_forward``)."""
        return self._stateless_forward(x)


class BatchNorm1d(_StepModeBatchNorm, nn.BatchNorm1d):
    """In 'm' mode the statistics are taken over T*N (and L), as SpikingJelly does; likewise for 2d/3d."""

    _ndim_s, _ndim_m = (2, 3), (3, 4)
    _layout_s, _layout_m = "N, C] or [N, C, L", "T, N, C] or [T, N, C, L"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, step_mode: str = "s"):
        nn.BatchNorm1d.__init__(self, num_features, eps, momentum, affine, track_running_stats)
        self.step_mode = step_mode


class BatchNorm2d(_StepModeBatchNorm, nn.BatchNorm2d):
    _ndim_s, _layout_s = (4,), _LAYOUT[2]

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, step_mode: str = "s"):
        nn.BatchNorm2d.__init__(self, num_features, eps, momentum, affine, track_running_stats)
        self.step_mode = step_mode


class BatchNorm3d(_StepModeBatchNorm, nn.BatchNorm3d):
    _ndim_s, _layout_s = (5,), _LAYOUT[3]

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, step_mode: str = "s"):
        nn.BatchNorm3d.__init__(self, num_features, eps, momentum, affine, track_running_stats)
        self.step_mode = step_mode


def _merged_forward(x_seq: torch.Tensor, fn, step_ndims, cls_name: str) -> torch.Tensor:
    """Apply ``fn`` to ``x_seq`` [T, N, ...] viewed as [T*N, ...] and restore [T, N, ...]."""
    if x_seq.dim() - 1 not in step_ndims:
        want = " or ".join(f"{d + 1}-D" for d in step_ndims)
        raise ValueError(f"{cls_name} expects a multi-step input [T, N, C, ...] ({want}), got shape "
                         f"{tuple(x_seq.shape)}")
    y = fn(x_seq.flatten(0, 1))
    return y.view(x_seq.shape[0], x_seq.shape[1], *y.shape[1:])


class _TdBN(_BatchNorm, base.MultiStepModule):
    _ndims = (3,)

    def __init__(self, alpha: float, v_th: float, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_mode = "m"
        self.alpha = alpha
        self.v_th = v_th
        if not self.affine:
            raise ValueError("ThresholdDependentBatchNorm needs affine=True (its scale is initialised to alpha * v_th)")
        nn.init.constant_(self.weight, alpha * v_th)

    def _check_input_dim(self, input):
        if input.dim() not in self._ndims:
            raise ValueError(f"{type(self).__name__}: unexpected merged input shape {tuple(input.shape)}")

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return _merged_forward(x_seq, super().forward, self._ndims, type(self).__name__)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", alpha={self.alpha}, v_th={self.v_th}, step_mode={self.step_mode}"


class ThresholdDependentBatchNorm1d(_TdBN):
    _ndims = (2, 3)


class ThresholdDependentBatchNorm2d(_TdBN):
    _ndims = (4,)


class ThresholdDependentBatchNorm3d(_TdBN):
    _ndims = (5,)


class _TEBN(_BatchNorm, base.MultiStepModule):
    _ndims = (3,)

    def __init__(self, T: int, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_mode = "m"
        self.scale = nn.Parameter(torch.ones([T]))

    def _check_input_dim(self, input):
        if input.dim() not in self._ndims:
            raise ValueError(f"{type(self).__name__}: unexpected merged input shape {tuple(input.shape)}")

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() >= 1 and x_seq.shape[0] != self.scale.numel():
            raise ValueError(f"{type(self).__name__} was built for T={self.scale.numel()} but got {x_seq.shape[0]} "
                             "steps")
        y = _merged_forward(x_seq, super().forward, self._ndims, type(self).__name__)
        return y * self.scale.view(-1, *([1] * (y.dim() - 1)))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", T={self.scale.numel()}, step_mode={self.step_mode}"


class TemporalEffectiveBatchNorm1d(_TEBN):
    _ndims = (2, 3)


class TemporalEffectiveBatchNorm2d(_TEBN):
    _ndims = (4,)


class TemporalEffectiveBatchNorm3d(_TEBN):
    _ndims = (5,)


class _BNTT(base.MemoryModule):
    bn_type = nn.BatchNorm1d

    def __init__(self, T: int, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, step_mode: str = "s"):
        super().__init__()
        if not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive int, got {T!r}")
        self.bn_list = nn.ModuleList(
            self.bn_type(num_features, eps, momentum, affine, track_running_stats) for _ in range(T)
        )
        for bn in self.bn_list:
            bn.bias = None  # BNTT learns a per-step scale only
        self.T = T
        self.step_mode = step_mode
        self.register_memory("t", -1)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.t + 1
        if t >= self.T:
            raise RuntimeError(f"{type(self).__name__} has T={self.T} BatchNorms but was called for step {t}; "
                               "call reset() (functional.reset_net) between sequences")
        self.t = t
        return self.bn_list[t](x)

    def extra_repr(self) -> str:
        return f"T={self.T}, step_mode={self.step_mode}"


class BatchNormThroughTime1d(_BNTT):
    bn_type = nn.BatchNorm1d


class BatchNormThroughTime2d(_BNTT):
    bn_type = nn.BatchNorm2d


class BatchNormThroughTime3d(_BNTT):
    bn_type = nn.BatchNorm3d


class NeuNorm(base.MemoryModule):
    """NeuNorm: auxiliary neurons that integrate the channel sum of the input spikes [N, C, H, W] and inhibit
    every channel through a learnable weight ``w`` ([C, H, W], or [1, H, W] when ``shared_across_channels``).

    Per step: ``S = k0 * S + k1 * X.sum(C)``, ``Y = X - w * S`` with ``k0 = k``, ``k1 = (1 - k) / C**2``;
    ``S`` (shape [N, 1, H, W]) is the memory ``x``, reset to 0.
    """

    def __init__(self, in_channels: int, height: int, width: int, k: float = 0.9,
                 shared_across_channels: bool = False, step_mode: str = "s"):
        super().__init__()
        self.step_mode = step_mode
        self.register_memory("x", 0.0)
        self.k0 = k
        self.k1 = (1.0 - self.k0) / in_channels ** 2
        self.w = nn.Parameter(torch.empty(1 if shared_across_channels else in_channels, height, width))
        nn.init.kaiming_uniform_(self.w, a=math.sqrt(5))

    def _state_for(self, x: torch.Tensor) -> torch.Tensor:
        s = self.x
        if isinstance(s, torch.Tensor):
            return s
        return torch.full_like(x[:, :1], float(s))

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"NeuNorm (step_mode='s') expects x with shape [N, C, H, W], "
                             f"but got shape {tuple(x.shape)}")
        s = self.k0 * self._state_for(x) + self.k1 * x.sum(dim=1, keepdim=True)
        self.x = s
        return x - self.w * s

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() != 5:
            raise ValueError(f"NeuNorm (step_mode='m') expects x_seq with shape [T, N, C, H, W], "
                             f"but got shape {tuple(x_seq.shape)}")
        return torch.stack([self.single_step_forward(x) for x in x_seq])

    def extra_repr(self) -> str:
        return f"shape={self.w.shape}"
