"""Speck conversion: trace a model, map each Conv2d/Linear -> [BatchNorm] -> neuron chain to one chip core (LIF ->
IAF rule, BatchNorm and average-pool folding, sources and destinations through pooling and flattening),
quantize each core to chip integers, and check the whole against the chip limits (:func:`check_speck`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .._graph import TracedGraph, model_step_mode, neuron_kind, trace
from .._modules import SumPool2d
from .._transforms import fold_batchnorm, fold_bn_weights
from .._util import pair
from .limits import SPECK_LIMITS, SpeckReport, assign_cores, check_core

__all__ = ["SpeckCore", "check_speck", "build_cores", "quantize_core"]


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



def _signed_scale(t: torch.Tensor, bits: int) -> float:
    """Largest factor that maps t into the signed `bits`-bit range (sinabs' determine_discretization_scale)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    tmin, tmax = float(t.min()), float(t.max())
    if tmin == 0.0 and tmax == 0.0:
        return math.inf
    if abs(tmin) <= abs(tmax) * abs(lo / hi):
        return abs(hi / tmax)
    return abs(lo / tmin)


def quantize_core(core: SpeckCore, report: SpeckReport, quantized: bool):
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


def build_cores(graph: TracedGraph, report: SpeckReport, convert_lif: bool, fold_bn: bool) -> List[SpeckCore]:
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
                stride, padding, dilation, groups = pair(m.stride), pair(m.padding), pair(m.dilation), m.groups
                cin_shape = tuple(n.in_shape)
                neuron_shape = tuple(n.out_shape)
            weight = weight.clone().double()
            bias = m.bias.detach().clone().double() if m.bias is not None else None
            if bn is not None:
                weight, bias = fold_bn_weights(weight, bias, mod(bn))
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
                    k, s, p = pair(pm.kernel_size), pair(pm.stride if pm.stride is not None else pm.kernel_size), \
                        pair(getattr(pm, "padding", 0))
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
    cores = build_cores(graph, report, convert_lif, fold_bn)
    report.cores = cores
    if len(cores) > SPECK_LIMITS["cores"]:
        report.add("model", "number of cores", SPECK_LIMITS["cores"], len(cores))
    for core in cores:
        check_core(core, report)
        quantize_core(core, report, quantized)
    if cores and len(cores) <= SPECK_LIMITS["cores"] and all(
            c.kernel_memory <= max(SPECK_LIMITS["kernel_memory"]) and
            c.neuron_memory <= max(SPECK_LIMITS["neuron_memory"]) for c in cores):
        report.assignment = assign_cores(cores)
        if report.assignment is None:
            need = ", ".join(f"{c.name}: kernel {c.kernel_memory}, neuron {c.neuron_memory}" for c in cores)
            report.add("model", "core memory assignment (kernel and neuron memory per core)",
                       "a distinct core for each layer", need)
    if not cores:
        report.add("model", "at least one Conv2d/Linear -> IAF core", ">= 1", 0)
    return report
