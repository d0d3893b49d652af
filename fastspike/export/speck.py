r"""Speck / DYNAP-CNN export: hardware-constraint check, conversion, quantization, per-core JSON configuration
and a bit-accurate (time-stepped) integer IAF simulator. samna, SynSense's runtime, is not used or imitated:
the JSON is a description of what to program, not a samna object.

A chip core runs Conv2d -> IAF neurons -> optional sum pooling per destination. Limits checked (published by
SynSense in the sinabs-dynapcnn documentation and sources; see docs/export.md):

========================  =====================================================================
cores                     9 (a model needs one core per synapse layer)
kernel                    square, at most 16 x 16 (Linear layers become a conv with kernel = input H x W)
stride                    1, 2, 4 or 8 per axis
padding                   0 .. 7 per axis
pooling                   sum pooling 1, 2 or 4 (square, stride = kernel, no padding)
channels                  at most 1024 in and out
input                     at most 128 x 128 per core
neuron map (output)       at most 64 x 64 per core
kernel memory             c * 2^(ceil(log2(kx*ky)) + ceil(log2 f)) entries; per core 16, 16, 16, 32, 32,
                          64, 64, 16, 16 Ki
neuron memory             f * 2^(ceil(log2 fy) + ceil(log2 fx)) entries; per core 64, 64, 64, 32, 32,
                          16, 16, 16, 16 Ki (layers are assigned to cores by bipartite matching)
fan-out                   at most 2 destinations per core
weights / bias            8-bit signed integers
threshold / state         16-bit signed integers (lower threshold -2^15)
neurons                   non-leaky IAF (IFNode) with reset to 0 or by subtraction; no BatchNorm unless folded
========================  =====================================================================

Conversion (``to_speck``): BatchNorm after a Conv/Linear is folded (``fold_batchnorm``); LIF -> IAF rule:
a ``LIFNode``/``ParametricLIFNode`` becomes an ``IFNode`` with the same threshold and reset, its leak is dropped,
and with ``decay_input=True`` its input gain 1/tau is folded into the preceding layer's weights and bias
(``decay_input=False`` keeps them): the IAF integrates exactly what the LIF charged in each step, without the
decay -- exact for rate codes over short windows, approximate otherwise. AvgPool2d(k) is SumPool(k) with the
1/k^2 folded into the weights of every destination core.

Quantization per core (sinabs' rule): one scale ``s = min(127 / max|W|, 127 / max|b|, 32767 / threshold)``
(with the signed ranges' slightly larger negative side), ``W_q = round(W s)``, ``b_q = round(b s)``,
``threshold_high = round(threshold s)``, ``threshold_low = -32768``.

Simulator (time-stepped, integers): ``v += conv(spikes_in) + b_q``; saturate to [-32768, 32767];
spike where ``v >= threshold_high`` (at most one spike per neuron and step, like ``IFNode``); reset to 0 or
subtract ``threshold_high``; ``v = max(v, threshold_low)``. The chip processes events one by one, so within a
step it can emit a second spike when the step's input exceeds twice the threshold; with at most one spike
per step the time-stepped result is what the chip computes when events of one step are integrated before
the threshold check.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._graph import TracedGraph, model_step_mode, neuron_kind, trace
from ._modules import SumPool2d
from ._transforms import fold_batchnorm, fold_bn_into

__all__ = ["SPECK_LIMITS", "Violation", "SpeckReport", "SpeckCore", "SpeckConfig", "check_speck", "to_speck",
           "simulate"]

KI = 1024
SPECK_LIMITS = {
    "cores": 9,
    "kernel_size": 16,
    "strides": (1, 2, 4, 8),
    "padding": 7,
    "pooling": (1, 2, 4),
    "channels": 1024,
    "input_size": 128,
    "output_size": 64,
    "fan_out": 2,
    "kernel_memory": (16 * KI, 16 * KI, 16 * KI, 32 * KI, 32 * KI, 64 * KI, 64 * KI, 16 * KI, 16 * KI),
    "neuron_memory": (64 * KI, 64 * KI, 64 * KI, 32 * KI, 32 * KI, 16 * KI, 16 * KI, 16 * KI, 16 * KI),
    "weight_bits": 8,
    "state_bits": 16,
}


@dataclass
class Violation:
    layer: str
    constraint: str
    limit: object
    value: object

    def __str__(self):
        return f"layer '{self.layer}': {self.constraint}: limit {self.limit}, got {self.value}"


@dataclass
class SpeckReport:
    violations: List[Violation] = field(default_factory=list)
    cores: List["SpeckCore"] = field(default_factory=list)
    assignment: Optional[List[int]] = None  # physical core of each logical core

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, layer, constraint, limit, value):
        self.violations.append(Violation(str(layer), constraint, limit, value))

    def __str__(self):
        if self.ok:
            return f"Speck check passed: {len(self.cores)} core(s), assignment {self.assignment}"
        return "Speck check failed:\n" + "\n".join(f"  - {v}" for v in self.violations)


@dataclass
class SpeckCore:
    name: str  # synapse layer name
    neuron: str
    in_shape: Tuple[int, int, int]
    weight: torch.Tensor  # float [f, c, kh, kw] after folding
    bias: Optional[torch.Tensor]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    groups: int
    threshold: float
    reset: str  # 'zero' or 'subtract'
    neuron_shape: Tuple[int, int, int]
    sources: List[Tuple[int, int]] = field(default_factory=list)  # (core index or -1 = input, sum-pool size)
    destinations: List[Tuple[Optional[int], int]] = field(default_factory=list)  # (core or None=output, pool)
    # quantized
    weight_q: Optional[torch.Tensor] = None
    bias_q: Optional[torch.Tensor] = None
    threshold_q: int = 0
    scale: float = 1.0

    @property
    def kernel_memory(self) -> int:
        f, c, kh, kw = self.weight.shape
        c = c * self.groups
        return int(c * 2 ** (math.ceil(math.log2(kh * kw)) + math.ceil(math.log2(f))))

    @property
    def neuron_memory(self) -> int:
        f, fy, fx = self.neuron_shape
        return int(f * 2 ** (math.ceil(math.log2(fy)) + math.ceil(math.log2(fx))))


def _pair(v):
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _signed_scale(t: torch.Tensor, bits: int) -> float:
    """Largest factor that maps t into the signed `bits`-bit range (sinabs' determine_discretization_scale)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    tmin, tmax = float(t.min()), float(t.max())
    if tmin == 0.0 and tmax == 0.0:
        return math.inf
    if abs(tmin) <= abs(tmax) * abs(lo / hi):
        return abs(hi / tmax)
    return abs(lo / tmin)


def _quantize(core: SpeckCore, report: SpeckReport, quantized: bool):
    w = core.weight.detach().double()
    b = core.bias.detach().double() if core.bias is not None else None
    if quantized:
        scale = 1.0
        for name, t, bits in (("weight", w, 8), ("bias", b, 8)):
            if t is None:
                continue
            if not bool((t == t.round()).all()):
                report.add(core.name, f"{name}s must be integers (quantized=True)", "integers", "non-integer values")
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            if float(t.min()) < lo or float(t.max()) > hi:
                report.add(core.name, f"{bits}-bit {name}s", f"[{lo}, {hi}]",
                           f"[{float(t.min()):g}, {float(t.max()):g}]")
        if not (1 <= core.threshold <= 2 ** 15 - 1) or core.threshold != round(core.threshold):
            report.add(core.neuron, "16-bit threshold", f"integer in [1, {2 ** 15 - 1}]", core.threshold)
    else:
        if core.threshold <= 0:
            report.add(core.neuron, "positive threshold", "> 0", core.threshold)
            return
        scale = min(_signed_scale(w, 8), _signed_scale(b, 8) if b is not None else math.inf,
                    (2 ** 15 - 1) / core.threshold)
        if not math.isfinite(scale):
            report.add(core.name, "non-zero weights", "max|W| > 0", 0.0)
            return
    core.scale = scale
    core.weight_q = torch.round(w * scale).clamp(-128, 127).to(torch.int64)
    core.bias_q = torch.round(b * scale).clamp(-128, 127).to(torch.int64) if b is not None else None
    core.threshold_q = int(min(round(core.threshold * scale), 2 ** 15 - 1))
    if not quantized and int(core.weight_q.abs().max()) == 0:
        report.add(core.name, "8-bit weights with a 16-bit threshold (all weights round to 0)",
                   f"threshold/max|W| <= {(2 ** 15 - 1) * 2:g}", core.threshold / float(w.abs().max()))


def _convert_neuron(m, kind, name, report, convert_lif):
    """(threshold, reset, input_gain) of the IAF this neuron becomes; violations recorded in report."""
    if kind == "IF":
        gain = 1.0
    elif kind in ("LIF", "PLIF"):
        if not convert_lif:
            report.add(name, "non-leaky IAF neurons only", "IFNode", f"{type(m).__name__} (leaky)")
        tau = float(m.tau) if kind == "LIF" else float(1.0 / torch.sigmoid(m.w.detach().double()))
        gain = 1.0 / tau if m.decay_input else 1.0
    else:
        report.add(name, "non-leaky IAF neurons only", "IFNode", type(m).__name__)
        return 1.0, "zero", 1.0
    if m.v_reset is None:
        reset = "subtract"
    else:
        reset = "zero"
        if m.v_reset != 0.0:
            report.add(name, "reset value", "0 (return to zero) or None (subtract)", m.v_reset)
    return float(m.v_threshold), reset, gain


def _build(graph: TracedGraph, report: SpeckReport, convert_lif: bool, fold_bn: bool) -> List[SpeckCore]:
    nodes = list(graph.nodes.values())
    byname = {n.name: n for n in nodes}
    consumers: Dict[str, List[str]] = {n.name: [] for n in nodes}
    consumers["input"] = []
    for n in nodes:
        for s in n.inputs:
            consumers[s].append(n.name)
    for o in graph.outputs:
        consumers[o].append("output")

    def mod(n):
        return byname[n].module if n in byname else None

    def is_syn(n):
        return isinstance(mod(n), (nn.Conv2d, nn.Linear))

    def is_pool(n):
        return isinstance(mod(n), (nn.AvgPool2d, SumPool2d, nn.MaxPool2d, nn.LPPool2d))

    def is_flat(n):
        return n in byname and (byname[n].kind == "flatten" or isinstance(mod(n), nn.Flatten))

    cores: List[SpeckCore] = []
    core_of_syn: Dict[str, int] = {}
    core_of_neuron: Dict[str, int] = {}
    for n in nodes:
        m = n.module
        if n.kind == "flatten" or m is None:
            continue
        if is_syn(n.name):
            # synapse -> [BN] -> neuron
            chain = consumers[n.name]
            bn = None
            if len(chain) == 1 and isinstance(mod(chain[0]), nn.modules.batchnorm._BatchNorm):
                bn = chain[0]
                if not fold_bn:
                    report.add(bn, "no BatchNorm unless folded", "folded into the convolution",
                               type(mod(bn)).__name__)
                chain = consumers[bn]
            if len(chain) != 1 or neuron_kind(mod(chain[0])) is None:
                report.add(n.name, "each core is Conv2d -> IAF", "a spiking neuron right after the layer",
                           ", ".join(f"{c} ({type(mod(c)).__name__ if mod(c) is not None else c})" for c in chain)
                           or "nothing")
                continue
            nname = chain[0]
            nm = mod(nname)
            thr, reset, gain = _convert_neuron(nm, neuron_kind(nm), nname, report, convert_lif)
            if isinstance(m, nn.Linear):
                in_shape = tuple(n.in_shape)
                src_shape = _unflattened_shape(n, byname)
                c, h, w_ = src_shape
                weight = m.weight.detach().reshape(m.out_features, c, h, w_)
                stride, padding, dilation, groups = (1, 1), (0, 0), (1, 1), 1
                cin_shape = (c, h, w_)
                neuron_shape = (m.out_features, 1, 1)
            else:
                weight = m.weight.detach()
                if isinstance(m.padding, str) or m.padding_mode != "zeros":
                    report.add(n.name, "numeric zero padding", "int", m.padding)
                    continue
                stride, padding, dilation, groups = _pair(m.stride), _pair(m.padding), _pair(m.dilation), m.groups
                cin_shape = tuple(n.in_shape)
                neuron_shape = tuple(n.out_shape)
            weight = weight.clone().double()
            bias = m.bias.detach().clone().double() if m.bias is not None else None
            if bn is not None:
                tmp = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], weight.shape[2:], groups=groups,
                                bias=True).double()
                with torch.no_grad():
                    tmp.weight.copy_(weight)
                    tmp.bias.copy_(bias if bias is not None else torch.zeros(weight.shape[0]))
                fold_bn_into(tmp, _double_bn(mod(bn)))
                weight, bias = tmp.weight.detach().clone(), tmp.bias.detach().clone()
            weight = weight * gain
            bias = bias * gain if bias is not None else None
            core = SpeckCore(n.name, nname, cin_shape, weight, bias, stride, padding, dilation, groups, thr, reset,
                             neuron_shape)
            core_of_syn[n.name] = len(cores)
            core_of_neuron[nname] = len(cores)
            cores.append(core)
        elif neuron_kind(m) is not None or isinstance(m, nn.modules.batchnorm._BatchNorm):
            if neuron_kind(m) is not None and n.name not in core_of_neuron and \
                    not any(is_syn(s) or isinstance(mod(s), nn.modules.batchnorm._BatchNorm) for s in n.inputs):
                report.add(n.name, "each core is Conv2d -> IAF", "a Conv2d/Linear before the neuron",
                           ", ".join(n.inputs))
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(is_syn(s) for s in n.inputs):
                report.add(n.name, "no BatchNorm unless folded", "directly after a Conv2d/Linear",
                           ", ".join(n.inputs))
        elif is_pool(n.name) or isinstance(m, nn.Flatten):
            pass
        else:
            report.add(n.name, "supported layer", "Conv2d, Linear, Flatten, SumPool2d/AvgPool2d, BatchNorm, IFNode",
                       type(m).__name__)

    # sources and destinations: walk from each neuron through pools/flattens
    def walk(start):
        """[(target synapse name or 'output', total pool, avg)] reached from node `start`."""
        out = []
        stack = [(start, 1, False)]
        while stack:
            cur, pool, avg = stack.pop()
            for c in consumers.get(cur, []):
                if c == "output":
                    out.append(("output", pool, avg))
                elif is_syn(c):
                    out.append((c, pool, avg))
                elif is_pool(c):
                    pm = mod(c)
                    k, s, p = _pair(pm.kernel_size), _pair(pm.stride if pm.stride is not None else pm.kernel_size), \
                        _pair(getattr(pm, "padding", 0))
                    if isinstance(pm, (nn.MaxPool2d, nn.LPPool2d)) and not (
                            isinstance(pm, nn.LPPool2d) and float(pm.norm_type) == 1.0):
                        report.add(c, "sum pooling only", "SumPool2d/AvgPool2d", type(pm).__name__)
                    if k[0] != k[1] or s != k or p != (0, 0):
                        report.add(c, "pooling square, stride = kernel, no padding", "k x k, stride k, padding 0",
                                   f"kernel {k}, stride {s}, padding {p}")
                    is_avg = isinstance(pm, nn.AvgPool2d) and not isinstance(pm, SumPool2d)
                    stack.append((c, pool * k[0], avg or is_avg))
                elif is_flat(c) or isinstance(mod(c), (nn.Identity,)):
                    stack.append((c, pool, avg))
                else:
                    out.append((c, pool, avg))
        return out

    for i, core in enumerate(cores):
        dests = walk(core.neuron)
        seen = []
        for target, pool, avg in dests:
            tgt = core_of_syn.get(target) if target != "output" else None
            if target != "output" and tgt is None:
                continue  # reported elsewhere
            if pool not in SPECK_LIMITS["pooling"]:
                report.add(core.neuron, "pooling 1, 2 or 4", SPECK_LIMITS["pooling"], pool)
            key = (tgt, pool)
            if key not in seen:
                seen.append(key)
            if tgt is not None:
                cores[tgt].sources.append((i, pool))
                if avg:
                    cores[tgt].weight = cores[tgt].weight / (pool * pool)
        core.destinations = seen
        if len(seen) > SPECK_LIMITS["fan_out"]:
            report.add(core.neuron, "fan-out (destinations per core)", SPECK_LIMITS["fan_out"], len(seen))
    for target, pool, avg in walk("input"):
        if target in core_of_syn:
            cores[core_of_syn[target]].sources.append((-1, pool))
            if pool != 1:
                report.add("input", "input pooling before the first core", "1 (use the DVS layer's pooling)", pool)
    return cores


