// Fire / output variants of the single-state neuron kernels (csrc/neuron.cpp). The charge (mode) gives H; the
// fire variant turns H into the output and the value that is reset:
//   0 spike         S = H >= thr, reset on H (IF / LIF / PLIF / QIF / EIF)
//   1 klif          F = relu(k H), S = F >= thr, reset on F                     (KLIF, k a learnable scalar)
//   2 klif_scaled   F = relu(k H), S = F >= thr, reset on F / k by thr / k      (KLIF with scale_reset)
//   3 count         C = round(clamp(H / thr, 0, q1)) (half to even), V = H - C thr; gradient 1 / thr where
//                   q2 <= H / thr <= q3                                         (ILIF, soft reset only)
//   4 analog        output act(H - q1), S = H >= thr only resets                (LIAF; act: ACT below)
//   5 offset        S = H + q1 >= thr, reset on H                               (ActivationAwareIF, v_offset q1)
// ACT (fire 4): 0 identity, 1 relu, 2 sigmoid.
#pragma once
#include <cmath>

#include "surrogate.h"

namespace fastspike {

enum Fire { kSpike = 0, kKlif = 1, kKlifScaled = 2, kCount = 3, kAnalog = 4, kOffset = 5 };
constexpr int kNumFires = 6;
constexpr int kNumActs = 3;

template <int FIRE>
constexpr bool is_klif() {
  return FIRE == kKlif || FIRE == kKlifScaled;
}

// round half to even of c >= 0 (torch.round), exact (c - floor(c) has no rounding error) and branch-free, so that
// the time-step loop vectorises.
inline float round_even(float c) {
  const float fl = std::floor(c);
  const float fr = c - fl;
  const float odd = fl - 2.0f * std::floor(0.5f * fl);
  const float up = fr > 0.5f ? 1.0f : 0.0f;
  const float tie = fr == 0.5f ? 1.0f : 0.0f;
  return fl + up + tie * odd;
}

// ILIF's multi-level spike count of H.
inline float spike_count(float hv, float v_th, float max_count) {
  float c = hv / v_th;
  c = c > 0.0f ? c : 0.0f;
  c = c < max_count ? c : max_count;
  return round_even(c);
}

template <int ACT>
inline float act_value(float z) {
  if constexpr (ACT == 0) return z;
  else if constexpr (ACT == 1) return z > 0.0f ? z : 0.0f;
  else return 1.0f / (1.0f + vexp(-z));
}

template <int ACT>
inline float act_grad(float z) {
  if constexpr (ACT == 0) return 1.0f;
  else if constexpr (ACT == 1) return z > 0.0f ? 1.0f : 0.0f;
  else {
    const float s = 1.0f / (1.0f + vexp(-z));
    return s * (1.0f - s);
  }
}

}  // namespace fastspike
