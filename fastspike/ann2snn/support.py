"""ann2snn step 2: what the converter understands. The supported layers, functions and tensor methods, ReLU-site
detection (modules, functions, methods, clipped ReLUs, QCFS) and :func:`check_supported`, which reports every
unsupported operation of a graph at once."""
from __future__ import annotations

import operator
from typing import Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .qcfs import QCFS
from .trace import ConversionError, describe

LINEAR_MODULES = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
)
DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
MAXPOOL_MODULES = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
FOLD_TARGETS = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d,
                nn.Linear: nn.BatchNorm1d}

RELU_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_}
RELU_METHODS = {"relu", "relu_"}
DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout}
MAXPOOL_FUNCTIONS = {
    F.max_pool1d: (nn.MaxPool1d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.max_pool2d: (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.max_pool3d: (nn.MaxPool3d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.adaptive_max_pool1d: (nn.AdaptiveMaxPool1d, ("output_size", "return_indices")),
    F.adaptive_max_pool2d: (nn.AdaptiveMaxPool2d, ("output_size", "return_indices")),
    F.adaptive_max_pool3d: (nn.AdaptiveMaxPool3d, ("output_size", "return_indices")),
}
# linear (or affine with constants) ops: applying them at every step keeps the time average exact
LINEAR_FUNCTIONS = {
    operator.add, operator.sub, operator.neg, operator.pos, operator.getitem, getattr,
    torch.add, torch.sub, torch.neg, torch.cat, torch.concat, torch.stack, torch.flatten, torch.reshape,
    torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose, torch.mean, torch.sum, torch.chunk,
    torch.split, torch.narrow,
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d, F.linear, F.conv1d, F.conv2d, F.conv3d, F.pad,
}
SCALE_FUNCTIONS = {operator.mul, operator.truediv, torch.mul, torch.div}
LINEAR_METHODS = {
    "view", "reshape", "flatten", "size", "dim", "contiguous", "permute", "transpose", "squeeze", "unsqueeze",
    "mean", "sum", "add", "add_", "sub", "sub_", "neg", "clone", "expand", "expand_as", "view_as",
    "reshape_as", "chunk", "split", "narrow", "float", "to", "type_as", "__getitem__",
}
SCALE_METHODS = {"mul", "mul_", "div", "div_"}
SHAPE_METHODS = {"size", "dim"}


def static_nodes(graph: fx.Graph) -> set:
    """Nodes whose value does not depend on the input activations: Python shapes and ints (x.size(), x.shape,
    arithmetic on them), parameters and buffers read directly (get_attr) and anything computed only from those.
    They are the same at every time step, so any operation on them is allowed."""
    static = set()
    for node in graph.nodes:
        if node.op == "get_attr":
            static.add(node)
        elif node.op == "call_method" and node.target in SHAPE_METHODS:
            static.add(node)
        elif node.op == "call_function" and node.target is getattr and len(node.args) > 1 \
                and node.args[1] in ("shape", "ndim"):
            static.add(node)
        elif node.op in ("call_function", "call_method") and node.all_input_nodes \
                and all(n in static for n in node.all_input_nodes):
            static.add(node)
    return static


def clip_of(node: fx.Node, gm: nn.Module) -> Optional[float]:
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


def is_relu_site(node: fx.Node, gm: nn.Module) -> bool:
    if clip_of(node, gm) is not None:
        return True
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), (nn.ReLU, QCFS))
    if node.op == "call_function":
        return node.target in RELU_FUNCTIONS
    if node.op == "call_method":
        return node.target in RELU_METHODS
    return False


def is_inplace(node: fx.Node, gm: nn.Module) -> bool:
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    if node.op == "call_function":
        return node.target in (F.relu_, torch.relu_) or bool(node.kwargs.get("inplace", False)) or (
            node.target is F.relu and len(node.args) > 1 and bool(node.args[1]))
    return node.op == "call_method" and node.target == "relu_"


def _unsupported_reason(node: fx.Node, gm: nn.Module, static: set) -> Optional[str]:
    """None when the node converts; otherwise a short reason."""
    if node.op in ("placeholder", "output", "get_attr"):
        return None
    if is_relu_site(node, gm):
        return None
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, LINEAR_MODULES + DROPOUT_MODULES):
            return None
        if isinstance(mod, MAXPOOL_MODULES):
            return "return_indices=True is not supported" if getattr(mod, "return_indices", False) else None
        if isinstance(mod, BN_MODULES):
            if mod.running_mean is None or mod.running_var is None:
                return "a BatchNorm without running statistics (track_running_stats=False) is not a fixed map"
            return None
        return "no spiking equivalent for this layer"
    if node in static:
        return None
    if node.op == "call_function":
        t = node.target
        if t in LINEAR_FUNCTIONS or t in DROPOUT_FUNCTIONS:
            if t is F.pad:
                mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
                value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 0.0)
                if mode != "constant" or (value not in (None, 0, 0.0)):
                    return "only zero padding is supported"
            return None
        if t in MAXPOOL_FUNCTIONS:
            cls, names = MAXPOOL_FUNCTIONS[t]
            bound = dict(zip(names, node.args[1:]), **node.kwargs)
            return "return_indices=True is not supported" if bound.get("return_indices", False) else None
        if t in SCALE_FUNCTIONS:
            return _scale_reason(node, static, divide=t in (operator.truediv, torch.div))
        return "no spiking equivalent for this operation"
    if node.op == "call_method":
        if node.target in LINEAR_METHODS:
            return None
        if node.target in SCALE_METHODS:
            return _scale_reason(node, static, divide=node.target.startswith("div"))
        return "no spiking equivalent for this tensor method"
    return "unknown graph operation"


def _scale_reason(node: fx.Node, static: set, divide: bool) -> Optional[str]:
    tensors = [a for a in node.args[:2] if isinstance(a, fx.Node) and a not in static]
    if len(tensors) <= 1 and not (divide and len(node.args) > 1 and node.args[1] in tensors):
        return None
    return "a product or quotient of two activations is not linear, so rates do not carry it"


def check_supported(gm: fx.GraphModule) -> None:
    static = static_nodes(gm.graph)
    problems = []
    for node in gm.graph.nodes:
        reason = _unsupported_reason(node, gm, static)
        if reason is not None:
            problems.append(f"  - {describe(node, gm)}: {reason}")
    if problems:
        raise ConversionError(
            f"ann2snn cannot convert {len(problems)} operation(s) of {gm._get_name()}:\n" + "\n".join(problems)
            + "\nSupported: Conv/ConvTranspose/Linear, BatchNorm (folded), ReLU (module, F.relu, torch.relu, "
            "x.relu()), ReLU6 and Hardtanh(0, m), QCFS, Avg/AdaptiveAvg pooling, Max/AdaptiveMax pooling "
            "(spike-gated), Flatten, Dropout (removed), zero padding, additions, concatenation, reshapes and "
            "scaling by constants.")
