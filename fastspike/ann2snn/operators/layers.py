"""TD versions of softmax, LayerNorm, RMSNorm, GELU, SiLU, Linear, Conv2d and of the products of two spiking
operands (matrix and element-wise). See ``base.py`` for the TD rule they all follow."""
from __future__ import annotations

import math
from typing import Literal, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from .base import TDModule, align_ranks, check_same_length, check_sequence, resolve_dim

__all__ = ["TDSoftmax", "TDLayerNorm", "TDRMSNorm", "TDGELU", "TDSiLU", "TDLinear", "TDConv2d", "SNNMatrixOperator",
           "SNNElementWiseProduct"]


def _shape_tuple(normalized_shape) -> Tuple[int, ...]:
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)


def _check_trailing(x_seq: torch.Tensor, normalized_shape: tuple, owner: str) -> None:
    n = len(normalized_shape)
    trailing = tuple(x_seq.shape[1:]) if n > x_seq.dim() - 1 else tuple(x_seq.shape[-n:])
    if trailing != normalized_shape:
        raise ValueError(f"{owner} expects the trailing shape of x_seq to match normalized_shape={normalized_shape}, "
                         f"but got {trailing}.")


def _register(module: nn.Module, name: str, shape: tuple, factory: dict, present: bool) -> None:
    """An uninitialised parameter, or a parameter slot holding None (as torch's layers do without bias/affine)."""
    module.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)) if present else None)


def _init_like_torch_linear(weight: nn.Parameter, bias: Optional[nn.Parameter]) -> None:
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(bias, -bound, bound)


