"""NIR import: build a fastspike :class:`GraphModule` from a ``nir.NIRGraph`` or a NIR HDF5 file.

The ODE -> discrete-time mapping is the inverse of the export table in ``fastspike/export/nir.py``. Before any
module is built, every node's parameters are validated (``_nir_checks``: finiteness, ranks, lengths, integer
ranges, names); after the graph is assembled, one dry run on a zero sample of the Input node's shape checks
the shapes between nodes and names the node that fails. A graph that imports therefore runs.
"""
from __future__ import annotations

import copy
import math
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from ._modules import CubaLIFNode, GraphModule, Scale, SumPool2d
from ._nir_checks import check_names, check_node
from ._util import nir_module

__all__ = ["from_nir", "correct_norse_tau"]

SOFT_RESET_KEY = "reset"
SOFT_RESET_VALUE = "subtract"
#: the dry run is skipped for inputs larger than this (elements per sample), to bound its memory
DRY_RUN_MAX_ELEMENTS = 1 << 24
_SUPPORTED = ("Affine", "Linear", "Conv1d", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten", "Scale", "IF", "LIF",
              "CubaLIF")


def _uniform(node_name, field, arr) -> float:
    a = np.asarray(arr, dtype=np.float64)
    if a.size == 0:
        raise ValueError(f"from_nir: node '{node_name}' has an empty '{field}'.")
    if not np.all(a == a.flat[0]):
        raise ValueError(f"from_nir: node '{node_name}' has a different '{field}' per neuron "
                         f"(min {a.min():g}, max {a.max():g}); fastspike's IF/LIF neurons take one value per layer.")
    return float(a.flat[0])


def _is_soft(node) -> bool:
    meta = getattr(node, "metadata", None) or {}
    v = meta.get(SOFT_RESET_KEY) if isinstance(meta, dict) else None
    if isinstance(v, bytes):
        v = v.decode()
    return v == SOFT_RESET_VALUE


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def _neuron_from_nir(name, node, dt):
    nir = nir_module()
    from fastspike import neuron as fsn

    soft = _is_soft(node)
    if isinstance(node, nir.CubaLIF):
        return CubaLIFNode(tau_syn=_tensor(node.tau_syn) / dt, tau_mem=_tensor(node.tau_mem) / dt, r=_tensor(node.r),
                           w_in=_tensor(node.w_in), v_leak=_tensor(node.v_leak),
                           v_threshold=_tensor(node.v_threshold), v_reset=None if soft else _tensor(node.v_reset))
    thr = _uniform(name, "v_threshold", node.v_threshold)
    vr = None if soft else _uniform(name, "v_reset", node.v_reset)
    if isinstance(node, nir.IF):
        gain = _uniform(name, "r", node.r) * dt
        if not math.isclose(gain, 1.0, rel_tol=1e-6):
            # v' = v + gain * I with threshold thr and reset vr is the same spike train as
            # u = v / gain: u' = u + I with threshold thr / gain and reset vr / gain.
            thr = thr / gain
            vr = None if vr is None else vr / gain
        return fsn.IFNode(v_threshold=thr, v_reset=vr, step_mode="s")
    # LIF
    tau = _uniform(name, "tau", node.tau) / dt
    meta = getattr(node, "metadata", None) or {}
    exact = meta.get("tau_steps") if isinstance(meta, dict) else None
    try:
        if exact is not None and math.isclose(float(exact), tau, rel_tol=1e-5):
            tau = float(exact)
    except (TypeError, ValueError):
        pass  # a malformed hint is ignored: tau / dt is the value
    r = _uniform(name, "r", node.r)
    v_leak = _uniform(name, "v_leak", node.v_leak)
    if tau < 1:
        raise ValueError(f"from_nir: LIF node '{name}' has tau / dt = {tau:g} < 1 step; forward Euler is "
                         "unstable there (check dt, or the exporter's tau convention, see docs/export.md).")
    expected_leak = 0.0 if vr is None else vr
    if not math.isclose(v_leak, expected_leak, rel_tol=1e-6, abs_tol=1e-9):
        raise ValueError(f"from_nir: LIF node '{name}' has v_leak={v_leak:g} but resets to {expected_leak:g}; "
                         "fastspike's LIF leaks towards its reset value.")
    if math.isclose(r, 1.0, rel_tol=1e-6):
        return fsn.LIFNode(tau=tau, decay_input=True, v_threshold=thr, v_reset=vr, step_mode="s")
    if math.isclose(r, tau, rel_tol=1e-6):
        return fsn.LIFNode(tau=tau, decay_input=False, v_threshold=thr, v_reset=vr, step_mode="s")
    # other input gains: scale the membrane by 1/r (threshold, reset) and keep decay_input=True
    return fsn.LIFNode(tau=tau, decay_input=True, v_threshold=thr / r, v_reset=None if vr is None else vr / r,
                       step_mode="s")


