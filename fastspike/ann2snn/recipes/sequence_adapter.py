"""The step-mode adapter of the Transformer recipes: SpikingJelly's per-operation rules, for graphs whose inputs
are not all sequences.

``step_mode_adapters.adapt_step_mode_graph`` folds time into the batch for the whole graph, which needs every
graph input to be a sequence [T, N, *]. A Transformer's extra inputs (an attention mask [N, 1, 1, L], ...) are
not: they stay static and broadcast against the sequences. So here tensors keep their [T, N, *] layout in 'm'
mode, the TD operators take it as it is, and each shape operation the graph does on them is replaced by a
:class:`StepModeTensorOp` that, in 'm' mode, does the operation past the time axis: ``size``/``shape``/``dim``
answer for one step, ``reshape``/``view``/``expand`` keep the batch dimension, ``mean``, ``flatten``,
``transpose``, ``unsqueeze``, ``unflatten``, ``permute``, ``cat`` and slicing ``getitem`` apply to each step.
Element-wise arithmetic passes unchanged (it broadcasts). Anything else (a module that is neither a step
module nor a listed type, a tensor method or function without a rule, an operation on the batch dimension)
raises ValueError naming the node, as in SpikingJelly. In 's' mode every op is the plain operation.
"""
from __future__ import annotations

import builtins
import operator
from typing import Any, Callable, Optional, Tuple, Type

import torch
import torch.fx as fx
import torch.nn as nn

from fastspike import base, functional, layer

__all__ = ["StepModeTensorOp", "adapt_sequence_graph", "SHAPE_ONLY_MODULE_TYPES", "TRANSFORMER_SAFE_MODULE_TYPES"]

SHAPE_ONLY_MODULE_TYPES: Tuple[Type[nn.Module], ...] = (nn.Flatten,)
TRANSFORMER_SAFE_MODULE_TYPES: Tuple[Type[nn.Module], ...] = (nn.Dropout, nn.Dropout2d)

_PASSTHROUGH = {operator.add, operator.eq, operator.floordiv, operator.neg, operator.mul, operator.sub, torch.add,
                torch.neg, torch.sub, torch._assert}
_REWRITTEN = {operator.getitem, torch.cat, builtins.getattr, torch.flatten, torch.mean, torch.reshape,
              torch.transpose, torch.unsqueeze}
_BATCH_ERROR = ("in multi-step mode merges the time and batch dimensions; operations on the original batch "
                "dimension are not sequence-preserving and are not supported.")


def _normalize_dim(dim: int, rank: int, who: str, allow_end: bool = False) -> int:
    size = rank + int(allow_end)
    normalized = dim + size if dim < 0 else dim
    if not 0 <= normalized < size:
        raise ValueError(f"{who} got dim={dim}, which is out of range for an ANN tensor of rank {rank}.")
    return normalized


def _check_not_batch(dims: Any, rank: int, who: str, allow_end: bool = False) -> None:
    dims = (dims,) if isinstance(dims, int) else dims
    if not isinstance(dims, (tuple, list)):
        raise ValueError(f"{who} needs literal integer dimensions, but got {dims!r}.")
    if any(_normalize_dim(d, rank, who, allow_end) == 0 for d in dims):
        raise ValueError(f"{who} {_BATCH_ERROR}")


def _sizes(sizes: tuple) -> tuple:
    return tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else tuple(sizes)


