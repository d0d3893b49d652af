"""ANN-to-SNN conversion by torch.fx graph rewriting.

Pipeline of :class:`Converter` (``snn = Converter(...)(ann)``):

1. copy the ANN, put it in eval mode and trace it with torch.fx (failures, e.g. data-dependent control flow,
   become a :class:`ConversionError` that names the offending source line);
2. check every graph node against the supported set and report *all* unsupported ones at once, each with
   its graph node name, module path and source line;
3. remove dropout, fold each BatchNorm into the conv/linear that feeds it (a BatchNorm with nothing to fold
   into becomes a fixed per-channel affine map);
4. find every ReLU site (``nn.ReLU`` modules, ``F.relu``/``F.relu_``/``torch.relu``/``torch.relu_`` calls,
   ``x.relu()``/``x.relu_()``) and every QCFS module; measure the activation statistic lambda of each ReLU
   site on the calibration data (unless the user passed it);
5. replace each site with ``Sequential(IFNode(v_threshold=lambda, v_reset=None), VoltageScaler(lambda))``:
   the neuron integrates the ANN's pre-activation unchanged, fires when it reaches lambda and soft-resets by
   lambda, and each spike leaves as the value lambda, so the firing rate times lambda approximates
   ``clamp(relu(x), 0, lambda)``. Weights are never rescaled (the threshold carries lambda), which keeps
   residual additions and concatenations of branches with different lambdas correct without balancing;
6. replace max pooling by :class:`~fastspike.ann2snn.modules.SpikeMaxPool` (gated by accumulated input).

The result is a ``torch.fx.GraphModule`` that runs one time step per call (step_mode 's'), holding fastspike
``IFNode`` neurons (any backend, ``functional.reset_net`` resets it). Feed the same input at every step (direct
encoding) and average the outputs over T steps to approximate the ANN's output; :func:`simulate` does that.
"""
from __future__ import annotations

import copy
import math
import operator
import os
import re
import traceback
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Union

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from fastspike import base, neuron
from .modules import ChannelAffine, SpikeMaxPool, StatisticObserver, VoltageScaler
from .qcfs import QCFS

__all__ = ["Converter", "ConversionError", "simulate", "fuse_batchnorm"]

_TORCH_DIR = os.path.dirname(torch.__file__)
_THIS_DIR = os.path.dirname(os.path.abspath(__file__))


class ConversionError(ValueError):
    """The ANN cannot be converted: an unsupported layer/op, an fx tracing failure or missing statistics."""


# ------------------------------------------------------------------------------------------------
# what the converter understands
# ------------------------------------------------------------------------------------------------
_LINEAR_MODULES = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
)
_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_MAXPOOL_MODULES = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
_BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_FOLD_TARGETS = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d, nn.Linear: nn.BatchNorm1d}

