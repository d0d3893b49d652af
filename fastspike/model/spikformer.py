"""Spikformer (Zhou et al., ICLR 2023) in SpikingJelly 2.0.0's layout: same constructor arguments,
builders (spikformer_ti, spikformer_s, spikformer_cifar10) and state_dict keys.

The model runs multi-step only: input [N, C, H, W] is repeated T times (direct encoding) or [T, N, C, H, W]
is used as is; the output is [T, N, num_classes] (average over T for the prediction). Neurons default to
multi-step ``LIFNode(tau=2, detach_reset=True)`` (attention neurons: v_threshold=0.5); pass
``spiking_neuron=`` and neuron keyword arguments to replace them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
import torch.nn as nn

from .. import functional, layer
from ..layer.attention import SpikingSelfAttention, make_multi_step_neuron
from ._config import ModelBuilder, ModelConfig, NeuronConfig, resolve_neuron_config

__all__ = [
    "Spikformer",
    "SpikformerCIFAR10Config",
    "SpikformerConfig",
    "SpikformerConv2dBN",
    "SpikformerConv2dBNLIF",
    "SpikformerPatchStem",
    "SpikformerMLP",
    "SpikformerBlock",
    "spikformer_ti",
    "spikformer_s",
    "spikformer_cifar10",
]

_LIF_DEFAULTS = {"tau": 2.0, "detach_reset": True}


def _set_step_mode_m(module: nn.Module) -> None:
    for m in module.modules():
        if hasattr(m, "step_mode") and "m" in getattr(m, "supported_step_mode", lambda: ("m",))():
            try:
                m.step_mode = "m"
            except (ValueError, AttributeError):
                pass


class SpikformerConv2dBN(nn.Module):
    """Conv2d (no bias) + BatchNorm2d (+ MaxPool 3/2/1 when ``pool``), applied to [T, N, C, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 pool: bool = False):
        super().__init__()
        mods = [nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding,
                          bias=False), nn.BatchNorm2d(out_channels)]
        if pool:
            mods.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.block = layer.SeqToANNContainer(*mods)

    def forward(self, x_seq: torch.Tensor):
        return self.block(x_seq)


class SpikformerConv2dBNLIF(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 pool: bool = False, spiking_neuron: Optional[Callable[..., nn.Module]] = None, **kwargs: Any):
        super().__init__()
        self.conv_bn = SpikformerConv2dBN(in_channels, out_channels, kernel_size, stride, padding, pool)
        self.neuron = make_multi_step_neuron(spiking_neuron, kwargs, _LIF_DEFAULTS)

    def forward(self, x_seq: torch.Tensor):
        return self.neuron(self.conv_bn(x_seq))