class StepModeTensorOp(nn.Module, base.StepModule):
    """One shape operation of a converted Transformer graph: the plain operation in 's' mode, the per-step one on
    [T, N, *] in 'm' mode (module docstring). ``op_name`` is one of mean, flatten, transpose, unsqueeze, unflatten,
    permute, cat, shape, dim, size, reshape, expand, getitem; ``op_kwargs`` holds its literal arguments."""

    def __init__(self, op_name: str, op_kwargs: Optional[dict] = None, step_mode: str = "s") -> None:
        super().__init__()
        self.op_name = op_name
        self.op_kwargs = op_kwargs or {}
        self.step_mode = step_mode

    def extra_repr(self) -> str:
        return f"op_name={self.op_name}, step_mode={self.step_mode}"

    def _who(self) -> str:
        return f"{type(self).__name__}({self.op_name})"

    def _single_step(self, *inputs):
        x, kw, name = inputs[0], self.op_kwargs, self.op_name
        if name == "mean":
            return x.mean(dim=kw["dim"], keepdim=kw["keepdim"])
        if name == "flatten":
            return torch.flatten(x, kw["start_dim"], kw["end_dim"])
        if name == "transpose":
            return torch.transpose(x, kw["dim0"], kw["dim1"])
        if name == "unsqueeze":
            return torch.unsqueeze(x, kw["dim"])
        if name == "unflatten":
            return x.unflatten(kw["dim"], kw["unflattened_size"])
        if name == "permute":
            return x.permute(kw["dims"])
        if name == "cat":
            return torch.cat(inputs, dim=kw["dim"])
        if name == "shape":
            return x.shape
        if name == "dim":
            return x.dim()
        if name == "size":
            return x.size(inputs[1]) if len(inputs) == 2 else x.size()
        if name == "reshape":
            return x.reshape(*_sizes(inputs[1:]))
        if name == "expand":
            return x.expand(*_sizes(inputs[1:]))
        if name == "getitem":
            return x[kw["item"]]
        raise ValueError(f"{self._who()}: unsupported tensor operation {name!r}.")

    def _multi_step(self, *inputs):
        x, kw, name, who = inputs[0], self.op_kwargs, self.op_name, self._who()
        rank = x.dim() - 1
        if name == "cat":
            dim = _normalize_dim(kw["dim"], rank, who)
            if dim == 0:
                raise ValueError(f"{who} {_BATCH_ERROR}")
            return torch.cat(inputs, dim=dim + 1)
        if name == "reshape":
            sizes = _sizes(inputs[1:])
            if not sizes:
                raise ValueError(f"{who}: reshape needs at least one output size.")
            if sizes[0] != x.shape[1] and not (sizes[0] == -1 and len(sizes) > 1):
                raise ValueError(f"{who} only supports reshapes that keep the original batch dimension in "
                                 f"multi-step mode, but got sizes {sizes} for a sequence of shape {tuple(x.shape)}.")
            flat = x.flatten(0, 1)
            y = flat.reshape(flat.shape[0], *sizes[1:])
            return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])
        if name == "expand":
            sizes = _sizes(inputs[1:])
            if x.dim() != len(sizes) + 1:
                raise ValueError(f"{who} needs a sequence [T, *] with one more dimension than the sizes {sizes}, "
                                 f"but got shape {tuple(x.shape)}.")
            if sizes[0] not in (x.shape[1], -1) and x.shape[1] != 1:
                raise ValueError(f"{who} only supports expand that keeps the original batch dimension in "
                                 "multi-step mode.")
            return x.expand(x.shape[0], *sizes)
        if name == "shape":
            return x.shape[1:]
        if name == "dim":
            return x.dim() - 1
        if name == "size":
            return x.size()[1:] if len(inputs) == 1 else x.size(_normalize_dim(inputs[1], rank, who) + 1)
        if name == "flatten":
            start = _normalize_dim(kw["start_dim"], rank, who)
            if start > _normalize_dim(kw["end_dim"], rank, who):
                raise ValueError(f"{who} got start_dim={kw['start_dim']} and end_dim={kw['end_dim']}, which do not "
                                 "form a valid flatten range.")
            _check_not_batch(kw["start_dim"], rank, who)
        elif name == "unsqueeze":
            _check_not_batch(kw["dim"], rank, who, allow_end=True)
        elif name == "mean" or name == "unflatten":
            _check_not_batch(kw["dim"], rank, who)
        elif name == "transpose":
            _check_not_batch((kw["dim0"], kw["dim1"]), rank, who)
        elif name not in ("permute", "getitem"):
            raise ValueError(f"{who}: unsupported tensor operation {name!r}.")
        return functional.seq_to_ann_forward(x, self._single_step)

    def forward(self, *inputs):  # (the step_mode setter accepts only 's' and 'm')
        return self._single_step(*inputs) if self.step_mode == "s" else self._multi_step(*inputs)


