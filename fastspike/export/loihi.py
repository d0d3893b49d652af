r"""Loihi 2 export: fixed-point quantization, an HDF5 file in the layout lava-dl's ``netx`` reads, and a
bit-accurate integer simulator of the exported network.

Neuron model (Loihi CUBA, as implemented bit-accurately by Lava's ``PyLifModelBitAcc``), integers:

    u[t] = sgn(u) * ((|u[t-1]| * (4096 - iDecay)) >> 12) + (a[t] << 6)      wrapped to 24 bits
    v[t] = sgn(v) * ((|v[t-1]| * (4096 - vDecay)) >> 12) + u[t] + (bias << 6)  clipped to 24 bits
    s[t] = v[t] > (vThMant << 6);   v[t] = 0 where s[t]

with ``a[t] = W_int @ s_in[t]`` (or the convolution), ``W_int`` even integers in [-256, 254] (an 8-bit
signed mantissa m times 2, the weight exponent netx expects: lava-dl's slayer writes ``2 * m`` too).

Mapping from fastspike (per block = synapse layer + neuron, each block with its own scale ``s``):

* IFNode(v_reset=0):                  iDecay = 4096, vDecay = 0,            W_eff = W, b_eff = b
* LIFNode(tau, decay_input=False):    iDecay = 4096, vDecay = 4096 / tau,   W_eff = W
* LIFNode(tau, decay_input=True):     iDecay = 4096, vDecay = 4096 / tau,   W_eff = W / tau, b_eff = b / tau
* ParametricLIFNode:                  as LIFNode with tau = 1 / sigmoid(w)
* CubaLIFNode(tau_syn, tau_mem, r, w_in; v_leak = 0, no bias): iDecay = 4096 / tau_syn,
  vDecay = 4096 / tau_mem, W_eff = W * w_in * r / (tau_syn * tau_mem)

(iDecay = 4096 makes u the input of the current step only, so a bias added to v equals one added to u.)
Scale: ``s = 254 / max|W_eff|``, ``W_int = 2 * round(W_eff * s / 2)``, ``vThMant = round(v_threshold * s)``,
``bias = round(b_eff * s)``; the membrane in float units is ``v_int / (64 s)``. Loihi resets to 0 and
fires on ``>``: soft reset, ``v_reset != 0`` and pooling layers are rejected with the layer named.

Timing: Lava's Dense/Conv processes buffer the synaptic activation for one step (``a_out`` at step t is the
input of step t-1), so on Lava every block adds one step of latency. :func:`simulate` models the zero-latency
dataflow of the fastspike model by default, and Lava's one step per block with ``synaptic_delay=True``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._graph import model_step_mode, neuron_kind, trace
from ._util import atomic_write

__all__ = ["LoihiBlock", "LoihiNetwork", "to_loihi", "load_loihi", "simulate", "quantize_loihi"]

DECAY_UNITY = 4096
ACT_SHIFT = 6
UV_MAX = 2 ** 23
VTH_MAX = 2 ** 17 - 1
BIAS_MIN, BIAS_MAX = -(2 ** 12), 2 ** 12 - 1
W_MANT_MIN, W_MANT_MAX = -128, 127
W_EXP = 1  # file weight = mantissa * 2**W_EXP, as slayer writes and netx's optimize_weight_bits expects


@dataclass
class LoihiBlock:
    """One netx block: a dense or conv synapse followed by CUBA neurons (integers, as in the file)."""

    kind: str  # 'dense' or 'conv'
    weight: np.ndarray  # int32; dense [out, in], conv [out, in, kH, kW]
    shape: Tuple[int, ...]  # neuron shape (C, H, W) for conv, (out,) for dense
    i_decay: int
    v_decay: int
    vth_mant: int
    bias: Optional[np.ndarray] = None  # int32 per output neuron/channel, or None
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    flatten_before: bool = False
    scale: float = 1.0  # integer units per float unit of the fastspike model (weights, thresholds)
    name: str = ""

    @property
    def weight_mantissa(self) -> np.ndarray:
        return self.weight // (2 ** W_EXP)


@dataclass
class LoihiNetwork:
    input_shape: Tuple[int, ...]
    blocks: List[LoihiBlock] = field(default_factory=list)


def _lif_params(m, kind, name):
    """(i_decay_float, v_decay_float, weight_gain) in units of 1 (not yet x4096)."""
    if kind in ("IF", "LIF", "PLIF"):
        if m.v_reset is None or m.v_reset != 0.0:
            what = "a soft reset" if m.v_reset is None else f"v_reset={m.v_reset}"
            raise ValueError(f"to_loihi: neuron '{name}' uses {what}; Loihi's CUBA neuron resets the voltage to 0 "
                             "(use v_reset=0.0).")
        if kind == "IF":
            return 1.0, 0.0, 1.0
        tau = float(m.tau) if kind == "LIF" else float(1.0 / torch.sigmoid(m.w.detach().double()))
        return 1.0, 1.0 / tau, (1.0 / tau if m.decay_input else 1.0)
    if kind == "CubaLIF":
        vals = {}
        for key in ("tau_syn", "tau_mem", "r", "w_in", "v_leak", "v_threshold"):
            t = getattr(m, key).detach().double()
            if t.numel() > 1 and not bool((t == t.flatten()[0]).all()):
                raise ValueError(f"to_loihi: neuron '{name}' has a different {key} per neuron; Loihi blocks share "
                                 "one value per layer.")
            vals[key] = float(t.flatten()[0])
        if vals["v_leak"] != 0.0:
            raise ValueError(f"to_loihi: neuron '{name}' has v_leak={vals['v_leak']}; Loihi's CUBA leaks to 0.")
        if m.v_reset is None or bool((m.v_reset != 0).any()):
            raise ValueError(f"to_loihi: neuron '{name}' does not reset to 0; Loihi's CUBA neuron resets v to 0.")
        return (1.0 / vals["tau_syn"], 1.0 / vals["tau_mem"],
                vals["w_in"] * vals["r"] / (vals["tau_syn"] * vals["tau_mem"]))
    raise ValueError(f"to_loihi: neuron '{name}' ({type(m).__name__}) has no Loihi CUBA equivalent.")


def _threshold(m) -> float:
    t = m.v_threshold
    if isinstance(t, torch.Tensor):
        t = t.detach().double()
        if t.numel() > 1 and not bool((t == t.flatten()[0]).all()):
            raise ValueError("to_loihi: per-neuron thresholds are not supported.")
        t = float(t.flatten()[0])
    return float(t)


def quantize_loihi(weight: torch.Tensor, bias: Optional[torch.Tensor], threshold: float, name: str = ""):
    """Fixed-point weights/bias/threshold of one block: returns (W_int, bias_int or None, vThMant, scale)."""
    w = weight.detach().double()
    wmax = float(w.abs().max())
    if wmax == 0.0:
        raise ValueError(f"to_loihi: layer '{name}' has all-zero weights.")
    scale = (2 * W_MANT_MAX) / wmax
    mant = torch.round(w * scale / 2 ** W_EXP).clamp(W_MANT_MIN, W_MANT_MAX)
    w_int = (mant * 2 ** W_EXP).to(torch.int64).numpy().astype(np.int32)
    vth = int(round(threshold * scale))
    if not 0 < vth <= VTH_MAX:
        raise ValueError(f"to_loihi: layer '{name}': threshold {threshold:g} x scale {scale:g} = {vth} does not fit "
                         f"Loihi's unsigned 17-bit vThMant (1..{VTH_MAX}); rescale the weights or the threshold.")
    b_int = None
    if bias is not None:
        b = torch.round(bias.detach().double() * scale)
        if float(b.min()) < BIAS_MIN or float(b.max()) > BIAS_MAX:
            raise ValueError(f"to_loihi: layer '{name}': the bias needs {int(b.abs().max())} integer units, beyond "
                             f"Loihi's signed 13-bit bias mantissa [{BIAS_MIN}, {BIAS_MAX}].")
        b_int = b.to(torch.int64).numpy().astype(np.int32)
        if not b_int.any():
            b_int = None
    return w_int, b_int, vth, scale


def _to_blocks(model: nn.Module, input_shape: Sequence[int]) -> LoihiNetwork:
    mode = model_step_mode(model)
    sample = torch.zeros(1, 1, *input_shape) if mode == "m" else torch.zeros(1, *input_shape)
    graph = trace(model, sample, step_mode=mode)
    if not graph.is_chain():
        raise ValueError("to_loihi: netx networks are chains of blocks; the model has branches or residual sums.")
    net = LoihiNetwork(tuple(int(v) for v in input_shape))
    pending = None  # (node, synapse module)
    flatten = False
    for node in graph.nodes.values():
        m = node.module
        kind = neuron_kind(m) if m is not None else None
        if node.kind == "flatten" or isinstance(m, nn.Flatten):
            if pending is not None:
                raise ValueError(f"to_loihi: Flatten '{node.name}' follows a synapse layer without a neuron.")
            if not net.blocks or net.blocks[-1].kind != "conv":
                raise ValueError(f"to_loihi: Flatten '{node.name}' must follow a conv block (netx flattens a conv "
                                 "block's output before a dense block).")
            flatten = True
            continue
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if pending is not None:
                raise ValueError(f"to_loihi: layer '{node.name}' follows layer '{pending[0].name}' without a "
                                 "neuron in between; every netx block is synapse + neuron.")
            if isinstance(m, nn.Linear) and len(node.in_shape) != 1:
                raise ValueError(f"to_loihi: Linear '{node.name}' gets a {len(node.in_shape)}-D input; add a Flatten.")
            pending = (node, m)
            continue
        if kind is not None:
            if pending is None:
                raise ValueError(f"to_loihi: neuron '{node.name}' has no synapse layer before it.")
            snode, syn = pending
            pending = None
            i_dec, v_dec, gain = _lif_params(m, kind, node.name)
            bias = syn.bias * gain if syn.bias is not None else None
            if kind == "CubaLIF" and bias is not None and bool((bias != 0).any()):
                raise ValueError(f"to_loihi: layer '{snode.name}' has a bias before the CubaLIF neuron "
                                 f"'{node.name}'; Loihi adds biases to the voltage, not the current.")
            w_int, b_int, vth, scale = quantize_loihi(syn.weight * gain, bias, _threshold(m), snode.name)
            block = LoihiBlock(
                kind="conv" if isinstance(syn, nn.Conv2d) else "dense", weight=w_int,
                shape=tuple(int(v) for v in node.out_shape), i_decay=int(round(i_dec * DECAY_UNITY)),
                v_decay=int(round(v_dec * DECAY_UNITY)), vth_mant=vth, bias=b_int, flatten_before=flatten,
                scale=scale, name=snode.name)
            if isinstance(syn, nn.Conv2d):
                if syn.padding_mode != "zeros" or isinstance(syn.padding, str):
                    raise ValueError(f"to_loihi: Conv2d '{snode.name}' must use numeric zero padding.")
                block.stride, block.padding = tuple(syn.stride), tuple(syn.padding)
                block.dilation, block.groups = tuple(syn.dilation), int(syn.groups)
            flatten = False
            net.blocks.append(block)
            continue
        if isinstance(m, (nn.AvgPool2d, nn.MaxPool2d, nn.LPPool2d)):
            raise ValueError(f"to_loihi: pooling layer '{node.name}' ({type(m).__name__}) is not implemented by "
                             "netx; use a strided convolution.")
        raise ValueError(f"to_loihi: layer '{node.name}' ({type(m).__name__ if m is not None else node.kind}) "
                         "has no netx equivalent; supported: Conv2d, Linear, Flatten, IF/LIF/ParametricLIF/CubaLIF "
                         "neurons (Dropout/Identity are skipped).")
    if pending is not None:
        raise ValueError(f"to_loihi: the model ends with synapse layer '{pending[0].name}'; netx blocks end "
                         "with a neuron.")
    if not net.blocks:
        raise ValueError("to_loihi: the model has no synapse + neuron block.")
    return net


def _write_str(group, key, value):
    group.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def write_netx(net: LoihiNetwork, path) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        idx = 0
        g = layers.create_group(str(idx))
        _write_str(g, "type", "input")
        g.create_dataset("shape", data=np.array(net.input_shape, dtype=np.int64))
        for b in net.blocks:
            if b.flatten_before:
                idx += 1
                g = layers.create_group(str(idx))
                _write_str(g, "type", "flatten")
                g.create_dataset("shape", data=np.array([int(np.prod(b.weight.shape[1:])), 1, 1], dtype=np.int64))
            idx += 1
            g = layers.create_group(str(idx))
            _write_str(g, "type", b.kind)
            g.create_dataset("shape", data=np.array(b.shape, dtype=np.int64))
            g.create_dataset("weight", data=b.weight.astype(np.int32))
            if b.kind == "dense":
                g.create_dataset("inFeatures", data=int(b.weight.shape[1]))
                g.create_dataset("outFeatures", data=int(b.weight.shape[0]))
            else:
                g.create_dataset("inChannels", data=int(b.weight.shape[1] * b.groups))
                g.create_dataset("outChannels", data=int(b.weight.shape[0]))
                g.create_dataset("kernelSize", data=np.array(b.weight.shape[2:], dtype=np.int64))
                g.create_dataset("stride", data=np.array(b.stride, dtype=np.int64))
                g.create_dataset("padding", data=np.array(b.padding, dtype=np.int64))
                g.create_dataset("dilation", data=np.array(b.dilation, dtype=np.int64))
                g.create_dataset("groups", data=int(b.groups))
            if b.bias is not None:
                g.create_dataset("bias", data=b.bias.astype(np.int32))
            n = g.create_group("neuron")
            _write_str(n, "type", "CUBA")
            n.create_dataset("iDecay", data=int(b.i_decay))
            n.create_dataset("vDecay", data=int(b.v_decay))
            n.create_dataset("vThMant", data=int(b.vth_mant))
            n.create_dataset("refDelay", data=1)
            n.create_dataset("gradedSpike", data=False)
            g.attrs["fastspike_name"] = b.name
            g.attrs["fastspike_scale"] = float(b.scale)


def to_loihi(model: nn.Module, path: Union[str, os.PathLike], input_shape: Optional[Sequence[int]] = None
             ) -> LoihiNetwork:
    """Quantize ``model`` for Loihi 2 and write a lava-dl netx HDF5 file to ``path``.

    model: a chain of (Conv2d | Linear) -> IF/LIF/ParametricLIF/CubaLIF neuron blocks, with Flatten between
    the conv and dense parts (single-step or multi-step modules alike). input_shape: the per-sample input
    shape (C, H, W) or (F,); inferred from the first Linear when omitted. Returns the quantized
    :class:`LoihiNetwork` (the same integers as in the file). The mapping and formats are in this module's
    docstring; every unsupported layer raises ValueError naming it.
    """
    if input_shape is None:
        first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
        if isinstance(first, nn.Linear):
            input_shape = (first.in_features,)
        else:
            raise ValueError("to_loihi: input_shape=(C, H, W) is required for convolutional models.")
    net = _to_blocks(model, tuple(int(v) for v in input_shape))
    atomic_write(path, lambda tmp: write_netx(net, tmp))
    return net


def load_loihi(path) -> LoihiNetwork:
    """Read a netx HDF5 file (as written by :func:`to_loihi`, or lava-dl's dense/conv CUBA exports)."""
    import h5py

    def s(ds):
        v = ds[0] if len(ds.shape) > 0 else ds[()]
        return v.decode("ascii") if isinstance(v, bytes) else str(v)

    with h5py.File(path, "r") as f:
        if "layer" not in f:
            raise ValueError(f"load_loihi: {os.fspath(path)!r} has no /layer group; not a netx file.")
        layers = f["layer"]
        keys = sorted(layers.keys(), key=int)
        if keys != [str(i) for i in range(len(keys))]:
            raise ValueError(f"load_loihi: layer groups must be numbered 0..n-1, got {keys}.")
        net = LoihiNetwork(())
        flatten = False
        for k in keys:
            g = layers[k]
            t = s(g["type"])
            if t == "input":
                net.input_shape = tuple(int(v) for v in g["shape"][()])
                continue
            if t == "flatten":
                flatten = True
                continue
            if t not in ("dense", "conv"):
                raise ValueError(f"load_loihi: layer {k} has type {t!r}; only input, flatten, dense and conv are "
                                 "supported.")
            n = g["neuron"]
            if s(n["type"]) not in ("CUBA", "LOIHI"):
                raise ValueError(f"load_loihi: layer {k} has neuron type {s(n['type'])!r}; only CUBA is supported.")
            b = LoihiBlock(kind=t, weight=g["weight"][()].astype(np.int64).astype(np.int32),
                           shape=tuple(int(v) for v in g["shape"][()]), i_decay=int(n["iDecay"][()]),
                           v_decay=int(n["vDecay"][()]), vth_mant=int(n["vThMant"][()]),
                           bias=g["bias"][()].astype(np.int32) if "bias" in g else None, flatten_before=flatten,
                           scale=float(g.attrs.get("fastspike_scale", 1.0)),
                           name=str(g.attrs.get("fastspike_name", k)))
            if t == "conv":
                pair = lambda a: tuple(int(v) for v in np.broadcast_to(np.asarray(a), (2,)))  # noqa: E731
                b.stride, b.padding = pair(g["stride"][()]), pair(g["padding"][()])
                b.dilation, b.groups = pair(g["dilation"][()]), int(g["groups"][()])
                if b.weight.ndim == 5:
                    b.weight = b.weight.reshape(b.weight.shape[:4])
            flatten = False
            net.blocks.append(b)
    return net


def _decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """Loihi's sign-magnitude decay: sgn(x) * ((|x| * (4096 - d)) >> 12)."""
    return torch.sign(x) * ((x.abs() * (DECAY_UNITY - d)) >> 12)


def _synapse(b: LoihiBlock, s: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(b.weight, dtype=torch.float64)
    x = s.to(torch.float64)
    if b.kind == "dense":
        a = x.flatten(1) @ w.t()
    else:
        a = F.conv2d(x, w, None, b.stride, b.padding, b.dilation, b.groups)
    # integer weights times binary spikes: float64 sums are exact below 2**53
    return a.round().to(torch.int64)


def simulate(net_or_path: Union[LoihiNetwork, str, os.PathLike], spikes: torch.Tensor, synaptic_delay: bool = False,
             return_all: bool = False):
    """Bit-accurate integer simulation of an exported network (Loihi CUBA arithmetic, see module docstring).

    spikes: binary input [T, N, *input_shape]. Returns the output spikes [T, N, *out_shape] as float 0/1
    (and, with return_all=True, also the list of every block's spikes and final (u, v) integer states).
    synaptic_delay=True adds Lava's one-step synaptic buffer per block (output shifted by one step per block).
    Deterministic: the same input always gives the same output, on any machine.
    """
    net = load_loihi(net_or_path) if isinstance(net_or_path, (str, os.PathLike)) else net_or_path
    if not isinstance(spikes, torch.Tensor) or spikes.dim() < 3:
        raise ValueError("simulate: spikes must be a tensor [T, N, *input_shape].")
    if net.input_shape and tuple(spikes.shape[2:]) != tuple(net.input_shape):
        raise ValueError(f"simulate: spikes have per-sample shape {tuple(spikes.shape[2:])}, the network expects "
                         f"{tuple(net.input_shape)}.")
    if not bool(((spikes == 0) | (spikes == 1)).all()):
        raise ValueError("simulate: spikes must be binary (0/1): Loihi blocks receive unary spike events.")
    T, N = spikes.shape[:2]
    states = [None] * len(net.blocks)
    buffers = [None] * len(net.blocks)
    outs = [[] for _ in net.blocks]
    with torch.no_grad():
        for t in range(T):
            s = spikes[t].to(torch.int64)
            for i, b in enumerate(net.blocks):
                a = _synapse(b, s)
                if synaptic_delay:
                    a, buffers[i] = (buffers[i] if buffers[i] is not None else torch.zeros_like(a)), a
                if states[i] is None:
                    states[i] = (torch.zeros_like(a), torch.zeros_like(a))
                u, v = states[i]
                u = _decay(u, b.i_decay) + (a << ACT_SHIFT)
                u = torch.where(u > UV_MAX, u - 2 * UV_MAX, u)
                u = torch.where(u <= -UV_MAX, u + 2 * UV_MAX, u)
                v = _decay(v, b.v_decay) + u
                if b.bias is not None:
                    bias = torch.as_tensor(b.bias, dtype=torch.int64)
                    if b.kind == "conv":
                        bias = bias.view(-1, 1, 1)
                    v = v + (bias << ACT_SHIFT)
                v = v.clamp(-UV_MAX + 1, UV_MAX - 1)
                spk = v > (b.vth_mant << ACT_SHIFT)
                v = torch.where(spk, torch.zeros_like(v), v)
                states[i] = (u, v)
                s = spk.to(torch.int64)
                outs[i].append(s)
    all_spikes = [torch.stack(o).to(torch.float32) for o in outs]
    if return_all:
        return all_spikes[-1], all_spikes, states
    return all_spikes[-1]
