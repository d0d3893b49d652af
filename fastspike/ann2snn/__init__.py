"""ANN-to-SNN conversion (torch.fx based), the QCFS activation, and SpikingJelly 2.0's recipe API.

    snn = ann2snn.ReLUConverter(dataloader=loader, mode="max")(ann)  # fastspike's converter; or "99.9%", 0.9, "qcfs"
    out = ann2snn.simulate(snn, x, T=64)                             # mean output over T steps

    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode="max")  # SpikingJelly 2.0's API, same numbers
    snn = ann2snn.Converter(recipe=recipe).convert(ann)               # (= FXConverter(recipe).convert(ann))

See docs/ann2snn.md.
"""
from .converter import ConversionError, Converter, ReLUConverter, fuse_batchnorm, simulate
from .delay import estimate_delay_start
from .fx_converter import FXConverter, ModuleConverter
from .modules import ChannelAffine, ChannelVoltageScaler, SpikeMaxPool, StatisticObserver, VoltageHook, VoltageScaler
from .qcfs import QCFS, SignedQCFSSequenceEncoder
from .recipes import (ConversionRecipe, FXConversionRecipe, LocalThresholdBalancingRecipe, ModuleConversionRecipe,
                      RateCodingRecipe, SpikeZIPTFQANNRecipe, STATransformerRecipe, TransformerTDEquivalentRecipe)
from .utils import download_url

__all__ = [
    # fastspike's converter
    "ReLUConverter",
    "ConversionError",
    "QCFS",
    "simulate",
    "fuse_batchnorm",
    "VoltageScaler",
    "SpikeMaxPool",
    "ChannelAffine",
    "StatisticObserver",
    # SpikingJelly 2.0's recipe API
    "Converter",
    "FXConverter",
    "ModuleConverter",
    "ConversionRecipe",
    "FXConversionRecipe",
    "ModuleConversionRecipe",
    "RateCodingRecipe",
    "LocalThresholdBalancingRecipe",
    "TransformerTDEquivalentRecipe",
    "STATransformerRecipe",
    "SpikeZIPTFQANNRecipe",
    "ChannelVoltageScaler",
    "VoltageHook",
    "SignedQCFSSequenceEncoder",
    "estimate_delay_start",
    "download_url",
]