# -- graph rewrite --------------------------------------------------------------------------------------------
def _check_literal_dim(dim: Any, context: str) -> None:
    if isinstance(dim, int) or (isinstance(dim, (tuple, list)) and all(isinstance(d, int) for d in dim)):
        return
    raise ValueError(f"{context} needs literal integer dimensions, but got {dim!r}.")


def _getitem_keeps_batch(item: Any) -> bool:
    if item is Ellipsis:
        return True
    if isinstance(item, slice):
        return item == slice(None, None, None)
    if isinstance(item, tuple) and item:
        return item[0] is Ellipsis or (isinstance(item[0], slice) and item[0] == slice(None, None, None))
    return False


def _contains_node(value: Any) -> bool:
    if isinstance(value, fx.Node):
        return True
    if isinstance(value, slice):
        return any(_contains_node(part) for part in (value.start, value.stop, value.step))
    return isinstance(value, tuple) and any(_contains_node(part) for part in value)


def _is_non_tensor(node: Any) -> bool:
    """A shape/size result, or a module call returning a tuple whose item 1 is unpacked and unused."""
    if not isinstance(node, fx.Node):
        return False
    if node.op == "call_function" and node.target is builtins.getattr and node.args[1:] == ("shape",):
        return True
    if (node.op == "call_method" and node.target == "size") or node.meta.get("ann2snn_step_mode_op") in ("shape",
                                                                                                        "size"):
        return True
    return node.op == "call_module" and any(
        u.op == "call_function" and u.target is operator.getitem and len(u.args) >= 2 and u.args[0] is node
        and u.args[1] == 1 and not u.users for u in node.users)


def _is_batch_size(node: Any, tensor: Any) -> bool:
    return isinstance(node, fx.Node) and node.args == (tensor, 0) and (
        (node.op == "call_method" and node.target == "size") or node.meta.get("ann2snn_step_mode_op") == "size")


def _arg(node: fx.Node, position: int, name: str, default: Any = None, required: bool = False) -> Any:
    if len(node.args) > position:
        return node.args[position]
    if name in node.kwargs:
        return node.kwargs[name]
    if required:
        raise ValueError(f"the {node.target!r} node {node.name!r} needs an explicit {name}.")
    return default


