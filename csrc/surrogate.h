// Surrogate gradients d/dx of the smooth stand-ins for Heaviside(x), one per surrogate id.
// The ids and formulas are those of fastspike/surrogate.py (the Python classes are the reference);
// `a` and `b` are the two parameters each class exposes through `kernel_params()`.
#pragma once
#include <cmath>
#include <stdexcept>
#include <type_traits>

namespace fastspike {

constexpr int kNumSurrogates = 14;

template <int SG>
inline float surrogate_grad(float x, float a, float b) {
  const float ax = std::fabs(x);
  if constexpr (SG == 0) {  // Sigmoid(alpha)
    const float s = 1.0f / (1.0f + std::exp(-a * x));
    return a * s * (1.0f - s);
  } else if constexpr (SG == 1) {  // ATan(alpha)
    const float z = 1.57079632679489662f * a * x;
    return 0.5f * a / (1.0f + z * z);
  } else if constexpr (SG == 2) {  // PiecewiseQuadratic(alpha)
    return ax > 1.0f / a ? 0.0f : a - a * a * ax;
  } else if constexpr (SG == 3) {  // PiecewiseExp(alpha)
    return 0.5f * a * std::exp(-a * ax);
  } else if constexpr (SG == 4) {  // SoftSign(alpha)
    const float z = 1.0f / a + ax;
    return 1.0f / (2.0f * a * z * z);
  } else if constexpr (SG == 5) {  // SuperSpike(alpha)
    const float z = 1.0f + ax;
    return a / (z * z);
  } else if constexpr (SG == 6) {  // Erf(alpha)
    const float z = a * x;
    return a * 0.564189583547756287f * std::exp(-z * z);
  } else if constexpr (SG == 7) {  // PiecewiseLeakyReLU(w=a, c=b)
    return ax < a ? 0.5f / a : b;
  } else if constexpr (SG == 8) {  // Rect(alpha)
    return ax < 0.5f / a ? a : 0.0f;
  } else if constexpr (SG == 9) {  // S2NN(alpha=a, beta=b)
    const float s = 1.0f / (1.0f + std::exp(-a * x));
    return x < 0.0f ? a * s * (1.0f - s) : b / (x + 1.0f);
  } else if constexpr (SG == 10) {  // QPseudoSpike(alpha)
    return std::exp(-a * std::log(1.0f + 2.0f / (a - 1.0f) * ax));
  } else if constexpr (SG == 11) {  // LeakyKReLU(leak=a, k=b)
    return x >= 0.0f ? b : a;
  } else if constexpr (SG == 12) {  // LogTailedReLU(alpha)
    return x > 1.0f ? 1.0f / x : (x <= 0.0f ? a : 1.0f);
  } else {  // 13: NonzeroSignLogAbs(alpha)
    return 1.0f / (1.0f / a + ax);
  }
}

// Calls f(std::integral_constant<int, SG>{}) with the compile-time id matching `sg`.
template <typename F>
inline void dispatch_surrogate(int sg, F&& f) {
  switch (sg) {
#define FASTSPIKE_SG_CASE(i) \
  case i:                    \
    f(std::integral_constant<int, i>{}); \
    return;
    FASTSPIKE_SG_CASE(0) FASTSPIKE_SG_CASE(1) FASTSPIKE_SG_CASE(2) FASTSPIKE_SG_CASE(3)
    FASTSPIKE_SG_CASE(4) FASTSPIKE_SG_CASE(5) FASTSPIKE_SG_CASE(6) FASTSPIKE_SG_CASE(7)
    FASTSPIKE_SG_CASE(8) FASTSPIKE_SG_CASE(9) FASTSPIKE_SG_CASE(10) FASTSPIKE_SG_CASE(11)
    FASTSPIKE_SG_CASE(12) FASTSPIKE_SG_CASE(13)
#undef FASTSPIKE_SG_CASE
    default:
      throw std::invalid_argument("surrogate id must be in [0, 13]");
  }
}

}  // namespace fastspike
