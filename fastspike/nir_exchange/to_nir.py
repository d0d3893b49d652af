"""``export_to_nir`` with SpikingJelly 2.0's signature, on fastspike's NIR exporter (``fastspike.export.to_nir``).

Same numbers as SpikingJelly's exporter for the layers both support (IF ``r = 1/dt``; LIF ``tau * dt``, ``r = 1``
or ``tau``, ``v_leak = v_reset``; ParametricLIF as LIF; Affine/Linear, Conv1d/2d, AvgPool2d, Flatten with
per-sample dims). Differences: node names are the model's module names (``"0"``, ``"features.3"``, and
``"input"``/``"output"``) where SpikingJelly's nirtorch tracer writes ``"_0"``, ``"input_1"``; a soft reset is
exported (``v_reset = 0`` plus the metadata ``{"reset": "subtract"}``) where SpikingJelly raises; grouped
convolutions, residual sums, SumPool2d, Scale and fastspike's CubaLIFNode are exported too; the file is written
atomically.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

from ..export.nir import to_nir

__all__ = ["export_to_nir"]


def export_to_nir(net: nn.Module, example_input: torch.Tensor, save_path: Optional[Union[str, Path]] = None,
                  dt: float = 1e-4):
    """Export ``net`` to a ``nir.NIRGraph`` traced on ``example_input`` ([N, *] for single-step models, [T, N, *]
    for multi-step ones), with ``dt`` seconds per step; also written to ``save_path`` when given."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0:
        raise ValueError(f"export_to_nir: dt must be a positive number of seconds per step, but got {dt!r}.")
    return to_nir(net, example_input, dt=float(dt), path=None if save_path is None else os.fspath(save_path))