def _tensor_rewrite(node: fx.Node, context: str) -> Optional[Tuple[StepModeTensorOp, tuple]]:
    args, target = tuple(node.args), node.target
    if target == "size":
        inputs = list(args)
        if "dim" in node.kwargs:
            if len(inputs) > 1:
                raise ValueError(f"{context}: size got dim both as an argument and as a keyword.")
            inputs.append(node.kwargs["dim"])
        if len(inputs) > 2:
            raise ValueError(f"{context} does not support size with extra arguments.")
        if len(inputs) == 2:
            _check_literal_dim(inputs[1], context)
        return StepModeTensorOp("size"), tuple(inputs)
    if target == "dim":
        return StepModeTensorOp("dim"), (args[0],)
    if target == "view":
        if len(args) == 3 and _is_batch_size(args[1], args[0]) and args[2] == -1:
            return StepModeTensorOp("flatten", {"start_dim": 1, "end_dim": -1}), (args[0],)
        return StepModeTensorOp("reshape"), args
    if target in ("reshape", torch.reshape):
        return StepModeTensorOp("reshape"), args
    if target == "expand":
        return StepModeTensorOp("expand"), args
    if target is builtins.getattr:
        return (StepModeTensorOp("shape"), (args[0],)) if args[1:] == ("shape",) else None
    if target is operator.getitem:
        item = args[1]
        if isinstance(item, int):
            if not _is_non_tensor(args[0]):
                raise ValueError(f"{context} does not support integer tensor getitem ({node.name!r}): it is not "
                                 "sequence-preserving.")
            return None
        if not isinstance(item, (slice, tuple)) and item is not Ellipsis:
            raise ValueError(f"{context} does not support getitem index {item!r}.")
        if _contains_node(item):
            raise ValueError(f"{context} needs static literal tensor getitem indices ({node.name!r}).")
        if not _getitem_keeps_batch(item):
            raise ValueError(f"{context} needs tensor getitem to keep the original batch dimension "
                             f"({node.name!r}).")
        return StepModeTensorOp("getitem", {"item": item}), (args[0],)
    tensor = args[0] if args else node.kwargs["input"]
    if target in ("mean", torch.mean):
        dim = _arg(node, 1, "dim")
        if dim is None:
            raise ValueError(f"{context} does not support mean without an explicit dim ({node.name!r}).")
        keepdim = _arg(node, 2, "keepdim", False)
        if keepdim not in (False, True):
            raise ValueError(f"{context} needs a literal bool keepdim, but got {keepdim!r}.")
        _check_literal_dim(dim, context)
        return StepModeTensorOp("mean", {"dim": dim, "keepdim": bool(keepdim)}), (tensor,)
    if target in ("flatten", torch.flatten):
        start, end = _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)
        _check_literal_dim(start, context)
        _check_literal_dim(end, context)
        return StepModeTensorOp("flatten", {"start_dim": start, "end_dim": end}), (tensor,)
    if target in ("transpose", torch.transpose):
        dim0, dim1 = _arg(node, 1, "dim0", required=True), _arg(node, 2, "dim1", required=True)
        _check_literal_dim(dim0, context)
        _check_literal_dim(dim1, context)
        return StepModeTensorOp("transpose", {"dim0": dim0, "dim1": dim1}), (tensor,)
    if target in ("unsqueeze", torch.unsqueeze):
        dim = _arg(node, 1, "dim")
        if dim is None:
            raise ValueError(f"{context} does not support unsqueeze without a dim ({node.name!r}).")
        _check_literal_dim(dim, context)
        return StepModeTensorOp("unsqueeze", {"dim": dim}), (tensor,)
    if target == "unflatten":
        dim = _arg(node, 1, "dim")
        if dim is None:
            raise ValueError(f"{context} does not support unflatten without a dim ({node.name!r}).")
        sizes = args[2] if len(args) > 2 else node.kwargs.get("sizes", node.kwargs.get("unflattened_size"))
        _check_literal_dim(dim, context)
        if not isinstance(sizes, (tuple, list, torch.Size)):
            raise ValueError(f"{context} needs literal unflatten sizes, but got {sizes!r}.")
        return StepModeTensorOp("unflatten", {"dim": dim, "unflattened_size": tuple(sizes)}), (tensor,)
    if target == "permute":
        dims = _sizes(args[1:])
        for dim in dims:
            _check_literal_dim(dim, context)
        dims = tuple(_normalize_dim(d, len(dims), context) for d in dims)
        if not dims or dims[0] != 0:
            raise ValueError(f"{context} needs permute to keep the original batch dimension first ({node.name!r}).")
        return StepModeTensorOp("permute", {"dims": dims}), (tensor,)
    if target is torch.cat:
        tensors = args[0] if args else node.kwargs["tensors"]
        dim = _arg(node, 1, "dim", 0)
        _check_literal_dim(dim, context)
        return StepModeTensorOp("cat", {"dim": int(dim)}), tuple(tensors)
    return None


