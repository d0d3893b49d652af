"""The derivative of each fused surrogate (fastspike.surrogate, ``kernel_id`` 0-13) as IR nodes.

Same formulas as kernels/surrogate.py and csrc/surrogate.h (the surrogate classes' ``grad`` is the reference);
``a`` and ``b`` are the surrogate's ``kernel_params()``. Written once over the IR, they are generated into the C
and the Triton kernels alike.
"""
from __future__ import annotations

from typing import Callable, Dict

from .ir import Graph

__all__ = ["surrogate_grad"]


def _builders(g: Graph, x: int, a: float, b: float) -> Dict[int, Callable[[], int]]:
    c, op = g.const, g.add
    ax = op("abs", x)

    def sig():
        s = op("sigmoid", op("mul", c(a), x))
        return op("mul", op("mul", c(a), s), op("sub", c(1.0), s))

    def atan():
        z = op("mul", c(1.5707963267948966 * a), x)
        return op("div", c(0.5 * a), op("add", c(1.0), op("mul", z, z)))

    def softsign():
        z = op("add", c(1.0 / a), ax)
        return op("div", c(1.0), op("mul", c(2.0 * a), op("mul", z, z)))

    def superspike():
        z = op("add", c(1.0), ax)
        return op("div", c(a), op("mul", z, z))

    def erf():
        z = op("mul", c(a), x)
        return op("mul", c(a * 0.5641895835477563), op("exp", op("neg", op("mul", z, z))))

    def s2nn():
        pos = op("div", c(b), op("add", op("maximum", x, c(0.0)), c(1.0)))
        return op("where", op("lt", x, c(0.0)), sig(), pos)

    def log_tailed():
        tail = op("div", c(1.0), op("maximum", x, c(1.0)))
        return op("where", op("gt", x, c(1.0)), tail, op("where", op("le", x, c(0.0)), c(a), c(1.0)))

    return {
        0: sig,
        1: atan,
        2: lambda: op("where", op("gt", ax, c(1.0 / a)), c(0.0), op("sub", c(a), op("mul", c(a * a), ax))),
        3: lambda: op("mul", c(0.5 * a), op("exp", op("mul", c(-a), ax))),
        4: softsign,
        5: superspike,
        6: erf,
        7: lambda: op("where", op("lt", ax, c(a)), c(0.5 / a), c(b)),
        8: lambda: op("where", op("lt", ax, c(0.5 / a)), c(a), c(0.0)),
        9: s2nn,
        10: lambda: op("exp", op("mul", c(-a), op("log", op("add", c(1.0), op("mul", c(2.0 / (a - 1.0)), ax))))),
        11: lambda: op("where", op("ge", x, c(0.0)), c(b), c(a)),
        12: log_tailed,
        13: lambda: op("div", c(1.0), op("add", c(1.0 / a), ax)),
    }


def surrogate_grad(g: Graph, x: int, sg_id: float, a: float, b: float) -> int:
    """The node of d spike / d x at node ``x`` for surrogate ``sg_id`` with parameters (a, b)."""
    return _builders(g, x, a, b)[int(sg_id)]()
