"""SpikingJelly 2.0's SpikeZIP-TF recipe (You et al., "SpikeZIP-TF: Conversion is All You Need for Transformer-based
SNN", ICML 2024): a quantised Transformer (QANN: every activation passes a quantiser with attributes ``s``,
``sym``, ``pos_max``, ``neg_min``) becomes an SNN whose outputs summed over time follow the QANN.

:class:`SpikeZIPTFQANNRecipe` is a module-tree recipe (``ModuleConverter``). On a copy of the model in eval mode
it replaces, depth first: RoBERTa/ViT quantised self-attentions (recognised by their attributes) by
:class:`SpikeZIPRobertaSelfAttention`/:class:`SpikeZIPViTSelfAttention`, ``nn.Embedding`` by
:class:`SpikeZIPEmbedding`, ``nn.Conv2d``/``nn.Linear`` by :class:`SpikeZIPConv2d`/:class:`SpikeZIPLinear` (bias
released over ``level`` steps, the level of the model's first quantiser, else ``time_steps``), ``nn.LayerNorm``
by :class:`SpikeZIPLayerNorm`, quantisers by ``STBIFNode`` and ``nn.ReLU`` by ``nn.Identity``. A ViT (attributes
``patch_embed``, ``cls_token``, ``pos_embed``, ``head``, ``norm`` and ``blocks`` or ``attn``) also gets a forward
that feeds the class token and position embedding at the first step only, on [B, C, H, W] per step or
[T, B, C, H, W] sequences. The model carries ``ann2snn_recipe = 'spikezip_tf_qann'``, ``time_steps`` and
``model_family``.
"""
from __future__ import annotations

import copy
import types

import torch
import torch.nn as nn

from fastspike.neuron import STBIFNode
from .base import ModuleConversionRecipe
from .spikezip_attention import SpikeZIPRobertaSelfAttention, SpikeZIPViTSelfAttention
from .spikezip_layers import SpikeZIPConv2d, SpikeZIPEmbedding, SpikeZIPLayerNorm, SpikeZIPLinear, SpikeZIPSoftmax

__all__ = ["STBIFNode", "SpikeZIPConv2d", "SpikeZIPEmbedding", "SpikeZIPLayerNorm", "SpikeZIPLinear",
           "SpikeZIPRobertaSelfAttention", "SpikeZIPSoftmax", "SpikeZIPTFQANNRecipe", "SpikeZIPViTSelfAttention"]

_ROBERTA_ATTRS = ("query", "query_quan", "key", "key_quan", "value", "value_quan", "attn_quan", "after_attn_quan",
                  "num_attention_heads", "attention_head_size", "all_head_size", "dropout")
_VIT_ATTRS = ("qkv", "quan_q", "quan_k", "quan_v", "attn_quan", "after_attn_quan", "proj", "quan_proj", "num_heads",
              "head_dim", "scale", "attn_drop", "proj_drop")


def _has_all(module: nn.Module, names) -> bool:
    return all(hasattr(module, name) for name in names)


def _vit_patch_embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    patch_embed, input_dim = model.patch_embed, x.dim()
    used_proj = hasattr(patch_embed, "proj")
    if used_proj:
        x = patch_embed.proj(x)
    else:
        x = patch_embed(x)
        if x.dim() == input_dim - 1:
            return x
    if x.dim() == 4:
        x = x.flatten(2).transpose(1, 2)
    elif x.dim() == 5:
        x = x.flatten(3).transpose(2, 3)
    else:
        raise ValueError(f"SpikeZIP ViT patch_embed expects [B, C, H, W] or [T, B, C, H, W] inputs, but produced "
                         f"shape {tuple(x.shape)}.")
    if used_proj and hasattr(patch_embed, "norm"):
        x = patch_embed.norm(x)
    return x