def _ints(v) -> Tuple[int, ...]:
    return tuple(int(x) for x in np.atleast_1d(np.asarray(v)))


def _module_from_nir(name, node, dt):
    nir = nir_module()
    if isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
        return _neuron_from_nir(name, node, dt)
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = _tensor(node.weight)
        with_bias = isinstance(node, nir.Affine)
        m = nn.Linear(w.shape[1], w.shape[0], bias=with_bias)
        with torch.no_grad():
            m.weight.copy_(w)
            if with_bias:
                m.bias.copy_(_tensor(node.bias))
        return m
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = _tensor(node.weight)
        nd = w.dim() - 2
        cls = nn.Conv1d if nd == 1 else nn.Conv2d
        pad = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
        pad = pad if isinstance(pad, str) else _ints(pad)
        groups = int(np.asarray(node.groups).reshape(-1)[0])
        expand = lambda v: v * nd if len(v) == 1 else v  # noqa: E731
        conv = cls(w.shape[1] * groups, w.shape[0], kernel_size=tuple(w.shape[2:]), stride=expand(_ints(node.stride)),
                   padding=pad if isinstance(pad, str) else expand(pad), dilation=expand(_ints(node.dilation)),
                   groups=groups, bias=True)
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(_tensor(node.bias) if node.bias is not None else torch.zeros(w.shape[0]))
        return conv
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        k, s, p = [v * 2 if len(v) == 1 else v for v in (_ints(node.kernel_size), _ints(node.stride),
                                                          _ints(node.padding))]
        return SumPool2d(k, s, p) if isinstance(node, nir.SumPool2d) else nn.AvgPool2d(k, s, p)
    if isinstance(node, nir.Flatten):
        start, end = int(node.start_dim), int(node.end_dim)
        # NIR dims exclude the batch; torch's include it
        return nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)
    if isinstance(node, nir.Scale):
        return Scale(_tensor(node.scale))
    raise ValueError(f"from_nir: node '{name}' has type {type(node).__name__}, which fastspike cannot import; "
                     f"supported: {', '.join(_SUPPORTED)} (plus Input/Output).")


def _diagnose_file(path: str) -> Optional[str]:
    """Why nir.read failed on ``path``, naming the node, when one node's parameters are at fault."""
    import h5py

    nir = nir_module()
    from nir.serialization import hdf2dict

    try:
        with h5py.File(path, "r") as f:
            data = hdf2dict(f["node"])
    except Exception:
        return None
    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        return None
    for key, d in nodes.items():
        if not isinstance(d, dict):
            continue
        kind = d.get("type")
        kind = kind.decode("utf8", "replace") if isinstance(kind, bytes) else str(kind)
        try:
            check_node(key, kind, d)
        except (TypeError, ValueError) as e:
            return str(e)
        try:
            nir.dict2NIRNode(dict(d))
        except Exception as e:
            return f"from_nir: node {key!r} ({kind}) is malformed: {type(e).__name__}: {e}"
    return None


def _read(path):
    nir = nir_module()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"from_nir: no such NIR file: {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"from_nir: {path!r} is not a regular file.")
    try:
        # NIR's own type inference is skipped (it rejects graphs of older writers); the dry run in from_nir
        # checks the shapes between nodes instead
        return nir.read(path, type_check=False)
    except Exception as e:
        msg = str(e)
        if "Unknown unit type" in msg:
            raise ValueError(f"from_nir: {path!r} contains a node of unsupported type ({msg}).") from e
        detail = _diagnose_file(path)
        if detail is not None:
            raise ValueError(f"from_nir: cannot read {path!r}: {detail.removeprefix('from_nir: ')}") from e
        raise ValueError(f"from_nir: cannot read {path!r} as a NIR graph: {type(e).__name__}: {msg}") from e


def _input_shape(node) -> Optional[Tuple[int, ...]]:
    t = getattr(node, "input_type", None)
    shape = t.get("input") if isinstance(t, dict) else t
    if shape is None:
        return None
    try:
        a = np.atleast_1d(np.asarray(shape, dtype=np.float64))
    except (TypeError, ValueError):
        raise TypeError(f"from_nir: the Input node's shape must be integers, but got {shape!r}.") from None
    if a.ndim != 1 or not np.all(np.isfinite(a)) or np.any(a != np.round(a)) or np.any(a < 0):
        raise ValueError(f"from_nir: the Input node's shape must be non-negative integers, but got {shape!r}.")
    return tuple(int(v) for v in a)


