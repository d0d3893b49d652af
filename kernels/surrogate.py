"""Surrogate gradients inside Triton kernels, selected by a constexpr id (fastspike.surrogate.KERNEL_IDS).

Same ids and formulas as csrc/surrogate.h; ``a`` and ``b`` are the surrogate's ``kernel_params()``.
"""
import triton
import triton.language as tl


@triton.jit
def surrogate_grad(x, a, b, SG: tl.constexpr):
    ax = tl.abs(x)
    if SG == 0:  # Sigmoid
        s = tl.sigmoid(a * x)
        g = a * s * (1.0 - s)
    elif SG == 1:  # ATan
        z = 1.5707963267948966 * a * x
        g = 0.5 * a / (1.0 + z * z)
    elif SG == 2:  # PiecewiseQuadratic
        g = tl.where(ax > 1.0 / a, 0.0, a - a * a * ax)
    elif SG == 3:  # PiecewiseExp
        g = 0.5 * a * tl.exp(-a * ax)
    elif SG == 4:  # SoftSign
        z = 1.0 / a + ax
        g = 1.0 / (2.0 * a * z * z)
    elif SG == 5:  # SuperSpike
        z = 1.0 + ax
        g = a / (z * z)
    elif SG == 6:  # Erf
        z = a * x
        g = a * 0.5641895835477563 * tl.exp(-z * z)
    elif SG == 7:  # PiecewiseLeakyReLU (w=a, c=b)
        g = tl.where(ax < a, 0.5 / a, b + 0.0 * x)
    elif SG == 8:  # Rect
        g = tl.where(ax < 0.5 / a, a + 0.0 * x, 0.0)
    elif SG == 9:  # S2NN (alpha=a, beta=b)
        s = tl.sigmoid(a * x)
        g = tl.where(x < 0.0, a * s * (1.0 - s), b / (tl.maximum(x, 0.0) + 1.0))
    elif SG == 10:  # QPseudoSpike
        g = tl.exp(-a * tl.log(1.0 + 2.0 / (a - 1.0) * ax))
    elif SG == 11:  # LeakyKReLU (leak=a, k=b)
        g = tl.where(x >= 0.0, b + 0.0 * x, a + 0.0 * x)
    elif SG == 12:  # LogTailedReLU
        g = tl.where(x > 1.0, 1.0 / tl.maximum(x, 1.0), tl.where(x <= 0.0, a + 0.0 * x, 1.0))
    else:  # 13: NonzeroSignLogAbs
        g = 1.0 / (1.0 / a + ax)
    return g
