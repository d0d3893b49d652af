"""Reverse-mode differentiation of a traced step (fastspike.compiler.ir): the backward through time of one step.

The backward kernel of a neuron runs t = T-1..0; at each step it knows the adjoints of the step's outputs (from
the loss) and of the new states (carried from step t+1), recomputes the step's intermediates from the state
before step t, and evaluates the nodes added here to get the adjoints of x[t], of the old states (carried to
step t-1) and of the parameters (summed over time).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from .ir import COMPARE, LEAVES, Graph
from .surrogates import surrogate_grad

__all__ = ["backward"]


def backward(graph: Graph) -> Tuple[List[int], List[int], List[int]]:
    """Add the reverse-mode adjoints of one step to ``graph``: from ``seed k`` (the adjoint of output k, outputs
    then new states), the adjoints of every input, old state and parameter, as node ids (lists in that order).
    ``spike`` passes its adjoint times the surrogate derivative, ``detach`` and comparisons pass none."""
    adj: Dict[int, int] = {}

    def acc(i: int, g: int) -> None:
        adj[i] = graph.add("add", adj[i], g) if i in adj else g

    for k, out in enumerate(graph.outputs):
        acc(out, graph.leaf("seed", k))
    g_ = graph.add
    for i in range(len(graph.nodes) - 1, -1, -1):
        if i not in adj:
            continue
        op, args, attr = graph.nodes[i]
        g = adj[i]
        if op in LEAVES or op in COMPARE or op in ("detach", "floor"):
            continue
        a = args[0]
        if op == "add":
            acc(a, g)
            acc(args[1], g)
        elif op == "sub":
            acc(a, g)
            acc(args[1], g_("neg", g))
        elif op == "mul":
            acc(a, g_("mul", g, args[1]))
            acc(args[1], g_("mul", g, a))
        elif op == "div":
            acc(a, g_("div", g, args[1]))
            acc(args[1], g_("neg", g_("div", g_("mul", g, i), args[1])))
        elif op == "neg":
            acc(a, g_("neg", g))
        elif op == "exp":
            acc(a, g_("mul", g, i))
        elif op == "log":
            acc(a, g_("div", g, a))
        elif op == "sqrt":
            acc(a, g_("div", g_("mul", g, graph.const(0.5)), i))
        elif op == "tanh":
            acc(a, g_("mul", g, g_("sub", graph.const(1.0), g_("mul", i, i))))
        elif op == "sigmoid":
            acc(a, g_("mul", g, g_("mul", i, g_("sub", graph.const(1.0), i))))
        elif op == "abs":
            zero = graph.const(0.0)
            acc(a, g_("mul", g, g_("sub", g_("gt", a, zero), g_("lt", a, zero))))
        elif op == "relu":
            acc(a, g_("mul", g, g_("gt", a, graph.const(0.0))))
        elif op == "pow":
            e = attr[0]
            acc(a, g_("mul", g, g_("mul", graph.const(e), g_("pow", a, attr=(e - 1.0,)) if e != 2.0 else a)))
        elif op in ("minimum", "maximum"):
            b = args[1]
            half = g_("mul", graph.const(0.5), g_("eq", a, b))
            first, second = ("lt", "gt") if op == "minimum" else ("gt", "lt")
            acc(a, g_("mul", g, g_("add", g_(first, a, b), half)))
            acc(b, g_("mul", g, g_("add", g_(second, a, b), half)))
        elif op == "where":
            zero = graph.const(0.0)
            acc(args[1], g_("where", a, g, zero))
            acc(args[2], g_("where", a, zero, g))
        elif op == "spike":
            acc(a, g_("mul", g, surrogate_grad(graph, a, *attr)))
        else:  # pragma: no cover - every op of the tracer is listed above
            raise AssertionError(f"no derivative for {op}")

    def grads(op: str, count: int) -> List[int]:
        return [adj.get(graph.leaf(op, k), graph.const(0.0)) for k in range(count)]

    return grads("input", graph.num_inputs), grads("state", graph.num_states), grads("param", graph.num_params)
