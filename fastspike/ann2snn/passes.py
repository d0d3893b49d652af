"""ann2snn step 3: graph rewrites. Dropout removal, BatchNorm folding (``fastspike.export.fold_bn_weights``, the one
folding rule; an unfoldable BatchNorm becomes a fixed ``ChannelAffine``), one module per ReLU site (with in-place
semantics), spike max pooling, and folding an output scale into the weighted layers a neuron feeds."""
from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from fastspike.export import fold_bn_into

from .modules import ChannelAffine, SpikeMaxPool
from .qcfs import QCFS
from .support import BN_MODULES, DROPOUT_FUNCTIONS, DROPOUT_MODULES, FOLD_TARGETS, MAXPOOL_FUNCTIONS, MAXPOOL_MODULES, \
    clip_of, is_inplace, is_relu_site
from .trace import trace_ann

def erase_replacing(node: fx.Node, replacement) -> None:
    node.replace_all_uses_with(replacement)
    node.graph.erase_node(node)


def module_call_counts(gm: fx.GraphModule) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return counts


def folded_copy(lin: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A copy of conv/linear ``lin`` whose output equals bn(lin(x)) with bn in eval mode."""
    folded = copy.deepcopy(lin)
    fold_bn_into(folded, bn)
    return folded


def fold_batchnorm_pass(gm: fx.GraphModule, fuse: bool = True, targets: Optional[Dict[type, type]] = None,
                        keep_unfolded: bool = False) -> None:
    """Fold every BatchNorm module that directly follows a layer of ``targets`` ({layer type: BatchNorm type},
    default Conv1d/2d/3d and Linear) that nothing else reads and that is called once. Other BatchNorms become a
    fixed ``ChannelAffine`` (or stay as they are with ``keep_unfolded``, SpikingJelly's recipes)."""
    targets = FOLD_TARGETS if targets is None else targets
    counts = module_call_counts(gm)
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), BN_MODULES):
            continue
        bn = gm.get_submodule(node.target)
        src = node.args[0]
        if fuse and isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1 \
                and counts.get(src.target) == 1 and counts.get(node.target) == 1:
            lin = gm.get_submodule(src.target)
            expect = targets.get(type(lin))
            out_features = getattr(lin, "out_channels", getattr(lin, "out_features", None))
            if expect is type(bn) and out_features == bn.num_features:
                set_module(gm, src.target, folded_copy(lin, bn))
                erase_replacing(node, src)
                continue
        if keep_unfolded:
            continue
        # nothing to fold into: a fixed per-channel affine map (a fresh module per call site)
        name = fresh_name(gm, node.name + "_affine")
        gm.add_submodule(name, ChannelAffine.from_batchnorm(bn))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (src,))
        erase_replacing(node, new)


def fuse_batchnorm(ann: nn.Module) -> fx.GraphModule:
    """Trace ``ann`` (a copy, in eval mode) and fold each BatchNorm into the conv/linear before it.

    The result computes the same function as ``ann.eval()``; useful on its own and as step 3 of conversion.
    """
    gm = trace_ann(copy.deepcopy(ann).eval())
    fold_batchnorm_pass(gm)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


def set_module(gm: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = gm.get_submodule(parent_path) if parent_path else gm
    setattr(parent, name, module)


def fresh_name(gm: nn.Module, base_name: str) -> str:
    name, k = base_name.replace(".", "_"), 1
    while hasattr(gm, name):
        name = f"{base_name}_{k}".replace(".", "_")
        k += 1
    return name


def remove_dropout(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        drop = (node.op == "call_module" and isinstance(gm.get_submodule(node.target), DROPOUT_MODULES)) or (
            node.op == "call_function" and node.target in DROPOUT_FUNCTIONS)
        if drop:
            erase_replacing(node, node.args[0])


class Site:
    """One ReLU/QCFS call site in the graph."""

    def __init__(self, key: str, node_name: str, module_path: str, qcfs: Optional[QCFS], clip: Optional[float]):
        self.key = key            # name used in stats dicts
        self.node_name = node_name
        self.module_path = module_path  # where its observer / neuron lives in the GraphModule
        self.qcfs = qcfs
        self.clip = clip          # upper bound of ReLU6 / Hardtanh(0, m) sites


def place_sites(gm: fx.GraphModule, make_module: Callable[[Optional[QCFS], Optional[float]], nn.Module]
                 ) -> List[Site]:
    """Give every ReLU/QCFS call its own module (made by ``make_module``), honouring in-place semantics."""
    counts = module_call_counts(gm)
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    sites = []
    for node in list(gm.graph.nodes):
        if not is_relu_site(node, gm):
            continue
        qcfs = None
        clip = clip_of(node, gm)
        src = node.args[0]
        inplace = is_inplace(node, gm)
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            qcfs = mod if isinstance(mod, QCFS) else None
        if node.op == "call_module" and counts[node.target] == 1:
            key = path = node.target  # the module is called once: its neuron takes its place
            set_module(gm, path, make_module(qcfs, clip))
            new = node
        else:
            key = node.name
            path = fresh_name(gm, node.name)
            gm.add_submodule(path, make_module(qcfs, clip))
            with gm.graph.inserting_after(node):
                new = gm.graph.call_module(path, (src,))
            erase_replacing(node, new)
        if inplace and isinstance(src, fx.Node):
            # later readers of the input saw the in-place result in the ANN
            for user in list(src.users):
                if user is not new and order.get(user, -1) > order[node]:
                    user.replace_input_with(src, new)
        sites.append(Site(key, node.name, path, qcfs, clip))
    return sites


def replace_maxpool(gm: fx.GraphModule) -> None:
    counts = module_call_counts(gm)
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), MAXPOOL_MODULES):
            pool = gm.get_submodule(node.target)
            if counts[node.target] == 1:
                set_module(gm, node.target, SpikeMaxPool(pool))
                continue
        elif node.op == "call_function" and node.target in MAXPOOL_FUNCTIONS:
            cls, names = MAXPOOL_FUNCTIONS[node.target]
            bound = dict(zip(names, node.args[1:]), **node.kwargs)
            bound.pop("return_indices", None)
            pool = cls(**bound)
        else:
            continue
        name = fresh_name(gm, node.name)
        gm.add_submodule(name, SpikeMaxPool(pool))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node.args[0],))
        erase_replacing(node, new)


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


def fold_output_scale(gm: fx.GraphModule, path: str, lam: float) -> bool:
    nodes = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == path]
    counts = module_call_counts(gm)
    if len(nodes) != 1:
        return False
    sinks = _scale_sinks(gm, nodes[0], counts)
    if not sinks:
        return False
    with torch.no_grad():
        for sink in sinks:
            gm.get_submodule(sink).weight.mul_(lam)
    set_module(gm, path, gm.get_submodule(path)[0])  # the bare IFNode: spikes of 0/1
    return True
