"""Signed QCFS sequence encoder (SpikingJelly 2.0's ``ann2snn.qcfs.SignedQCFSSequenceEncoder``).

A signed activation ``a`` with a per-channel QCFS scale ``s`` is sent as two spike trains over ``T`` steps: a
positive IF neuron fed ``relu(a) / T`` at every step and a negative one fed ``relu(-a) / T``. Both have threshold
``s``, initial membrane ``s / 2`` (the QCFS shift) and soft reset, so each fires ``round(|a| / s)`` times
(clamped to ``[0, T]``) up to rounding of the running sum. Where the count differs from that target (an input
within rounding of a half-level), the neuron is rerun on exact pulses ``s`` at the first ``target`` steps, which
gives the target count; its membrane is taken from that rerun. The encoded sequence is
``(positive spikes - negative spikes) * s`` ([T, *a.shape]); its sum over time is the QCFS quantisation of ``a``
that :meth:`reconstruct` computes directly.

With ``collect_statistics`` the encoder also records spike rates and counts, the fraction of elements that needed
the correction and the relative L2 error of the reconstruction (:meth:`statistics`), optionally over the elements
``metric_mask`` selects.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import neuron, quantize, surrogate

__all__ = ["SignedQCFSSequenceEncoder"]

_STAT_NAMES = ("positive_spike_rate", "negative_spike_rate", "positive_spike_count", "negative_spike_count",
               "spike_value_count", "local_relative_l2", "boundary_correction_fraction")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class SignedQCFSSequenceEncoder(nn.Module):
    """Encode signed activations as two QCFS spike trains (positive and negative) of ``time_steps`` steps.

    :param scale: per-channel QCFS scale, a finite positive 1-D tensor (the neurons' threshold).
    :param time_steps: number of time steps T (also the largest spike count).
    :param channel_dim: dimension of the input that ``scale`` runs along.
    :param collect_statistics: record spike statistics at every :meth:`encode` (and check the corrected counts).
    :param name: label reported by :meth:`statistics`.
    """

    def __init__(self, scale: torch.Tensor, time_steps: int, *, channel_dim: int = -1,
                 collect_statistics: bool = True, name: str = "activation") -> None:
        super().__init__()
        if not isinstance(scale, torch.Tensor):
            raise TypeError(f"SignedQCFSSequenceEncoder: scale must be a torch.Tensor, but got "
                            f"{type(scale).__name__}.")
        if scale.dim() != 1 or not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
            raise ValueError(f"SignedQCFSSequenceEncoder: scale must be a finite positive one-dimensional tensor, "
                             f"but got shape {tuple(scale.shape)}: {scale.tolist() if scale.numel() <= 8 else '...'}.")
        if not _is_int(time_steps):
            raise TypeError(f"SignedQCFSSequenceEncoder: time_steps must be an integer, but got {time_steps!r}.")
        if time_steps <= 0:
            raise ValueError(f"SignedQCFSSequenceEncoder: time_steps must be positive, but got {time_steps}.")
        if not _is_int(channel_dim):
            raise TypeError(f"SignedQCFSSequenceEncoder: channel_dim must be an integer, but got {channel_dim!r}.")
        self.name = str(name)
        self.time_steps = time_steps
        self.channel_dim = channel_dim
        self.collect_statistics = bool(collect_statistics)
        self.positive_neuron = self._make_neuron(scale)
        self.negative_neuron = self._make_neuron(scale)
        self.metric_scope = "activation"
        self._clear_statistics()

    def _make_neuron(self, scale: torch.Tensor) -> nn.Module:
        return neuron.ActivationAwareIFNode(v_threshold=scale, v_offset=0.5 * scale, channel_dim=self.channel_dim,
                                            v_reset=None, surrogate_function=surrogate.DeterministicPass(),
                                            step_mode="m")

    def _clear_statistics(self) -> None:
        for key in _STAT_NAMES:
            setattr(self, key, 0 if key.endswith("count") else 0.0)

    # -- helpers ------------------------------------------------------------------------------------------
    def _channel_dim_of(self, value: torch.Tensor, what: str) -> int:
        if not torch.is_floating_point(value):
            raise ValueError(f"SignedQCFSSequenceEncoder.{what}: value must be a floating-point tensor, but got "
                             f"{value.dtype}.")
        if value.dim() == 0:
            raise ValueError(f"SignedQCFSSequenceEncoder.{what}: value needs at least one dimension.")
        dim = self.channel_dim % value.dim()
        n = self.positive_neuron.v_threshold.numel()
        if value.shape[dim] != n:
            raise ValueError(f"SignedQCFSSequenceEncoder.{what}: value has {value.shape[dim]} channels along "
                             f"dimension {dim}, but the QCFS scale has {n}.")
        return dim

    def _scale_like(self, value: torch.Tensor, dim: int) -> torch.Tensor:
        shape = [1] * value.dim()
        shape[dim] = -1
        return self.positive_neuron.v_threshold.to(device=value.device, dtype=value.dtype).reshape(shape)

    def _spike_train(self, node: nn.Module, value: torch.Tensor, scale: torch.Tensor,
                     check: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Spikes [T, *value.shape] of ``node`` for the non-negative ``value``, and where a correction was needed."""
        T = self.time_steps
        node.reset()
        spikes = node((value / T).unsqueeze(0).expand(T, *value.shape))
        target = torch.round(value / scale).clamp(0, T)
        wrong = spikes.sum(0) != target
        if bool(wrong.any()):
            membrane = node.v
            steps = torch.arange(T, device=value.device).view(T, *([1] * value.dim()))
            pulses = (steps < target.unsqueeze(0)).to(scale.dtype) * scale
            node.reset()
            exact = node(pulses)
            if not (isinstance(membrane, torch.Tensor) and isinstance(node.v, torch.Tensor)):
                raise RuntimeError("SignedQCFSSequenceEncoder: the neurons' membrane state must be a tensor.")
            spikes = torch.where(wrong.unsqueeze(0), exact, spikes)
            node.v = torch.where(wrong, node.v, membrane)
            if check and not torch.equal(spikes.sum(0), target):
                raise RuntimeError("SignedQCFSSequenceEncoder: the corrected spike counts do not reach their target.")
        return spikes, wrong

    # -- public API ---------------------------------------------------------------------------------------
    def encode(self, value: torch.Tensor, metric_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The signed spike sequence [T, *value.shape] of ``value`` (spikes times the channel's scale)."""
        dim = self._channel_dim_of(value, "encode")
        scale = self._scale_like(value, dim)
        check = self.collect_statistics
        pos, pos_fixed = self._spike_train(self.positive_neuron, F.relu(value), scale, check)
        neg, neg_fixed = self._spike_train(self.negative_neuron, F.relu(-value), scale, check)
        sequence = (pos - neg) * self._scale_like(value, dim).to(pos.dtype)
        if self.collect_statistics:
            self._record(value, sequence, pos.detach(), neg.detach(), pos_fixed, neg_fixed, dim, metric_mask)
        return sequence

    def _record(self, value, sequence, pos, neg, pos_fixed, neg_fixed, dim, metric_mask) -> None:
        approx, ref, count = sequence.sum(0), value, value.numel()
        if metric_mask is not None:
            mask = metric_mask.to(device=value.device, dtype=torch.bool)
            want = value.shape[:dim] + value.shape[dim + 1:]
            if mask.shape != want:
                raise ValueError(f"SignedQCFSSequenceEncoder.encode: metric_mask must have the shape of value without "
                                 f"its channel dimension, {tuple(want)}, but got {tuple(mask.shape)}.")
            if not bool(mask.any()):
                raise ValueError("SignedQCFSSequenceEncoder.encode: metric_mask selects no element.")
            full = mask.unsqueeze(dim).expand(value.shape)
            pos, neg = pos[:, full], neg[:, full]
            pos_fixed, neg_fixed, approx, ref = pos_fixed[full], neg_fixed[full], approx[full], ref[full]
            count = int(full.count_nonzero())
        self.positive_spike_rate = float(pos.mean().cpu())
        self.negative_spike_rate = float(neg.mean().cpu())
        self.positive_spike_count = int(pos.count_nonzero().cpu())
        self.negative_spike_count = int(neg.count_nonzero().cpu())
        self.spike_value_count = int(pos.numel())
        fixed = int(pos_fixed.count_nonzero()) + int(neg_fixed.count_nonzero())
        self.boundary_correction_fraction = fixed / (2 * count)
        err = torch.linalg.vector_norm((approx - ref).float())
        self.local_relative_l2 = float((err / torch.linalg.vector_norm(ref.float()).clamp_min(1e-12)).detach().cpu())
        if not math.isfinite(self.local_relative_l2):
            raise ValueError("SignedQCFSSequenceEncoder.encode: the relative L2 error of the encoding is not finite.")

    def reconstruct(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over time of :meth:`encode`'s sequence, computed directly: ``(round(clamp(relu(a) / s, 0, T)) -
        round(clamp(relu(-a) / s, 0, T))) * s`` (with the straight-through gradient of
        :func:`fastspike.quantize.multi_level_spike_count`)."""
        dim = self._channel_dim_of(value, "reconstruct")
        scale = self._scale_like(value, dim)
        pos = quantize.multi_level_spike_count(F.relu(value) / scale, self.time_steps)
        neg = quantize.multi_level_spike_count(F.relu(-value) / scale, self.time_steps)
        return (pos - neg) * scale

    def forward(self, value_seq: torch.Tensor, metric_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encode the sum over time of ``value_seq`` [T', *] (a sequence whose total is the activation)."""
        if not isinstance(value_seq, torch.Tensor) or value_seq.dim() < 2 or value_seq.shape[0] <= 0:
            raise ValueError("SignedQCFSSequenceEncoder: value_seq must be a tensor [T, ...] with a non-empty leading "
                             f"time dimension, but got {getattr(value_seq, 'shape', type(value_seq).__name__)}.")
        return self.encode(value_seq.sum(0), metric_mask)

    def statistics(self) -> Dict[str, object]:
        """The statistics of the last :meth:`encode` and the largest absolute membrane potential of both neurons."""
        membrane = []
        for node in (self.positive_neuron, self.negative_neuron):
            v = node.v
            membrane.append(float(v.detach().abs().max().cpu()) if isinstance(v, torch.Tensor) else abs(float(v)))
        out: Dict[str, object] = {"name": self.name}
        out.update({key: getattr(self, key) for key in _STAT_NAMES[:6]})
        out["metric_scope"] = self.metric_scope
        out["boundary_correction_fraction"] = self.boundary_correction_fraction
        out["membrane_abs_max"] = max(membrane)
        return out
