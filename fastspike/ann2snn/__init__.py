"""ANN-to-SNN conversion (torch.fx based) and the QCFS activation.

    snn = ann2snn.Converter(dataloader=loader, mode="max")(ann)     # or mode="99.9%", 0.9, "qcfs"
    out = ann2snn.simulate(snn, x, T=64)                             # mean output over T steps

See docs/ann2snn.md.
"""
from .converter import ConversionError, Converter, fuse_batchnorm, simulate
from .modules import ChannelAffine, SpikeMaxPool, StatisticObserver, VoltageScaler
from .qcfs import QCFS

__all__ = [
    "Converter",
    "ConversionError",
    "QCFS",
    "simulate",
    "fuse_batchnorm",
    "VoltageScaler",
    "SpikeMaxPool",
    "ChannelAffine",
    "StatisticObserver",
]
