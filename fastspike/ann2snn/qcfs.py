"""QCFS: the quantization clip-floor-shift activation of Bu et al. (ICLR 2022).

    h(x) = lambda * floor(clamp(x / lambda, 0, 1) * L + phi) / L

with a trainable threshold ``lambda`` (one scalar per layer), ``L`` quantization levels and shift ``phi``
(1/2 minimises the expected conversion error). The floor has a straight-through gradient, so ``lambda``
and the preceding weights train with ordinary backpropagation. Use it in place of ``nn.ReLU`` while
training the ANN; :class:`fastspike.ann2snn.ReLUConverter` then turns each QCFS into an IF neuron with
soft reset, threshold ``lambda`` and initial membrane potential ``phi * lambda`` (``lambda / 2``), whose
spike count over T = L steps equals h(x) / lambda * L for a constant input.

:class:`SignedQCFSSequenceEncoder` (SpikingJelly 2.0's, in ``signed_qcfs.py``) encodes signed activations with
per-channel QCFS scales as positive and negative spike trains.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from fastspike import quantize

from .signed_qcfs import SignedQCFSSequenceEncoder

__all__ = ["QCFS", "SignedQCFSSequenceEncoder"]


class QCFS(nn.Module):
    """Clip-floor-shift activation with a trainable threshold (drop-in replacement for ``nn.ReLU``).

    :param L: number of quantization levels (the paper uses 4 to 16; conversion is exact in expectation for T = L).
    :param threshold: initial value of the trainable clip threshold lambda (the paper initialises it to 8).
    :param phi: shift added before the floor (0.5 in the paper; 0 gives the plain clip-floor activation).
    :param inplace: accepted for ``nn.ReLU`` compatibility; ignored.
    """

    def __init__(self, L: int = 8, threshold: float = 8.0, phi: float = 0.5, inplace: bool = False):
        super().__init__()
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise ValueError(f"QCFS needs a positive integer number of levels L, but got L={L!r}.")
        if not float(threshold) > 0.0:
            raise ValueError(f"QCFS needs a positive initial threshold, but got threshold={threshold!r}.")
        if not 0.0 <= float(phi) < 1.0:
            raise ValueError(f"QCFS needs a shift phi in [0, 1), but got phi={phi!r}.")
        self.L = L
        self.phi = float(phi)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.threshold.to(dtype=x.dtype)
        y = torch.clamp(x / lam, 0.0, 1.0)
        y = quantize.floor(y * self.L + self.phi) / self.L
        return y * lam

    def extra_repr(self) -> str:
        return f"L={self.L}, threshold={float(self.threshold):.4g}, phi={self.phi}"
