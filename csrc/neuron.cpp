// Fused multi-step IF / LIF / ParametricLIF / QIF / EIF neurons on the CPU: forward and backward through time.
//
// Layout: every tensor is [T, N] row-major (time outer, neurons inner), float32, contiguous.
// Parallelism: OpenMP over blocks of kBlock neurons; each block keeps its membrane state in a small
// local array and runs the time loop outside a `#pragma omp simd` loop over the block. Never over time.
//
// Charge (mode): 0 IF       H = V + X
//                1 LIF      H = V + (X - (V - Vr)) / tau      (decay_input)   or V - (V - Vr) / tau + X
//                2 PLIF     H = V + (X - (V - Vr)) * k        (decay_input)   or V - (V - Vr) * k + X,  k = sigmoid(w)
//                3 QIF      H = V + (X + a0 (V - v_rest)(V - v_c)) / tau                  p1, p2, p3 = a0, v_rest, v_c
//                4 EIF      H = V + (X + v_rest - V + dT exp((V - theta_rh) / dT)) / tau  p1-p3 = dT, theta_rh, v_rest
//                5 leaky    H = p1 V + X                                  (ILIF: p1 = 1 - 1/tau)
// Fire (csrc/neuron_fire.h): 0 spike S = H >= thr, reset on H; 1-2 KLIF; 3 ILIF count; 4 LIAF analog output;
// 5 ActivationAwareIF's offset test H + v_offset >= thr.
// Reset: hard V = S ? Vr : H,   soft V = H - thr * S.
// The expressions are written exactly as the reference (fastspike/ops/reference.py) evaluates them,
// and the build disables FMA contraction, so forward results match the reference bit for bit (EIF: to the
// rounding of exp, computed by the vectorisable vexp of surrogate.h).
//
// Saved for the backward: X (which already exists), not H. The backward recomputes H for one block of
// neurons at a time into a per-thread buffer of T x kBlock floats (cache resident), then runs the
// reverse-time loop over it. The forward thus writes only S (one stream, no fresh H buffer whose page
// faults cost more than the kernel), and the recomputed H is bit-identical to the forward's (same code).
// V0 is either a [N] buffer or, when its address is 0, one constant for every neuron (a freshly reset
// layer: no V0 tensor is made, read or differentiated).
// Per-channel threshold and offset (the offset fire, ActivationAwareIF with 1-D v_threshold / v_offset): a [2, C]
// buffer (thresholds, then offsets); neuron n of a row is in channel (n / inner) % C. Each block gathers its
// values once into local arrays, outside the time loop; the PC template flag keeps the scalar path unchanged.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "api.h"
#include "common.h"
#include "neuron_fire.h"
#include "surrogate.h"

