"""SpikingJelly 2.0's Transformer TD-equivalent recipe: the ANN's Transformer operations become
temporal-difference operators (``fastspike.ann2snn.operators``), whose outputs summed over time equal the ANN's
output on the inputs summed over time. No observers, no calibration data, no train/eval switch.

``replace`` rewrites, in this order:

1. modules: ``nn.Linear`` -> ``TDLinear``, ``nn.Conv2d`` -> ``TDConv2d``, ``nn.LayerNorm`` -> ``TDLayerNorm``,
   ``nn.GELU`` -> ``TDGELU``, ``nn.RMSNorm`` -> ``TDRMSNorm``, ``nn.SiLU`` -> ``TDSiLU``, ``nn.Tanh`` -> a TD tanh,
   ``nn.Softmax(dim)`` -> ``TDSoftmax`` (a non-negative ``dim`` moves by one for the time axis) and
   ``nn.MultiheadAttention`` (batch_first, no dropout, packed projections, called with ``need_weights=False``)
   -> ``TDMultiheadAttention``; parameters are copied;
2. functions: ``F.silu``, ``F.gelu``, ``torch.tanh``/``F.tanh``, ``F.softmax``/``torch.softmax``/``x.softmax``
   and ``torch.matmul``/``@``/``x.matmul`` become modules ``td_silu_<i>``, ``td_gelu_<i>``, ``td_tanh_<i>``,
   ``td_softmax_<i>`` and ``td_matmul_<i>`` (``SNNMatrixOperator``);
3. ``F.scaled_dot_product_attention`` (literal ``dropout_p=0``, ``is_causal`` and ``scale``; no GQA) becomes
   ``td_scaled_dot_product_attention_<i>``;

then the graph is made step-mode aware (``sequence_adapter``: static inputs such as masks may stay [N, *]).
Run the result with ``functional.set_step_mode(snn, 'm')`` on [T, N, *] inputs and sum the outputs over time.
"""
from __future__ import annotations

import operator
from typing import Any, Dict, Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..operators import (SNNMatrixOperator, TDGELU, TDModule, TDRMSNorm, TDScaledDotProductAttention, TDSiLU,
                         TDSoftmax)
from .base import FXConversionRecipe, replace_submodule
from .sequence_adapter import SHAPE_ONLY_MODULE_TYPES, TRANSFORMER_SAFE_MODULE_TYPES, adapt_sequence_graph
from .td_support import literal_argument, make_td_multihead_attention, td_module_from_ann, tensor_argument

__all__ = ["TransformerTDEquivalentRecipe"]

_OWNER = "TransformerTDEquivalentRecipe"


def _td_softmax_dim(dim: int) -> int:
    """An ANN softmax dim on the TD tensor, which has the time axis in front (negative dims stay)."""
    return dim + 1 if dim >= 0 else dim


class _TDTanh(TDModule):
    """tanh of the running input sum."""

    def ann_forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        return self._td_sequence_forward((inputs[0],), states, torch.tanh)