def _double_bn(bn):
    import copy as _copy

    b = _copy.deepcopy(bn)
    return b.double()


def _unflattened_shape(node, byname):
    """(C, H, W) seen by a Linear: the input shape of the Flatten that feeds it, else (F, 1, 1)."""
    src = node.inputs[0] if len(node.inputs) == 1 else None
    while src is not None and src in byname:
        prev = byname[src]
        if prev.kind == "flatten" or isinstance(prev.module, nn.Flatten):
            if len(prev.in_shape) == 3:
                return tuple(int(v) for v in prev.in_shape)
            break
        if isinstance(prev.module, (nn.Identity, nn.Dropout)) and len(prev.inputs) == 1:
            src = prev.inputs[0]
            continue
        break
    return (int(np.prod(node.in_shape)), 1, 1)


def _check_core(core: SpeckCore, report: SpeckReport):
    L = SPECK_LIMITS
    f, c, kh, kw = core.weight.shape
    name = core.name
    if kh != kw:
        report.add(name, "square kernel", "kx == ky", f"{kh}x{kw}")
    if max(kh, kw) > L["kernel_size"]:
        report.add(name, "kernel size", f"<= {L['kernel_size']}", f"{kh}x{kw}")
    for s in core.stride:
        if s not in L["strides"]:
            report.add(name, "stride", L["strides"], core.stride)
            break
    if max(core.padding) > L["padding"]:
        report.add(name, "padding", f"<= {L['padding']}", core.padding)
    if core.dilation != (1, 1):
        report.add(name, "dilation", "1", core.dilation)
    if core.in_shape[0] > L["channels"]:
        report.add(name, "input channels", f"<= {L['channels']}", core.in_shape[0])
    if f > L["channels"]:
        report.add(name, "output channels", f"<= {L['channels']}", f)
    if max(core.in_shape[1:]) > L["input_size"]:
        report.add(name, "input size", f"<= {L['input_size']}x{L['input_size']}",
                   f"{core.in_shape[1]}x{core.in_shape[2]}")
    if max(core.neuron_shape[1:]) > L["output_size"]:
        report.add(core.neuron, "output (neuron map) size", f"<= {L['output_size']}x{L['output_size']}",
                   f"{core.neuron_shape[1]}x{core.neuron_shape[2]}")
    if core.kernel_memory > max(L["kernel_memory"]):
        report.add(name, "kernel memory (entries)", max(L["kernel_memory"]), core.kernel_memory)
    if core.neuron_memory > max(L["neuron_memory"]):
        report.add(core.neuron, "neuron memory (entries)", max(L["neuron_memory"]), core.neuron_memory)


