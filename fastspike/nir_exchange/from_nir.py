"""``import_from_nir`` with SpikingJelly 2.0's signature and calling convention, on fastspike's NIR importer
(``fastspike.export.from_nir``: every parameter validated, named errors, a dry run of the graph).

SpikingJelly's importer returns a nirtorch ``GraphModule`` called as ``output, state = model(x, state)``; so
does :class:`NIRStatefulGraph` here (``state=None`` starts from the reset state; the returned state is a dict
``{node name: {memory name: value}}`` to pass to the next call). ``functional.reset_net`` and
``functional.set_step_mode`` work on it. Differences: fastspike imports more than SpikingJelly accepts (IF with
``r*dt != 1`` and LIF with other ``r`` by scaling the threshold, soft resets written by fastspike, grouped
convolutions, SumPool2d, Scale, per-neuron CubaLIF parameters); recurrent graphs are refused in both step modes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn as nn

from ..base import MemoryModule
from ..export._modules import GraphModule
from ..export.nir import from_nir

__all__ = ["import_from_nir", "NIRStatefulGraph"]


class NIRStatefulGraph(nn.Module):
    """An imported NIR graph with explicit state: ``forward(input, state=None) -> (output, state)``.

    ``graph`` is the fastspike :class:`~fastspike.export.GraphModule` that runs it (``graph.node(name)`` gives a
    node's module)."""

    def __init__(self, graph: GraphModule):
        super().__init__()
        self.graph = graph

    def _stateful(self):
        return [(name, self.graph.node(name)) for name in self.graph.node_names()
                if isinstance(self.graph.node(name), MemoryModule)]

    def forward(self, input: torch.Tensor, state: Optional[Dict[str, Dict[str, object]]] = None):
        nodes = self._stateful()
        if state is None:
            self.graph.reset()
        else:
            if not isinstance(state, dict):
                raise TypeError(f"NIRStatefulGraph: state must be None or the dict returned by the previous call, but "
                                f"got {type(state).__name__}.")
            for name, module in nodes:
                if name in state:
                    module._memories.update(state[name])
        out = self.graph(input)
        snapshot = lambda v: v.clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
        return out, {name: {k: snapshot(v) for k, v in module._memories.items()} for name, module in nodes}


def import_from_nir(graph, dt: float = 1e-4, device: str = "cpu", dtype: torch.dtype = torch.float32,
                    step_mode: str = "s") -> NIRStatefulGraph:
    """Build a :class:`NIRStatefulGraph` from a ``nir.NIRGraph`` or a NIR file path, with ``dt`` seconds per
    step, on ``device`` in ``dtype``, in ``step_mode`` ('s': input [N, *]; 'm': [T, N, *])."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0:
        raise ValueError(f"import_from_nir: dt must be a positive number of seconds per step, but got {dt!r}.")
    if step_mode not in ("s", "m"):
        raise ValueError(f"import_from_nir: step_mode must be 's' or 'm', but got {step_mode!r}.")
    source = str(graph) if isinstance(graph, Path) else graph
    module = from_nir(source, dt=float(dt), step_mode=step_mode)
    return NIRStatefulGraph(module).to(device=device, dtype=dtype)