class SpikformerPatchStem(nn.Module):
    """Spiking patch splitting: four conv-BN-LIF stages (embed_dims/8, /4, /2, 1) with max pooling in the
    last two (patch_size=4) or all four (patch_size=16), plus a conv-BN-LIF relative position embedding
    added to its input."""

    def __init__(self, img_size_h: int = 224, img_size_w: int = 224, patch_size: int = 16, in_channels: int = 3,
                 embed_dims: int = 256, spiking_neuron: Optional[Callable[..., nn.Module]] = None, **kwargs: Any):
        super().__init__()
        if patch_size not in (4, 16):
            raise ValueError(f"SpikformerPatchStem supports patch_size=4 or 16, but got {patch_size}.")
        self.image_size = (img_size_h, img_size_w)
        self.patch_size = patch_size
        self.embed_dims = embed_dims
        dims = [embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        pool_from = 2 if patch_size == 4 else 0
        stages, c = [], in_channels
        for i, d in enumerate(dims):
            stages.append(SpikformerConv2dBNLIF(c, d, 3, 1, 1, pool=i >= pool_from, spiking_neuron=spiking_neuron,
                                                **kwargs))
            c = d
        self.stages = nn.Sequential(*stages)
        self.positional_encoding = SpikformerConv2dBNLIF(embed_dims, embed_dims, 3, 1, 1, pool=False,
                                                         spiking_neuron=spiking_neuron, **kwargs)
        self.grid_size = (img_size_h // patch_size, img_size_w // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def forward(self, x_seq: torch.Tensor):
        x_seq = self.stages(x_seq)
        return self.positional_encoding(x_seq) + x_seq


class SpikformerMLP(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, out_features: int,
                 spiking_neuron: Optional[Callable[..., nn.Module]] = None, **kwargs: Any):
        super().__init__()
        self.fc1 = layer.SeqToANNContainer(nn.Conv1d(in_features, hidden_features, kernel_size=1, bias=False),
                                           nn.BatchNorm1d(hidden_features))
        self.neuron1 = make_multi_step_neuron(spiking_neuron, kwargs, _LIF_DEFAULTS)
        self.fc2 = layer.SeqToANNContainer(nn.Conv1d(hidden_features, out_features, kernel_size=1, bias=False),
                                           nn.BatchNorm1d(out_features))
        self.neuron2 = make_multi_step_neuron(spiking_neuron, kwargs, _LIF_DEFAULTS)

    def forward(self, x_seq: torch.Tensor):
        return self.neuron2(self.fc2(self.neuron1(self.fc1(x_seq))))


class SpikformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 spiking_neuron: Optional[Callable[..., nn.Module]] = None, **kwargs: Any):
        super().__init__()
        attn_kwargs = kwargs
        if spiking_neuron is None:  # the attention keeps its own LIF defaults
            attn_kwargs = {k: v for k, v in kwargs.items() if k not in ("tau", "detach_reset")}
        self.attn = SpikingSelfAttention(dim=dim, num_heads=num_heads, spiking_neuron=spiking_neuron, **attn_kwargs)
        self.mlp = SpikformerMLP(dim, int(dim * mlp_ratio), dim, spiking_neuron=spiking_neuron, **kwargs)

    def forward(self, x_seq: torch.Tensor):
        if x_seq.ndim != 5:
            raise ValueError(f"expected 5D input with shape [T, N, C, H, W], but got {tuple(x_seq.shape)}")
        T, N, C, H, W = x_seq.shape
        tokens = x_seq.flatten(3)
        tokens = tokens + self.attn(tokens)
        tokens = tokens + self.mlp(tokens)
        return tokens.reshape(T, N, C, H, W).contiguous()


class Spikformer(nn.Module):
    def __init__(self, T: int = 4, in_channels: int = 3, img_size_h: int = 224, img_size_w: int = 224,
                 patch_size: int = 16, num_classes: int = 1000, embed_dims: int = 256, num_heads: int = 8,
                 mlp_ratio: float = 4.0, depths: int = 4, spiking_neuron: Optional[Callable[..., nn.Module]] = None,
                 **kwargs: Any):
        super().__init__()
        self.T = T
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.depths = depths
        self.patch_embed = SpikformerPatchStem(img_size_h, img_size_w, patch_size, in_channels, embed_dims,
                                               spiking_neuron=spiking_neuron, **kwargs)
        self.blocks = nn.ModuleList(
            SpikformerBlock(embed_dims, num_heads, mlp_ratio, spiking_neuron=spiking_neuron, **kwargs)
            for _ in range(depths))
        self.head = layer.Linear(embed_dims, num_classes, step_mode="m")
        self._init_weights()
        _set_step_mode_m(self)

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.constant_(m.bias, 0.0)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)

    def _to_sequence(self, x: torch.Tensor):
        if x.ndim == 4:
            return x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        if x.ndim == 5:
            return x
        raise ValueError("expected 4D image input [N, C, H, W] or 5D sequence input [T, N, C, H, W], "
                         f"but got {tuple(x.shape)}")

    def forward_features(self, x_seq: torch.Tensor):
        x_seq = self.patch_embed(x_seq)
        for block in self.blocks:
            x_seq = block(x_seq)
        return x_seq.flatten(3).mean(dim=-1)

    def forward(self, x: torch.Tensor):
        return self.head(self.forward_features(self._to_sequence(x)))