def _dry_run(module: GraphModule, shape: Optional[Tuple[int, ...]]) -> None:
    """Run ``module`` once on zeros of [1, *shape]: a shape mismatch between nodes fails here, named.

    Some exporters (Norse 1.1) write the Input shape with the batch dimension; when [1, *shape] fails and
    ``shape`` itself runs, the graph is accepted."""
    if shape is None or math.prod(shape) > DRY_RUN_MAX_ELEMENTS:
        return
    try:
        with torch.no_grad():
            try:
                module.check_run(torch.zeros(1, *shape))
            except ValueError as first:
                module.reset()
                if len(shape) < 2:
                    raise
                try:
                    module.check_run(torch.zeros(*shape))
                except ValueError:
                    raise first from None
    finally:
        module.reset()


def from_nir(graph_or_path, dt: float = 1e-3, step_mode: str = "s") -> GraphModule:
    """Build a fastspike :class:`GraphModule` from a ``nir.NIRGraph`` or a NIR HDF5 file.

    dt: seconds per step, inverting the mapping of ``fastspike.export.nir`` (use the dt of the export).
    Every node's input is the sum of the outputs of its source nodes. Every parameter is checked first
    (finite, right rank and length, integers in range); then the graph runs once on a zero sample of its
    Input shape, so shape mismatches between nodes are reported here, naming the node. Cycles (recurrent
    graphs), nested subgraphs, several Input nodes and node types fastspike cannot represent raise
    ValueError naming the node; non-string node names and non-numeric parameters raise TypeError.
    """
    nir = nir_module()
    if isinstance(dt, bool) or not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number of seconds per step, but got {dt!r}.")
    if step_mode not in ("s", "m"):
        raise ValueError(f"step_mode must be 's' or 'm', but got {step_mode!r}.")
    graph = _read(graph_or_path) if isinstance(graph_or_path, (str, os.PathLike)) else graph_or_path
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir: expected a nir.NIRGraph or a path, but got {type(graph).__name__}.")
    check_names(graph.nodes, graph.edges)
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"from_nir: the graph must have exactly one Input and one Output node, but has inputs "
                         f"{inputs} and outputs {outputs}.")
    srcs: Dict[str, List[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        srcs[b].append(a)
    modules = {}
    for k, v in graph.nodes.items():
        if k in inputs or k in outputs:
            continue
        if isinstance(v, nir.NIRGraph):
            raise ValueError(f"from_nir: node '{k}' is a nested NIRGraph (e.g. a recurrent subgraph); fastspike "
                             "imports flat feed-forward graphs only.")
        if not srcs[k]:
            raise ValueError(f"from_nir: node '{k}' has no incoming edge.")
        check_node(k, type(v).__name__, v)
        modules[k] = _module_from_nir(k, v, float(dt))
    # topological order (Kahn); a cycle is an error
    order: List[str] = []
    done = {inputs[0]}
    pending = list(modules)
    while pending:
        ready = [k for k in pending if all(s in done for s in srcs[k])]
        if not ready:
            raise ValueError(f"from_nir: nodes {sorted(pending)} form a cycle or depend on one (recurrent "
                             "connections are not supported).")
        for k in ready:
            order.append(k)
            done.add(k)
            pending.remove(k)
    out_srcs = srcs[outputs[0]]
    if not out_srcs:
        raise ValueError(f"from_nir: the Output node '{outputs[0]}' has no incoming edge.")
    module = GraphModule(modules, [(k, srcs[k]) for k in order], inputs[0], out_srcs, step_mode="s")
    _dry_run(module, _input_shape(graph.nodes[inputs[0]]))
    module.step_mode = step_mode
    return module


def correct_norse_tau(graph, dt: float):
    """Undo Norse 1.1's NIR export convention for time constants (norse issue #411).

    Norse writes ``tau = dt / tau_mem_inv`` (= dt * tau) for LIF and CubaLIF nodes instead of ``tau``; this
    returns a copy of ``graph`` with every LIF ``tau`` and CubaLIF ``tau_mem``/``tau_syn`` divided by ``dt``.
    Use it only on graphs written by Norse's exporter.
    """
    nir = nir_module()
    g = copy.deepcopy(graph)
    for node in g.nodes.values():
        if isinstance(node, nir.LIF):
            node.tau = np.asarray(node.tau, dtype=np.float64) / dt
        elif isinstance(node, nir.CubaLIF):
            node.tau_mem = np.asarray(node.tau_mem, dtype=np.float64) / dt
            node.tau_syn = np.asarray(node.tau_syn, dtype=np.float64) / dt
    return g