_RELU_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_}
_RELU_METHODS = {"relu", "relu_"}
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout}
_MAXPOOL_FUNCTIONS = {
    F.max_pool1d: (nn.MaxPool1d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.max_pool2d: (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.max_pool3d: (nn.MaxPool3d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.adaptive_max_pool1d: (nn.AdaptiveMaxPool1d, ("output_size", "return_indices")),
    F.adaptive_max_pool2d: (nn.AdaptiveMaxPool2d, ("output_size", "return_indices")),
    F.adaptive_max_pool3d: (nn.AdaptiveMaxPool3d, ("output_size", "return_indices")),
}
# linear (or affine with constants) ops: applying them at every step keeps the time average exact
_LINEAR_FUNCTIONS = {
    operator.add, operator.sub, operator.neg, operator.pos, operator.getitem, getattr,
    torch.add, torch.sub, torch.neg, torch.cat, torch.concat, torch.stack, torch.flatten, torch.reshape,
    torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose, torch.mean, torch.sum, torch.chunk,
    torch.split, torch.narrow,
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d, F.linear, F.conv1d, F.conv2d, F.conv3d, F.pad,
}
_SCALE_FUNCTIONS = {operator.mul, operator.truediv, torch.mul, torch.div}
_LINEAR_METHODS = {
    "view", "reshape", "flatten", "size", "dim", "contiguous", "permute", "transpose", "squeeze", "unsqueeze",
    "mean", "sum", "add", "add_", "sub", "sub_", "neg", "clone", "expand", "expand_as", "view_as",
    "reshape_as", "chunk", "split", "narrow", "float", "to", "type_as", "__getitem__",
}
_SCALE_METHODS = {"mul", "mul_", "div", "div_"}
_SHAPE_METHODS = {"size", "dim"}


class _Tracer(fx.Tracer):
    """Keeps QCFS and fastspike stateful modules as leaves (torch.nn modules are leaves already)."""

    def __init__(self):
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (QCFS, base.MemoryModule)):
            return True
        return super().is_leaf_module(m, qualname)


_FRAME_RE = re.compile(r'File "([^"]+)", line (\d+), in ([^\n]+)\n\s*([^\n]*)')


def _user_frame_from_stack_trace(stack_trace: Optional[str]) -> Optional[str]:
    if not stack_trace:
        return None
    best = None
    for path, line, func, code in _FRAME_RE.findall(stack_trace):
        if not os.path.abspath(path).startswith(_TORCH_DIR):
            best = f"{path}:{line} in {func}: `{code.strip()}`"
    return best


def _user_frame_from_exception(exc: BaseException) -> Optional[str]:
    best = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = os.path.abspath(frame.filename)
        if path.startswith(_TORCH_DIR) or path.startswith(_THIS_DIR):
            continue
        code = (frame.line or "").strip()
        best = f"{frame.filename}:{frame.lineno} in {frame.name}" + (f": `{code}`" if code else "")
    return best


def _target_name(target) -> str:
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    if module.startswith("torch.nn.functional") or module == "torch.nn.functional":
        return f"torch.nn.functional.{name}"
    if module in ("_operator", "operator"):
        return f"operator.{name}"
    if module.startswith("torch") or isinstance(target, type(torch.relu)):
        return f"torch.{name}"
    return f"{module}.{name}" if module else name


def _describe(node: fx.Node, gm: nn.Module) -> str:
    """'<op> at graph node 'n' [inside module 'a.b' (Cls)] [, source file:line in f: `code`]'."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        what = f"module '{node.target}' ({type(mod).__module__}.{type(mod).__name__})"
    elif node.op == "call_method":
        what = f"tensor method '.{node.target}()'"
    else:
        what = f"function '{_target_name(node.target)}'"
    text = f"{what} at graph node '{node.name}'"
    if node.op != "call_module":
        stack = node.meta.get("nn_module_stack")
        if stack:
            path, cls = list(stack.values())[-1]
            cls_name = cls.__name__ if isinstance(cls, type) else str(cls)
            text += f" inside module '{path}' ({cls_name})"
        else:
            text += " in the top-level forward"
    src = _user_frame_from_stack_trace(node.stack_trace)
    if src:
        text += f", source {src}"
    return text


def _trace(ann: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    try:
        graph = tracer.trace(ann)
    except Exception as exc:  # noqa: BLE001 - every tracing failure becomes one readable error
        where = _user_frame_from_exception(exc)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text = (f"ann2snn could not trace {type(ann).__name__} with torch.fx ({type(exc).__name__}: {msg})")
        if where:
            text += f" at {where}"
        text += (". torch.fx runs forward() on symbolic tensors, so Python control flow that depends on tensor "
                 "values (if/while on a tensor, int()/bool()/.item()/len() of one) cannot be traced. Rewrite the "
                 "branch with tensor ops (torch.where, masks), move it out of forward, or convert the traceable "
                 "part of the network on its own.")
        err = ConversionError(text)
        err.original_exception = exc
        raise err from None
    return fx.GraphModule(tracer.root, graph, type(ann).__name__)


# ------------------------------------------------------------------------------------------------
# graph checks and rewrites
# ------------------------------------------------------------------------------------------------
def _shape_nodes(graph: fx.Graph) -> set:
    """Nodes whose value does not depend on the input activations: Python shapes and ints (x.size(), x.shape,
    arithmetic on them), parameters and buffers read directly (get_attr) and anything computed only from those.
    They are the same at every time step, so any operation on them is allowed."""
    static = set()
    for node in graph.nodes:
        if node.op == "get_attr":
            static.add(node)
        elif node.op == "call_method" and node.target in _SHAPE_METHODS:
            static.add(node)
        elif node.op == "call_function" and node.target is getattr and len(node.args) > 1 \
                and node.args[1] in ("shape", "ndim"):
            static.add(node)
        elif node.op in ("call_function", "call_method") and node.all_input_nodes \
                and all(n in static for n in node.all_input_nodes):
            static.add(node)
    return static


def _clip_of(node: fx.Node, gm: nn.Module) -> Optional[float]:
    """The upper bound of a clipped ReLU site (ReLU6, Hardtanh(0, m)), None for anything else."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, nn.Hardtanh) and mod.min_val == 0.0 and mod.max_val > 0.0:
            return float(mod.max_val)
    elif node.op == "call_function" and node.target is F.relu6:
        return 6.0
    elif node.op == "call_function" and node.target is F.hardtanh:
        lo = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
        hi = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo == 0.0 and hi > 0.0:
            return float(hi)
    return None


def _is_relu_site(node: fx.Node, gm: nn.Module) -> bool:
    if _clip_of(node, gm) is not None:
        return True
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), (nn.ReLU, QCFS))
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    if node.op == "call_method":
        return node.target in _RELU_METHODS
    return False


