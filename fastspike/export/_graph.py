"""Trace a PyTorch/fastspike model into a small dataflow graph of leaf modules.

The exporters (NIR, Loihi, Speck) share this tracer. It runs the model once on a sample input and records,
for every leaf module call, which earlier nodes produced its input:

* leaf modules (no children, or a spiking neuron) become nodes named by their qualified module name;
* containers (nn.Sequential, SeqToANNContainer, MultiStepContainer, user modules) are looked through;
* tensor ops between leaves are followed with a ``TorchFunctionMode``: additions merge their operands'
  sources (a residual connection becomes two incoming edges, which NIR sums), shape-only ops that keep
  the per-sample feature shape (folding [T, N] into the batch, indexing a time step, stacking the steps
  again) are transparent, a reshape that flattens the feature shape becomes a synthetic Flatten node,
  and any other op on a traced tensor raises a ``ValueError`` naming the op.

Shapes are recorded per sample: the batch (and, in multi-step mode, time) dimensions are dropped.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from ..functional.net_config import reset_net

__all__ = ["TracedNode", "TracedGraph", "trace", "is_neuron", "neuron_kind", "model_step_mode"]

_PASSTHROUGH_OPS = {
    "flatten", "reshape", "view", "contiguous", "clone", "unflatten", "squeeze", "unsqueeze", "detach",
    "to", "float", "__getitem__", "stack", "select", "expand_as", "view_as", "reshape_as", "cpu",
    "requires_grad_", "type_as", "double", "half", "unbind", "chunk", "split", "transpose", "permute",
}
_ADD_OPS = {"add", "__add__", "__radd__", "add_", "__iadd__"}
_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


@dataclass
class TracedNode:
    name: str
    module: Optional[nn.Module]  # None for synthetic nodes (flatten between modules)
    inputs: List[str]
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    kind: str = "module"  # 'module' or 'flatten'
    extra: dict = field(default_factory=dict)


@dataclass
class TracedGraph:
    input_shape: Tuple[int, ...]
    nodes: Dict[str, TracedNode]  # in execution order
    outputs: List[str]
    step_mode: str

    def consumers(self, name: str) -> List[str]:
        return [n.name for n in self.nodes.values() if name in n.inputs] + (["output"] if name in self.outputs else [])

    def is_chain(self) -> bool:
        prev = "input"
        for node in self.nodes.values():
            if node.inputs != [prev]:
                return False
            prev = node.name
        return self.outputs == [prev]


def is_neuron(m: nn.Module) -> bool:
    return neuron_kind(m) is not None


def neuron_kind(m: nn.Module) -> Optional[str]:
    """'IF', 'LIF', 'PLIF', 'CubaLIF' for the spiking neurons the exporters understand, else None."""
    from ._modules import CubaLIFNode

    if isinstance(m, CubaLIFNode):
        return "CubaLIF"
    try:
        from fastspike import neuron as fsn
    except Exception:  # pragma: no cover - the core always ships neuron
        fsn = None
    if fsn is not None:
        if isinstance(m, fsn.ParametricLIFNode):
            return "PLIF"
        if isinstance(m, fsn.LIFNode):
            return "LIF"
        if isinstance(m, fsn.IFNode):
            return "IF"
        if isinstance(m, fsn.BaseNode):
            return "unknown-neuron"
    return None


def model_step_mode(model: nn.Module) -> str:
    """'m' when any module of the model runs multi-step, else 's'."""
    for m in model.modules():
        mode = getattr(m, "step_mode", None)
        if isinstance(mode, str) and mode == "m":
            return "m"
    return "s"


def _state_free_copy(model: nn.Module) -> nn.Module:
    """deepcopy of ``model`` with every MemoryModule reset (state tensors with autograd history cannot be
    deep-copied); the original keeps its state."""
    from fastspike.base import MemoryModule

    saved = []
    for m in model.modules():
        if isinstance(m, MemoryModule):
            saved.append((m, dict(m._memories), dict(m.__dict__)))
            m.reset()
    try:
        return copy.deepcopy(model)
    finally:
        for m, memories, attrs in saved:
            m._memories.update(memories)
            for k in ("v_seq",):
                if k in attrs:
                    m.__dict__[k] = attrs[k]


def _is_leaf(m: nn.Module) -> bool:
    return is_neuron(m) or len(list(m.children())) == 0


class _Tracer(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.tags: Dict[int, tuple] = {}  # id(tensor) -> (tensor, frozenset(sources), feature_rank)
        self.depth = 0
        self.nodes: Dict[str, TracedNode] = {}
        self.flatten_count = 0

    def tag(self, t, sources, feat_rank):
        self.tags[id(t)] = (t, frozenset(sources), feat_rank)

    def lookup(self, t):
        if not isinstance(t, torch.Tensor):
            return None
        entry = self.tags.get(id(t))
        if entry is None or entry[0] is not t:
            return None
        return entry

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth > 0:
            return out
        flat = []
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, (list, tuple)):
                flat.extend(a)
            else:
                flat.append(a)
        tagged = [self.lookup(a) for a in flat]
        tagged = [t for t in tagged if t is not None]
        if not tagged:
            return out
        name = getattr(func, "__name__", str(func))
        outs = out if isinstance(out, (list, tuple)) else (out,)
        if not any(isinstance(o, torch.Tensor) for o in outs):
            return out  # shape queries, dim(), ...
        if name in _ADD_OPS:
            untraced = [a for a in flat if isinstance(a, torch.Tensor) and self.lookup(a) is None]
            numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
            if untraced or numbers or len(tagged) < 2 or kwargs.get("alpha", 1) != 1:
                raise ValueError(f"export: the model adds a constant or an untraced tensor to a traced value "
                                 f"(torch op '{name}'); only sums of layer outputs (residual connections) are "
                                 "exportable.")
            sources = frozenset().union(*[t[1] for t in tagged])
            ranks = {t[2] for t in tagged}
            if len(ranks) != 1:
                raise ValueError(f"export: torch op '{name}' adds values with different per-sample shapes.")
            self.tag(out, sources, ranks.pop())
            return out
        if name in _PASSTHROUGH_OPS:
            srcs = {t[1] for t in tagged}
            if len(srcs) != 1:
                raise ValueError(f"export: torch op '{name}' combines the outputs of different layers "
                                 f"({sorted(sorted(s) for s in srcs)}); concatenation is not exportable.")
            src = srcs.pop()
            t0 = tagged[0]
            feat = tuple(t0[0].shape[t0[0].dim() - t0[2]:])
            for o in outs:
                if not isinstance(o, torch.Tensor):
                    continue
                fr = t0[2]
                if o.dim() >= fr and tuple(o.shape[o.dim() - fr:]) == feat:
                    self.tag(o, src, fr)
                    continue
                lead = t0[0].dim() - t0[2]
                if name in ("flatten", "reshape", "view") and o.dim() > lead and \
                        tuple(o.shape[:lead]) == tuple(t0[0].shape[:lead]) and \
                        math.prod(o.shape[lead:]) == math.prod(feat):
                    new_feat = tuple(o.shape[lead:])
                    fname = f"_flatten{self.flatten_count}"
                    self.flatten_count += 1
                    self.nodes[fname] = TracedNode(fname, None, sorted(src), feat, new_feat, kind="flatten")
                    self.tag(o, {fname}, len(new_feat))
                    continue
                raise ValueError(f"export: torch op '{name}' changes the per-sample shape {feat} to "
                                 f"{tuple(o.shape)} in a way that is not a flatten; use an nn.Flatten module.")
            return out
        raise ValueError(f"export: unsupported torch op '{name}' applied to a traced value outside a module; "
                         "exportable models are built from modules, with residual additions only.")


def trace(model: nn.Module, sample_input: torch.Tensor, step_mode: Optional[str] = None) -> TracedGraph:
    """Run a deep copy of ``model`` once on ``sample_input`` and record its dataflow graph."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, but got {type(model).__name__}.")
    if not isinstance(sample_input, torch.Tensor):
        raise TypeError(f"sample_input must be a torch.Tensor, but got {type(sample_input).__name__}.")
    if step_mode is None:
        step_mode = model_step_mode(model)
    if step_mode not in ("s", "m"):
        raise ValueError(f"step_mode must be 's' or 'm', but got {step_mode!r}.")
    lead = 2 if step_mode == "m" else 1
    if sample_input.dim() <= lead:
        raise ValueError(f"sample_input must have shape [{'T, ' if lead == 2 else ''}N, *features] for step_mode="
                         f"'{step_mode}', but got shape {tuple(sample_input.shape)}.")
    model = _state_free_copy(model).eval()
    reset_net(model)
    tracer = _Tracer()
    names = {id(m): n for n, m in model.named_modules()}
    handles = []
    leaves = []

    def collect(m, prefix):
        if _is_leaf(m):
            leaves.append((prefix, m))
            return
        for n, c in m.named_children():
            collect(c, f"{prefix}.{n}" if prefix else n)

    collect(model, "")

    def pre_hook(mod, args):
        if tracer.depth > 0:
            tracer.depth += 1
            return
        x = args[0] if args else None
        entry = tracer.lookup(x)
        mod._fs_trace_in = entry
        tracer.depth += 1

    def post_hook(mod, args, out):
        tracer.depth -= 1
        if tracer.depth > 0:
            return
        entry = mod._fs_trace_in
        del mod._fs_trace_in
        if entry is None:
            return  # not on the traced path
        if isinstance(mod, _IDENTITY_MODULES):
            tracer.tag(out, entry[1], entry[2])
            return
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"export: module '{names.get(id(mod), '?')}' ({type(mod).__name__}) returned "
                             f"{type(out).__name__}; exportable modules return one tensor.")
        name = names.get(id(mod)) or type(mod).__name__
        x = entry[0]
        lead_in = x.dim() - entry[2]
        in_feat = tuple(x.shape[lead_in:])
        fr = out.dim() - lead_in
        out_feat = tuple(out.shape[lead_in:])
        srcs = sorted(entry[1])
        if name in tracer.nodes:
            node = tracer.nodes[name]
            if node.inputs != srcs or node.in_shape != in_feat:
                raise ValueError(f"export: module '{name}' is called twice on different inputs; exportable models "
                                 "use every module once (a module object per layer).")
        else:
            tracer.nodes[name] = TracedNode(name, mod, srcs, in_feat, out_feat)
        tracer.tag(out, {name}, fr)

    for prefix, m in leaves:
        handles.append(m.register_forward_pre_hook(pre_hook))
        handles.append(m.register_forward_hook(post_hook))
    try:
        x = sample_input.detach().clone()
        with torch.no_grad(), tracer:
            tracer.tag(x, {"input"}, x.dim() - lead)
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    entry = tracer.lookup(out) if isinstance(out, torch.Tensor) else None
    if entry is None:
        raise ValueError("export: the model's output is not a traced tensor (the model must return one tensor "
                         "computed from its input by modules).")
    return TracedGraph(tuple(sample_input.shape[lead:]), tracer.nodes, sorted(entry[1]), step_mode)