def _assign(cores: List[SpeckCore]) -> Optional[List[int]]:
    """Bipartite matching of logical cores to the 9 physical cores by kernel and neuron memory."""
    km, nm = SPECK_LIMITS["kernel_memory"], SPECK_LIMITS["neuron_memory"]
    fits = [[j for j in range(len(km)) if c.kernel_memory <= km[j] and c.neuron_memory <= nm[j]] for c in cores]
    owner = [-1] * len(km)

    def augment(i, seen):
        for j in fits[i]:
            if j in seen:
                continue
            seen.add(j)
            if owner[j] < 0 or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(cores)):
        if not augment(i, set()):
            return None
    result = [0] * len(cores)
    for j, i in enumerate(owner):
        if i >= 0:
            result[i] = j
    return result


def _prepare(model, input_shape, convert_lif, fold_bn):
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) in (1, 3)):
        raise ValueError(f"input_shape must be (C, H, W) (or (F,) for dense models), but got {input_shape!r}.")
    if fold_bn:
        model = fold_batchnorm(model)
    mode = model_step_mode(model)
    sample = torch.zeros((1, 1) if mode == "m" else (1,), dtype=torch.float32)
    sample = torch.zeros(*sample.shape, *input_shape)
    return trace(model, sample, step_mode=mode)


