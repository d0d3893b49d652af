"""SpikingJelly 2.0's temporal-difference operators (``ann2snn.operators``), the building blocks its Transformer
recipes put in place of the ANN's nonlinear and bilinear operations: each emits, per step, the change of the ANN
function applied to the running sums of its inputs, so the outputs summed over time equal the ANN function of the
inputs summed over time (``base.py``). Written for fastspike; numbers, state and arguments are SpikingJelly's."""
from .attention import TDMultiheadAttention, TDScaledDotProductAttention
from .base import TDModule
from .layers import (SNNElementWiseProduct, SNNMatrixOperator, TDConv2d, TDGELU, TDLayerNorm, TDLinear, TDRMSNorm,
                     TDSiLU, TDSoftmax)

__all__ = ["TDModule", "TDSoftmax", "TDLayerNorm", "TDRMSNorm", "TDGELU", "TDSiLU", "TDLinear", "TDConv2d",
           "SNNMatrixOperator", "SNNElementWiseProduct", "TDScaledDotProductAttention", "TDMultiheadAttention"]