def spikformer_ti(T: int = 4, in_channels: int = 3, img_size_h: int = 224, img_size_w: int = 224,
                  num_classes: int = 1000, spiking_neuron=None, **kwargs: Any) -> Spikformer:
    """Spikformer-4-256 (patch 16, 8 heads)."""
    return Spikformer(T=T, in_channels=in_channels, img_size_h=img_size_h, img_size_w=img_size_w,
                      num_classes=num_classes, embed_dims=256, num_heads=8, mlp_ratio=4.0, depths=4,
                      spiking_neuron=spiking_neuron, **kwargs)


def spikformer_s(T: int = 4, in_channels: int = 3, img_size_h: int = 224, img_size_w: int = 224,
                 num_classes: int = 1000, spiking_neuron=None, **kwargs: Any) -> Spikformer:
    """Spikformer-6-384 (patch 16, 12 heads)."""
    return Spikformer(T=T, in_channels=in_channels, img_size_h=img_size_h, img_size_w=img_size_w,
                      num_classes=num_classes, embed_dims=384, num_heads=12, mlp_ratio=4.0, depths=6,
                      spiking_neuron=spiking_neuron, **kwargs)


def spikformer_cifar10(T: int = 4, num_classes: int = 10, spiking_neuron=None, **kwargs: Any) -> Spikformer:
    """Spikformer-4-384 for 32x32 input (patch 4, 12 heads)."""
    return Spikformer(T=T, in_channels=3, img_size_h=32, img_size_w=32, patch_size=4, num_classes=num_classes,
                      embed_dims=384, num_heads=12, mlp_ratio=4.0, depths=4, spiking_neuron=spiking_neuron, **kwargs)


# -- serializable configuration (SpikingJelly 2.0.0's SpikformerConfig / SpikformerCIFAR10Config / Builder) -------
class _SpikformerHead(nn.Module):
    """Last pipeline chunk: the remaining blocks and the classifier on the token mean."""

    def __init__(self, block: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.block, self.head = block, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x).flatten(3).mean(dim=-1))


def _pipeline_stage(model: nn.Module, rank: int, size: int) -> nn.Module:
    """Split a 4- or 6-block Spikformer into ``size`` (1, 2 or 4; 4 needs 6 blocks) stages; return stage ``rank``."""
    if size == 1:
        return model
    if size not in (2, 4):
        raise ValueError(f"Spikformer PP size must be 1, 2, or 4, got {size}.")
    b = model.blocks
    if len(b) == 6:
        tail = nn.Sequential(b[4], b[5])
    elif len(b) == 4:
        if size == 4:
            raise ValueError("The 4-block Spikformer supports PP size 1 or 2.")
        tail = nn.Identity()
    else:
        raise ValueError(f"Spikformer PP requires 4 or 6 transformer blocks, got {len(b)}.")
    chunks = (model.patch_embed, nn.Sequential(b[0], b[1]), nn.Sequential(b[2], b[3]),
              _SpikformerHead(tail, model.head))
    per_stage = len(chunks) // size
    return nn.Sequential(*chunks[rank * per_stage:(rank + 1) * per_stage])