def check_speck(model: nn.Module, input_shape: Sequence[int], convert_lif: bool = False, fold_bn: bool = False,
                quantized: bool = False) -> SpeckReport:
    """Check ``model`` against every Speck/DYNAP-CNN limit (module docstring) and return a :class:`SpeckReport`
    listing each violation as (layer, constraint, limit, value); ``report.ok`` is True when there is none.

    input_shape: per-sample (C, H, W). convert_lif / fold_bn: check the model as :func:`to_speck` would convert
    it (LIF -> IAF, BatchNorm folded); by default leaky neurons and BatchNorm are violations.
    quantized: the weights, biases and thresholds are already chip integers (checked against 8/16 bits as
    they are) instead of being scaled by the quantization rule.
    """
    report = SpeckReport()
    graph = _prepare(model, tuple(input_shape), convert_lif, fold_bn)
    cores = _build(graph, report, convert_lif, fold_bn)
    report.cores = cores
    if len(cores) > SPECK_LIMITS["cores"]:
        report.add("model", "number of cores", SPECK_LIMITS["cores"], len(cores))
    for core in cores:
        _check_core(core, report)
        _quantize(core, report, quantized)
    if cores and len(cores) <= SPECK_LIMITS["cores"] and all(
            c.kernel_memory <= max(SPECK_LIMITS["kernel_memory"]) and
            c.neuron_memory <= max(SPECK_LIMITS["neuron_memory"]) for c in cores):
        report.assignment = _assign(cores)
        if report.assignment is None:
            need = ", ".join(f"{c.name}: kernel {c.kernel_memory}, neuron {c.neuron_memory}" for c in cores)
            report.add("model", "core memory assignment (kernel and neuron memory per core)",
                       "a distinct core for each layer", need)
    if not cores:
        report.add("model", "at least one Conv2d/Linear -> IAF core", ">= 1", 0)
    return report


