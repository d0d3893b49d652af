"""Deployment: NIR export/import, Loihi 2 (lava-dl netx HDF5) and Speck (DYNAP-CNN) export.

See docs/export.md for the conventions (discrete-time <-> ODE mapping, fixed-point formats, chip limits).
"""
from ._modules import CubaLIFNode, GraphModule, Scale, SumPool2d
from .nir import correct_norse_tau, from_nir, to_nir
from .loihi import load_loihi, to_loihi
from .speck import SpeckConfig, SpeckReport, check_speck, to_speck
from ._transforms import fold_batchnorm, fold_bn_into, fold_bn_weights
from . import loihi, speck

__all__ = ["to_nir", "from_nir", "correct_norse_tau", "to_loihi", "load_loihi", "loihi", "check_speck", "to_speck",
           "SpeckReport", "SpeckConfig", "speck", "fold_batchnorm", "fold_bn_into",
           "fold_bn_weights", "GraphModule", "CubaLIFNode", "SumPool2d", "Scale"]