class TDSoftmax(TDModule):
    """Softmax over ``dim`` of the running input sum (in 'm' mode ``dim`` indexes [T, ...] and must not be 0)."""

    def __init__(self, dim: int = -1, step_mode: str = "m") -> None:
        super().__init__(step_mode)
        self.dim = dim

    def ann_forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=self.dim)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        x_seq = inputs[0]
        check_sequence(x_seq, "TDSoftmax")
        dim = resolve_dim(self.dim, x_seq.dim())
        if dim == 0:
            raise ValueError("TDSoftmax reserves dimension 0 as the time dimension; softmax dim must not resolve to 0.")
        return self._td_sequence_forward((x_seq,), states, lambda x: torch.softmax(x, dim=dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class TDLayerNorm(TDModule):
    """LayerNorm of the running input sum (``nn.LayerNorm``'s parameters and state_dict keys)."""

    def __init__(self, normalized_shape: Union[int, Sequence[int], torch.Size], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device=None, dtype=None,
                 step_mode: str = "m") -> None:
        super().__init__(step_mode)
        self.normalized_shape = _shape_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        factory = {"device": device, "dtype": dtype}
        _register(self, "weight", self.normalized_shape, factory, elementwise_affine)
        _register(self, "bias", self.normalized_shape, factory, elementwise_affine and bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def ann_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        x_seq = inputs[0]
        check_sequence(x_seq, "TDLayerNorm")
        _check_trailing(x_seq, self.normalized_shape, "TDLayerNorm")
        return self._td_sequence_forward((x_seq,), states, self.ann_forward)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class TDRMSNorm(TDModule):
    """RMSNorm of the running input sum (``nn.RMSNorm``'s parameters; ``eps=None``: the dtype's epsilon)."""

    def __init__(self, normalized_shape: Union[int, Sequence[int], torch.Size], eps: Optional[float] = None,
                 elementwise_affine: bool = True, device=None, dtype=None, step_mode: str = "m") -> None:
        super().__init__(step_mode)
        self.normalized_shape = _shape_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _register(self, "weight", self.normalized_shape, {"device": device, "dtype": dtype}, elementwise_affine)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)

    def ann_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        x_seq = inputs[0]
        check_sequence(x_seq, "TDRMSNorm")
        _check_trailing(x_seq, self.normalized_shape, "TDRMSNorm")
        return self._td_sequence_forward((x_seq,), states, self.ann_forward)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class TDSiLU(TDModule):
    """SiLU of the running input sum."""

    def ann_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        check_sequence(inputs[0], "TDSiLU")
        return self._td_sequence_forward((inputs[0],), states, F.silu)


class TDGELU(TDModule):
    """GELU of the running input sum (``approximate`` as in ``nn.GELU``)."""

    def __init__(self, approximate: Literal["none", "tanh"] = "none", step_mode: str = "m") -> None:
        super().__init__(step_mode)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"TDGELU: approximate must be 'none' or 'tanh', but got {approximate!r}.")
        self.approximate = approximate

    def ann_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        check_sequence(inputs[0], "TDGELU")
        return self._td_sequence_forward((inputs[0],), states, self.ann_forward)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class TDLinear(TDModule):
    """Linear map of the running input sum (``nn.Linear``'s parameters, initialisation and state_dict keys)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 step_mode: str = "m") -> None:
        super().__init__(step_mode)
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        _register(self, "weight", (out_features, in_features), factory, True)
        _register(self, "bias", (out_features,), factory, bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _init_like_torch_linear(self.weight, self.bias)

    def ann_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        check_sequence(inputs[0], "TDLinear")
        return self._td_sequence_forward((inputs[0],), states, self.ann_forward)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class TDConv2d(TDModule):
    """2-D convolution of the running input sum (``nn.Conv2d``'s arguments, parameters and state_dict keys); in
    'm' mode the input is [T, N, C, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, Tuple[int, int]],
                 stride: Union[int, Tuple[int, int]] = 1, padding: Union[str, int, Tuple[int, int]] = 0,
                 dilation: Union[int, Tuple[int, int]] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device=None, dtype=None, step_mode: str = "m") -> None:
        super().__init__(step_mode)
        if groups <= 0:
            raise ValueError(f"TDConv2d: groups must be a positive integer, but got {groups}.")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"TDConv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups}).")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"TDConv2d: padding must be an int, a tuple, 'same' or 'valid', but got {padding!r}.")
            if padding == "same" and any(s != 1 for s in _pair(stride)):
                raise ValueError("TDConv2d: padding='same' is not supported for strided convolutions.")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"TDConv2d: padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', but got "
                             f"{padding_mode!r}.")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.padding_mode = padding_mode
        self._pad_lrtb = self._explicit_padding()
        factory = {"device": device, "dtype": dtype}
        _register(self, "weight", (out_channels, in_channels // groups, *self.kernel_size), factory, True)
        _register(self, "bias", (out_channels,), factory, bias)
        self.reset_parameters()

    def _explicit_padding(self) -> list:
        """F.pad's [left, right, top, bottom] for a non-zero padding_mode ('same' puts the odd pixel last)."""
        if self.padding == "valid":
            return [0, 0, 0, 0]
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            (h0, w0) = (t // 2 for t in totals)
            return [w0, totals[1] - w0, h0, totals[0] - h0]
        ph, pw = self.padding
        return [pw, pw, ph, ph]

    def reset_parameters(self) -> None:
        _init_like_torch_linear(self.weight, self.bias)

    def ann_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            x = F.pad(x, self._pad_lrtb, mode=self.padding_mode)
            padding = (0, 0)
        else:
            padding = (0, 0) if self.padding == "valid" else self.padding
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        x_seq = inputs[0]
        check_sequence(x_seq, "TDConv2d")
        if x_seq.dim() != 5:
            raise ValueError(f"TDConv2d expects an input sequence with shape [T, N, C, H, W], but got shape "
                             f"{tuple(x_seq.shape)}.")
        T, N = x_seq.shape[:2]

        def conv_seq(x_cum_seq: torch.Tensor) -> torch.Tensor:
            y = self.ann_forward(x_cum_seq.flatten(0, 1))
            return y.reshape(T, N, *y.shape[1:])

        return self._td_sequence_forward((x_seq,), states, conv_seq)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s


class SNNMatrixOperator(TDModule):
    """Matrix product of two spiking operands: each step emits the change of ``A_cum @ B_cum`` (the running sums
    of both inputs), so the outputs sum to the product of the summed inputs. 'm' inputs: [T, ..., M, N] and
    [T, ..., N, P] (a lower-rank operand gets singleton dimensions after time)."""

    def ann_forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        a_seq, b_seq = inputs
        check_sequence(a_seq, "SNNMatrixOperator", "a_seq", 3, "[T, ..., M, N]")
        check_sequence(b_seq, "SNNMatrixOperator", "b_seq", 3, "[T, ..., N, P]")
        check_same_length((a_seq, b_seq), ("a_seq", "b_seq"), "SNNMatrixOperator")
        return self._td_sequence_forward(align_ranks(a_seq, b_seq), states, torch.matmul)


class SNNElementWiseProduct(TDModule):
    """Element-wise product of two spiking operands, by the same TD rule as :class:`SNNMatrixOperator`."""

    def ann_forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        a_seq, b_seq = inputs
        check_sequence(a_seq, "SNNElementWiseProduct", "a_seq")
        check_sequence(b_seq, "SNNElementWiseProduct", "b_seq")
        check_same_length((a_seq, b_seq), ("a_seq", "b_seq"), "SNNElementWiseProduct")
        return self._td_sequence_forward(align_ranks(a_seq, b_seq), states, torch.mul)