namespace fastspike {
namespace {

constexpr std::int64_t kBlock = kNeuronBlock;
// Minimum [T x N] elements per thread before a kernel goes parallel (forward / backward: the backward
// does about six times the work per element).
constexpr std::int64_t kMinForwardPerThread = std::int64_t(1) << 17;
constexpr std::int64_t kMinBackwardPerThread = std::int64_t(1) << 15;

// exp for the EIF charge: vexp, and +inf past float's range as torch.exp (vexp clamps its input).
inline float charge_exp(float x) { return x > 88.72283f ? __builtin_inff() : vexp(x); }

// Per-channel thresholds and offsets: pc = [thresholds C | offsets C], or nullptr.
struct Channels {
  const float* pc;
  std::int64_t C, inner;
};

// The block [n0, n0 + len)'s thresholds and offsets (once per block, outside the time loop).
inline void gather_channels(const Channels& ch, std::int64_t n0, std::int64_t len, float* thr, float* off) {
  for (std::int64_t i = 0; i < len; ++i) {
    const std::int64_t c = ((n0 + i) / ch.inner) % ch.C;
    thr[i] = ch.pc[c];
    off[i] = ch.pc[ch.C + c];
  }
}

// The scalars of one step (forward and recomputation).
struct StepParams {
  float decay, v_th, v_reset, p1, p2, p3;
  float k, q1;      // fire: KLIF's k; ILIF's max count / LIAF's output offset
  float inv_decay;  // 1 / decay, used by kLifExact only
};

struct NeuronParams {
  int mode;          // 0 IF, 1 LIF, 2 PLIF, 3 QIF, 4 EIF, 5 leaky
  float decay;       // tau for LIF / QIF / EIF, k = sigmoid(w) for PLIF, unused for IF
  float p1, p2, p3;  // QIF: a0, v_rest, v_c; EIF: delta_T, theta_rh, v_rest
  bool decay_input;
  float v_th;
  float v_reset;  // charge uses 0 when soft
  bool soft_reset;
  bool detach_reset;
  float f2, f3;  // ILIF's gradient window
};

// One time step of charge, fire and reset over a block of neurons. The flags are template parameters
// so the loop has no branches left and vectorises; only the requested outputs are written. ht gets what the
// backward reads: H, or F = relu(k H) for KLIF. PC: per-element thresholds / offsets in thr_b / off_b.
template <int MODE, int FIRE, int ACT, bool DECAY_INPUT, bool SOFT, bool STORE_S, bool STORE_H, bool STORE_VSEQ,
          bool PC = false>
inline void step_row(const float* __restrict xt, float* __restrict v, float* __restrict st, float* __restrict ht,
                     float* __restrict vt, std::int64_t len, const StepParams p,
                     const float* __restrict thr_b = nullptr, const float* __restrict off_b = nullptr) {
  const float decay = p.decay, v_th = p.v_th, v_reset = p.v_reset, p1 = p.p1, p2 = p.p2, p3 = p.p3, k = p.k;
  const float vr_charge = SOFT ? 0.0f : v_reset;
  const float thr_reset = FIRE == kKlifScaled ? v_th / k : v_th;
#pragma omp simd
  for (std::int64_t i = 0; i < len; ++i) {
    const float vv = v[i];
    const float xv = xt[i];
    float hv;
    if constexpr (MODE == 0) hv = vv + xv;
    else if constexpr (MODE == 1)
      hv = DECAY_INPUT ? vv + (xv - (vv - vr_charge)) / decay : vv - (vv - vr_charge) / decay + xv;
    else if constexpr (MODE == kLifExact)
      hv = DECAY_INPUT ? vv + (xv - (vv - vr_charge)) * p.inv_decay : vv - (vv - vr_charge) * p.inv_decay + xv;
    else if constexpr (MODE == 2)
      hv = DECAY_INPUT ? vv + (xv - (vv - vr_charge)) * decay : vv - (vv - vr_charge) * decay + xv;
    else if constexpr (MODE == 3) hv = vv + (xv + p1 * (vv - p2) * (vv - p3)) / decay;
    else if constexpr (MODE == 4) hv = vv + (xv + p3 - vv + p1 * charge_exp((vv - p2) / p1)) / decay;
    else hv = p1 * vv + xv;
    float qv = hv;  // the stored value
    const float th = PC ? thr_b[i] : v_th;
    float out, vn;
    if constexpr (FIRE == kCount) {
      out = spike_count(hv, v_th, p.q1);
      vn = hv - out * v_th;
    } else {
      // rv: the value that is compared and reset
      float rv = hv;
      if constexpr (FIRE == kOffset) qv = hv + (PC ? off_b[i] : p.q1);  // the compared value; V resets from H
      if constexpr (is_klif<FIRE>()) {
        const float u = k * hv;
        qv = u > 0.0f ? u : 0.0f;
        rv = FIRE == kKlifScaled ? qv / k : qv;
      }
      const float sv = qv >= th ? 1.0f : 0.0f;
      vn = SOFT ? rv - (PC ? th : thr_reset) * sv : sv * v_reset + (1.0f - sv) * rv;
      if constexpr (FIRE == kAnalog) out = act_value<ACT>(hv - p.q1);
      else out = sv;
    }
    v[i] = vn;
    if constexpr (STORE_S) st[i] = out;
    if constexpr (STORE_H) ht[i] = qv;
    if constexpr (STORE_VSEQ) vt[i] = vn;
  }
}

template <int MODE, int FIRE, int ACT, bool DECAY_INPUT, bool SOFT, bool STORE_H, bool STORE_VSEQ, bool PC>
void forward_impl(const float* x, const float* v0, float v0_value, float* s, float* h, float* vseq, float* vlast,
                  std::int64_t T, std::int64_t N, const StepParams p, const Channels ch, int nthreads) {
  const std::int64_t nblocks = (N + kBlock - 1) / kBlock;
  const int threads = clamp_threads(nthreads, nblocks, T * N, kMinForwardPerThread);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const std::int64_t n0 = b * kBlock;
    const std::int64_t len = std::min(kBlock, N - n0);
    float v[kBlock];
    float thr_b[PC ? kBlock : 1], off_b[PC ? kBlock : 1];
    if constexpr (PC) gather_channels(ch, n0, len, thr_b, off_b);
    for (std::int64_t i = 0; i < len; ++i) v[i] = v0 ? v0[n0 + i] : v0_value;
    for (std::int64_t t = 0; t < T; ++t) {
      const std::int64_t o = t * N + n0;
      if (t + kRowsAhead < T) {
        prefetch_row(x + o + kRowsAhead * N, len);
        prefetch_row_for_write(s + o + kRowsAhead * N, len);
      }
      step_row<MODE, FIRE, ACT, DECAY_INPUT, SOFT, true, STORE_H, STORE_VSEQ, PC>(
          x + o, v, s + o, STORE_H ? h + o : nullptr, STORE_VSEQ ? vseq + o : nullptr, len, p, thr_b, off_b);
    }
    for (std::int64_t i = 0; i < len; ++i) vlast[n0 + i] = v[i];
  }
}

// H (KLIF: F) of one block for every step, into hbuf[t * kBlock + i] (the backward's recomputation).
template <int MODE, int FIRE, bool DECAY_INPUT, bool SOFT, bool PC>
void recompute_block(const float* x, const float* v0, float* hbuf, std::int64_t T, std::int64_t N, std::int64_t len,
                     const StepParams p, const float* thr_b, const float* off_b) {
  float v[kBlock];
  for (std::int64_t i = 0; i < len; ++i) v[i] = v0[i];
  for (std::int64_t t = 0; t < T; ++t) {
    if (t + kRowsAhead < T) prefetch_row(x + (t + kRowsAhead) * N, len);
    step_row<MODE, FIRE, 0, DECAY_INPUT, SOFT, false, true, false, PC>(x + t * N, v, nullptr, hbuf + t * kBlock,
                                                                       nullptr, len, p, thr_b, off_b);
  }
}

using RecomputeFn = void (*)(const float*, const float*, float*, std::int64_t, std::int64_t, std::int64_t,
                             const StepParams, const float*, const float*);

RecomputeFn select_recompute(int mode, int fire, bool decay_input, bool soft, bool pc, bool exact) {
  RecomputeFn fn = nullptr;
  dispatch_variant(
      mode, fire, 0,
      [&](auto m, auto fi, auto) {
        dispatch_bool(decay_input || !takes_decay_input(m.value), [&](auto di) {
          dispatch_bool(soft, [&](auto so) {
            dispatch_channels<decltype(fi)::value>(pc, [&](auto c) {
              fn = &recompute_block<decltype(m)::value, decltype(fi)::value, decltype(di)::value, decltype(so)::value,
                                    decltype(c)::value>;
            });
          });
        });
      },
      exact);
  return fn;
}

Channels channels_of(std::uintptr_t pc_, std::int64_t channels, std::int64_t inner, int fire) {
  check(pc_ == 0 || (fire == kOffset && channels >= 1 && inner >= 1),
        "per-channel thresholds take the offset fire (5), channels >= 1 and inner >= 1");
  return Channels{pc_ ? ptr<const float>(pc_) : nullptr, channels, inner};
}

}  // namespace

