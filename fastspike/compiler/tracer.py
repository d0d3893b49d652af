"""Trace a neuron's step function once into the IR (fastspike.compiler.ir).

The step function is called with :class:`Proxy` objects in place of tensors. A proxy records arithmetic
(+, -, *, /, unary -, ``**`` a constant, comparisons, ``&``, ``|``, ``~``), the tensor methods and torch
functions listed in ``_FUNCTIONS`` and the methods of :class:`Proxy` (through ``__torch_function__``), and
calls of a fastspike surrogate module (``surrogate.Sigmoid()(x)``: a ``spike`` node, Heaviside forward, the
surrogate's derivative backward; ``autograd.Function.apply`` is intercepted while tracing). Python numbers become
constants. Anything else (``if`` on a traced value, an in-place method, an unknown torch function, a captured
tensor, another autograd.Function) raises :class:`NeuronTraceError` naming the file and line of the
step function where it happened.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import math
import os
import sys
import threading
import traceback
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from ..surrogate.base import KERNEL_GRADS, SurrogateFunctionBase, _Spike
from .ir import Graph

__all__ = ["NeuronTraceError", "Proxy", "spike", "trace"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_LIBRARY_DIRS = (_HERE, os.path.dirname(os.path.abspath(torch.__file__)),
                 os.path.join(os.path.dirname(_HERE), "surrogate"))


class NeuronTraceError(TypeError):
    """A construct of a step function that the neuron compiler cannot trace; the message names its line."""


_TORCH_DIR = os.path.dirname(torch.__file__)
_STEP_FILE = threading.local()  # the file of the step function being traced


def _user_frames(tb=None) -> Tuple[Optional[traceback.FrameSummary], Optional[traceback.FrameSummary]]:
    """(the innermost frame in the step function's file, else the innermost outside torch and the compiler;
    the innermost frame outside them)."""
    frames = traceback.extract_tb(tb) if tb is not None else traceback.extract_stack()
    outside = []
    for frame in frames:
        path = os.path.abspath(frame.filename)
        if not any(path.startswith(d) for d in _LIBRARY_DIRS) and not path.startswith("<frozen"):
            outside.append(frame)
    step_file = getattr(_STEP_FILE, "name", None)
    in_step = [f for f in outside if f.filename == step_file]
    return (in_step or outside or [None])[-1], (outside or [None])[-1]


def _describe(frame: traceback.FrameSummary) -> str:
    return f"{frame.filename}, line {frame.lineno}" + (f": `{frame.line}`" if frame.line else "")


def _fail(what: str, tb=None) -> "NeuronTraceError":
    frame, inner = _user_frames(tb)
    where = _describe(frame) if frame else "the step function"
    if inner is not None and inner is not frame:
        where += f" (in {_describe(inner)})"
    return NeuronTraceError(f"{where}: {what}")


class Proxy:
    """A traced value: node ``node`` of ``graph``."""

    __slots__ = ("graph", "node")

    def __init__(self, graph: Graph, node: int) -> None:
        self.graph, self.node = graph, node

    # -- helpers ----------------------------------------------------------------------------------
    def _lift(self, value) -> int:
        return _lift(self.graph, value)

    def _op(self, op: str, *values, attr: tuple = ()) -> "Proxy":
        function = _custom_forward()
        if function is not None:
            raise _fail(f"the custom autograd.Function {function} cannot be traced (its backward is hand-written); "
                        "spike through a fastspike.surrogate module instead.")
        return Proxy(self.graph, self.graph.add(op, *(self._lift(v) for v in values), attr=attr))

    # -- arithmetic -------------------------------------------------------------------------------
    def __add__(self, o): return self._op("add", self, o)
    def __radd__(self, o): return self._op("add", o, self)
    def __sub__(self, o): return self._op("sub", self, o)
    def __rsub__(self, o): return self._op("sub", o, self)
    def __mul__(self, o): return self._op("mul", self, o)
    def __rmul__(self, o): return self._op("mul", o, self)
    def __truediv__(self, o): return self._op("div", self, o)
    def __rtruediv__(self, o): return self._op("div", o, self)
    def __neg__(self): return self._op("neg", self)
    def __pos__(self): return self
    def __abs__(self): return self._op("abs", self)
    def __ge__(self, o): return self._op("ge", self, o)
    def __gt__(self, o): return self._op("gt", self, o)
    def __le__(self, o): return self._op("le", self, o)
    def __lt__(self, o): return self._op("lt", self, o)
    def __eq__(self, o): return self._op("eq", self, o)
    def __ne__(self, o): return self._op("ne", self, o)
    def __and__(self, o): return self._op("mul", self, o)
    __rand__ = __and__
    def __or__(self, o): return self._op("maximum", self, o)
    __ror__ = __or__
    def __invert__(self): return self._op("sub", 1.0, self)
    __hash__ = object.__hash__

    def __pow__(self, e):
        if isinstance(e, bool) or not isinstance(e, (int, float)):
            raise _fail("x ** y is supported for a constant number y only.")
        return self._op("pow", self, attr=(float(e),))

    def __rpow__(self, base):
        if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 0:
            raise _fail("c ** x is supported for a constant number c > 0 only.")
        return (self * math.log(float(base))).exp()

    # -- what cannot be traced ----------------------------------------------------------------------
    def __bool__(self):
        raise _fail("Python control flow (if / while / and / or / assert) on a traced tensor is not supported; "
                    "use torch.where(cond, a, b) instead.")

    def __float__(self):
        raise _fail("converting a traced tensor to a Python number (float(), .item()) is not supported.")

    __int__ = __index__ = __float__

    def __iter__(self):
        raise _fail("iterating over or indexing a traced tensor is not supported: a step function works "
                    "elementwise on one neuron's values.")

    __len__ = __iter__

    def __getitem__(self, _):
        raise _fail("indexing a traced tensor is not supported: a step function works elementwise.")

    def __setitem__(self, *_):
        raise _fail("in-place assignment to a traced tensor is not supported; compute a new value instead.")

    def __getattr__(self, name):
        if name.endswith("_") and not name.startswith("_"):
            raise _fail(f"the in-place method .{name}() is not supported; use the out-of-place "
                        f".{name[:-1]}() or an operator instead.")
        raise _fail(f"the tensor attribute or method .{name} is not supported by the neuron compiler.")

    # -- methods ----------------------------------------------------------------------------------
    def exp(self): return self._op("exp", self)
    def log(self): return self._op("log", self)
    def sqrt(self): return self._op("sqrt", self)
    def tanh(self): return self._op("tanh", self)
    def sigmoid(self): return self._op("sigmoid", self)
    def abs(self): return self._op("abs", self)
    def relu(self): return self._op("relu", self)
    def neg(self): return self._op("neg", self)
    def detach(self): return self._op("detach", self)
    def pow(self, e): return self ** e
    def floor(self): return _floor(self)
    def ceil(self): return _ceil(self)
    def round(self): return _round(self)
    def sign(self): return _sign(self)
    def trunc(self): return _trunc(self)
    def clamp(self, min=None, max=None): return _clamp(self, min, max)
    def clamp_min(self, min): return _clamp(self, min, None)
    def clamp_max(self, max): return _clamp(self, None, max)
    def float(self): return self
    dtype = torch.float32
    device = None  # chosen at call time; `.to(device=x.device)` is then a no-op, as in PyTorch
    def to(self, *args, **kwargs):
        for a in (*args, *kwargs.values()):
            if isinstance(a, torch.dtype) and not (a.is_floating_point or a == torch.bool):
                raise _fail(f".to({a}) is not supported: the compiled neuron computes in floating point.")
        return self

    def type_as(self, other): return self
    def contiguous(self): return self
    def clone(self): return self

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = _FUNCTIONS.get(func)
        if handler is None:
            name = getattr(func, "__name__", repr(func))
            raise _fail(f"torch function {name} is not supported by the neuron compiler (supported: "
                        f"{', '.join(sorted(_FUNCTION_NAMES))}).")
        return handler(*args, **kwargs)


def _lift(graph: Graph, value) -> int:
    if isinstance(value, Proxy):
        if value.graph is not graph:
            raise _fail("a traced value from another trace was used.")
        return value.node
    if isinstance(value, bool):
        return graph.const(float(value))
    if isinstance(value, (int, float)):
        return graph.const(float(value))
    if isinstance(value, torch.Tensor):
        raise _fail("the step function uses a tensor that is not one of its arguments (a captured tensor or a "
                    "tensor constant); pass learnable values as parameters.")
    raise _fail(f"a value of type {type(value).__name__} cannot be used in a traced expression.")


def _graph_of(*values) -> Graph:
    for v in values:
        if isinstance(v, Proxy):
            return v.graph
    raise _fail("a torch function was called without any traced tensor argument.")


def _unary(op: str):
    return lambda x, *a, **k: Proxy(_graph_of(x), _graph_of(x).add(op, _lift(_graph_of(x), x)))


def _binary(op: str):
    def fn(a, b, *rest, **kwargs):
        g = _graph_of(a, b)
        return Proxy(g, g.add(op, _lift(g, a), _lift(g, b)))
    return fn


def _clamp(x, lo=None, hi=None, **kwargs):
    lo, hi = kwargs.get("min", lo), kwargs.get("max", hi)
    g = _graph_of(x, lo, hi)
    node = _lift(g, x)
    if lo is not None:
        lo_node = _lift(g, lo)
        node = g.add("where", g.add("lt", node, lo_node), lo_node, node)
    if hi is not None:
        hi_node = _lift(g, hi)
        node = g.add("where", g.add("gt", node, hi_node), hi_node, node)
    return Proxy(g, node)


def _floor(x):
    return Proxy(_graph_of(x), _graph_of(x).add("floor", _lift(_graph_of(x), x)))


def _ceil(x):
    return -_floor(-x)


def _round(x, decimals=0):
    """Round half to even (torch.round), no gradient: for |x| < 2**23, (|x| + 2**23) - 2**23 rounds in float32;
    larger floats are integers already."""
    if decimals:
        raise _fail("round(decimals=...) is not supported.")
    x = x.detach()
    ax = abs(x)
    r = (ax + 8388608.0) - 8388608.0
    return _where(ax < 8388608.0, _where(x < 0.0, -r, r), x)


def _sign(x):
    x = x.detach()
    return (x > 0.0) * 1.0 - (x < 0.0) * 1.0


def _trunc(x):
    x = x.detach()
    return _where(x < 0.0, _ceil(x), _floor(x))


def _where(cond, a, b):
    g = _graph_of(cond, a, b)
    return Proxy(g, g.add("where", _lift(g, cond), _lift(g, a), _lift(g, b)))


def _like(value):
    def fn(x, *args, **kwargs):
        g = _graph_of(x)
        fill = args[0] if args else kwargs.get("fill_value", value)
        if isinstance(fill, Proxy) or isinstance(fill, torch.Tensor):
            raise _fail("full_like's fill value must be a Python number.")
        return Proxy(g, g.const(float(fill)))
    return fn


def _heaviside(x, values=None):
    g = _graph_of(x)
    zero = g.const(0.0)
    node = _lift(g, x)
    return Proxy(g, g.add("where", g.add("eq", node, zero), _lift(g, values), g.add("gt", node, zero)))


_FUNCTIONS = {
    torch.add: _binary("add"), torch.sub: _binary("sub"), torch.mul: _binary("mul"), torch.div: _binary("div"),
    torch.true_divide: _binary("div"), torch.minimum: _binary("minimum"), torch.maximum: _binary("maximum"),
    torch.exp: _unary("exp"), torch.log: _unary("log"), torch.sqrt: _unary("sqrt"), torch.tanh: _unary("tanh"),
    torch.sigmoid: _unary("sigmoid"), torch.abs: _unary("abs"), torch.relu: _unary("relu"), F.relu: _unary("relu"),
    torch.neg: _unary("neg"), torch.detach: _unary("detach"), F.sigmoid: _unary("sigmoid"), F.tanh: _unary("tanh"),
    torch.clamp: _clamp, torch.clip: _clamp, torch.where: _where, torch.heaviside: _heaviside,
    torch.zeros_like: _like(0.0), torch.ones_like: _like(1.0), torch.full_like: _like(None),
    torch.pow: lambda x, e: x ** e, torch.clamp_min: lambda x, m: _clamp(x, m, None),
    torch.clamp_max: lambda x, m: _clamp(x, None, m),
    torch.floor: _floor, torch.ceil: _ceil, torch.round: _round, torch.sign: _sign, torch.trunc: _trunc,
    torch.ge: _binary("ge"), torch.gt: _binary("gt"), torch.le: _binary("le"), torch.lt: _binary("lt"),
    torch.eq: _binary("eq"), torch.ne: _binary("ne"),
}
_FUNCTION_NAMES = {getattr(f, "__name__", str(f)) for f in _FUNCTIONS}


def spike(x, surrogate_function: SurrogateFunctionBase):
    """``surrogate_function(x)``, usable inside a traced step function and on tensors alike."""
    return surrogate_function(x)


_APPLY_LOCK = threading.Lock()


def _spike_node(x, grad_fn, params) -> Proxy:
    """The ``spike`` node of ``_Spike.apply(x, grad_fn, params)`` (what a fastspike surrogate's forward calls)."""
    sg_id = next((k for k, fn in KERNEL_GRADS.items() if fn is grad_fn), None)
    values = list(params) + [0.0, 0.0]
    if sg_id is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in params):
        raise _fail("this surrogate has no fused kernel (a custom grad or tensor parameters); use a built-in "
                    "fastspike.surrogate class with number parameters.")
    return Proxy(x.graph, x.graph.add("spike", x.node, attr=(float(sg_id), float(values[0]), float(values[1]))))


