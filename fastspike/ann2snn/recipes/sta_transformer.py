"""SpikingJelly 2.0's STA Transformer recipe (spatio-temporal approximation of a Vision Transformer): the
Transformer runs on temporal-difference operators, its constants become one-step spike trains, and (mode
'spiking_encoder') the outputs of its LayerNorms, GELUs and attentions are re-encoded as multi-level spikes with
per-channel thresholds calibrated on data.

Steps: ``before_trace`` puts the ANN in eval mode; ``insert_observers`` (mode 'spiking_encoder') hooks an
:class:`~fastspike.ann2snn.recipes.sta_modules.STAThresholdObserver` on each ``nn.LayerNorm``, ``nn.GELU`` and
``nn.MultiheadAttention``; ``calibrate`` runs the dataloader (``num_calibration_batches`` at most); ``replace``:

1. ``nn.Linear``/``nn.Conv2d`` -> ``TDLinear``/``TDConv2d``;
2. every floating-point parameter or buffer the graph reads directly (``get_attr``), except attention masks and
   weights of functional linear/conv/matmul calls, -> ``sta_time_constant_<i>`` (:class:`STAConstant`);
3. ``nn.LayerNorm``/``nn.GELU`` -> TD operators and ``nn.MultiheadAttention`` (called with
   ``need_weights=False``, no ``key_padding_mask``) -> ``TDMultiheadAttention``; with calibration, each gets a
   ``<name>_sta_encoder`` (:class:`STASpikeEncoder`, threshold times ``threshold_scale``) on its output;

then the graph is made step-mode aware (``sequence_adapter``). ``finalize`` stores ``time_steps`` on the result.
Run it with ``functional.set_step_mode(snn, 'm')`` on [time_steps, N, *] inputs and sum the outputs over time.
SpikingJelly's 'spiking_affine' mode and ``spike_linear``/``spike_conv2d`` are refused by its validation (no
step-mode backend there); so they are here.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._pytree import tree_map

from ..operators import TDMultiheadAttention
from .base import FXConversionRecipe, replace_submodule
from .sequence_adapter import TRANSFORMER_SAFE_MODULE_TYPES, adapt_sequence_graph
from .sta_modules import STAConstant, STASpikeEncoder, STAThresholdObserver
from .td_support import make_td_multihead_attention, td_module_from_ann

__all__ = ["STATransformerRecipe"]

_OWNER = "STATransformerRecipe"
_STATIC_TENSOR_KWARGS = frozenset({"attention_mask", "attn_mask", "causal_mask", "decoder_attention_mask",
                                   "encoder_attention_mask", "key_padding_mask", "mask", "padding_mask"})
_WEIGHTED_FUNCTIONS = {F.linear, F.conv1d, F.conv2d, F.conv3d}
_MATMULS = {torch.matmul, operator.matmul}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class STATransformerRecipe(FXConversionRecipe):
    """STA conversion of a Transformer (module docstring).

    :param dataloader: calibration batches (needed by mode 'spiking_encoder'): a tensor, ``(args_tuple,
        kwargs_dict)``, ``(x, label)`` or a dict of keyword arguments per batch.
    :param time_steps: the number of time steps T the SNN runs for (constants emit T steps per 'm' call).
    :param mode: 'equivalent' (TD operators only) or 'spiking_encoder' (with spike encoders); 'spiking_affine'
        is SpikingJelly's name for a mode without a step-mode backend and is refused.
    :param threshold_mode: 'mse' or 'max' (see :class:`STAThresholdObserver`).
    :param threshold_scale: factor on every calibrated threshold.
    :param spike_linear: default ``mode == 'spiking_affine'``; must be False. :param spike_conv2d: must be False.
    :param spike_classifier: also spike Linear layers named head/heads/classifier (with ``spike_linear``).
    :param momentum: weight of each new batch in the running threshold, in [0, 1].
    :param num_calibration_batches: at most this many batches (None: all).
    :param show_progress: show a tqdm bar during calibration.
    :param eps: lower bound of each channel's max |activation|.
    """

    def __init__(self, dataloader: Optional[Iterable] = None, time_steps: int = 32, mode: str = "equivalent",
                 threshold_mode: str = "mse", threshold_scale: float = 1.0, spike_linear: Optional[bool] = None,
                 spike_conv2d: Optional[bool] = None, spike_classifier: bool = False, momentum: float = 0.1,
                 num_calibration_batches: Optional[int] = None, show_progress: bool = False,
                 eps: float = 1e-6) -> None:
        self.dataloader = dataloader
        self.time_steps = time_steps
        self.mode = mode
        self.threshold_mode = threshold_mode.lower() if isinstance(threshold_mode, str) else threshold_mode
        self.threshold_scale = threshold_scale
        self.spike_linear = mode == "spiking_affine" if spike_linear is None else spike_linear
        self.spike_conv2d = False if spike_conv2d is None else spike_conv2d
        self.spike_classifier = spike_classifier
        self.momentum = momentum
        self.num_calibration_batches = num_calibration_batches
        self.show_progress = show_progress
        self.eps = eps
        self._observers: Dict[str, STAThresholdObserver] = {}
        self._hook_handles: List[torch.utils.hooks.RemovableHandle] = []

    def validate(self, converter) -> None:
        needs_calibration = self.mode == "spiking_encoder" or self.spike_linear or self.spike_conv2d
        if needs_calibration and self.dataloader is None:
            raise ValueError(f"{_OWNER}: calibration is enabled (mode={self.mode!r}), so pass dataloader=....")
        if not isinstance(self.time_steps, int) or isinstance(self.time_steps, bool) or self.time_steps <= 0:
            raise ValueError(f"{_OWNER}: time_steps must be a positive integer, but got {self.time_steps!r}.")
        if self.mode not in ("equivalent", "spiking_encoder", "spiking_affine"):
            raise ValueError(f"{_OWNER}: mode must be 'equivalent', 'spiking_encoder' or 'spiking_affine', but got "
                             f"{self.mode!r}.")
        if self.threshold_mode not in ("mse", "max"):
            raise ValueError(f"{_OWNER}: threshold_mode must be 'mse' or 'max', but got {self.threshold_mode!r}.")
        if not _is_number(self.threshold_scale) or not self.threshold_scale > 0 \
                or not math.isfinite(self.threshold_scale):
            raise ValueError(f"{_OWNER}: threshold_scale must be a positive finite number, but got "
                             f"{self.threshold_scale!r}.")
        for name in ("spike_linear", "spike_conv2d", "spike_classifier"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{_OWNER}: {name} must be a bool, but got {getattr(self, name)!r}.")
        if self.mode == "spiking_affine" or self.spike_linear or self.spike_conv2d:
            raise ValueError(f"{_OWNER}: the step-mode backend supports only modes 'equivalent' and "
                             "'spiking_encoder', without spiking affine Linear/Conv2d (mode='spiking_affine', "
                             "spike_linear=True and spike_conv2d=True are not supported).")
        if not _is_number(self.momentum) or not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"{_OWNER}: momentum must be a number in [0, 1], but got {self.momentum!r}.")
        n = self.num_calibration_batches
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n <= 0):
            raise ValueError(f"{_OWNER}: num_calibration_batches must be a positive int or None, but got {n!r}.")
        if not isinstance(self.show_progress, bool):
            raise ValueError(f"{_OWNER}: show_progress must be a bool, but got {self.show_progress!r}.")
        if not _is_number(self.eps) or not self.eps > 0 or not math.isfinite(self.eps):
            raise ValueError(f"{_OWNER}: eps must be a positive finite number, but got {self.eps!r}.")

    def before_trace(self, converter, ann: nn.Module) -> nn.Module:
        ann.eval()
        return ann

    def insert_observers(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        self._remove_hooks()
        self._observers = {}
        modules = dict(fx_model.named_modules())
        for node in fx_model.graph.nodes:
            if node.op != "call_module" or not isinstance(node.target, str):
                continue
            module = modules.get(node.target)
            if isinstance(module, nn.Linear):
                if not self._should_spike_linear(node.target):
                    continue
                channel_dim = -1
            elif isinstance(module, nn.Conv2d):
                if not self.spike_conv2d:
                    continue
                channel_dim = 1
            elif self.mode == "spiking_encoder" and isinstance(module, (nn.LayerNorm, nn.GELU,
                                                                          nn.MultiheadAttention)):
                channel_dim = -1
            else:
                continue
            observer = STAThresholdObserver(self.time_steps, channel_dim=channel_dim, mode=self.threshold_mode,
                                            momentum=self.momentum, eps=self.eps)
            self._observers[node.target] = observer
            self._hook_handles.append(module.register_forward_hook(
                lambda _module, _inputs, output, obs=observer: obs(output)))
        return fx_model

    def calibrate(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        if not self._observers:
            return fx_model
        fx_model.eval()
        batches = self.dataloader
        if self.show_progress:
            from tqdm import tqdm  # optional: only for the progress bar
            batches = tqdm(batches, desc="STA calibration")
        try:
            with torch.no_grad():
                for index, batch in enumerate(batches):
                    if self.num_calibration_batches is not None and index >= self.num_calibration_batches:
                        break
                    args, kwargs = self._batch_to_args(batch, converter.device)
                    fx_model(*args, **kwargs)
        finally:
            self._remove_hooks()
        return fx_model

    def replace(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        return self._replace_sequence(fx_model)

    def _replace_sequence(self, fx_model: fx.GraphModule) -> fx.GraphModule:
        self._remove_hooks()
        modules = dict(fx_model.named_modules())
        for node in fx_model.graph.nodes:
            if node.op == "call_module" and isinstance(node.target, str) \
                    and isinstance(modules.get(node.target), (nn.Linear, nn.Conv2d)):
                replacement = td_module_from_ann(modules[node.target])
                replace_submodule(fx_model, node.target, replacement)
                modules[node.target] = replacement
        self._wrap_time_constants(fx_model)
        modules = dict(fx_model.named_modules())
        for node in list(fx_model.graph.nodes):
            if node.op != "call_module" or not isinstance(node.target, str):
                continue
            module = modules.get(node.target)
            if isinstance(module, (nn.LayerNorm, nn.GELU)):
                replacement = td_module_from_ann(module)
            elif isinstance(module, nn.MultiheadAttention):
                self._validate_sequence_mha_node(node)
                replacement = make_td_multihead_attention(module, _OWNER)
            else:
                continue
            threshold = self._compute_scaled_threshold(self._observers.get(node.target))
            replace_submodule(fx_model, node.target, replacement)
            modules[node.target] = replacement
            if threshold is not None:
                if isinstance(replacement, TDMultiheadAttention):
                    self._insert_sequence_mha_output_encoder(fx_model, node, threshold)
                else:
                    self._insert_sequence_encoder(fx_model, node, threshold, channel_dim=-1)
        return adapt_sequence_graph(fx_model, context=f"{_OWNER} step-mode backend",
                                    safe_module_types=TRANSFORMER_SAFE_MODULE_TYPES)

    def finalize(self, converter, fx_model: fx.GraphModule) -> nn.Module:
        object.__setattr__(fx_model, "time_steps", self.time_steps)
        return fx_model

    # -- MultiheadAttention calls -------------------------------------------------------------------------
    @staticmethod
    def _mha_argument(node: fx.Node, name: str, position: int):
        if name in node.kwargs:
            return node.kwargs[name]
        return node.args[position] if len(node.args) > position else None

    @staticmethod
    def _validate_sequence_mha_node(node: fx.Node) -> None:
        where = f"{_OWNER}: MultiheadAttention {node.target!r}"
        if STATransformerRecipe._mha_argument(node, "key_padding_mask", 3) is not None:
            raise ValueError(f"{where}: key_padding_mask is not supported; mask the inputs or pass attn_mask.")
        need_weights = STATransformerRecipe._mha_argument(node, "need_weights", 4)
        if need_weights is not None and need_weights is not False:
            raise ValueError(f"{where} must be called with need_weights=False, but got need_weights="
                             f"{need_weights!r}.")
        weights_used = any(u.op == "call_function" and u.target is operator.getitem and len(u.args) >= 2
                           and u.args[1] == 1 and u.users for u in node.users)
        if need_weights is None and weights_used:
            raise ValueError(f"{where}: its attention weights are used; pass need_weights=False and do not use them.")

    # -- encoders -----------------------------------------------------------------------------------------
    @staticmethod
    def _insert_sequence_encoder(fx_model: fx.GraphModule, node: fx.Node, threshold: torch.Tensor,
                                 channel_dim: int) -> str:
        modules = dict(fx_model.named_modules())
        stem = node.target if isinstance(node.target, str) else node.name
        target, index = f"{stem}_sta_encoder", 0
        while target in modules:
            index += 1
            target = f"{stem}_sta_encoder_{index}"
        fx_model.add_submodule(target, STASpikeEncoder(threshold, channel_dim=channel_dim, step_mode="m"))
        with fx_model.graph.inserting_after(node):
            encoder_node = fx_model.graph.call_module(target, args=(node,))
        for user in list(node.users):
            if user is not encoder_node:
                user.replace_input_with(node, encoder_node)
        return target

    @staticmethod
    def _insert_sequence_mha_output_encoder(fx_model: fx.GraphModule, node: fx.Node, threshold: torch.Tensor) -> str:
        output = next((u for u in node.users if u.op == "call_function" and u.target is operator.getitem
                       and len(u.args) >= 2 and u.args[1] == 0), None)
        if output is None:
            raise ValueError(f"{_OWNER}: mode 'spiking_encoder' needs the output of MultiheadAttention "
                             f"{node.target!r} unpacked (out = attn(...)[0]) before use.")
        return STATransformerRecipe._insert_sequence_encoder(fx_model, output, threshold, channel_dim=-1)

    # -- calibration batches ------------------------------------------------------------------------------
    @staticmethod
    def _batch_to_args(batch: Any, device: torch.device) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        move = STATransformerRecipe._to_device
        if isinstance(batch, dict):
            return (), {key: move(value, device) for key, value in batch.items()}
        if isinstance(batch, (tuple, list)):
            if len(batch) == 0:
                raise ValueError(f"{_OWNER}: a calibration batch must not be empty.")
            if isinstance(batch[0], (tuple, list)):
                kwargs = move(batch[1], device) if len(batch) > 1 and isinstance(batch[1], dict) else {}
                return tuple(move(value, device) for value in batch[0]), kwargs
            return (move(batch[0], device),), {}
        return (move(batch, device),), {}

    @staticmethod
    def _to_device(value: Any, device: torch.device) -> Any:
        return tree_map(lambda item: item.to(device) if torch.is_tensor(item) else item, value)

    # -- time constants -----------------------------------------------------------------------------------
    @staticmethod
    def _get_attr_value(fx_model: fx.GraphModule, target: str) -> Any:
        value: Any = fx_model
        for atom in target.split("."):
            value = getattr(value, atom)
        return value

    def _wrap_time_constants(self, fx_model: fx.GraphModule) -> None:
        modules = dict(fx_model.named_modules())
        existing, index = set(modules), 0
        for node in list(fx_model.graph.nodes):
            if node.op != "get_attr" or not isinstance(node.target, str):
                continue
            value = self._get_attr_value(fx_model, node.target)
            if not torch.is_tensor(value) or not value.is_floating_point():
                continue
            if self._is_static_control_attr(node, modules) or self._is_functional_parameter_attr(node):
                continue
            while f"sta_time_constant_{index}" in existing:
                index += 1
            target = f"sta_time_constant_{index}"
            index += 1
            fx_model.add_submodule(target, STAConstant(value, self.time_steps))
            existing.add(target)
            with fx_model.graph.inserting_after(node):
                constant_node = fx_model.graph.call_module(target, args=())
            for user in list(node.users):
                user.replace_input_with(node, constant_node)
            fx_model.graph.erase_node(node)

    @staticmethod
    def _is_static_control_attr(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
        for user in node.users:
            if STATransformerRecipe._is_static_control_arg(user, node, modules):
                return True
            if any(key in _STATIC_TENSOR_KWARGS and value is node for key, value in user.kwargs.items()):
                return True
        return False

    @staticmethod
    def _is_static_control_arg(user: fx.Node, node: fx.Node, modules: Optional[Dict[str, nn.Module]] = None) -> bool:
        args = tuple(user.args)
        if user.op == "call_module":
            if not isinstance(user.target, str) or modules is None:
                return False
            if not isinstance(modules.get(user.target), (nn.MultiheadAttention, TDMultiheadAttention)):
                return False
            return ((len(args) > 3 and args[3] is node) or (len(args) > 5 and args[5] is node)
                    or user.kwargs.get("key_padding_mask") is node or user.kwargs.get("attn_mask") is node)
        if user.op == "call_function" and user.target is F.scaled_dot_product_attention:
            return len(args) > 3 and args[3] is node
        return False

    @staticmethod
    def _is_functional_parameter_attr(node: fx.Node) -> bool:
        for user in node.users:
            if user.op != "call_function":
                continue
            args = tuple(user.args)
            if user.target in _WEIGHTED_FUNCTIONS:
                if (len(args) > 1 and node is args[1]) or user.kwargs.get("weight") is node:
                    return True
            elif user.target in _MATMULS:
                if node in args or user.kwargs.get("input") is node or user.kwargs.get("other") is node:
                    return True
        return False

    # -- thresholds ---------------------------------------------------------------------------------------
    def _should_spike_linear(self, target: str) -> bool:
        if not self.spike_linear:
            return False
        if self.spike_classifier:
            return True
        return not any(part in {"head", "heads", "classifier"} for part in target.split("."))

    def _compute_scaled_threshold(self, observer: Optional[STAThresholdObserver]) -> Optional[torch.Tensor]:
        if observer is None:
            return None
        if observer.threshold is None:
            raise RuntimeError(f"{_OWNER}: a threshold observer collected no calibration data (did the dataloader "
                               "yield any batch?).")
        return observer.compute_threshold() * self.threshold_scale

    def _remove_hooks(self) -> None:
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = []
