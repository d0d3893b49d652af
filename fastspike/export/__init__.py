"""Deployment: NIR export/import, Loihi 2 (lava-dl netx HDF5) and Speck (DYNAP-CNN) export.

See docs/export.md for the conventions (discrete-time <-> ODE mapping, fixed-point formats, chip limits).
"""
from ._modules import CubaLIFNode, GraphModule, Scale, SumPool2d
from .nir import correct_norse_tau, from_nir, to_nir

__all__ = ["to_nir", "from_nir", "correct_norse_tau", "GraphModule", "CubaLIFNode", "SumPool2d", "Scale"]
