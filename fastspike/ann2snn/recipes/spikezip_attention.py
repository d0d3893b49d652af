"""SpikeZIP-TF's spiking self-attention (``SpikeZIPTFQANNRecipe``) for a quantised RoBERTa and ViT: the QANN's
projections become :class:`SpikeZIPLinear`, its quantisers ``STBIFNode`` neurons, and each product of two spike
trains the change of the product of their running sums. Numbers and state are SpikingJelly 2.0's."""
from __future__ import annotations

import copy
import math
from typing import Optional

import torch
import torch.nn as nn

from fastspike import base
from fastspike.neuron import STBIFNode
from .spikezip_layers import SpikeZIPLinear, SpikeZIPSoftmax, matmul_delta, matmul_sequence_delta

__all__ = ["SpikeZIPRobertaSelfAttention", "SpikeZIPViTSelfAttention"]


class _AllMultiStep:
    """Switch every submodule with a step mode to 'm' for one call, and back."""

    def __init__(self, owner: nn.Module):
        self.modes = {m: m.step_mode for m in owner.modules() if m is not owner and hasattr(m, "step_mode")}

    def __enter__(self):
        for module in self.modes:
            module.step_mode = "m"

    def __exit__(self, *exc):
        for module, mode in self.modes.items():
            module.step_mode = mode


class SpikeZIPRobertaSelfAttention(base.MemoryModule):
    """A quantised RoBERTa self-attention ``source`` (``query``/``key``/``value`` Linears, quantisers
    ``query_quan``, ``key_quan``, ``value_quan``, ``attn_quan``, ``after_attn_quan``) as spiking attention with
    SpikeZIP levels ``level``. Takes RoBERTa's keywords; the additive ``attention_mask`` joins the first step's
    scores only. Absolute position embeddings, no cross-attention, cache or head mask."""

    def __init__(self, source: nn.Module, level: int) -> None:
        super().__init__()
        self.num_attention_heads = int(source.num_attention_heads)
        self.attention_head_size = int(source.attention_head_size)
        self.all_head_size = int(getattr(source, "all_head_size",
                                         self.num_attention_heads * self.attention_head_size))
        self.query = SpikeZIPLinear(source.query, level)
        self.key = SpikeZIPLinear(source.key, level)
        self.value = SpikeZIPLinear(source.value, level)
        self.query_if = STBIFNode.from_quantizer(source.query_quan)
        self.key_if = STBIFNode.from_quantizer(source.key_quan)
        self.value_if = STBIFNode.from_quantizer(source.value_quan)
        self.attn_if = STBIFNode.from_quantizer(source.attn_quan)
        self.after_attn_if = STBIFNode.from_quantizer(source.after_attn_quan)
        self.softmax = SpikeZIPSoftmax(dim=-1)
        self.dropout = copy.deepcopy(getattr(source, "dropout", nn.Identity()))
        self.step_mode = "s"
        self.register_memory("t", 0)
        self.position_embedding_type = getattr(source, "position_embedding_type", "absolute")
        self.is_decoder = bool(getattr(source, "is_decoder", False))
        if self.position_embedding_type != "absolute":
            raise ValueError(f"SpikeZIPTFQANNRecipe supports absolute position attention only, but the source has "
                             f"position_embedding_type={self.position_embedding_type!r}.")

    def reset(self) -> None:
        super().reset()
        for module in (self.query, self.key, self.value, self.query_if, self.key_if, self.value_if, self.attn_if,
                       self.after_attn_if, self.softmax):
            module.reset()

    def transpose_for_scores(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.size()[:-1], self.num_attention_heads, self.attention_head_size).transpose(-3, -2)

    def _validate_inputs(self, head_mask: Optional[torch.Tensor], encoder_hidden_states: Optional[torch.Tensor],
                         encoder_attention_mask: Optional[torch.Tensor], past_key_value) -> None:
        if encoder_hidden_states is not None or encoder_attention_mask is not None:
            raise ValueError("SpikeZIPRobertaSelfAttention does not support cross-attention "
                             "(encoder_hidden_states, encoder_attention_mask).")
        if past_key_value is not None or self.is_decoder:
            raise ValueError("SpikeZIPRobertaSelfAttention does not support a decoder cache (past_key_value).")
        if head_mask is not None:
            raise ValueError("SpikeZIPRobertaSelfAttention does not support head_mask.")

    def _prepare(self, kwargs: dict):
        self._validate_inputs(kwargs.get("head_mask"), kwargs.get("encoder_hidden_states"),
                              kwargs.get("encoder_attention_mask"), kwargs.get("past_key_value"))
        return kwargs.get("attention_mask"), kwargs.get("output_attentions", False)

    def _qkv(self, hidden_states: torch.Tensor):
        return tuple(self.transpose_for_scores(neuron(proj(hidden_states))) for proj, neuron in
                     ((self.query, self.query_if), (self.key, self.key_if), (self.value, self.value_if)))

    def _merge(self, context: torch.Tensor) -> torch.Tensor:
        context = context.transpose(-3, -2).contiguous()
        return context.view(*context.size()[:-2], self.all_head_size)

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        attention_mask, output_attentions = self._prepare(kwargs)
        query, key, value = self._qkv(inputs[0])
        scores = matmul_delta(query, key, self.transpose_for_scores(self.query_if.accumulated),
                              self.transpose_for_scores(self.key_if.accumulated), True)
        scores = scores / math.sqrt(self.attention_head_size)
        if attention_mask is not None and states[0] == 0:
            scores = scores + attention_mask
        probs = self.attn_if(self.dropout(self.softmax(scores)))
        context = matmul_delta(probs, value, self.attn_if.accumulated,
                               self.transpose_for_scores(self.value_if.accumulated))
        context = self._merge(self.after_attn_if(context))
        return ((context, probs) if output_attentions else (context,)), (states[0] + 1,)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        attention_mask, output_attentions = self._prepare(kwargs)
        hidden_states = inputs[0]
        with _AllMultiStep(self):
            query, key, value = self._qkv(hidden_states)
            scores = matmul_sequence_delta(query, key, transpose_b=True) / math.sqrt(self.attention_head_size)
            if attention_mask is not None and states[0] == 0:
                scores = scores.clone()
                scores[0] = scores[0] + attention_mask
            probs = self.attn_if(self.dropout(self.softmax(scores)))
            context = self._merge(self.after_attn_if(matmul_sequence_delta(probs, value)))
        return ((context, probs) if output_attentions else (context,)), (states[0] + hidden_states.shape[0],)

    def single_step_forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple:
        outputs = super().single_step_forward(hidden_states, **kwargs)
        return outputs if isinstance(outputs, tuple) else (outputs,)

    def multi_step_forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple:
        outputs = super().multi_step_forward(hidden_states, **kwargs)
        return outputs if isinstance(outputs, tuple) else (outputs,)