@dataclass
class SpeckConfig:
    """The quantized chip description produced by :func:`to_speck`."""

    input_shape: Tuple[int, ...]
    cores: List[SpeckCore]
    assignment: List[int]

    def to_dict(self) -> dict:
        out = {"chip": "speck/dynapcnn", "input_shape": list(self.input_shape), "cores": []}
        for i, c in enumerate(self.cores):
            f, ch, kh, kw = c.weight_q.shape
            out["cores"].append({
                "layer": i,
                "chip_core": self.assignment[i],
                "name": c.name,
                "neuron": c.neuron,
                "input_shape": {"channels": c.in_shape[0] * 1, "height": c.in_shape[1], "width": c.in_shape[2]},
                "output_shape": {"channels": c.neuron_shape[0], "height": c.neuron_shape[1],
                                 "width": c.neuron_shape[2]},
                "kernel_size": kh,
                "stride": {"y": c.stride[0], "x": c.stride[1]},
                "padding": {"y": c.padding[0], "x": c.padding[1]},
                "weights": c.weight_q.tolist(),
                "biases": c.bias_q.tolist() if c.bias_q is not None else [0] * f,
                "leak_enable": bool(c.bias_q is not None and bool(c.bias_q.any())),
                "threshold_high": c.threshold_q,
                "threshold_low": -(2 ** 15),
                "return_to_zero": c.reset == "zero",
                "sources": [{"layer": s if s >= 0 else "input", "pooling": p} for s, p in c.sources],
                "destinations": [{"layer": d, "chip_core": self.assignment[d] if d is not None else None,
                                  "pooling": p, "enable": True} for d, p in c.destinations],
                "kernel_memory": c.kernel_memory,
                "neuron_memory": c.neuron_memory,
                "scale": c.scale,
            })
        return out

    def to_json(self, path: Optional[Union[str, os.PathLike]] = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text)
        return text

    def simulate(self, spikes: torch.Tensor, return_all: bool = False):
        return simulate(self, spikes, return_all=return_all)


