"""Synaptic-operation counting and energy estimates, the way SNN papers report them.

``count_synops(model, x)`` runs one forward pass of ``model`` on ``x`` (under ``torch.no_grad``, states
reset before and after) and, for every synaptic layer (``nn.Linear``, ``nn.Conv1d/2d/3d`` and their
subclasses, which include fastspike's step-mode wrappers), counts

- **AC** (accumulate) operations when the layer's input is binary (every element 0 or 1, i.e. spikes):
  one addition per *non-zero* input per synapse it drives, counted exactly (padding and stride
  included), so silent inputs cost nothing;
- **MAC** (multiply-accumulate) operations otherwise (real-valued input, e.g. the first layer under
  direct encoding): every synapse of every output, ``out_elements * in_channels/groups * kernel``.

Energy = AC * E_AC + MAC * E_MAC with the 45 nm CMOS figures for 32-bit floating point from
M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014
(doi:10.1109/ISSCC.2014.6757323): FP add 0.9 pJ, FP multiply 3.7 pJ, so E_AC = 0.9 pJ and
E_MAC = 3.7 + 0.9 = 4.6 pJ. These are the constants used by most SNN energy tables (Spikformer, SEW
ResNet follow-ups); pass ``e_ac``/``e_mac`` to use others. Memory access, neuron updates, normalisation
and attention matmuls are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .functional.net_config import reset_net
from .ops.reference import is_binary

__all__ = ["E_AC_45NM_PJ", "E_MAC_45NM_PJ", "LayerOps", "SynOpsReport", "count_synops", "pack_saved_spikes"]

E_AC_45NM_PJ = 0.9   # 32-bit FP add, 45 nm (Horowitz, ISSCC 2014)
E_MAC_45NM_PJ = 4.6  # 32-bit FP multiply (3.7 pJ) + add (0.9 pJ), 45 nm (Horowitz, ISSCC 2014)


@dataclass
class LayerOps:
    name: str
    layer_type: str
    kind: str = "AC"          # 'AC' if every input seen was binary, 'MAC' if any was real-valued, 'mixed'
    ac: int = 0               # accumulate operations (binary inputs)
    mac: int = 0              # multiply-accumulate operations (real-valued inputs)
    dense_ops: int = 0        # ops a dense (ANN) evaluation of the same calls would perform
    input_nonzero: int = 0
    input_elements: int = 0
    calls: int = 0

    @property
    def input_rate(self) -> float:
        return self.input_nonzero / self.input_elements if self.input_elements else float("nan")

    def energy_pj(self, e_ac: float, e_mac: float) -> float:
        return self.ac * e_ac + self.mac * e_mac


@dataclass
class SynOpsReport:
    layers: List[LayerOps] = field(default_factory=list)
    e_ac: float = E_AC_45NM_PJ
    e_mac: float = E_MAC_45NM_PJ
    batch_size: int = 1

    @property
    def total_ac(self) -> int:
        return sum(lay.ac for lay in self.layers)

    @property
    def total_mac(self) -> int:
        return sum(lay.mac for lay in self.layers)

    @property
    def total_dense_ops(self) -> int:
        return sum(lay.dense_ops for lay in self.layers)

    @property
    def energy_pj(self) -> float:
        """Estimated energy of the whole call (all samples), in pJ."""
        return sum(lay.energy_pj(self.e_ac, self.e_mac) for lay in self.layers)

    @property
    def energy_per_sample_mj(self) -> float:
        return self.energy_pj / self.batch_size * 1e-9

    def per_layer(self) -> Dict[str, dict]:
        return {
            lay.name: dict(type=lay.layer_type, kind=lay.kind, ac=lay.ac, mac=lay.mac, dense_ops=lay.dense_ops,
                           input_rate=lay.input_rate, energy_pj=lay.energy_pj(self.e_ac, self.e_mac))
            for lay in self.layers
        }

    def __str__(self) -> str:
        w = max([len("layer")] + [len(lay.name) for lay in self.layers])
        rows = [f"{'layer':<{w}}  {'type':<10} kind   {'AC':>14} {'MAC':>14} {'in rate':>8} {'energy (uJ)':>12}"]
        for lay in self.layers:
            rows.append(f"{lay.name:<{w}}  {lay.layer_type:<10} {lay.kind:<5}  {lay.ac:>14,d} {lay.mac:>14,d} "
                        f"{lay.input_rate:>8.4f} {lay.energy_pj(self.e_ac, self.e_mac) * 1e-6:>12.4f}")
        rows.append(f"total: AC {self.total_ac:,d}, MAC {self.total_mac:,d}, energy {self.energy_pj * 1e-6:.4f} uJ "
                    f"for {self.batch_size} sample(s) = {self.energy_per_sample_mj:.6f} mJ/sample "
                    f"(E_AC={self.e_ac} pJ, E_MAC={self.e_mac} pJ)")
        return "\n".join(rows)


_CONV_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _conv_dims(m: nn.Module) -> Optional[int]:
    for cls, d in _CONV_DIMS.items():
        if isinstance(m, cls):
            return d
    return None


def _count_layer(rec: LayerOps, m: nn.Module, x: torch.Tensor) -> None:
    x = x.detach().float()
    d = _conv_dims(m)
    binary = is_binary(x)
    if d is None:  # Linear: last dim is in_features, any leading dims
        rows = x.numel() // m.in_features
        dense = rows * m.in_features * m.out_features
        nz = int(torch.count_nonzero(x))
        sparse = nz * m.out_features
    else:
        if x.dim() == d + 3:  # [T, N, C, ...] from a multi-step wrapper
            x = x.flatten(0, 1)
        elif x.dim() == d + 1:  # unbatched
            x = x.unsqueeze(0)
        if x.dim() != d + 2:
            raise ValueError(f"unexpected input shape {tuple(x.shape)} for {type(m).__name__}")
        g = m.groups
        cin_g = m.in_channels // g
        cout_g = m.out_channels // g
        pad = m.padding
        if getattr(m, "padding_mode", "zeros") != "zeros" and not isinstance(pad, str):
            x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
            pad = 0
        conv = _CONV_FN[d]
        ones = torch.ones((g, cin_g) + tuple(m.kernel_size), dtype=x.dtype, device=x.device)
        # per output position and group: how many synapses have a non-zero input / exist at all
        nz_per_out = conv((x != 0).to(x.dtype), ones, None, m.stride, pad, m.dilation, g)
        all_per_out = conv(torch.ones_like(x), ones, None, m.stride, pad, m.dilation, g)
        sparse = int(round(nz_per_out.sum().item())) * cout_g
        dense = int(round(all_per_out.sum().item())) * cout_g
        nz = int(torch.count_nonzero(x))
    rec.calls += 1
    rec.dense_ops += dense
    rec.input_nonzero += nz
    rec.input_elements += x.numel()
    if binary:
        rec.ac += sparse
    else:
        rec.mac += dense
    kind = "AC" if binary else "MAC"
    rec.kind = kind if rec.calls == 1 or rec.kind == kind else "mixed"


def count_synops(model: nn.Module, x: torch.Tensor, e_ac: float = E_AC_45NM_PJ, e_mac: float = E_MAC_45NM_PJ,
                 batch_size: Optional[int] = None) -> SynOpsReport:
    """Count synaptic operations and estimate energy for one forward pass ``model(x)``.

    ``batch_size`` (number of samples in ``x``, for the per-sample energy) defaults to ``x.shape[0]``
    for single-step input; pass it for multi-step input ``[T, N, ...]`` (then N).
    Returns a ``SynOpsReport``: ``.layers`` (per-layer ``LayerOps``), ``.total_ac``, ``.total_mac``,
    ``.energy_pj``, ``.energy_per_sample_mj``, ``per_layer()`` dict and a printable table.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    report = SynOpsReport(e_ac=float(e_ac), e_mac=float(e_mac), batch_size=int(batch_size or x.shape[0]))
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            rec = LayerOps(name=name or type(m).__name__, layer_type=type(m).__name__)
            report.layers.append(rec)

            def hook(module, inputs, output, rec=rec):
                inp = inputs[0] if isinstance(inputs, tuple) else inputs
                # a wrapper that calls an inner hooked module of the same kind would be counted twice;
                # nn containers never subclass Conv/Linear, so each synapse layer is one module here
                _count_layer(rec, module, inp)

            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        reset_net(model)
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        reset_net(model)
        model.train(was_training)
    report.layers = [lay for lay in report.layers if lay.calls > 0]
    return report