void neuron_forward(std::uintptr_t x_, std::uintptr_t v0_, float v0_value, std::uintptr_t s_, std::uintptr_t h_,
                    std::uintptr_t vseq_, std::uintptr_t vlast_, std::int64_t T, std::int64_t N, int mode, float decay,
                    bool decay_input, float v_th, float v_reset, bool soft_reset, int nthreads, float p1, float p2,
                    float p3, int fire, int act, float k, float q1, std::uintptr_t pc_, std::int64_t channels,
                    std::int64_t inner) {
  check_variant(mode, fire, act);
  const Channels ch = channels_of(pc_, channels, inner, fire);
  check(fire != kCount || soft_reset, "the count fire resets softly");
  const float* x = ptr<const float>(x_);
  const float* v0 = v0_ ? ptr<const float>(v0_) : nullptr;
  float* s = ptr<float>(s_);
  float* h = h_ ? ptr<float>(h_) : nullptr;
  float* vseq = vseq_ ? ptr<float>(vseq_) : nullptr;
  float* vlast = ptr<float>(vlast_);
  const StepParams p{decay, v_th, v_reset, p1, p2, p3, k, q1, 1.0f / decay};
  dispatch_variant(
      mode, fire, act,
      [&](auto m, auto fi, auto ac) {
        dispatch_bool(decay_input || !takes_decay_input(m.value), [&](auto di) {
          dispatch_bool(soft_reset, [&](auto soft) {
            dispatch_bool(h != nullptr, [&](auto sh) {
              dispatch_bool(vseq != nullptr, [&](auto sv) {
                dispatch_channels<decltype(fi)::value>(ch.pc != nullptr, [&](auto c) {
                  forward_impl<decltype(m)::value, decltype(fi)::value, decltype(ac)::value, decltype(di)::value,
                               decltype(soft)::value, decltype(sh)::value, decltype(sv)::value, decltype(c)::value>(
                      x, v0, v0_value, s, h, vseq, vlast, T, N, p, ch, nthreads);
                });
              });
            });
          });
        });
      },
      exact_reciprocal(decay));
}