class TransformerTDEquivalentRecipe(FXConversionRecipe):
    """Replace a Transformer's operations with TD-equivalent operators (module docstring).

    :param time_steps: optional; when set (a positive int), the converted model carries it as ``time_steps``.
    """

    def __init__(self, time_steps: Optional[int] = None) -> None:
        self.time_steps = time_steps

    def validate(self, converter) -> None:
        if self.time_steps is None:
            return
        if not isinstance(self.time_steps, int) or isinstance(self.time_steps, bool) or self.time_steps <= 0:
            raise ValueError(f"{_OWNER}: time_steps must be a positive integer when set, but got "
                             f"{self.time_steps!r}.")

    def replace(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        modules = dict(fx_model.named_modules())
        for node in list(fx_model.graph.nodes):
            if node.op != "call_module" or not isinstance(node.target, str) or node.target not in modules:
                continue
            replacement = self._make_td_operator(modules[node.target], node)
            if replacement is not None:
                replace_submodule(fx_model, node.target, replacement)
                modules[node.target] = replacement
        self._replace_functional_td_ops(fx_model)
        self._replace_sdpa(fx_model)
        return adapt_sequence_graph(fx_model, context=f"{_OWNER} step-mode backend",
                                    wrap_module_types=SHAPE_ONLY_MODULE_TYPES,
                                    safe_module_types=TRANSFORMER_SAFE_MODULE_TYPES,
                                    safe_call_functions=(torch.div, operator.truediv))

    def finalize(self, converter, fx_model: fx.GraphModule) -> nn.Module:
        object.__setattr__(fx_model, "ann2snn_recipe", "transformer_td_equivalent")
        if self.time_steps is not None:
            object.__setattr__(fx_model, "time_steps", self.time_steps)
        return fx_model

    # -- modules ------------------------------------------------------------------------------------------
    @staticmethod
    def _check_mha_node(module: nn.MultiheadAttention, node: fx.Node) -> None:
        if module.dropout != 0.0:
            raise ValueError(f"{_OWNER}: MultiheadAttention {node.target!r}: dropout must be 0.0, but got "
                             f"{module.dropout}.")
        if not module.batch_first:
            raise ValueError(f"{_OWNER}: MultiheadAttention {node.target!r}: batch_first must be True.")
        if module.kdim != module.embed_dim or module.vdim != module.embed_dim:
            raise ValueError(f"{_OWNER}: MultiheadAttention {node.target!r}: kdim and vdim must equal embed_dim.")
        if literal_argument(node, "need_weights", 4, True) is not False:
            raise ValueError(f"{_OWNER}: MultiheadAttention {node.target!r} must be called with need_weights=False.")
        if literal_argument(node, "key_padding_mask", 3, None) is not None:
            raise ValueError(f"{_OWNER}: MultiheadAttention {node.target!r}: key_padding_mask is not supported.")
        if literal_argument(node, "average_attn_weights", 6, True) is not True:
            raise ValueError(f"{_OWNER}: MultiheadAttention {node.target!r}: average_attn_weights=False is not "
                             "supported.")

    def _make_td_operator(self, module: nn.Module, node: Optional[fx.Node] = None) -> Optional[nn.Module]:
        if isinstance(module, TDModule):
            return None
        td_module = td_module_from_ann(module)
        if td_module is not None:
            return td_module
        if isinstance(module, nn.RMSNorm):
            weight = module.weight
            td_module = TDRMSNorm(module.normalized_shape, eps=module.eps,
                                  elementwise_affine=module.elementwise_affine,
                                  device=None if weight is None else weight.device,
                                  dtype=None if weight is None else weight.dtype)
            if weight is not None:
                with torch.no_grad():
                    td_module.weight.copy_(weight)
                td_module.weight.requires_grad = weight.requires_grad
        elif isinstance(module, nn.SiLU):
            td_module = TDSiLU()
        elif isinstance(module, nn.Tanh):
            td_module = _TDTanh()
        elif isinstance(module, nn.Softmax):
            if not isinstance(module.dim, int):
                raise ValueError(f"{_OWNER}: nn.Softmax needs a literal int dim, but got {module.dim!r}.")
            return TDSoftmax(dim=_td_softmax_dim(module.dim))
        elif isinstance(module, nn.MultiheadAttention):
            if node is None:
                raise ValueError(f"{_OWNER}: MultiheadAttention conversion needs its torch.fx node.")
            self._check_mha_node(module, node)
            return make_td_multihead_attention(module, _OWNER)
        else:
            return None
        td_module.train(module.training)
        return td_module

    # -- functions ----------------------------------------------------------------------------------------
    @staticmethod
    def _insert_call_module_after(fx_model: fx.GraphModule, node: fx.Node, module: nn.Module, prefix: str,
                                  index: int, args: tuple) -> int:
        existing = set(dict(fx_model.named_modules()))
        while f"{prefix}_{index}" in existing:
            index += 1
        target = f"{prefix}_{index}"
        fx_model.add_submodule(target, module)
        with fx_model.graph.inserting_after(node):
            new_node = fx_model.graph.call_module(target, args=args)
        node.replace_all_uses_with(new_node)
        fx_model.graph.erase_node(node)
        return index + 1

    @staticmethod
    def _functional_replacement(node: fx.Node, training: bool):
        """(prefix, module, args) for a functional op the recipe converts, else None."""
        def first():
            return (tensor_argument(node, "input", 0, _OWNER),)

        if node.op == "call_function":
            target = node.target
            if target is F.silu:
                return "td_silu", TDSiLU().train(training), first()
            if target is F.gelu:
                approximate = literal_argument(node, "approximate", 1, "none")
                if approximate not in ("none", "tanh"):
                    raise ValueError(f"{_OWNER}: F.gelu approximate must be 'none' or 'tanh', but got "
                                     f"{approximate!r}.")
                return "td_gelu", TDGELU(approximate=approximate), first()
            if target in (torch.tanh, F.tanh):
                return "td_tanh", _TDTanh(), first()
            if target in (F.softmax, torch.softmax):
                dim = literal_argument(node, "dim", 1, None)
                if not isinstance(dim, int):
                    raise ValueError(f"{_OWNER}: softmax needs a literal int dim, but got {dim!r}.")
                return "td_softmax", TDSoftmax(dim=_td_softmax_dim(dim)), first()
            if target in (torch.matmul, operator.matmul):
                return "td_matmul", SNNMatrixOperator(), (tensor_argument(node, "input", 0, _OWNER),
                                                          tensor_argument(node, "other", 1, _OWNER))
        elif node.op == "call_method":
            if node.target == "softmax":
                dim = literal_argument(node, "dim", 1, None)
                if not isinstance(dim, int):
                    raise ValueError(f"{_OWNER}: tensor.softmax needs a literal int dim, but got {dim!r}.")
                return "td_softmax", TDSoftmax(dim=_td_softmax_dim(dim)), (node.args[0],)
            if node.target == "matmul":
                if len(node.args) < 2:
                    raise ValueError(f"{_OWNER}: malformed tensor.matmul node {node.name!r}.")
                return "td_matmul", SNNMatrixOperator(), (node.args[0], node.args[1])
        return None

    def _replace_functional_td_ops(self, fx_model: fx.GraphModule) -> None:
        indices: Dict[str, int] = {}
        for node in list(fx_model.graph.nodes):
            found = self._functional_replacement(node, fx_model.training)
            if found is None:
                continue
            prefix, module, args = found
            indices[prefix] = self._insert_call_module_after(fx_model, node, module, prefix,
                                                             indices.get(prefix, 0), args)
        fx_model.graph.lint()
        fx_model.delete_all_unused_submodules()
        fx_model.recompile()

    # -- scaled_dot_product_attention ---------------------------------------------------------------------
    @staticmethod
    def _parse_sdpa_node(node: fx.Node) -> Dict[str, Any]:
        dropout_p = literal_argument(node, "dropout_p", 4, 0.0)
        if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or float(dropout_p) != 0.0:
            raise ValueError(f"{_OWNER}: scaled_dot_product_attention needs a literal dropout_p=0.0, but got "
                             f"{dropout_p!r}.")
        if literal_argument(node, "enable_gqa", 7, False) is not False:
            raise ValueError(f"{_OWNER}: scaled_dot_product_attention with enable_gqa=True is not supported.")
        is_causal = literal_argument(node, "is_causal", 5, False)
        if not isinstance(is_causal, bool):
            raise ValueError(f"{_OWNER}: scaled_dot_product_attention needs a literal bool is_causal, but got "
                             f"{is_causal!r}.")
        scale = literal_argument(node, "scale", 6, None)
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
            raise ValueError(f"{_OWNER}: scaled_dot_product_attention needs a literal numeric scale or None, but "
                             f"got {scale!r}.")
        return {"query": tensor_argument(node, "query", 0, _OWNER), "key": tensor_argument(node, "key", 1, _OWNER),
                "value": tensor_argument(node, "value", 2, _OWNER),
                "attn_mask": literal_argument(node, "attn_mask", 3, None), "is_causal": is_causal,
                "scale": None if scale is None else float(scale)}

    def _replace_sdpa(self, fx_model: fx.GraphModule) -> None:
        index = 0
        existing = set(dict(fx_model.named_modules()))
        for node in list(fx_model.graph.nodes):
            if node.op != "call_function" or node.target is not F.scaled_dot_product_attention:
                continue
            kw = self._parse_sdpa_node(node)
            while f"td_scaled_dot_product_attention_{index}" in existing:
                index += 1
            target = f"td_scaled_dot_product_attention_{index}"
            index += 1
            fx_model.add_submodule(target, TDScaledDotProductAttention(is_causal=kw["is_causal"], scale=kw["scale"]))
            existing.add(target)
            with fx_model.graph.inserting_after(node):
                new_node = fx_model.graph.call_module(target, args=(kw["query"], kw["key"], kw["value"],
                                                                     kw["attn_mask"]))
            node.replace_all_uses_with(new_node)
            fx_model.graph.erase_node(node)