class SpikeZIPViTSelfAttention(base.MemoryModule):
    """A quantised ViT attention ``source`` (``qkv``/``proj`` Linears, quantisers ``quan_q``, ``quan_k``,
    ``quan_v``, ``attn_quan``, ``after_attn_quan``, ``quan_proj``; ``num_heads``, ``head_dim``, ``scale``,
    optional ``is_softmax``) as spiking attention; the projections release their bias at the first step."""

    def __init__(self, source: nn.Module, level: int) -> None:
        super().__init__()
        self.num_heads = int(source.num_heads)
        self.head_dim = int(source.head_dim)
        self.scale = float(getattr(source, "scale", self.head_dim ** -0.5))
        self.is_softmax = bool(getattr(source, "is_softmax", True))
        self.qkv = SpikeZIPLinear(source.qkv, level, bias_steps=1)
        self.proj = SpikeZIPLinear(source.proj, level, bias_steps=1)
        self.q_if = STBIFNode.from_quantizer(source.quan_q)
        self.k_if = STBIFNode.from_quantizer(source.quan_k)
        self.v_if = STBIFNode.from_quantizer(source.quan_v)
        self.attn_if = STBIFNode.from_quantizer(source.attn_quan)
        self.after_attn_if = STBIFNode.from_quantizer(source.after_attn_quan)
        self.proj_if = STBIFNode.from_quantizer(source.quan_proj)
        self.attn_drop = copy.deepcopy(getattr(source, "attn_drop", nn.Identity()))
        self.proj_drop = copy.deepcopy(getattr(source, "proj_drop", nn.Identity()))
        self.step_mode = "s"
        if self.is_softmax:
            self.softmax = SpikeZIPSoftmax(dim=-1)

    def reset(self) -> None:
        super().reset()
        modules = [self.qkv, self.proj, self.q_if, self.k_if, self.v_if, self.attn_if, self.after_attn_if,
                   self.proj_if]
        if self.is_softmax:
            modules.append(self.softmax)
        for module in modules:
            module.reset()

    def _split_qkv(self, x: torch.Tensor):
        qkv = self.qkv(x).reshape(*x.shape[:-1], 3, self.num_heads, self.head_dim)
        return qkv.movedim(-3, 0).transpose(-3, -2).unbind(0)

    def _attention_probs(self, attention: torch.Tensor, seq_len: int) -> torch.Tensor:
        if self.is_softmax:
            return self.attn_if(self.softmax(attention))
        return self.attn_if(attention) / seq_len

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        x = inputs[0]
        batch_size, seq_len, channels = x.shape
        query, key, value = self._split_qkv(x)
        query, key, value = self.q_if(query), self.k_if(key), self.v_if(value)
        attention = matmul_delta(query * self.scale, key, self.q_if.accumulated * self.scale, self.k_if.accumulated,
                                 True)
        attention = self._attention_probs(attention, seq_len)
        attention_sum = self.attn_if.accumulated if self.is_softmax else self.attn_if.accumulated / seq_len
        context = matmul_delta(self.attn_drop(attention), value, attention_sum, self.v_if.accumulated)
        context = self.after_attn_if(context).transpose(-3, -2).reshape(batch_size, seq_len, channels)
        return (self.proj_if(self.proj_drop(self.proj(context))),), states

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        x_seq = inputs[0]
        with _AllMultiStep(self):
            query, key, value = self._split_qkv(x_seq)
            query, key, value = self.q_if(query), self.k_if(key), self.v_if(value)
            attention = self._attention_probs(matmul_sequence_delta(query * self.scale, key, transpose_b=True),
                                              x_seq.shape[-2])
            context = matmul_sequence_delta(self.attn_drop(attention), value)
            context = self.after_attn_if(context).transpose(-3, -2).reshape(x_seq.shape)
            out = self.proj_if(self.proj_drop(self.proj(context)))
        return (out,), states