def _custom_forward() -> Optional[str]:
    """The name of the autograd.Function whose ``forward`` is running on proxies, if any. The patched ``apply``
    below catches calls made while tracing; this catches a ``Function.apply`` bound before tracing began (a
    surrogate stored as ``SpikeFn.apply``), whose forward runs with a ``ctx`` argument somewhere up the stack."""
    frame, stop = sys._getframe(2), getattr(_STEP_FILE, "frame", None)
    while frame is not None and frame is not stop:  # only the frames of the traced step function
        ctx = frame.f_locals.get("ctx") if frame.f_code.co_name == "forward" else None
        if isinstance(ctx, torch.autograd.function.FunctionCtx):
            caller = frame.f_back
            while caller is not None and caller.f_code.co_filename.startswith(_TORCH_DIR):  # Function.apply
                caller = caller.f_back
            where = f", called at {caller.f_code.co_filename}, line {caller.f_lineno}," if caller is not None else ""
            return type(ctx).__name__.removesuffix("Backward") + where
        frame = frame.f_back
    return None


@contextlib.contextmanager
def _autograd_functions():
    """While tracing, ``autograd.Function.apply`` on a proxy is a ``spike`` node for fastspike's surrogate
    function and an error for any other (its backward could not be derived)."""
    original = torch.autograd.Function.__dict__["apply"]

    def apply(cls, *args, **kwargs):
        if not any(isinstance(a, Proxy) for a in args):
            return original.__get__(None, cls)(*args, **kwargs)
        if cls is _Spike:
            return _spike_node(*args)
        raise _fail(f"the custom autograd.Function {cls.__module__}.{cls.__qualname__} cannot be traced (its "
                    "backward is hand-written); spike through a fastspike.surrogate module instead.")

    with _APPLY_LOCK:
        torch.autograd.Function.apply = classmethod(apply)
        try:
            yield
        finally:
            torch.autograd.Function.apply = original


