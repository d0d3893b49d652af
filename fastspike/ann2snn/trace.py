"""ann2snn step 1: trace the ANN with torch.fx, and describe graph nodes for error messages (the node, its module
path and the user's source line). Tracing failures (data-dependent control flow, ...) become one
:class:`ConversionError` that names the line and the fix."""
from __future__ import annotations

import os
import re
import traceback
from typing import Optional

import torch
import torch.fx as fx
import torch.nn as nn

from fastspike import base
from .qcfs import QCFS

__all__ = ["ConversionError", "ANNTracer", "trace_ann", "describe"]

_TORCH_DIR = os.path.dirname(torch.__file__)
_THIS_DIR = os.path.dirname(os.path.abspath(__file__))


class ConversionError(ValueError):
    """The ANN cannot be converted: an unsupported layer/op, an fx tracing failure or missing statistics."""


class ANNTracer(fx.Tracer):
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


def describe(node: fx.Node, gm: nn.Module) -> str:
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


def trace_ann(ann: nn.Module) -> fx.GraphModule:
    tracer = ANNTracer()
    try:
        graph = tracer.trace(ann)
    except Exception as exc:
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