def to_speck(model: nn.Module, input_shape: Sequence[int], convert_lif: bool = True, fold_bn: bool = True,
             quantized: bool = False, path: Optional[Union[str, os.PathLike]] = None) -> SpeckConfig:
    """Convert ``model`` to a Speck chip configuration: BatchNorm folding, LIF -> IAF (rule in the module
    docstring), quantization to 8-bit weights/bias and 16-bit thresholds, one JSON entry per core (written to
    ``path`` when given). Raises ValueError listing every violated constraint when the model does not fit."""
    report = check_speck(model, input_shape, convert_lif=convert_lif, fold_bn=fold_bn, quantized=quantized)
    if not report.ok:
        raise ValueError(str(report))
    cfg = SpeckConfig(tuple(int(v) for v in input_shape), report.cores, report.assignment)
    if path is not None:
        cfg.to_json(path)
    return cfg


def _load_json(obj) -> SpeckConfig:
    d = json.loads(obj) if isinstance(obj, str) and obj.lstrip().startswith("{") else None
    if d is None:
        with open(obj) as fh:
            d = json.load(fh)
    cores = []
    for c in d["cores"]:
        w = torch.tensor(c["weights"], dtype=torch.int64)
        core = SpeckCore(c["name"], c["neuron"], (c["input_shape"]["channels"], c["input_shape"]["height"],
                                                  c["input_shape"]["width"]), w.double(), None,
                         (c["stride"]["y"], c["stride"]["x"]), (c["padding"]["y"], c["padding"]["x"]), (1, 1), 1,
                         float(c["threshold_high"]), "zero" if c["return_to_zero"] else "subtract",
                         (c["output_shape"]["channels"], c["output_shape"]["height"], c["output_shape"]["width"]))
        core.weight_q = w
        core.bias_q = torch.tensor(c["biases"], dtype=torch.int64)
        core.threshold_q = int(c["threshold_high"])
        core.sources = [(-1 if s["layer"] == "input" else int(s["layer"]), int(s["pooling"])) for s in c["sources"]]
        core.destinations = [(x["layer"], int(x["pooling"])) for x in c["destinations"]]
        core.scale = float(c.get("scale", 1.0))
        cores.append(core)
    return SpeckConfig(tuple(d["input_shape"]), cores, [c["chip_core"] for c in d["cores"]])


