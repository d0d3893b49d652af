"""SpikingJelly 2.0's ANN2SNN recipes (the algorithms; ``FXConverter``/``ModuleConverter`` execute them).

Implemented: the recipe base classes, :class:`RateCodingRecipe` and :class:`LocalThresholdBalancingRecipe`.
SpikingJelly's Transformer recipes (``TransformerTDEquivalentRecipe``, ``STATransformerRecipe``,
``SpikeZIPTFQANNRecipe``) and its Qwen2 LLM glue are not implemented; docs/ann2snn.md says why.
"""
from .base import ConversionRecipe, FXConversionRecipe, ModuleConversionRecipe
from .local_threshold_balancing import LocalThresholdBalancingRecipe
from .rate_coding import RateCodingRecipe

__all__ = ["ConversionRecipe", "FXConversionRecipe", "ModuleConversionRecipe", "LocalThresholdBalancingRecipe",
           "RateCodingRecipe"]