def _is_inplace(node: fx.Node, gm: nn.Module) -> bool:
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    if node.op == "call_function":
        return node.target in (F.relu_, torch.relu_) or bool(node.kwargs.get("inplace", False)) or (
            node.target is F.relu and len(node.args) > 1 and bool(node.args[1]))
    return node.op == "call_method" and node.target == "relu_"


def _unsupported_reason(node: fx.Node, gm: nn.Module, shape_nodes: set) -> Optional[str]:
    """None when the node converts; otherwise a short reason."""
    if node.op in ("placeholder", "output", "get_attr"):
        return None
    if _is_relu_site(node, gm):
        return None
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, _LINEAR_MODULES + _DROPOUT_MODULES):
            return None
        if isinstance(mod, _MAXPOOL_MODULES):
            return "return_indices=True is not supported" if getattr(mod, "return_indices", False) else None
        if isinstance(mod, _BN_MODULES):
            if mod.running_mean is None or mod.running_var is None:
                return "a BatchNorm without running statistics (track_running_stats=False) is not a fixed map"
            return None
        return "no spiking equivalent for this layer"
    if node in shape_nodes:
        return None
    if node.op == "call_function":
        t = node.target
        if t in _LINEAR_FUNCTIONS or t in _DROPOUT_FUNCTIONS:
            if t is F.pad:
                mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
                value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 0.0)
                if mode != "constant" or (value not in (None, 0, 0.0)):
                    return "only zero padding is supported"
            return None
        if t in _MAXPOOL_FUNCTIONS:
            cls, names = _MAXPOOL_FUNCTIONS[t]
            bound = dict(zip(names, node.args[1:]), **node.kwargs)
            return "return_indices=True is not supported" if bound.get("return_indices", False) else None
        if t in _SCALE_FUNCTIONS:
            return _scale_reason(node, shape_nodes, divide=t in (operator.truediv, torch.div))
        return "no spiking equivalent for this operation"
    if node.op == "call_method":
        if node.target in _LINEAR_METHODS:
            return None
        if node.target in _SCALE_METHODS:
            return _scale_reason(node, shape_nodes, divide=node.target.startswith("div"))
        return "no spiking equivalent for this tensor method"
    return "unknown graph operation"