def _vit_forward_features(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if x.dim() not in (4, 5):
        raise ValueError(f"SpikeZIP ViT forward expects x of shape [B, C, H, W] or [T, B, C, H, W], but got "
                         f"{tuple(x.shape)}.")
    hidden = _vit_patch_embed(self, x)
    if x.dim() == 5:
        time_steps, batch_size = hidden.shape[:2]
        cls = self.cls_token.expand(batch_size, -1, -1)
        cls_input = torch.zeros(time_steps, *cls.shape, device=cls.device, dtype=cls.dtype)
        pos_input = torch.zeros(time_steps, *self.pos_embed.shape, device=self.pos_embed.device,
                                dtype=self.pos_embed.dtype)
        cls_input[0], pos_input[0] = cls, self.pos_embed
        token_dim = 2
    else:
        batch_size = hidden.shape[0]
        if self._spikezip_t == 0:
            cls_input, pos_input = self.cls_token.expand(batch_size, -1, -1), self.pos_embed
        else:
            cls_input = torch.zeros(batch_size, *self.cls_token.shape[1:], device=self.cls_token.device,
                                    dtype=self.cls_token.dtype)
            pos_input = torch.zeros_like(self.pos_embed)
        self._spikezip_t += 1
        token_dim = 1
    hidden = torch.cat((cls_input, hidden), dim=token_dim) + pos_input
    pos_drop = getattr(self, "pos_drop", None)
    if pos_drop is not None:
        hidden = pos_drop(hidden)
    if hasattr(self, "blocks"):
        hidden = self.norm(self.blocks(hidden))
    elif hasattr(self, "attn"):
        hidden = self.norm(hidden + self.attn(self.attn_norm(hidden)))
    else:
        raise ValueError("SpikeZIP ViT model expects a blocks or an attn submodule.")
    return hidden.select(token_dim, 0)


def _vit_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return self.head(self.forward_features(x))


def _patch_vit_forward(model: nn.Module) -> None:
    if not _has_all(model, ("patch_embed", "cls_token", "pos_embed", "head")):
        return
    if not hasattr(model, "norm"):
        raise ValueError("SpikeZIP ViT model expects a top-level norm module.")
    if not (hasattr(model, "blocks") or hasattr(model, "attn")):
        raise ValueError("SpikeZIP ViT model expects top-level blocks or attn.")
    model._spikezip_t = 0
    if hasattr(model, "attn"):
        model.attn_norm = copy.deepcopy(model.norm)
    original_reset = getattr(model, "reset", None)

    def reset(self: nn.Module) -> None:
        self._spikezip_t = 0
        if original_reset is not None:
            original_reset()

    model.reset = types.MethodType(reset, model)
    model.forward_features = types.MethodType(_vit_forward_features, model)
    model.forward = types.MethodType(_vit_forward, model)


class SpikeZIPTFQANNRecipe(ModuleConversionRecipe):
    """SpikeZIP-TF conversion of a quantised RoBERTa or ViT (module docstring).

    :param time_steps: the number of time steps the SNN is meant to run (stored on the model; also the bias
        level when the model has no quantiser).
    :param model_family: 'roberta' or 'vit' (which attention blocks are recognised).
    """

    def __init__(self, time_steps: int = 200, model_family: str = "roberta") -> None:
        self.time_steps = time_steps
        self.model_family = model_family

    def validate(self, converter) -> None:
        if not isinstance(self.time_steps, int) or isinstance(self.time_steps, bool) or self.time_steps <= 0:
            raise ValueError(f"SpikeZIPTFQANNRecipe: time_steps must be a positive integer, but got "
                             f"{self.time_steps!r}.")
        if self.model_family not in ("roberta", "vit"):
            raise ValueError(f"SpikeZIPTFQANNRecipe: model_family must be 'roberta' or 'vit', but got "
                             f"{self.model_family!r}.")

    def convert_module(self, converter, ann: nn.Module) -> nn.Module:
        model = copy.deepcopy(ann).eval()
        self._replace_weight(model, self._level_from_model(model))
        model.ann2snn_recipe = "spikezip_tf_qann"
        model.time_steps = self.time_steps
        model.model_family = self.model_family
        if self.model_family == "vit":
            _patch_vit_forward(model)
        return model

    def _replace_weight(self, model: nn.Module, global_level: int) -> None:
        for name, child in list(model.named_children()):
            replacement = None
            if self.model_family == "roberta" and _has_all(child, _ROBERTA_ATTRS):
                replacement = SpikeZIPRobertaSelfAttention(child, self._level_from_qann(child))
            elif self.model_family == "vit" and _has_all(child, _VIT_ATTRS):
                replacement = SpikeZIPViTSelfAttention(child, self._level_from_qann(child))
            elif isinstance(child, nn.Embedding):
                replacement = SpikeZIPEmbedding(child)
            elif isinstance(child, nn.Conv2d):
                replacement = SpikeZIPConv2d(child, global_level)
            elif isinstance(child, nn.Linear):
                replacement = SpikeZIPLinear(child, global_level)
            elif isinstance(child, nn.LayerNorm):
                replacement = SpikeZIPLayerNorm(child)
            elif self._is_quantizer(child):
                replacement = STBIFNode.from_quantizer(child)
            elif isinstance(child, nn.ReLU):
                replacement = nn.Identity()
            if replacement is None:
                self._replace_weight(child, global_level)
            else:
                setattr(model, name, replacement)

    @staticmethod
    def _is_quantizer(module: nn.Module) -> bool:
        return _has_all(module, ("s", "sym", "pos_max", "neg_min"))

    @staticmethod
    def _level_from_qann(module: nn.Module) -> int:
        for name in ("query_quan", "key_quan", "value_quan", "quan_q", "quan_k", "quan_v"):
            quantizer = getattr(module, name, None)
            if quantizer is None:
                continue
            if hasattr(quantizer, "level"):
                return int(quantizer.level)
            if hasattr(quantizer, "pos_max") and hasattr(quantizer, "neg_min"):
                return int(float(quantizer.pos_max) - float(quantizer.neg_min) + 1)
        raise ValueError(f"SpikeZIPTFQANNRecipe: the QANN attention {type(module).__name__} must expose a quantizer "
                         "level (a query/key/value quantizer with level, or pos_max and neg_min).")

    def _level_from_model(self, module: nn.Module) -> int:
        for child in module.modules():
            if self._is_quantizer(child):
                if hasattr(child, "level"):
                    return int(child.level)
                return int(float(child.pos_max) - float(child.neg_min) + 1)
        return self.time_steps
