"""SpikingJelly 2.0's ANN2SNN recipes (the algorithms; ``FXConverter``/``ModuleConverter`` execute them).

Implemented: the recipe base classes, :class:`RateCodingRecipe`, :class:`LocalThresholdBalancingRecipe` and the
Transformer recipes :class:`TransformerTDEquivalentRecipe`, :class:`STATransformerRecipe` and
:class:`SpikeZIPTFQANNRecipe`.
SpikingJelly's Qwen2 LLM glue is not implemented; docs/ann2snn.md says why.
"""
from .base import ConversionRecipe, FXConversionRecipe, ModuleConversionRecipe
from .local_threshold_balancing import LocalThresholdBalancingRecipe
from .rate_coding import RateCodingRecipe
from .spikezip_qann import SpikeZIPTFQANNRecipe
from .sta_transformer import STATransformerRecipe
from .transformer_td_equivalent import TransformerTDEquivalentRecipe

__all__ = ["ConversionRecipe", "FXConversionRecipe", "ModuleConversionRecipe", "LocalThresholdBalancingRecipe",
           "RateCodingRecipe", "SpikeZIPTFQANNRecipe", "STATransformerRecipe", "TransformerTDEquivalentRecipe"]