def _scale_reason(node: fx.Node, shape_nodes: set, divide: bool) -> Optional[str]:
    tensors = [a for a in node.args[:2] if isinstance(a, fx.Node) and a not in shape_nodes]
    if len(tensors) <= 1 and not (divide and len(node.args) > 1 and node.args[1] in tensors):
        return None
    return "a product or quotient of two activations is not linear, so rates do not carry it"


def _check_supported(gm: fx.GraphModule) -> None:
    shape_nodes = _shape_nodes(gm.graph)
    problems = []
    for node in gm.graph.nodes:
        reason = _unsupported_reason(node, gm, shape_nodes)
        if reason is not None:
            problems.append(f"  - {_describe(node, gm)}: {reason}")
    if problems:
        raise ConversionError(
            f"ann2snn cannot convert {len(problems)} operation(s) of {gm._get_name()}:\n" + "\n".join(problems)
            + "\nSupported: Conv/ConvTranspose/Linear, BatchNorm (folded), ReLU (module, F.relu, torch.relu, "
            "x.relu()), ReLU6 and Hardtanh(0, m), QCFS, Avg/AdaptiveAvg pooling, Max/AdaptiveMax pooling (spike-gated), Flatten, Dropout "
            "(removed), zero padding, additions, concatenation, reshapes and scaling by constants.")


def _erase_replacing(node: fx.Node, replacement) -> None:
    node.replace_all_uses_with(replacement)
    node.graph.erase_node(node)


def _module_call_counts(gm: fx.GraphModule) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return counts