def _step_module(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.Flatten):
        return layer.Flatten(module.start_dim, module.end_dim)
    raise TypeError(f"no step-mode version of {type(module).__name__} (only nn.Flatten is wrapped).")


def _check_module(fx_model: fx.GraphModule, node: fx.Node, modules: dict, context: str, wrap: tuple,
                  safe: tuple) -> None:
    module = modules[node.target]
    if isinstance(module, (base.StepModule, base.MemoryModule, nn.Identity)) or isinstance(module, safe):
        return
    if isinstance(module, wrap):
        replacement = _step_module(module)
        parent, _, child = node.target.rpartition(".")
        setattr(fx_model.get_submodule(parent) if parent else fx_model, child, replacement)
        modules[node.target] = replacement
        return
    raise ValueError(f"{context} does not support module node {node.target!r} of type {type(module).__name__}.")


def adapt_sequence_graph(fx_model: fx.GraphModule, *, context: str,
                         wrap_module_types: Tuple[Type[nn.Module], ...] = (),
                         safe_module_types: Tuple[Type[nn.Module], ...] = (),
                         safe_call_functions: Tuple[Callable[..., Any], ...] = ()) -> fx.GraphModule:
    """Replace the shape operations of ``fx_model`` by :class:`StepModeTensorOp` modules (module docstring).

    :param context: names the graph in errors.
    :param wrap_module_types: ANN modules replaced by their step-mode version (``nn.Flatten``).
    :param safe_module_types: ANN modules left as they are (dropout, the identity in eval mode).
    :param safe_call_functions: functions left as they are besides the element-wise arithmetic.
    """
    if not isinstance(fx_model, fx.GraphModule):
        raise TypeError(f"adapt_sequence_graph ({context}): fx_model must be a torch.fx.GraphModule, but got "
                        f"{type(fx_model).__name__}.")
    modules = dict(fx_model.named_modules())
    existing, index = set(modules), 0
    for node in list(fx_model.graph.nodes):
        size_node = None
        if node.op == "call_module":
            _check_module(fx_model, node, modules, context, wrap_module_types, safe_module_types)
            continue
        if node.op == "call_method":
            if node.target == "size" and any(u.op == "call_method" and u.target == "view" and len(u.args) == 3
                                             and u.args[0] is node.args[0] and u.args[1] is node and u.args[2] == -1
                                             for u in node.users):
                continue  # x.view(x.size(0), -1): the view becomes a flatten and this node goes
            if node.target == "masked_fill":
                continue
            if node.target == "view" and len(node.args) == 3 and _is_batch_size(node.args[1], node.args[0]) \
                    and node.args[2] == -1:
                size_node = node.args[1]
        elif node.op == "call_function":
            if hasattr(node.target, "_fields") or node.target in safe_call_functions or node.target in _PASSTHROUGH:
                continue
            if node.target not in _REWRITTEN:
                raise ValueError(f"{context} does not support function node {node.target!r} ({node.name!r}).")
        else:
            continue
        rewrite = _tensor_rewrite(node, context)
        if rewrite is None:
            if node.op == "call_function":
                continue
            raise ValueError(f"{context} does not support tensor method {node.target!r} ({node.name!r}); rewrite "
                             "the model with supported sequence-preserving operations.")
        module, inputs = rewrite
        while f"step_mode_tensor_op_{index}" in existing:
            index += 1
        target = f"step_mode_tensor_op_{index}"
        index += 1
        fx_model.add_submodule(target, module)
        existing.add(target)
        with fx_model.graph.inserting_after(node):
            replacement = fx_model.graph.call_module(target, args=inputs)
        replacement.meta["ann2snn_step_mode_op"] = module.op_name
        node.replace_all_uses_with(replacement)
        fx_model.graph.erase_node(node)
        if size_node is not None and not size_node.users:
            fx_model.graph.erase_node(size_node)
    fx_model.graph.lint()
    fx_model.delete_all_unused_submodules()
    fx_model.recompile()
    return fx_model