def _sum_pool(x: torch.Tensor, p: int) -> torch.Tensor:
    if p == 1:
        return x
    n, c, h, w = x.shape
    return x[:, :, : h // p * p, : w // p * p].reshape(n, c, h // p, p, w // p, p).sum(dim=(3, 5))


def simulate(config: Union[SpeckConfig, str, os.PathLike], spikes: torch.Tensor, return_all: bool = False):
    """Time-stepped integer IAF simulation of a Speck configuration (module docstring).

    spikes: input events per step [T, N, C, H, W] (non-negative integer counts). Returns the output core's
    spikes [T, N, f, h, w] (and every core's spikes with return_all=True). Exactly reproducible: integer
    arithmetic only (convolutions run in float64 on integers below 2**53, which is exact)."""
    cfg = config if isinstance(config, SpeckConfig) else _load_json(os.fspath(config))
    if isinstance(spikes, torch.Tensor) and spikes.dim() == 3:
        spikes = spikes.reshape(*spikes.shape, 1, 1)  # dense models: [T, N, F] -> [T, N, F, 1, 1]
    if not isinstance(spikes, torch.Tensor) or spikes.dim() != 5:
        raise ValueError("simulate: spikes must be a tensor [T, N, C, H, W] (or [T, N, F] for dense models).")
    expected = tuple(cfg.input_shape) if len(cfg.input_shape) == 3 else (cfg.input_shape[0], 1, 1)
    if tuple(spikes.shape[2:]) != expected:
        raise ValueError(f"simulate: spikes have per-sample shape {tuple(spikes.shape[2:])}, the configuration "
                         f"expects {tuple(cfg.input_shape)}.")
    if bool((spikes < 0).any()) or not bool((spikes == spikes.round()).all()):
        raise ValueError("simulate: spikes must be non-negative integer event counts.")
    T, N = spikes.shape[:2]
    v = [None] * len(cfg.cores)
    outs = [[] for _ in cfg.cores]
    out_idx = [i for i, c in enumerate(cfg.cores) if any(d is None for d, _ in c.destinations)]
    with torch.no_grad():
        for t in range(T):
            x_in = spikes[t].to(torch.int64)
            cur = [None] * len(cfg.cores)
            for i, c in enumerate(cfg.cores):
                total = None
                for src, p in c.sources:
                    s = x_in if src < 0 else cur[src]
                    s = _sum_pool(s, p)
                    if s.shape[1:] != c.in_shape:
                        s = s.reshape(s.shape[0], *c.in_shape)
                    total = s if total is None else total + s
                a = F.conv2d(total.double(), c.weight_q.double(), None, c.stride, c.padding).round().to(torch.int64)
                if c.bias_q is not None:
                    a = a + c.bias_q.view(1, -1, 1, 1)
                vi = a if v[i] is None else v[i] + a
                vi = vi.clamp(-(2 ** 15), 2 ** 15 - 1)
                spk = vi >= c.threshold_q
                if c.reset == "zero":
                    vi = torch.where(spk, torch.zeros_like(vi), vi)
                else:
                    vi = vi - spk.to(torch.int64) * c.threshold_q
                vi = vi.clamp(min=-(2 ** 15))
                v[i] = vi
                cur[i] = spk.to(torch.int64)
                outs[i].append(cur[i])
    all_spikes = [torch.stack(o).to(torch.float32) for o in outs]
    last = all_spikes[out_idx[-1] if out_idx else -1]
    return (last, all_spikes) if return_all else last