namespace {

// Per-step constants of the backward.
struct BackwardConsts {
  float a, b;  // surrogate parameters
  float v_th, vr;
  float detach;  // 0 with detach_reset: drops the surrogate term of dV/dH
  float dh_dx, dh_dv;
  float x_term;      // 1 with decay_input (dH/dk contains X), else 0
  float q1, q2, q3;  // QIF: dH/dV = 1 + q1 (2 V - q2); EIF: 1 + (exp((V - q2) q3) - 1) q1
  float k;           // KLIF's k
  float f1, f2, f3;  // fire: ILIF's (unused, grad_min, grad_max); LIAF's output offset in f1
};

// How dH/dV[t-1] is known: a constant (IF, LIF, leaky), or from V[t-1] (PLIF needs it for dH/dk; QIF, EIF for
// dH/dV).
enum Kind { kConstant = 0, kPlif = 1, kQif = 2, kEif = 3 };
constexpr int kind_of(int mode) { return (mode < 2 || mode > 4) ? kConstant : mode - 1; }

// dL/dH of one element from dL/d(output) (go) and dL/dV (gv) for each fire variant; KLIF adds dL/dk to gk.
// v_th / f1: the element's threshold and offset (c.v_th / c.f1, or its channel's); sg: the surrogate gradient at
// qv - v_th (unused by the count, which has its own window).
template <int FIRE, int ACT, bool SOFT>
inline float grad_h(const BackwardConsts& c, float qv, float sg, float go, float gv, float& gk, float v_th, float f1) {
  if constexpr (FIRE == kCount) {
    const float sc = qv / v_th;
    const float win = (sc >= c.f2 && sc <= c.f3) ? 1.0f : 0.0f;
    return go * win / v_th + gv * (1.0f - c.detach * win);
  } else {
    const float sv = qv >= v_th ? 1.0f : 0.0f;
    if constexpr (is_klif<FIRE>()) {  // qv = F = relu(k H)
      const bool scaled = FIRE == kKlifScaled;
      const float rv = scaled ? qv / c.k : qv;
      const float thr = scaled ? v_th / c.k : v_th;
      const float dv_dr = SOFT ? 1.0f : 1.0f - sv;
      const float dv_ds = SOFT ? -thr : c.vr - rv;
      const float gf = go * sg + gv * (c.detach * dv_ds * sg + dv_dr * (scaled ? 1.0f / c.k : 1.0f));
      const bool pos = qv > 0.0f;
      float dk = pos ? gf * (qv / c.k) : 0.0f;                           // dF/dk = H = F / k where F > 0
      if (scaled) dk -= gv * (SOFT ? rv - sv * thr : dv_dr * rv) / c.k;  // V's own 1/k
      gk += dk;
      return pos ? gf * c.k : 0.0f;
    } else {
      const float hv = FIRE == kOffset ? qv - f1 : qv;  // offset: qv = H + v_offset
      const float dv_dh = SOFT ? 1.0f - c.detach * v_th * sg : (1.0f - sv) + c.detach * (c.vr - hv) * sg;
      const float gout = FIRE == kAnalog ? act_grad<ACT>(qv - f1) : sg;
      return go * gout + gv * dv_dh;
    }
  }
}

// One reverse time step over one block of neurons. A plain function with restrict pointers (not a
// lambda): captured state hides the access pattern from gcc's vectoriser. FIRST marks t == 0, where
// V[t-1] is V0 rather than reset(H[t-1]). SG: a fused surrogate, or kSurrogateRow to read sgt, this step's row.
template <int SG, int KIND, int FIRE, int ACT, bool SOFT, bool HAS_GVSEQ, bool FIRST, bool PC>
inline void backward_step(const BackwardConsts c, std::int64_t len, const float* __restrict ht,
                          const float* __restrict sgt, const float* __restrict gst, const float* __restrict gvt,
                          const float* __restrict hp, const float* __restrict xt, const float* __restrict v0b,
                          float* __restrict gxt, float* __restrict carry, float* __restrict gk_acc,
                          const float* __restrict thr_b, const float* __restrict off_b) {
#pragma omp simd
  for (std::int64_t i = 0; i < len; ++i) {
    float gv = carry[i];
    if constexpr (HAS_GVSEQ) gv += gvt[i];
    float gk = gk_acc[i];
    const float thr = PC ? thr_b[i] : c.v_th;
    const float sg = FIRE == kCount ? 0.0f : step_surrogate<SG>(sgt, i, ht[i] - thr, c.a, c.b);
    const float gh = grad_h<FIRE, ACT, SOFT>(c, ht[i], sg, gst[i], gv, gk, thr, PC ? off_b[i] : c.f1);
    if constexpr (is_klif<FIRE>()) gk_acc[i] = gk;
    gxt[i] = gh * c.dh_dx;
    if constexpr (KIND == kConstant) {
      carry[i] = gh * c.dh_dv;
    } else {
      float vprev;
      if constexpr (FIRST) {
        vprev = v0b[i];
      } else {
        const float hpv = hp[i];
        const float spv = hpv >= c.v_th ? 1.0f : 0.0f;
        vprev = SOFT ? hpv - c.v_th * spv : spv * c.vr + (1.0f - spv) * hpv;
      }
      if constexpr (KIND == kPlif) {
        carry[i] = gh * c.dh_dv;
        gk_acc[i] += gh * (c.x_term * xt[i] - (vprev - c.vr));  // dL/dH * dH/dk
      } else if constexpr (KIND == kQif) {
        carry[i] = gh * madd(c.q1, 2.0f * vprev - c.q2, 1.0f);
      } else {
        carry[i] = gh * madd(vexp((vprev - c.q2) * c.q3) - 1.0f, c.q1, 1.0f);
      }
    }
  }
}

template <int SG, int KIND, int FIRE, int ACT, bool SOFT, bool HAS_GVSEQ, bool PC>
void backward_impl(const NeuronParams& p, const StepParams& sp, RecomputeFn recompute, SurrogateRow sg_row, float a,
                   float bpar, const float* gs, const float* gvseq, const float* gvlast, const float* x,
                   const float* v0, float v0_value, float* gx, float* gv0, double* gk_partial, std::int64_t T,
                   std::int64_t N, const Channels ch, int nthreads) {
  const std::int64_t nblocks = (N + kBlock - 1) / kBlock;
  BackwardConsts c;
  c.a = a;
  c.b = bpar;
  c.v_th = p.v_th;
  c.vr = p.v_reset;
  c.detach = p.detach_reset ? 0.0f : 1.0f;
  c.dh_dv = p.mode == 0 ? 1.0f : (p.mode == 1 ? 1.0f - 1.0f / p.decay : 1.0f - p.decay);
  c.dh_dx = p.decay_input ? (p.mode == 1 ? 1.0f / p.decay : (p.mode == 2 ? p.decay : 1.0f)) : 1.0f;
  if (p.mode == 3 || p.mode == 4) c.dh_dx = 1.0f / p.decay;
  if (p.mode == 5) c.dh_dv = p.p1, c.dh_dx = 1.0f;
  c.x_term = p.decay_input ? 1.0f : 0.0f;
  c.q1 = p.mode == 3 ? p.p1 / p.decay : 1.0f / p.decay;
  c.q2 = p.mode == 3 ? p.p2 + p.p3 : p.p2;
  c.q3 = p.mode == 4 ? 1.0f / p.p1 : 0.0f;
  c.k = sp.k;
  c.f1 = sp.q1;
  c.f2 = p.f2;
  c.f3 = p.f3;
  StepParams rp = sp;
  rp.v_reset = p.soft_reset ? 0.0f : p.v_reset;
  const int threads = clamp_threads(nthreads, nblocks, T * N, kMinBackwardPerThread);
  ThreadErrors errors;  // a thread's buffer could not be allocated: raised after the region
#pragma omp parallel num_threads(threads)
  {
    // this thread's H, [T][kBlock]: scratch kept between calls (common.h), neither allocated nor zeroed per call;
    // every element read was written by recompute (the first len of each row)
    float* hbuf = nullptr;
    errors.run([&] { hbuf = scratch<struct NeuronBackwardH, float>(static_cast<std::size_t>(T) * kBlock); });
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < nblocks; ++b) {
      if (errors.failed()) continue;
      const std::int64_t n0 = b * kBlock;
      const std::int64_t len = std::min(kBlock, N - n0);
      float v0blk[kBlock];  // V[-1] of this block: the given v0 or the constant v0_value
      float carry[kBlock];
      float gk_acc[kBlock];
      float sgbuf[kBlock];  // the surrogate gradients of one step
      float thr_b[PC ? kBlock : 1], off_b[PC ? kBlock : 1];
      if constexpr (PC) gather_channels(ch, n0, len, thr_b, off_b);
      for (std::int64_t i = 0; i < len; ++i) {
        v0blk[i] = v0 ? v0[n0 + i] : v0_value;
        carry[i] = gvlast ? gvlast[n0 + i] : 0.0f;
        gk_acc[i] = 0.0f;
      }
      recompute(x + n0, v0blk, hbuf, T, N, len, rp, thr_b, off_b);
      for (std::int64_t t = T - 1; t >= 0; --t) {
        const std::int64_t o = t * N + n0;
        if (t >= kRowsAhead) {
          prefetch_row(gs + o - kRowsAhead * N, len);
          prefetch_row_for_write(gx + o - kRowsAhead * N, len);
        }
        const float* ht = hbuf + t * kBlock;
        const float* gvt = HAS_GVSEQ ? gvseq + o : nullptr;
        const float* xt = KIND == kPlif ? x + o : nullptr;
        if constexpr (SG == kSurrogateRow && FIRE != kCount)
          sg_row(ht, PC ? thr_b : nullptr, c.v_th, len, c.a, c.b, sgbuf);
        if (t > 0) {
          backward_step<SG, KIND, FIRE, ACT, SOFT, HAS_GVSEQ, false, PC>(
              c, len, ht, sgbuf, gs + o, gvt, ht - kBlock, xt, v0blk, gx + o, carry, gk_acc, thr_b, off_b);
        } else {
          backward_step<SG, KIND, FIRE, ACT, SOFT, HAS_GVSEQ, true, PC>(c, len, ht, sgbuf, gs + o, gvt, nullptr, xt,
                                                                        v0blk, gx + o, carry, gk_acc, thr_b, off_b);
        }
      }
      if (gv0)
        for (std::int64_t i = 0; i < len; ++i) gv0[n0 + i] = carry[i];
      if ((KIND == kPlif || is_klif<FIRE>()) && gk_partial) {
        double acc = 0.0;
        for (std::int64_t i = 0; i < len; ++i) acc += gk_acc[i];
        gk_partial[b] = acc;
      }
    }
  }
  errors.rethrow();
}

}  // namespace

