// Surrogate gradients d/dx of the smooth stand-ins for Heaviside(x), one per surrogate id.
// The ids and formulas are those of fastspike/surrogate.py (the Python classes are the reference);
// `a` and `b` are the two parameters each class exposes through `kernel_params()`.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "simd.h"

namespace fastspike {

// Bit reinterpretation that compilers vectorise (memcpy of a scalar blocks gcc's vectoriser).
template <typename To, typename From>
inline To bitcast(From v) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_bit_cast(To, v);
#else
  To out;
  std::memcpy(&out, &v, sizeof(out));
  return out;
#endif
}

// a * b + c, fused where the target has FMA (the build turns off implicit contraction so that the
// forward matches the reference bit for bit; gradients only need fp32 accuracy, and an explicit fma
// halves their polynomial cost). Without hardware FMA, std::fma would be a slow library call.
inline float madd(float a, float b, float c) {
#if defined(FASTSPIKE_HAS_FMA)
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// exp and log written so that `#pragma omp simd` loops vectorise them (libm's expf/logf are scalar
// calls unless -ffast-math, which would also break NaN handling). Range reduction to 2^n * e^r and a
// degree-6 minimax polynomial (the classic Cephes single-precision coefficients): about 1 ulp on
// [-87, 88]; inputs are clamped to that range, which only matters for gradients that are ~0 anyway (NaN stays NaN).
inline float vexp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  const float n = std::floor(madd(x, 1.44269504088896341f, 0.5f));
  float r = madd(n, -0.693359375f, x);
  r = madd(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = madd(p, r, 1.3981999507e-3f);
  p = madd(p, r, 8.3334519073e-3f);
  p = madd(p, r, 4.1665795894e-2f);
  p = madd(p, r, 1.6666665459e-1f);
  p = madd(p, r, 5.0000001201e-1f);
  p = madd(p * r, r, r + 1.0f);
  const float scale = bitcast<float>((static_cast<std::int32_t>(n) + 127) << 23);
  return p * scale;
}

// s (1 - s) for s = sigmoid(z): the sigmoid's slope, evaluated as torch (and SpikingJelly) evaluate it, cancellation
// in 1 - s for large z included. The more accurate e / (1 + e)^2 with e = exp(-|z|) is also cheaper (one exponent
// clamp instead of two), but it gives ~1e-11 where torch gives exactly 0 (z > ~17), and an optimizer that normalises
// gradients (Adam) turns that into visible parameter differences from SpikingJelly.
inline float sigmoid_slope(float z) {
  const float s = 1.0f / (1.0f + vexp(-z));
  return s * (1.0f - s);
}

// Natural log for x > 0 (finite, normal): split x = m * 2^e with m in [sqrt(1/2), sqrt(2)).
inline float vlog(float x) {
  const std::int32_t bits = bitcast<std::int32_t>(x);
  float e = static_cast<float>(((bits >> 23) & 0xff) - 126);
  float m = bitcast<float>((bits & 0x007fffff) | 0x3f000000);  // mantissa in [0.5, 1)
  const bool small = m < 0.707106781186547524f;
  m = small ? m + m : m;
  e = small ? e - 1.0f : e;
  const float f = m - 1.0f;
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float y = f * z * p;
  y += -2.12194440e-4f * e;
  y += -0.5f * z;
  return f + y + 0.693359375f * e;
}

constexpr int kNumSurrogates = 14;

template <int SG>
inline float surrogate_grad(float x, float a, float b) {
  const float ax = std::fabs(x);
  if constexpr (SG == 0) {  // Sigmoid(alpha)
    return a * sigmoid_slope(a * x);
  } else if constexpr (SG == 1) {  // ATan(alpha)
    const float z = 1.57079632679489662f * a * x;
    return 0.5f * a / (1.0f + z * z);
  } else if constexpr (SG == 2) {  // PiecewiseQuadratic(alpha)
    return ax > 1.0f / a ? 0.0f : a - a * a * ax;
  } else if constexpr (SG == 3) {  // PiecewiseExp(alpha)
    return 0.5f * a * vexp(-a * ax);
  } else if constexpr (SG == 4) {  // SoftSign(alpha)
    const float z = 1.0f / a + ax;
    return 1.0f / (2.0f * a * z * z);
  } else if constexpr (SG == 5) {  // SuperSpike(alpha)
    const float z = 1.0f + ax;
    return a / (z * z);
  } else if constexpr (SG == 6) {  // Erf(alpha)
    const float z = a * x;
    return a * 0.564189583547756287f * vexp(-z * z);
  } else if constexpr (SG == 7) {  // PiecewiseLeakyReLU(w=a, c=b)
    return ax < a ? 0.5f / a : b;
  } else if constexpr (SG == 8) {  // Rect(alpha)
    return ax < 0.5f / a ? a : 0.0f;
  } else if constexpr (SG == 9) {  // S2NN(alpha=a, beta=b)
    return x < 0.0f ? a * sigmoid_slope(a * x) : b / (x + 1.0f);
  } else if constexpr (SG == 10) {  // QPseudoSpike(alpha)
    return vexp(-a * vlog(1.0f + 2.0f / (a - 1.0f) * ax));
  } else if constexpr (SG == 11) {  // LeakyKReLU(leak=a, k=b)
    return x >= 0.0f ? b : a;
  } else if constexpr (SG == 12) {  // LogTailedReLU(alpha)
    return x > 1.0f ? 1.0f / x : (x <= 0.0f ? a : 1.0f);
  } else {  // 13: NonzeroSignLogAbs(alpha)
    return 1.0f / (1.0f / a + ax);
  }
}

// Calls f(std::integral_constant<int, SG>{}) with the compile-time id matching `sg` (I: the first id tried).
template <int I = 0, typename F>
inline void dispatch_surrogate(int sg, F&& f) {
  if constexpr (I < kNumSurrogates) {
    if (sg == I) return f(std::integral_constant<int, I>{});
    dispatch_surrogate<I + 1>(sg, std::forward<F>(f));
  } else {
    throw std::invalid_argument("surrogate id must be in [0, 13]");
  }
}

// The surrogate gradient over one row of neurons: out[i] = surrogate_grad<SG>(h[i] - thr_i, a, b), with thr_i = thr[i]
// where thr is given (per-channel thresholds), else v_th. The neuron backward kernels take it through a pointer chosen
// once per call (surrogate_row_fn) and read the row from L1, so that their own templates are not instantiated once per
// surrogate: that multiplication made csrc/neuron.cpp and csrc/neuron2.cpp 70% of the extension's build time.
using SurrogateRow = void (*)(const float* h, const float* thr, float v_th, std::int64_t len, float a, float b,
                              float* out);

template <int SG>
void surrogate_row(const float* __restrict h, const float* __restrict thr, float v_th, std::int64_t len, float a,
                   float b, float* __restrict out) {
  if (thr) {
#pragma omp simd
    for (std::int64_t i = 0; i < len; ++i) out[i] = surrogate_grad<SG>(h[i] - thr[i], a, b);
  } else {
#pragma omp simd
    for (std::int64_t i = 0; i < len; ++i) out[i] = surrogate_grad<SG>(h[i] - v_th, a, b);
  }
}

inline SurrogateRow surrogate_row_fn(int sg) {
  SurrogateRow fn = nullptr;
  dispatch_surrogate(sg, [&](auto id) { fn = &surrogate_row<decltype(id)::value>; });
  return fn;
}

// The surrogates the neuron backward kernels compute inside their step loop, instantiated once each: Sigmoid
// (SpikingJelly's default) and ATan. A separate row pass costs them 10-15% (measured on a Zen 3 EPYC: the loop that
// computes the slope no longer overlaps the loads of the step), against ~2% for the cheap ones.
// f(IntC<SG>) for those, else f(IntC<kSurrogateRow>) with `row` set to the surrogate's row function.
constexpr int kSurrogateRow = -1;

template <typename F>
void dispatch_fused_surrogate(int sg, SurrogateRow& row, F&& f) {
  row = surrogate_row_fn(sg);  // also checks the id
  if (sg == 0) f(std::integral_constant<int, 0>{});
  else if (sg == 1) f(std::integral_constant<int, 1>{});
  else f(std::integral_constant<int, kSurrogateRow>{});
}

// The surrogate gradient of element i of a step: computed here (SG >= 0) or read from the step's row.
template <int SG>
inline float step_surrogate(const float* __restrict sgt, std::int64_t i, float z, float a, float b) {
  if constexpr (SG == kSurrogateRow) return sgt[i];
  else return surrogate_grad<SG>(z, a, b);
}

}  // namespace fastspike