def _as_layer_batch_norms(module: nn.Module) -> None:
    """Replace plain BatchNorm1d/2d children by fastspike's step-mode wrappers with the same state (as SpikingJelly's
    builder does before sharding); numbers are unchanged."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(child, (layer.BatchNorm1d,
                                                                                          layer.BatchNorm2d)):
            cls = layer.BatchNorm1d if isinstance(child, nn.BatchNorm1d) else layer.BatchNorm2d
            bn = cls(child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine,
                     track_running_stats=child.track_running_stats)
            bn.load_state_dict(child.state_dict())
            for p_new, p_old in zip(bn.parameters(), child.parameters()):
                p_new.requires_grad_(p_old.requires_grad)
            bn.train(child.training)
            setattr(module, name, bn)
        else:
            _as_layer_batch_norms(child)


@dataclass(frozen=True)
class SpikformerConfig(ModelConfig):
    """Spikformer-8-384 style model (``spikformer_s``) for ``image_height`` x ``image_width`` inputs with
    ``in_channels`` channels; multi-step only. ``neuron_config`` replaces the default LIF neurons."""

    builder: ClassVar[str] = "fastspike.model.spikformer.SpikformerBuilder"
    image_height: int = 224
    image_width: int = 224
    in_channels: int = 3
    neuron_config: Optional[NeuronConfig] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_height <= 0 or self.image_width <= 0 or self.in_channels <= 0:
            raise ValueError(f"image dimensions and in_channels must be positive, got {self.image_height}x"
                             f"{self.image_width}, in_channels={self.in_channels}.")
        if self.step_mode != "m":
            raise ValueError(f"The built-in Spikformer requires step_mode='m', got {self.step_mode!r}.")


@dataclass(frozen=True)
class SpikformerCIFAR10Config(ModelConfig):
    """``spikformer_cifar10`` (32x32 RGB inputs, 10 classes by default); multi-step only."""

    builder: ClassVar[str] = "fastspike.model.spikformer.SpikformerBuilder"
    num_classes: int = 10
    neuron_config: Optional[NeuronConfig] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.step_mode != "m":
            raise ValueError(f"The built-in Spikformer requires step_mode='m', got {self.step_mode!r}.")


class SpikformerBuilder(ModelBuilder):
    """Builds the Spikformer configs' models (see fastspike.model._config for what ``build`` supports)."""

    _fsdp_root_types = (SpikformerPatchStem, SpikformerBlock)

    def _geometry(self):
        config = self.config
        if isinstance(config, SpikformerCIFAR10Config):
            return 32, 32, 3, 4
        if isinstance(config, SpikformerConfig):
            return config.image_height, config.image_width, config.in_channels, 16
        raise TypeError(f"SpikformerBuilder requires a Spikformer config, got {type(config).__name__}.")

    def _build_canonical_model(self) -> nn.Module:
        config = self.config
        self._geometry()
        spiking_neuron, neuron_kwargs = resolve_neuron_config(config.neuron_config)
        if isinstance(config, SpikformerCIFAR10Config):
            net = spikformer_cifar10(T=config.time_steps, num_classes=config.num_classes,
                                     spiking_neuron=spiking_neuron, **neuron_kwargs)
        else:
            net = spikformer_s(T=config.time_steps, in_channels=config.in_channels, img_size_h=config.image_height,
                               img_size_w=config.image_width, num_classes=config.num_classes,
                               spiking_neuron=spiking_neuron, **neuron_kwargs)
        _as_layer_batch_norms(net)
        functional.set_step_mode(net, config.step_mode)
        return net

    def _pipeline_stage(self, model: nn.Module, rank: int, size: int) -> nn.Module:
        return _pipeline_stage(model, rank, size)

    def _stage_shapes(self, micro_batch: int, rank: int, size: int):
        h, w, c, patch = self._geometry()
        t = self.config.time_steps
        act = (t, micro_batch, 384, h // patch, w // patch)
        shapes = [act, act, act, (t, micro_batch, self.config.num_classes)]
        per_stage = len(shapes) // size
        start = rank * per_stage
        return ((micro_batch, t, c, h, w) if start == 0 else shapes[start - 1]), shapes[start + per_stage - 1]

    def build(self, *, pipeline_size: int = 1, **kwargs):
        h, w, _, patch = self._geometry()
        if pipeline_size > 1 and (h % patch or w % patch):
            raise ValueError(f"Spikformer image dimensions must be divisible by {patch} with PP, got {h}x{w}.")
        return super().build(pipeline_size=pipeline_size, **kwargs)
