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
from .build import SpeckCore, check_speck
from .config import SpeckConfig, load_config, to_speck
from .limits import SPECK_LIMITS, SpeckReport, Violation
from .config import simulate

__all__ = ["SPECK_LIMITS", "Violation", "SpeckReport", "SpeckCore", "SpeckConfig", "check_speck", "to_speck",
           "load_config", "simulate"]
