"""TD attention: scaled dot-product attention and multi-head attention on spiking operands. Each step emits the
change of ``attention(Q_cum, K_cum, V_cum)`` over the running sums of its inputs (``base.py``)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ... import base
from .base import TDModule, check_same_length, check_sequence, optional_mask
from .layers import TDLinear

__all__ = ["TDScaledDotProductAttention", "TDMultiheadAttention"]


def _no_mask_with_causal(is_causal: bool, attn_mask, owner: str) -> None:
    if is_causal and attn_mask is not None:
        raise ValueError(f"{owner} does not allow attn_mask when is_causal=True; use one masking mode at a time.")


def _sdpa(attn_mask, is_causal: bool, scale: Optional[float] = None):
    def run(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=0.0, is_causal=is_causal,
                                              scale=scale)
    return run


class TDScaledDotProductAttention(TDModule):
    """``F.scaled_dot_product_attention`` (no dropout) of the running sums of query, key and value; inputs
    ``(query, key, value[, attn_mask])`` ([T, ..., L, E] each in 'm' mode; ``attn_mask`` also as a keyword)."""

    def __init__(self, is_causal: bool = False, scale: Optional[float] = None, step_mode: str = "m") -> None:
        super().__init__(step_mode)
        self.is_causal = is_causal
        self.scale = scale

    def ann_forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        _no_mask_with_causal(self.is_causal, attn_mask, "TDScaledDotProductAttention")
        return _sdpa(attn_mask, self.is_causal, self.scale)(query, key, value)

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        attn_mask = optional_mask(inputs, kwargs)
        _no_mask_with_causal(self.is_causal, attn_mask, "TDScaledDotProductAttention")
        summed, x_cum, y_cum = self._accumulate_inputs(tuple(inputs[:3]), states[0], states[1])
        output, y_cum = self._diff_output(_sdpa(attn_mask, self.is_causal, self.scale)(*summed), states[1])
        return (output,), (x_cum, y_cum)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        seqs, names = tuple(inputs[:3]), ("query_seq", "key_seq", "value_seq")
        for x_seq, name in zip(seqs, names):
            check_sequence(x_seq, "TDScaledDotProductAttention", name, 3, "[T, ..., L, E]")
        check_same_length(seqs, names, "TDScaledDotProductAttention")
        attn_mask = optional_mask(inputs, kwargs)
        _no_mask_with_causal(self.is_causal, attn_mask, "TDScaledDotProductAttention")
        return self._td_sequence_forward(seqs, states, _sdpa(attn_mask, self.is_causal, self.scale))

    def extra_repr(self) -> str:
        return f"is_causal={self.is_causal}, scale={self.scale}"


class TDMultiheadAttention(TDModule):
    """Multi-head self/cross attention of spiking operands, ``nn.MultiheadAttention``-like with ``batch_first=True``
    and no dropout: TD projections ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (:class:`TDLinear`) around TD
    scaled dot-product attention over ``num_heads`` heads. Inputs [T, batch, seq, embed_dim] in 'm' mode,
    [batch, seq, embed_dim] in 's' mode; returns ``(output, None)`` (attention weights are not computed). A boolean
    ``attn_mask`` marks disallowed positions with True, as in ``nn.MultiheadAttention``."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = True, device=None, dtype=None, step_mode: str = "m") -> None:
        super().__init__(step_mode)
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"TDMultiheadAttention: embed_dim and num_heads must be positive, but got "
                             f"embed_dim={embed_dim}, num_heads={num_heads}.")
        if embed_dim % num_heads != 0:
            raise ValueError(f"TDMultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads}).")
        if dropout != 0.0:
            raise ValueError(f"TDMultiheadAttention only supports dropout=0.0, but got dropout={dropout}.")
        if not batch_first:
            raise ValueError("TDMultiheadAttention only supports batch_first=True.")
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self, name, TDLinear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype,
                                         step_mode=step_mode))
        self.step_mode = step_mode

    def _projections(self):
        return (self.q_proj, self.k_proj, self.v_proj, self.out_proj)

    def reset(self):
        super().reset()
        for proj in self._projections():
            proj.reset()

    @TDModule.step_mode.setter
    def step_mode(self, value: str):
        base.StepModule.step_mode.fset(self, value)
        if "q_proj" in self._modules:
            for proj in self._projections():
                proj.step_mode = value

    # -- heads --------------------------------------------------------------------------------------------
    def _split(self, x: torch.Tensor, ndim: int, layout: str) -> torch.Tensor:
        """[..., L, E] -> [..., heads, L, head_dim]."""
        if x.dim() != ndim:
            raise ValueError(f"TDMultiheadAttention expects {layout}input with shape "
                             f"[{'T, ' if ndim == 4 else ''}batch, seq, embed_dim], but got {tuple(x.shape)}.")
        if x.shape[-1] != self.embed_dim:
            raise ValueError(f"TDMultiheadAttention expects the last dimension to match embed_dim={self.embed_dim}, "
                             f"but got {x.shape[-1]}.")
        return x.reshape(*x.shape[:-1], self.num_heads, self.head_dim).transpose(-3, -2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        """[..., heads, L, head_dim] -> [..., L, E]."""
        x = x.transpose(-3, -2).contiguous()
        return x.reshape(*x.shape[:-2], self.embed_dim)

    def _mask(self, attn_mask: Optional[torch.Tensor], batch_size: int) -> Optional[torch.Tensor]:
        """nn.MultiheadAttention's mask convention to SDPA's: a boolean mask flips (True = keep); a
        [batch * heads, L, S] mask becomes [batch, heads, L, S]."""
        if attn_mask is None:
            return None
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.logical_not(attn_mask)
        if attn_mask.dim() == 3 and attn_mask.shape[0] == batch_size * self.num_heads:
            attn_mask = attn_mask.reshape(batch_size, self.num_heads, *attn_mask.shape[1:])
        return attn_mask

    @staticmethod
    def _options(kwargs: dict) -> Tuple[Optional[torch.Tensor], bool]:
        if kwargs.get("need_weights", False):
            raise ValueError("TDMultiheadAttention only supports need_weights=False.")
        if kwargs.get("key_padding_mask") is not None:
            raise ValueError("TDMultiheadAttention does not support key_padding_mask.")
        if not kwargs.get("average_attn_weights", True):
            raise ValueError("TDMultiheadAttention does not support average_attn_weights=False.")
        attn_mask, is_causal = kwargs.get("attn_mask"), kwargs.get("is_causal", False)
        _no_mask_with_causal(is_causal, attn_mask, "TDMultiheadAttention")
        return attn_mask, is_causal

    @staticmethod
    def _check_leading(q, k, v) -> None:
        if not q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:
            raise ValueError(f"TDMultiheadAttention requires query, key and value leading dimensions to match exactly "
                             f"before SDPA, but got {tuple(q.shape[:-2])}, {tuple(k.shape[:-2])} and "
                             f"{tuple(v.shape[:-2])}.")

    # -- forward ------------------------------------------------------------------------------------------
    def ann_forward(self, query, key, value, key_padding_mask=None, need_weights=False, attn_mask=None,
                    average_attn_weights=True, is_causal=False):
        """The ANN attention on plain tensors [batch, seq, embed_dim]; returns ``(output, None)``."""
        attn_mask, is_causal = self._options(dict(key_padding_mask=key_padding_mask, need_weights=need_weights,
                                                  attn_mask=attn_mask, average_attn_weights=average_attn_weights,
                                                  is_causal=is_causal))
        q, k, v = (self._split(p.ann_forward(x), 3, "single-step ")
                   for p, x in zip(self._projections(), (query, key, value)))
        self._check_leading(q, k, v)
        attn = _sdpa(self._mask(attn_mask, q.shape[0]), is_causal)(q, k, v)
        return self.out_proj.ann_forward(self._merge(attn)), None

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        attn_mask, is_causal = self._options(kwargs)
        q, k, v = (self._split(p.single_step_forward(x), 3, "single-step ")
                   for p, x in zip(self._projections(), inputs))
        self._check_leading(q, k, v)
        summed, x_cum, y_cum = self._accumulate_inputs((q, k, v), states[0], states[1])
        attn, y_cum = self._diff_output(_sdpa(self._mask(attn_mask, q.shape[0]), is_causal)(*summed), y_cum)
        return (self.out_proj.single_step_forward(self._merge(attn)),), (x_cum, y_cum)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        attn_mask, is_causal = self._options(kwargs)
        q, k, v = (self._split(p.multi_step_forward(x), 4, "")
                   for p, x in zip(self._projections(), inputs))
        self._check_leading(q, k, v)
        (attn,), states = self._td_sequence_forward((q, k, v), states,
                                                    _sdpa(self._mask(attn_mask, q.shape[1]), is_causal))
        return (self.out_proj.multi_step_forward(self._merge(attn)),), states

    def single_step_forward(self, query, key, value, key_padding_mask=None, need_weights=False, attn_mask=None,
                            average_attn_weights=True, is_causal=False):
        out = super().single_step_forward(query, key, value, key_padding_mask=key_padding_mask,
                                          need_weights=need_weights, attn_mask=attn_mask,
                                          average_attn_weights=average_attn_weights, is_causal=is_causal)
        return out, None

    def multi_step_forward(self, query_seq, key_seq, value_seq, key_padding_mask=None, need_weights=False,
                           attn_mask=None, average_attn_weights=True, is_causal=False):
        out = super().multi_step_forward(query_seq, key_seq, value_seq, key_padding_mask=key_padding_mask,
                                         need_weights=need_weights, attn_mask=attn_mask,
                                         average_attn_weights=average_attn_weights, is_causal=is_causal)
        return out, None

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}")