def _fold_into(lin: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A copy of conv/linear ``lin`` whose output equals bn(lin(x)) with bn in eval mode."""
    folded = copy.deepcopy(lin)
    with torch.no_grad():
        var = bn.running_var.to(torch.float64)
        inv_std = torch.rsqrt(var + bn.eps)
        gamma = bn.weight.to(torch.float64) if bn.weight is not None else torch.ones_like(var)
        beta = bn.bias.to(torch.float64) if bn.bias is not None else torch.zeros_like(var)
        scale = gamma * inv_std
        w = folded.weight.to(torch.float64)
        w = w * scale.view(-1, *([1] * (w.dim() - 1)))
        b = folded.bias.to(torch.float64) if folded.bias is not None else torch.zeros_like(var)
        b = (b - bn.running_mean.to(torch.float64)) * scale + beta
        folded.weight.copy_(w.to(folded.weight.dtype))
        if folded.bias is None:
            folded.bias = nn.Parameter(b.to(folded.weight.dtype))
        else:
            folded.bias.copy_(b.to(folded.bias.dtype))
    return folded


def _fold_batchnorm(gm: fx.GraphModule, fuse: bool = True) -> None:
    counts = _module_call_counts(gm)
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), _BN_MODULES):
            continue
        bn = gm.get_submodule(node.target)
        src = node.args[0]
        if fuse and isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1 \
                and counts.get(src.target) == 1 and counts.get(node.target) == 1:
            lin = gm.get_submodule(src.target)
            expect = _FOLD_TARGETS.get(type(lin))
            out_features = getattr(lin, "out_channels", getattr(lin, "out_features", None))
            if expect is type(bn) and out_features == bn.num_features:
                _set_module(gm, src.target, _fold_into(lin, bn))
                _erase_replacing(node, src)
                continue
        # nothing to fold into: a fixed per-channel affine map (a fresh module per call site)
        name = _fresh_name(gm, node.name + "_affine")
        gm.add_submodule(name, ChannelAffine.from_batchnorm(bn))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (src,))
        _erase_replacing(node, new)


def fuse_batchnorm(ann: nn.Module) -> fx.GraphModule:
    """Trace ``ann`` (a copy, in eval mode) and fold each BatchNorm into the conv/linear before it.

    The result computes the same function as ``ann.eval()``; useful on its own and as step 3 of conversion.
    """
    gm = _trace(copy.deepcopy(ann).eval())
    _fold_batchnorm(gm)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


def _set_module(gm: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = gm.get_submodule(parent_path) if parent_path else gm
    setattr(parent, name, module)


def _fresh_name(gm: nn.Module, base_name: str) -> str:
    name, k = base_name.replace(".", "_"), 1
    while hasattr(gm, name):
        name = f"{base_name}_{k}".replace(".", "_")
        k += 1
    return name


def _remove_dropout(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        drop = (node.op == "call_module" and isinstance(gm.get_submodule(node.target), _DROPOUT_MODULES)) or (
            node.op == "call_function" and node.target in _DROPOUT_FUNCTIONS)
        if drop:
            _erase_replacing(node, node.args[0])


class _Site:
    """One ReLU/QCFS call site in the graph."""

    def __init__(self, key: str, node_name: str, module_path: str, qcfs: Optional[QCFS], clip: Optional[float]):
        self.key = key            # name used in stats dicts
        self.node_name = node_name
        self.module_path = module_path  # where its observer / neuron lives in the GraphModule
        self.qcfs = qcfs
        self.clip = clip          # upper bound of ReLU6 / Hardtanh(0, m) sites


def _place_sites(gm: fx.GraphModule, make_module: Callable[[Optional[QCFS], Optional[float]], nn.Module]
                 ) -> List[_Site]:
    """Give every ReLU/QCFS call its own module (made by ``make_module``), honouring in-place semantics."""
    counts = _module_call_counts(gm)
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    sites = []
    for node in list(gm.graph.nodes):
        if not _is_relu_site(node, gm):
            continue
        qcfs = None
        clip = _clip_of(node, gm)
        src = node.args[0]
        inplace = _is_inplace(node, gm)
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            qcfs = mod if isinstance(mod, QCFS) else None
        if node.op == "call_module" and counts[node.target] == 1:
            key = path = node.target  # the module is called once: its neuron takes its place
            _set_module(gm, path, make_module(qcfs, clip))
            new = node
        else:
            key = node.name
            path = _fresh_name(gm, node.name)
            gm.add_submodule(path, make_module(qcfs, clip))
            with gm.graph.inserting_after(node):
                new = gm.graph.call_module(path, (src,))
            _erase_replacing(node, new)
        if inplace and isinstance(src, fx.Node):
            # later readers of the input saw the in-place result in the ANN
            for user in list(src.users):
                if user is not new and order.get(user, -1) > order[node]:
                    user.replace_input_with(src, new)
        sites.append(_Site(key, node.name, path, qcfs, clip))
    return sites


def _replace_maxpool(gm: fx.GraphModule) -> None:
    counts = _module_call_counts(gm)
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), _MAXPOOL_MODULES):
            pool = gm.get_submodule(node.target)
            if counts[node.target] == 1:
                _set_module(gm, node.target, SpikeMaxPool(pool))
                continue
        elif node.op == "call_function" and node.target in _MAXPOOL_FUNCTIONS:
            cls, names = _MAXPOOL_FUNCTIONS[node.target]
            bound = dict(zip(names, node.args[1:]), **node.kwargs)
            bound.pop("return_indices", None)
            pool = cls(**bound)
        else:
            continue
        name = _fresh_name(gm, node.name)
        gm.add_submodule(name, SpikeMaxPool(pool))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node.args[0],))
        _erase_replacing(node, new)


# ------------------------------------------------------------------------------------------------
# the converter
# ------------------------------------------------------------------------------------------------
def _parse_mode(mode) -> Union[str, float]:
    if isinstance(mode, str):
        m = mode.strip().lower()
        if m in ("max", "qcfs"):
            return m
        if m.endswith("%"):
            try:
                q = float(m[:-1])
            except ValueError:
                q = float("nan")
            if 0.0 < q <= 100.0:
                return f"{q}%"
        raise ValueError(f"mode must be 'max', 'qcfs', a percentile string such as '99.9%' or a float in (0, 1], "
                         f"but got {mode!r}.")
    if isinstance(mode, (int, float)) and not isinstance(mode, bool) and 0.0 < float(mode) <= 1.0:
        return float(mode)
    raise ValueError(f"mode must be 'max', 'qcfs', a percentile string such as '99.9%' or a float in (0, 1], "
                     f"but got {mode!r}.")


def _first_tensor(batch):
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, dict):
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                return value
    raise ConversionError(f"the calibration dataloader must yield tensors or (input, target) pairs, "
                          f"but a batch was a {type(batch).__name__}.")


class Converter:
    """Convert a ReLU (or QCFS) ANN into a rate-coded SNN of soft-reset IF neurons.

    :param dataloader: calibration data (batches of inputs or (input, target) pairs), used for ReLU sites whose
        statistic is not in ``stats``. Not needed in 'qcfs' mode when every activation is a QCFS, nor when
        ``stats`` covers every ReLU site.
    :param mode: statistic lambda of each ReLU's output: ``'max'`` (maximum over the calibration set),
        ``'P%'`` such as ``'99.9%'`` (the P-th percentile of each batch, averaged over batches), a float
        ``r`` in (0, 1] (``r`` times the maximum, as in SpikingJelly), or ``'qcfs'`` (thresholds are the trained
        QCFS clip values; plain ReLU sites, if any, use the maximum).
    :param stats: ``{site: lambda}`` given by the user; a site is named by its module path (``'features.2'``)
        for an ``nn.ReLU`` called once, otherwise by its torch.fx node name (``'relu_1'``; the node name also
        works for modules). :meth:`collect_stats` returns such a dict.
    :param device: device for calibration batches (default: the ANN's parameter device).
    :param v_init: initial membrane potential as a fraction of the threshold. ``None`` means 0.5 in 'qcfs' mode
        (Bu et al.) and 0 otherwise (SpikingJelly's 'max' conversion); 0.5 usually also helps 'max' mode.
    :param fuse_flag: fold BatchNorm into the preceding conv/linear (otherwise each BatchNorm becomes a fixed
        per-channel affine map).
    :param max_batches: use at most this many calibration batches.
    :param fold_scale: fold each neuron's output scale lambda into the weights of the conv/linear layers it feeds
        (through flatten, reshapes, average and max pooling), leaving a bare ``IFNode`` that emits 0/1 spikes.
        Sites whose output reaches an addition, a concatenation or the network output keep their
        ``VoltageScaler``. The function computed is the same; bare neurons are what exporters (NIR) expect.
    :param momentum: ``None`` (default) combines the per-batch statistics as described under ``mode``; a float
        m in (0, 1] uses SpikingJelly's running estimate ``s <- (1 - m) s + m s_batch`` instead.
    """

    def __init__(self, dataloader: Optional[Iterable] = None, mode="max", stats: Optional[Dict[str, float]] = None,
                 device=None, v_init: Optional[float] = None, fuse_flag: bool = True,
                 max_batches: Optional[int] = None, fold_scale: bool = False, momentum: Optional[float] = None):
        self.mode = _parse_mode(mode)
        if stats is not None and not isinstance(stats, dict):
            raise TypeError(f"stats must be a dict {{site name: lambda}}, but got {type(stats).__name__}.")
        for key, value in (stats or {}).items():
            v = float(value)
            if not (math.isfinite(v) and v > 0.0):
                raise ValueError(f"stats[{key!r}] must be a finite positive number, but got {value!r}.")
        if v_init is not None and not 0.0 <= float(v_init) < 1.0:
            raise ValueError(f"v_init is a fraction of the threshold in [0, 1), but got {v_init!r}.")
        if max_batches is not None and int(max_batches) < 1:
            raise ValueError(f"max_batches must be >= 1, but got {max_batches!r}.")
        self.dataloader = dataloader
        self.stats = dict(stats or {})
        self.device = device
        self.v_init = v_init
        self.fuse_flag = fuse_flag
        self.max_batches = max_batches
        self.fold_scale = bool(fold_scale)
        if momentum is not None and not 0.0 < float(momentum) <= 1.0:
            raise ValueError(f"momentum must be in (0, 1] or None, but got {momentum!r}.")
        self.momentum = None if momentum is None else float(momentum)
        self.thresholds: Dict[str, float] = {}  # filled by the last conversion: site -> IF threshold

    # -- statistics -------------------------------------------------------------------------------
    def _prepare(self, ann: nn.Module):
        if not isinstance(ann, nn.Module):
            raise TypeError(f"Converter expects an nn.Module, but got {type(ann).__name__}.")
        gm = _trace(copy.deepcopy(ann).eval())
        _check_supported(gm)
        _remove_dropout(gm)
        _fold_batchnorm(gm, self.fuse_flag)
        return gm

    def _calibrate(self, gm: fx.GraphModule, sites: List[_Site], needed: List[_Site]) -> Dict[str, float]:
        if not needed:
            return {}
        if self.dataloader is None:
            names = ", ".join(repr(s.key) for s in needed)
            raise ConversionError(
                f"ann2snn needs an activation statistic for ReLU site(s) {names} but got no dataloader: pass "
                f"Converter(dataloader=...) or Converter(stats={{name: value}}) covering them "
                f"(Converter().sites(ann) lists every site).")
        mode = "max" if self.mode == "qcfs" else self.mode
        observers = {}
        for s in needed:
            obs = gm.get_submodule(s.module_path)
            obs.mode = mode
            observers[s.key] = obs
        gm.recompile()
        device = self.device
        if device is None:
            p = next(gm.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
        seen = 0
        with torch.no_grad():
            for i, batch in enumerate(self.dataloader):
                if self.max_batches is not None and i >= self.max_batches:
                    break
                gm(_first_tensor(batch).to(device))
                seen += 1
        if seen == 0:
            raise ConversionError("the calibration dataloader yielded no batches.")
        out = {}
        for key, obs in observers.items():
            value = obs.result(self.momentum)
            if value is None:
                raise ConversionError(f"ReLU site {key!r} was never reached while calibrating.")
            out[key] = value
        return out

    def _lookup(self, site: _Site) -> Optional[float]:
        for key in (site.key, site.node_name, site.module_path):
            if key in self.stats:
                return float(self.stats[key])
        return None

    def _site_graph(self, ann: nn.Module):
        gm = self._prepare(ann)
        sites = _place_sites(gm, lambda q, clip: StatisticObserver(self.mode, clip) if q is None else q)
        return gm, sites

    def sites(self, ann: nn.Module) -> List[str]:
        """Names of the ReLU/QCFS sites of ``ann``, in graph order (the keys that ``stats`` uses)."""
        return [s.key for s in self._site_graph(ann)[1]]

    def collect_stats(self, ann: nn.Module) -> Dict[str, float]:
        """Measure lambda of every plain ReLU site on the dataloader (ignores ``stats``); reusable as ``stats``."""
        gm, sites = self._site_graph(ann)
        return self._calibrate(gm, sites, [s for s in sites if s.qcfs is None])

    # -- conversion -------------------------------------------------------------------------------
    def __call__(self, ann: nn.Module) -> fx.GraphModule:
        gm, sites = self._site_graph(ann)
        needed = [s for s in sites if s.qcfs is None and self._lookup(s) is None]
        measured = self._calibrate(gm, sites, needed)
        self.thresholds = {}
        for s in sites:
            if s.qcfs is not None:
                lam = float(s.qcfs.threshold.detach().abs())
                frac = s.qcfs.phi if self.v_init is None else float(self.v_init)
            else:
                lam = measured[s.key] if s.key in measured else self._lookup(s)
                if s.clip is not None:
                    lam = min(lam, s.clip)  # the IF neuron saturates at one spike per step: the clip
                frac = (0.5 if self.mode == "qcfs" else 0.0) if self.v_init is None else float(self.v_init)
            if not lam > 0.0 or not math.isfinite(lam):
                warnings.warn(f"ann2snn: site {s.key!r} has activation statistic {lam}; using threshold 1.0 "
                              f"(the ANN never activates it on the calibration data).")
                lam = 1.0
            self.thresholds[s.key] = lam
            _set_module(gm, s.module_path, _scaled_if(lam, frac))
        _replace_maxpool(gm)
        if self.fold_scale:
            for s in sites:
                _fold_output_scale(gm, s.module_path, self.thresholds[s.key])
        gm.graph.lint()
        gm.recompile()
        gm.delete_all_unused_submodules()
        return gm


def _scaled_if(threshold: float, v_init_fraction: float) -> nn.Sequential:
    node = neuron.IFNode(v_threshold=threshold, v_reset=None, step_mode="s")
    if v_init_fraction:
        v0 = v_init_fraction * threshold
        node.set_reset_value("v", v0)
        node.v = v0
    return nn.Sequential(node, VoltageScaler(threshold))


_SCALE_COMMUTING_MODULES = (
    nn.Flatten, nn.Unflatten, nn.Identity, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, SpikeMaxPool, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
)
_SCALE_COMMUTING_FUNCTIONS = {
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
}
_SCALE_COMMUTING_METHODS = {"view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze"}
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def _scale_sinks(gm: fx.GraphModule, node: fx.Node, counts: Dict[str, int]) -> Optional[List[str]]:
    """Paths of the weighted layers that consume ``node`` only through ops commuting with a positive scale,
    or None when some path reaches anything else (an addition, a concatenation, the output...)."""
    sinks = []
    for user in node.users:
        tensor_inputs = [a for a in user.all_input_nodes if a.op != "get_attr"]
        if user.op == "call_module":
            mod = gm.get_submodule(user.target)
            if counts.get(user.target, 0) != 1:
                return None
            if isinstance(mod, _WEIGHTED):
                sinks.append(user.target)
                continue
            if not isinstance(mod, _SCALE_COMMUTING_MODULES) or len(tensor_inputs) != 1:
                return None
        elif user.op == "call_function" and user.target in _SCALE_COMMUTING_FUNCTIONS and user.args[0] is node:
            pass
        elif user.op == "call_method" and user.target in _SCALE_COMMUTING_METHODS and user.args[0] is node:
            pass
        else:
            return None
        more = _scale_sinks(gm, user, counts)
        if more is None:
            return None
        sinks.extend(more)
    return sinks


def _fold_output_scale(gm: fx.GraphModule, path: str, lam: float) -> bool:
    nodes = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == path]
    counts = _module_call_counts(gm)
    if len(nodes) != 1:
        return False
    sinks = _scale_sinks(gm, nodes[0], counts)
    if not sinks:
        return False
    with torch.no_grad():
        for sink in sinks:
            gm.get_submodule(sink).weight.mul_(lam)
    _set_module(gm, path, gm.get_submodule(path)[0])  # the bare IFNode: spikes of 0/1
    return True


def _reset(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, base.MemoryModule):
            m.reset()


def simulate(snn: nn.Module, x: torch.Tensor, T: int, return_all: bool = False):
    """Reset ``snn``, feed ``x`` for T steps and return the mean output (or, with return_all, the running means
    after every step as a [T, ...] tensor). The converted SNN's mean output approximates the ANN's output."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, but got {T!r}.")
    _reset(snn)
    total = None
    means = []
    with torch.no_grad():
        for t in range(T):
            y = snn(x)
            total = y.clone() if total is None else total + y
            if return_all:
                means.append(total / (t + 1))
    _reset(snn)
    return torch.stack(means) if return_all else total / T
