// Fire / output variants of the single-state neuron kernels (csrc/neuron.cpp), and the (charge, fire) dispatch. The
// charge (mode) gives H; the fire variant turns H into the output and the value that is reset:
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

#include "common.h"
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
  else return sigmoid_slope(z);
}

// ------------------------------------------------------------------------------------------------ charges
// The charge (mode) of csrc/neuron.cpp: 0 IF, 1 LIF, 2 PLIF, 3 QIF, 4 EIF, 5 leaky; and which (charge, fire) pairs
// the kernels are instantiated for.
constexpr int kNumModes = 6;
// The kernels' own LIF variant (never a `mode` argument): LIF whose tau is a power of two, charged with X * (1 / tau)
// instead of X / tau. The two are equal for every X (1 / tau is exact, and both round the same real number), and a
// vector multiply is much cheaper than a vector division where division is slow (on a Zen 1 EPYC the LIF forward at
// T = 64, N = 1024 took 44 us instead of 53). tau = 2, SpikingJelly's default, is the common case.
constexpr int kLifExact = 6;

// Charges whose form depends on decay_input (LIF, PLIF); the others are instantiated for decay_input = true only.
constexpr bool takes_decay_input(int mode) { return mode == 1 || mode == 2 || mode == kLifExact; }

// True when d is a power of two whose reciprocal is a float (then x / d == x * (1 / d) for every float x).
inline bool exact_reciprocal(float d) {
  int e = 0;
  return std::isfinite(d) && d > 0.0f && std::frexp(d, &e) == 0.5f && e >= -125 && e <= 127;
}

// f(PC): per-channel thresholds / offsets are instantiated for the offset fire only.
template <int FIRE, typename F>
void dispatch_channels(bool pc, F&& f) {
  if constexpr (FIRE == kOffset) dispatch_bool(pc, f);
  else f(std::false_type{});
}

// f(MODE, FIRE, ACT) for the combinations the op allows: every charge with the spike fire; KLIF and the analog
// output on the LIF charge; the count on the leaky charge (checked by the Python side and by check_variant).
// exact: LIF (mode 1) with the spike fire runs as kLifExact (the caller checked exact_reciprocal(tau)).
template <typename F>
void dispatch_variant(int mode, int fire, int act, F&& f, bool exact = false) {
  if (fire == kSpike) {
    if (mode == 0) f(IntC<0>{}, IntC<kSpike>{}, IntC<0>{});
    else if (mode == 1 && exact) f(IntC<kLifExact>{}, IntC<kSpike>{}, IntC<0>{});
    else if (mode == 1) f(IntC<1>{}, IntC<kSpike>{}, IntC<0>{});
    else if (mode == 2) f(IntC<2>{}, IntC<kSpike>{}, IntC<0>{});
    else if (mode == 3) f(IntC<3>{}, IntC<kSpike>{}, IntC<0>{});
    else f(IntC<4>{}, IntC<kSpike>{}, IntC<0>{});
  } else if (fire == kKlif) f(IntC<1>{}, IntC<kKlif>{}, IntC<0>{});
  else if (fire == kKlifScaled) f(IntC<1>{}, IntC<kKlifScaled>{}, IntC<0>{});
  else if (fire == kCount) f(IntC<5>{}, IntC<kCount>{}, IntC<0>{});
  else if (fire == kOffset) f(IntC<0>{}, IntC<kOffset>{}, IntC<0>{});
  else if (act == 0) f(IntC<1>{}, IntC<kAnalog>{}, IntC<0>{});
  else if (act == 1) f(IntC<1>{}, IntC<kAnalog>{}, IntC<1>{});
  else f(IntC<1>{}, IntC<kAnalog>{}, IntC<2>{});
}

inline void check_variant(int mode, int fire, int act) {
  check(mode >= 0 && mode < kNumModes, "mode must be 0 (IF), 1 (LIF), 2 (PLIF), 3 (QIF), 4 (EIF) or 5 (leaky)");
  check(fire >= 0 && fire < kNumFires, "fire must be 0 (spike), 1-2 (KLIF), 3 (count), 4 (analog) or 5 (offset)");
  check(fire == kSpike ? mode != 5 : (fire == kCount ? mode == 5 : (fire == kOffset ? mode == 0 : mode == 1)),
        "fire and mode do not combine: spike takes modes 0-4, KLIF and analog the LIF charge (1), count mode 5, "
        "offset the IF charge (0)");
  check(act >= 0 && act < kNumActs, "act must be 0 (identity), 1 (relu) or 2 (sigmoid)");
}

}  // namespace fastspike