void neuron_backward(std::uintptr_t gs_, std::uintptr_t gvseq_, std::uintptr_t gvlast_, std::uintptr_t x_,
                     std::uintptr_t v0_, float v0_value, std::uintptr_t gx_, std::uintptr_t gv0_,
                     std::uintptr_t gk_partial_, std::int64_t T, std::int64_t N, int mode, float decay,
                     bool decay_input, float v_th, float v_reset, bool soft_reset, bool detach_reset, int sg, float a,
                     float b, int nthreads, float p1, float p2, float p3, int fire, int act, float k, float q1,
                     float q2, float q3, std::uintptr_t pc_, std::int64_t channels, std::int64_t inner) {
  check_variant(mode, fire, act);
  const Channels ch = channels_of(pc_, channels, inner, fire);
  check(x_ != 0, "neuron_backward needs x (it recomputes H from x and v0)");
  check((mode != 2 && fire != kKlif && fire != kKlifScaled) || gk_partial_,
        "PLIF / KLIF backward needs a gk_partial buffer");
  const RecomputeFn recompute =
      select_recompute(mode, fire, decay_input, soft_reset, ch.pc != nullptr, exact_reciprocal(decay));
  const NeuronParams p{mode,       decay,        p1, p2, p3, decay_input, v_th, soft_reset ? 0.0f : v_reset,
                       soft_reset, detach_reset, q2, q3};
  const StepParams sp{decay, v_th, v_reset, p1, p2, p3, k, q1, 1.0f / decay};
  SurrogateRow sg_row = nullptr;
  // the count has its own gradient window: one instantiation, no surrogate
  dispatch_fused_surrogate(fire == kCount ? 2 : sg, sg_row, [&](auto id) {
    dispatch_variant(mode, fire, act, [&](auto m, auto fi, auto ac) {
      dispatch_bool(soft_reset, [&](auto soft) {
        dispatch_bool(gvseq_ != 0, [&](auto has_gvseq) {
          dispatch_channels<decltype(fi)::value>(ch.pc != nullptr, [&](auto pcf) {
            constexpr int SG = decltype(fi)::value == kCount ? kSurrogateRow : decltype(id)::value;
            backward_impl<SG, kind_of(decltype(m)::value), decltype(fi)::value, decltype(ac)::value,
                          decltype(soft)::value, decltype(has_gvseq)::value, decltype(pcf)::value>(
                p, sp, recompute, sg_row, a, b, ptr<const float>(gs_), gvseq_ ? ptr<const float>(gvseq_) : nullptr,
                gvlast_ ? ptr<const float>(gvlast_) : nullptr, ptr<const float>(x_),
                v0_ ? ptr<const float>(v0_) : nullptr, v0_value, ptr<float>(gx_), gv0_ ? ptr<float>(gv0_) : nullptr,
                gk_partial_ ? ptr<double>(gk_partial_) : nullptr, T, N, ch, nthreads);
          });
        });
      });
    });
  });
}

}  // namespace fastspike
