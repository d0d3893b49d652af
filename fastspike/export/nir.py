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
raises), and ``v_leak`` must equal the reset value; every parameter is validated first (``_nir_checks``)
and the imported graph runs once on a zero sample (``_nir_import``). Layers: Affine/Linear -> nn.Linear,
Conv1d/Conv2d -> nn.Conv1d/2d, AvgPool2d -> nn.AvgPool2d, SumPool2d -> :class:`SumPool2d`, Flatten -> nn.Flatten,
Scale -> :class:`Scale`. The result is a :class:`GraphModule` that sums the inputs of every node.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from ._graph import TracedGraph, neuron_kind, trace
from ._modules import Scale, SumPool2d
from ._nir_import import SOFT_RESET_KEY, SOFT_RESET_VALUE, correct_norse_tau, from_nir
from ._util import atomic_write, nir_module, pair, to_numpy

__all__ = ["to_nir", "from_nir", "correct_norse_tau"]

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
    nir = nir_module()
    meta = {}
    soft = getattr(m, "v_reset", 0.0) is None
    if soft:
        meta[SOFT_RESET_KEY] = SOFT_RESET_VALUE
    thr = m.v_threshold
    if kind == "CubaLIF":
        vr = None if soft else to_numpy(m.v_reset)
        bc = lambda t: np.broadcast_to(to_numpy(t), shape).astype(np.float32).copy()  # noqa: E731
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
    nir = nir_module()
    m, name = node.module, node.name
    if node.kind == "flatten":
        s, e = _flatten_dims(node.in_shape, node.out_shape, name)
        return nir.Flatten(input_type={"input": np.array(node.in_shape)}, start_dim=s, end_dim=e)
    kind = neuron_kind(m)
    if kind is not None:
        return _neuron_to_nir(m, kind, node.out_shape, dt, name)
    if isinstance(m, nn.Linear):
        if m.bias is None:
            return nir.Linear(weight=to_numpy(m.weight))
        return nir.Affine(weight=to_numpy(m.weight), bias=to_numpy(m.bias))
    if isinstance(m, (nn.Conv1d, nn.Conv2d)) and not isinstance(m, nn.Conv3d):
        if m.padding_mode != "zeros":
            raise ValueError(f"to_nir: layer '{name}' uses padding_mode='{m.padding_mode}'; NIR convolutions pad "
                             "with zeros.")
        bias = to_numpy(m.bias) if m.bias is not None else np.zeros(m.out_channels, dtype=np.float32)
        pad = _conv_padding(m, name)
        if isinstance(m, nn.Conv1d):
            return nir.Conv1d(input_shape=int(node.in_shape[-1]), weight=to_numpy(m.weight), stride=int(m.stride[0]),
                              padding=int(pad[0]), dilation=int(m.dilation[0]), groups=int(m.groups), bias=bias)
        return nir.Conv2d(input_shape=tuple(int(v) for v in node.in_shape[-2:]), weight=to_numpy(m.weight),
                          stride=tuple(m.stride), padding=pad, dilation=tuple(m.dilation), groups=int(m.groups),
                          bias=bias)
    if isinstance(m, SumPool2d):
        stride = m.stride if m.stride is not None else m.kernel_size
        return nir.SumPool2d(kernel_size=np.array(pair(m.kernel_size)), stride=np.array(pair(stride)),
                             padding=np.array(pair(m.padding)))
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode or m.divisor_override is not None or (not m.count_include_pad and pair(m.padding) != (0, 0)):
            raise ValueError(f"to_nir: layer '{name}' (AvgPool2d) uses ceil_mode, divisor_override or "
                             "count_include_pad=False with padding; NIR's AvgPool2d has none of these.")
        stride = m.stride if m.stride is not None else m.kernel_size
        return nir.AvgPool2d(kernel_size=np.array(pair(m.kernel_size)), stride=np.array(pair(stride)),
                             padding=np.array(pair(m.padding)))
    if isinstance(m, nn.LPPool2d) and float(m.norm_type) == 1.0:
        stride = m.stride if m.stride is not None else m.kernel_size
        return nir.SumPool2d(kernel_size=np.array(pair(m.kernel_size)), stride=np.array(pair(stride)),
                             padding=np.array((0, 0)))
    if isinstance(m, nn.Flatten):
        s, e = _flatten_dims(node.in_shape, node.out_shape, name)
        return nir.Flatten(input_type={"input": np.array(node.in_shape)}, start_dim=s, end_dim=e)
    if isinstance(m, Scale):
        return nir.Scale(scale=np.broadcast_to(to_numpy(m.scale), node.out_shape).astype(np.float32).copy())
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        raise ValueError(f"to_nir: layer '{name}' is a BatchNorm, which NIR cannot represent; fold it into the "
                         "preceding convolution first: model = fastspike.export.fold_batchnorm(model).")
    raise ValueError(f"to_nir: layer '{name}' ({type(m).__name__}) has no NIR equivalent; supported are Linear, "
                     "Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, Dropout/Identity (skipped) and the "
                     "IF/LIF/ParametricLIF/CubaLIF neurons.")


def graph_to_nir(graph: TracedGraph, dt: float):
    nir = nir_module()
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
        atomic_write(path, lambda tmp: nir_module().write(tmp, graph))
    return graph
