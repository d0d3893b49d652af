r"""Export to and import from NIR, the Neuromorphic Intermediate Representation (PyPI ``nir``).

NIR describes neurons as ODEs in continuous time; fastspike's neurons are discrete-time maps, one step
per call. The two are tied by the forward-Euler step of length ``dt`` (seconds per fastspike step):

    v[t] = v[t-1] + (dt / tau) * (v_leak - v[t-1] + r * I[t])          (NIR LI/LIF)
    v[t] = v[t-1] + dt * r * I[t]                                       (NIR IF)

which gives, for a fastspike neuron with time constant ``tau_fs`` (in steps) and reset value ``V_r``:

==================================  ==============  ========  ===========================  ==========
fastspike                           NIR node        tau       r                            v_leak
==================================  ==============  ========  ===========================  ==========
IFNode                              IF              -         1 / dt                       -
LIFNode(decay_input=True)           LIF             tau_fs*dt 1                            V_r (hard), 0 (soft)
LIFNode(decay_input=False)          LIF             tau_fs*dt tau_fs                       V_r (hard), 0 (soft)
ParametricLIFNode                   LIF             as LIF with tau_fs = 1 / sigmoid(w)
CubaLIFNode(tau_syn, tau_mem, ...)  CubaLIF         tau_syn*dt, tau_mem*dt; r, w_in, v_leak as is
==================================  ==============  ========  ===========================  ==========

``v_threshold`` is copied; ``v_reset`` is V_r for a hard reset. NIR 1.0 has no soft (subtractive) reset:
fastspike writes ``v_reset = 0`` plus the node metadata ``{"reset": "subtract"}`` and reads that marker
back, so fastspike -> NIR -> fastspike is exact; other readers ignore the metadata and reset to zero.
NIR fires when ``v > v_threshold``, fastspike when ``v >= v_threshold``: the two differ only when the
membrane lands exactly on the threshold.

Import (:func:`from_nir`) inverts the table with the same ``dt``: IF needs ``r * dt`` to be 1 (other
gains are folded into the threshold when r is uniform, see ``from_nir``), LIF gives
``tau_fs = tau / dt``, ``decay_input = (r == 1)`` or ``(r == tau_fs)`` otherwise (any other ``r``
raises), and ``v_leak`` must equal the reset value. Layers: Affine/Linear -> nn.Linear, Conv1d/Conv2d ->
nn.Conv1d/2d, AvgPool2d -> nn.AvgPool2d, SumPool2d -> :class:`SumPool2d`, Flatten -> nn.Flatten,
Scale -> :class:`Scale`. The result is a :class:`GraphModule` that sums the inputs of every node.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from ._graph import TracedGraph, neuron_kind, trace
from ._modules import CubaLIFNode, GraphModule, Scale, SumPool2d

__all__ = ["to_nir", "from_nir", "correct_norse_tau"]

SOFT_RESET_KEY = "reset"
SOFT_RESET_VALUE = "subtract"


def _nir():
    try:
        import nir
    except ImportError as e:  # pragma: no cover - nir is a declared dependency of the exporter
        raise ImportError("fastspike.export NIR support needs the 'nir' package: pip install nir") from e
    return nir


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().to(torch.float32).numpy().copy()
    return np.asarray(t, dtype=np.float32)


def _pair(v, n=2):
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v)
    return (int(v),) * n


def _conv_padding(m: nn.Module, name: str):
    n = len(m.kernel_size)
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0,) * n
        pads = []
        for k, d in zip(m.kernel_size, m.dilation):
            total = d * (k - 1)
            if total % 2:
                raise ValueError(f"to_nir: layer '{name}' ({type(m).__name__}) uses padding='same' with an even "
                                 "kernel, which pads asymmetrically; NIR needs symmetric padding.")
            pads.append(total // 2)
        return tuple(pads)
    return tuple(int(p) for p in m.padding)


def _flatten_dims(in_shape, out_shape, name):
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    if in_shape == out_shape:
        return 0, 0
    s = 0
    while s < min(len(in_shape), len(out_shape)) and in_shape[s] == out_shape[s]:
        s += 1
    k = len(in_shape) - len(out_shape) + 1
    if k < 1 or math.prod(in_shape[s:s + k]) != out_shape[s] or in_shape[s + k:] != out_shape[s + 1:]:
        raise ValueError(f"to_nir: node '{name}' reshapes {in_shape} to {out_shape}, which is not a flatten.")
    return s, s + k - 1


def _full(shape, value):
    return np.full(tuple(shape), float(value), dtype=np.float32)


def _neuron_to_nir(m, kind, shape, dt, name):
    nir = _nir()
    meta = {}
    soft = getattr(m, "v_reset", 0.0) is None
    if soft:
        meta[SOFT_RESET_KEY] = SOFT_RESET_VALUE
    thr = m.v_threshold
    if kind == "CubaLIF":
        vr = None if soft else _np(m.v_reset)
        bc = lambda t: np.broadcast_to(_np(t), shape).astype(np.float32).copy()  # noqa: E731
        return nir.CubaLIF(tau_syn=bc(m.tau_syn) * dt, tau_mem=bc(m.tau_mem) * dt, r=bc(m.r), v_leak=bc(m.v_leak),
                           v_threshold=bc(m.v_threshold), v_reset=_full(shape, 0.0) if soft else bc(vr),
                           w_in=bc(m.w_in), metadata=meta)
    vr = 0.0 if soft else m.v_reset
    if kind == "IF":
        return nir.IF(r=_full(shape, 1.0 / dt), v_threshold=_full(shape, thr), v_reset=_full(shape, vr), metadata=meta)
    if kind in ("LIF", "PLIF"):
        if kind == "PLIF":
            tau = float(1.0 / torch.sigmoid(m.w.detach().double()))
        else:
            tau = float(m.tau)
        r = 1.0 if m.decay_input else tau
        meta["tau_steps"] = tau  # exact fastspike value, so that fastspike -> NIR -> fastspike is bit-exact
        return nir.LIF(tau=_full(shape, tau * dt), r=_full(shape, r), v_leak=_full(shape, vr),
                       v_threshold=_full(shape, thr), v_reset=_full(shape, vr), metadata=meta)
    raise ValueError(f"to_nir: neuron '{name}' ({type(m).__name__}) has no NIR equivalent; supported neurons are "
                     "IFNode, LIFNode, ParametricLIFNode and CubaLIFNode.")


def _module_to_nir(node, dt):
    nir = _nir()
    m, name = node.module, node.name
    if node.kind == "flatten":
        s, e = _flatten_dims(node.in_shape, node.out_shape, name)
        return nir.Flatten(input_type={"input": np.array(node.in_shape)}, start_dim=s, end_dim=e)
    kind = neuron_kind(m)
    if kind is not None:
        return _neuron_to_nir(m, kind, node.out_shape, dt, name)
    if isinstance(m, nn.Linear):
        if m.bias is None:
            return nir.Linear(weight=_np(m.weight))
        return nir.Affine(weight=_np(m.weight), bias=_np(m.bias))
    if isinstance(m, (nn.Conv1d, nn.Conv2d)) and not isinstance(m, nn.Conv3d):
        if m.padding_mode != "zeros":
            raise ValueError(f"to_nir: layer '{name}' uses padding_mode='{m.padding_mode}'; NIR convolutions pad "
                             "with zeros.")
        bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, dtype=np.float32)
        pad = _conv_padding(m, name)
        if isinstance(m, nn.Conv1d):
            return nir.Conv1d(input_shape=int(node.in_shape[-1]), weight=_np(m.weight), stride=int(m.stride[0]),
                              padding=int(pad[0]), dilation=int(m.dilation[0]), groups=int(m.groups), bias=bias)
        return nir.Conv2d(input_shape=tuple(int(v) for v in node.in_shape[-2:]), weight=_np(m.weight),
                          stride=tuple(m.stride), padding=pad, dilation=tuple(m.dilation), groups=int(m.groups),
                          bias=bias)
    if isinstance(m, SumPool2d):
        stride = m.stride if m.stride is not None else m.kernel_size
        return nir.SumPool2d(kernel_size=np.array(_pair(m.kernel_size)), stride=np.array(_pair(stride)),
                             padding=np.array(_pair(m.padding)))
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode or m.divisor_override is not None or (not m.count_include_pad and _pair(m.padding) != (0, 0)):
            raise ValueError(f"to_nir: layer '{name}' (AvgPool2d) uses ceil_mode, divisor_override or "
                             "count_include_pad=False with padding; NIR's AvgPool2d has none of these.")
        stride = m.stride if m.stride is not None else m.kernel_size
        return nir.AvgPool2d(kernel_size=np.array(_pair(m.kernel_size)), stride=np.array(_pair(stride)),
                             padding=np.array(_pair(m.padding)))
    if isinstance(m, nn.LPPool2d) and float(m.norm_type) == 1.0:
        stride = m.stride if m.stride is not None else m.kernel_size
        return nir.SumPool2d(kernel_size=np.array(_pair(m.kernel_size)), stride=np.array(_pair(stride)),
                             padding=np.array((0, 0)))
    if isinstance(m, nn.Flatten):
        s, e = _flatten_dims(node.in_shape, node.out_shape, name)
        return nir.Flatten(input_type={"input": np.array(node.in_shape)}, start_dim=s, end_dim=e)
    if isinstance(m, Scale):
        return nir.Scale(scale=np.broadcast_to(_np(m.scale), node.out_shape).astype(np.float32).copy())
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        raise ValueError(f"to_nir: layer '{name}' is a BatchNorm, which NIR cannot represent; fold it into the "
                         "preceding convolution first: model = fastspike.export.fold_batchnorm(model).")
    raise ValueError(f"to_nir: layer '{name}' ({type(m).__name__}) has no NIR equivalent; supported are Linear, "
                     "Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, Dropout/Identity (skipped) and the "
                     "IF/LIF/ParametricLIF/CubaLIF neurons.")


def graph_to_nir(graph: TracedGraph, dt: float):
    nir = _nir()
    nodes: Dict[str, object] = {"input": nir.Input(input_type=np.array(graph.input_shape))}
    edges = []
    for node in graph.nodes.values():
        if node.name in ("input", "output"):
            raise ValueError(f"to_nir: a module is named '{node.name}', which NIR reserves for the graph's ends.")
        nodes[node.name] = _module_to_nir(node, dt)
        edges.extend((src, node.name) for src in node.inputs)
    out_shape = graph.nodes[graph.outputs[0]].out_shape if graph.outputs[0] != "input" else graph.input_shape
    nodes["output"] = nir.Output(output_type=np.array(out_shape))
    edges.extend((src, "output") for src in graph.outputs)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"source": "fastspike", "dt": float(dt)},
                        type_check=False)


def to_nir(model: nn.Module, sample_input: torch.Tensor, dt: float = 1e-3, step_mode: Optional[str] = None,
           path: Optional[Union[str, os.PathLike]] = None):
    """Export ``model`` to a ``nir.NIRGraph`` (and write it to ``path`` with ``nir.write`` when given).

    sample_input: one batch, [N, *features] for single-step models or [T, N, *features] for multi-step
    models (``step_mode`` defaults to 'm' when any module of the model is in multi-step mode); the model is
    traced on a deep copy, so its state is untouched. dt: seconds per step, used for the discrete-time to ODE
    mapping in this module's docstring. Sequential and residual (sum) structures, SeqToANNContainer and
    MultiStepContainer are supported; an unsupported layer raises ValueError naming it.
    """
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"dt must be a positive number of seconds per step, but got {dt!r}.")
    graph = graph_to_nir(trace(model, sample_input, step_mode), float(dt))
    if path is not None:
        _nir().write(path, graph)
    return graph


# ------------------------------------------------------------------------------------------------
# import
# ------------------------------------------------------------------------------------------------
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
    v = meta.get(SOFT_RESET_KEY)
    if isinstance(v, bytes):
        v = v.decode()
    return v == SOFT_RESET_VALUE


def _neuron_from_nir(name, node, dt):
    nir = _nir()
    from fastspike import neuron as fsn

    soft = _is_soft(node)
    thr = _uniform(name, "v_threshold", node.v_threshold)
    vr = None if soft else _uniform(name, "v_reset", node.v_reset)
    if isinstance(node, nir.IF):
        gain = _uniform(name, "r", node.r) * dt
        if gain <= 0:
            raise ValueError(f"from_nir: IF node '{name}' has r * dt = {gain:g}; it must be positive.")
        if not math.isclose(gain, 1.0, rel_tol=1e-6):
            # v' = v + gain * I with threshold thr and reset vr is the same spike train as
            # u = v / gain: u' = u + I with threshold thr / gain and reset vr / gain.
            thr = thr / gain
            vr = None if vr is None else vr / gain
        return fsn.IFNode(v_threshold=thr, v_reset=vr, step_mode="s")
    if isinstance(node, nir.LIF):
        tau = _uniform(name, "tau", node.tau) / dt
        exact = (getattr(node, "metadata", None) or {}).get("tau_steps")
        if exact is not None and math.isclose(float(exact), tau, rel_tol=1e-5):
            tau = float(exact)
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
        return fsn.LIFNode(tau=tau, decay_input=True, v_threshold=thr / r,
                           v_reset=None if vr is None else vr / r, step_mode="s")
    if isinstance(node, nir.CubaLIF):
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        return CubaLIFNode(tau_syn=t(node.tau_syn) / dt, tau_mem=t(node.tau_mem) / dt, r=t(node.r),
                           w_in=t(node.w_in), v_leak=t(node.v_leak), v_threshold=t(node.v_threshold),
                           v_reset=None if soft else t(node.v_reset))
    raise AssertionError


def _module_from_nir(name, node, dt):
    nir = _nir()
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    if isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
        return _neuron_from_nir(name, node, dt)
    if isinstance(node, nir.Affine):
        w = t(node.weight)
        m = nn.Linear(w.shape[1], w.shape[0], bias=True)
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.copy_(t(node.bias))
        return m
    if isinstance(node, nir.Linear):
        w = t(node.weight)
        m = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            m.weight.copy_(w)
        return m
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = t(node.weight)
        cls = nn.Conv1d if isinstance(node, nir.Conv1d) else nn.Conv2d
        pad = node.padding
        if isinstance(pad, np.ndarray):
            pad = tuple(int(p) for p in np.atleast_1d(pad))
        if isinstance(pad, bytes):
            pad = pad.decode()
        conv = cls(w.shape[1] * int(node.groups), w.shape[0], kernel_size=tuple(w.shape[2:]),
                   stride=tuple(int(s) for s in np.atleast_1d(node.stride)), padding=pad,
                   dilation=tuple(int(d) for d in np.atleast_1d(node.dilation)), groups=int(node.groups), bias=True)
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(t(node.bias) if node.bias is not None else torch.zeros(w.shape[0]))
        return conv
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        k = tuple(int(v) for v in np.atleast_1d(node.kernel_size))
        s = tuple(int(v) for v in np.atleast_1d(node.stride))
        p = tuple(int(v) for v in np.atleast_1d(node.padding))
        k, s, p = [x * 2 if len(x) == 1 else x for x in (k, s, p)]
        if isinstance(node, nir.SumPool2d):
            return SumPool2d(k, s, p)
        return nn.AvgPool2d(k, s, p)
    if isinstance(node, nir.Flatten):
        start, end = int(node.start_dim), int(node.end_dim)
        # NIR dims exclude the batch; torch's include it
        return nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)
    if isinstance(node, nir.Scale):
        return Scale(t(node.scale))
    raise ValueError(f"from_nir: node '{name}' has type {type(node).__name__}, which fastspike cannot import; "
                     "supported: Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, IF, LIF, "
                     "CubaLIF (plus Input/Output).")


def _read(path):
    nir = _nir()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"from_nir: no such NIR file: {path!r}")
    try:
        return nir.read(path)
    except Exception as e:
        msg = str(e)
        if "Unknown unit type" in msg:
            raise ValueError(f"from_nir: {path!r} contains a node of unsupported type ({msg}).") from e
        raise ValueError(f"from_nir: cannot read {path!r} as a NIR graph: {type(e).__name__}: {msg}") from e


def from_nir(graph_or_path, dt: float = 1e-3, step_mode: str = "s") -> GraphModule:
    """Build a fastspike :class:`GraphModule` from a ``nir.NIRGraph`` or a NIR HDF5 file.

    dt: seconds per step, inverting the mapping in this module's docstring (use the dt of the export).
    Every node's input is the sum of the outputs of its source nodes. Cycles (recurrent graphs), nested
    subgraphs, several Input nodes and node types fastspike cannot represent raise ValueError naming the node.
    """
    nir = _nir()
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"dt must be a positive number of seconds per step, but got {dt!r}.")
    if isinstance(graph_or_path, (str, os.PathLike)):
        graph = _read(graph_or_path)
    else:
        graph = graph_or_path
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir: expected a nir.NIRGraph or a path, but got {type(graph).__name__}.")
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"from_nir: the graph must have exactly one Input and one Output node, but has inputs "
                         f"{inputs} and outputs {outputs}.")
    for a, b in graph.edges:
        for k in (a, b):
            if k not in graph.nodes:
                raise ValueError(f"from_nir: edge ({a!r}, {b!r}) refers to node {k!r}, which the graph does not have.")
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
        modules[k] = _module_from_nir(k, v, float(dt))
    # topological order (Kahn); a cycle is an error
    order: List[str] = []
    done = {inputs[0]}
    pending = [k for k in modules]
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
    return GraphModule(modules, [(k, srcs[k]) for k in order], inputs[0], out_srcs, step_mode=step_mode)


def correct_norse_tau(graph, dt: float):
    """Undo Norse 1.1's NIR export convention for time constants (norse issue #411).

    Norse writes ``tau = dt / tau_mem_inv`` (= dt * tau) for LIF and CubaLIF nodes instead of ``tau``; this
    returns a copy of ``graph`` with every LIF ``tau`` and CubaLIF ``tau_mem``/``tau_syn`` divided by ``dt``.
    Use it only on graphs written by Norse's exporter.
    """
    import copy as _copy

    nir = _nir()
    g = _copy.deepcopy(graph)
    for node in g.nodes.values():
        if isinstance(node, nir.LIF):
            node.tau = np.asarray(node.tau, dtype=np.float64) / dt
        elif isinstance(node, nir.CubaLIF):
            node.tau_mem = np.asarray(node.tau_mem, dtype=np.float64) / dt
            node.tau_syn = np.asarray(node.tau_syn, dtype=np.float64) / dt
    return g
