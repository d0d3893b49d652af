"""The neuron compiler's IR: one time step of a neuron as a list of scalar operations over float32 values.

A :class:`Graph` holds nodes in topological order; each node is ``(op, args, attr)`` with ``args`` the ids of
earlier nodes and ``attr`` a tuple of Python numbers (a constant's value, an exponent, a surrogate's id and
parameters). Leaves are ``input`` (x_i[t]), ``state`` (s_j[t-1]), ``param`` (p_k) and ``seed`` (the adjoint of
output k, used by the backward graph). Booleans are floats 0/1. :meth:`Graph.add` folds constants, drops
``x + 0`` / ``x * 1`` and shares equal nodes, so generated code has no dead or repeated work.

autodiff.py derives the reverse-mode adjoints of a step; codegen never sees user code, only these nodes.
"""
from __future__ import annotations

import hashlib
import math
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["Graph", "UNARY", "BINARY", "COMPARE", "LEAVES", "live"]

UNARY = ("neg", "exp", "log", "sqrt", "tanh", "sigmoid", "abs", "relu", "detach", "floor")
BINARY = ("add", "sub", "mul", "div", "minimum", "maximum")
COMPARE = ("ge", "gt", "le", "lt", "eq", "ne")
LEAVES = ("input", "state", "param", "seed", "const")

_FOLD = {
    "neg": lambda a: -a, "exp": math.exp, "log": math.log, "sqrt": math.sqrt, "tanh": math.tanh,
    "sigmoid": lambda a: 1.0 / (1.0 + math.exp(-a)), "abs": abs, "relu": lambda a: max(a, 0.0),
    "detach": lambda a: a, "floor": lambda a: float(math.floor(a)),
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "minimum": min, "maximum": max, "ge": lambda a, b: float(a >= b),
    "gt": lambda a, b: float(a > b), "le": lambda a, b: float(a <= b), "lt": lambda a, b: float(a < b),
    "eq": lambda a, b: float(a == b), "ne": lambda a, b: float(a != b),
}

Node = Tuple[str, Tuple[int, ...], tuple]


class Graph:
    """Nodes of one step, in order. ``outputs``: node ids of the step's outputs, then of the new states."""

    def __init__(self, num_inputs: int = 0, num_states: int = 0, num_params: int = 0) -> None:
        self.nodes: List[Node] = []
        self._index: Dict[Node, int] = {}
        self.num_inputs, self.num_states, self.num_params = num_inputs, num_states, num_params
        self.outputs: List[int] = []
        self.num_outputs = 0  # outputs that are not states

    # -- building ---------------------------------------------------------------------------------
    def const_value(self, i: int) -> Optional[float]:
        op, _, attr = self.nodes[i]
        return attr[0] if op == "const" else None

    def const(self, value: float) -> int:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"the neuron compiler supports finite constants only, but got {value}.")
        return self._intern(("const", (), (value + 0.0,)))  # -0.0 and 0.0 share a node

    def leaf(self, op: str, index: int) -> int:
        return self._intern((op, (), (int(index),)))

    def add(self, op: str, *args: int, attr: tuple = ()) -> int:
        consts = [self.const_value(a) for a in args]
        if op in _FOLD and all(c is not None for c in consts):
            try:
                value = _FOLD[op](*consts)
            except (ValueError, ZeroDivisionError, OverflowError):
                value = None
            if value is not None and math.isfinite(value):
                return self.const(value)
        simplified = self._simplify(op, args, consts, attr)
        if simplified is not None:
            return simplified
        if op in ("add", "mul", "minimum", "maximum", "eq", "ne") and args[0] > args[1]:
            args = (args[1], args[0])  # commutative: one canonical order so equal nodes are shared
        return self._intern((op, tuple(args), tuple(attr)))

    def _simplify(self, op: str, args, consts, attr) -> Optional[int]:
        if op == "add":
            if consts[0] == 0.0:
                return args[1]
            if consts[1] == 0.0:
                return args[0]
        elif op == "sub":
            if consts[1] == 0.0:
                return args[0]
            if consts[0] == 0.0:
                return self.add("neg", args[1])
        elif op == "mul":
            for k in (0, 1):
                if consts[k] == 0.0:  # 0 * x: the adjoint of an unused value (x is finite in every use made here)
                    return self.const(0.0)
                if consts[k] == 1.0:
                    return args[1 - k]
                if consts[k] == -1.0:
                    return self.add("neg", args[1 - k])
        elif op == "div" and consts[1] == 1.0:
            return args[0]
        elif op == "pow":
            if attr[0] == 1.0:
                return args[0]
            if attr[0] == 0.0:
                return self.const(1.0)
            if consts[0] is not None and consts[0] > 0.0:
                return self.const(consts[0] ** attr[0])
        elif op == "neg" and self.nodes[args[0]][0] == "neg":
            return self.nodes[args[0]][1][0]
        elif op == "where":
            if consts[0] is not None:
                return args[1] if consts[0] != 0.0 else args[2]
            if args[1] == args[2]:
                return args[1]
        return None

    def _intern(self, node: Node) -> int:
        found = self._index.get(node)
        if found is None:
            found = len(self.nodes)
            self.nodes.append(node)
            self._index[node] = found
        return found

    # -- identity ---------------------------------------------------------------------------------
    def key(self) -> str:
        """A hash of the nodes and outputs: the cache key of everything generated from this graph."""
        text = repr((self.num_inputs, self.num_states, self.num_params, self.num_outputs, self.outputs, self.nodes))
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def assignments(graph: Graph, roots: Sequence[int], leaf, expr, name):
    """(node id, right-hand side) for every non-constant node the roots need, in order: what a code generator
    assigns. ``leaf(op, index)`` names an input / state / param / seed, ``expr(op, arg_names, attr)`` writes an
    operation, ``name(graph, i)`` a node's value (a literal for constants)."""
    for i in live(graph, roots):
        op, args, attr = graph.nodes[i]
        if op == "const":
            continue
        if op in ("input", "state", "param", "seed"):
            yield i, leaf(op, attr[0])
        else:
            yield i, expr(op, [name(graph, j) for j in args], attr)


def live(graph: Graph, roots: Sequence[int]) -> List[int]:
    """The ids of the nodes the roots depend on, in order (dead code elimination)."""
    keep = set()
    stack = list(roots)
    while stack:
        i = stack.pop()
        if i in keep:
            continue
        keep.add(i)
        stack.extend(graph.nodes[i][1])
    return sorted(keep)