# ------------------------------------------------------------------------------------ saved-spike packing
class pack_saved_spikes(torch.autograd.graph.saved_tensors_hooks):
    """Context manager: tensors that autograd saves for the backward pass and that hold only 0s and 1s
    (spikes: the inputs of synapse layers and pooling after a neuron) are stored bit-packed, 1 bit per
    element instead of 32; those holding small non-negative integers (spike counts, such as SEW ResNet 'ADD'
    block outputs) are stored as uint8. They are unpacked when the backward needs them, so values and
    gradients are unchanged.

        with fastspike.utils.pack_saved_spikes():
            loss = criterion(net(x_seq), y)
        loss.backward()

    fastspike's own synapse and pooling layers already keep their saved inputs this way during CPU training;
    the context extends it to every saved tensor, any layer and device (``fastspike.ops.bits.compact`` does the
    work: one pass per tensor, which on a GPU also costs a device-to-host synchronisation, so this context cannot
    be used inside CUDA-graph capture). Tensors smaller than ``min_numel`` and leaf tensors that require grad
    (parameters) are kept as they are.
    """

    def __init__(self, min_numel: int = 4096):
        self.min_numel = int(min_numel)
        from .ops import bits

        def pack(t: torch.Tensor):
            if t.requires_grad and t.is_leaf:
                return t
            packed = bits.compact(t.detach(), self.min_numel, sync_ok=True)
            return t if isinstance(packed, torch.Tensor) else packed  # kept as it is: the tensor itself

        super().__init__(pack, bits.restore)