def trace(fn: Callable, num_inputs: int, num_states: int, num_params: int) -> Graph:
    """Call ``fn(*inputs, *states, *params)`` on proxies and return its graph (outputs, then new states)."""
    graph = Graph(num_inputs, num_states, num_params)
    args = ([Proxy(graph, graph.leaf("input", i)) for i in range(num_inputs)]
            + [Proxy(graph, graph.leaf("state", j)) for j in range(num_states)]
            + [Proxy(graph, graph.leaf("param", k)) for k in range(num_params)])
    code = getattr(inspect.unwrap(fn.func if isinstance(fn, functools.partial) else fn), "__code__", None)
    _STEP_FILE.name = code.co_filename if code is not None else None
    _STEP_FILE.frame = sys._getframe()
    try:
        with _autograd_functions():
            returns = fn(*args)
    except NeuronTraceError:
        raise
    except Exception as error:  # user code failed on a proxy: say where
        raise _fail(f"tracing failed with {type(error).__name__}: {error}", error.__traceback__) from error
    finally:
        _STEP_FILE.name = _STEP_FILE.frame = None
    returns = (returns,) if isinstance(returns, (Proxy, int, float)) else tuple(returns)
    if len(returns) < num_states:
        raise ValueError(f"the step function returned {len(returns)} values, fewer than num_states={num_states}.")
    graph.outputs = [_lift(graph, r) for r in returns]
    graph.num_outputs = len(returns) - num_states
    return graph
