// Fused multi-step gated LIF (GLIF, SpikingJelly's GatedLIFNode) on the CPU: forward and backward through time.
//
// Layout: x, spikes and V are [T, M] row-major float32 with M = NB x C x S: a step is NB rows per channel block,
// C channels, S neurons per channel (S contiguous). Per-channel coefficients, computed by the caller from the
// gates (fastspike/ops/gated_lif/__init__.py): coef [5, C] = (L, K, gamma, R, v_th) with L = 1 - alpha (1 - tau),
// K = (1 - alpha) linear_decay, R = (1 - gamma) v_subreset; inc [T, C] = 1 - beta (1 - conduct[t]).
//
//   V' = (L V - K) + X inc[t];  V' = (V' - L V gamma S) - R S;  S' = (V' - v_th) >= 0
//
// in that order of operations (SpikingJelly's functional.gated_lif_step), S the previous step's spike (0 before
// the first step; never detached). Parallelism: OpenMP over work units (one row of one channel, kBlock neurons
// of it), the time loop outside a `#pragma omp simd` loop over the unit. Never over time.
//
// The forward stores V after every step (fp32) when the backward will need it; the backward reads V[t] and
// V[t-1] and recomputes the spikes from them (exact: S = V >= v_th). Each unit writes its sums of dL/dL, dL/dK,
// dL/dgamma, dL/dR, dL/dv_th and dL/dinc[t] into its own row of a float64 buffer; the rows of a channel are then
// added in unit order. Deterministic whatever the thread count, no atomics.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "api.h"
#include "common.h"
#include "surrogate.h"

namespace fastspike {
namespace {

constexpr std::int64_t kBlock = kGatedLifBlock;
constexpr std::int64_t kMinForwardPerThread = std::int64_t(1) << 17;
constexpr std::int64_t kMinBackwardPerThread = std::int64_t(1) << 15;
constexpr int kCoefs = 5;  // L, K, gamma, R, v_th

struct Unit {
  std::int64_t base;  // offset of the unit's first neuron in a step
  std::int64_t len;   // neurons in the unit
  std::int64_t c;     // its channel
};

inline Unit unit_of(std::int64_t u, std::int64_t nsb, std::int64_t C, std::int64_t S) {
  const std::int64_t r = u / nsb, sb = u % nsb;
  return Unit{r * S + sb * kBlock, std::min(kBlock, S - sb * kBlock), r % C};
}

}  // namespace

void gated_lif_forward(std::uintptr_t x_, std::uintptr_t v0_, float v0_value, std::uintptr_t coef_, std::uintptr_t inc_,
                       std::uintptr_t s_, std::uintptr_t vseq_, std::uintptr_t vlast_, std::int64_t T, std::int64_t NB,
                       std::int64_t C, std::int64_t S, int nthreads) {
  check(T >= 0 && NB >= 0 && C >= 1 && S >= 0, "gated_lif_forward: T, NB, S must be >= 0 and C >= 1");
  const float* x = ptr<const float>(x_);
  const float* v0 = v0_ ? ptr<const float>(v0_) : nullptr;
  const float* coef = ptr<const float>(coef_);
  const float* inc = ptr<const float>(inc_);
  float* s = ptr<float>(s_);
  float* vseq = vseq_ ? ptr<float>(vseq_) : nullptr;
  float* vlast = ptr<float>(vlast_);
  const std::int64_t M = NB * C * S;
  const std::int64_t nsb = (S + kBlock - 1) / kBlock;
  const std::int64_t units = NB * C * nsb;
  const int threads = clamp_threads(nthreads, units, T * M, kMinForwardPerThread);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t u = 0; u < units; ++u) {
    const Unit w = unit_of(u, nsb, C, S);
    const float L = coef[w.c], K = coef[C + w.c], g = coef[2 * C + w.c], R = coef[3 * C + w.c];
    const float th = coef[4 * C + w.c];
    float v[kBlock], sp[kBlock];
    for (std::int64_t i = 0; i < w.len; ++i) {
      v[i] = v0 ? v0[w.base + i] : v0_value;
      sp[i] = 0.0f;
    }
    for (std::int64_t t = 0; t < T; ++t) {
      const std::int64_t o = t * M + w.base;
      const float in = inc[t * C + w.c];
      const float* __restrict xt = x + o;
      float* __restrict st = s + o;
      float* __restrict vt = vseq ? vseq + o : nullptr;
#pragma omp simd
      for (std::int64_t i = 0; i < w.len; ++i) {
        const float lv = L * v[i];
        float h = (lv - K) + xt[i] * in;
        h = (h - lv * g * sp[i]) - R * sp[i];
        const float sn = (h - th) >= 0.0f ? 1.0f : 0.0f;
        st[i] = sn;
        v[i] = h;
        sp[i] = sn;
      }
      if (vt)
        for (std::int64_t i = 0; i < w.len; ++i) vt[i] = v[i];
    }
    for (std::int64_t i = 0; i < w.len; ++i) vlast[w.base + i] = v[i];
  }
}

namespace {

// One unit's reverse-time loop. gv: dL/dV[t] carried from step t+1; gsc: dL/dS[t] from step t+1's reset terms.
// part: the unit's row of sums (kCoefs, then T entries for inc).
template <int SG>
void backward_unit(const Unit& w, float a, float b, const float* gs, const float* gvlast, const float* x,
                   const float* vseq, const float* v0, float v0_value, const float* coef, const float* inc, float* gx,
                   float* gv0, double* part, std::int64_t T, std::int64_t M, std::int64_t C) {
  const float L = coef[w.c], g = coef[2 * C + w.c], R = coef[3 * C + w.c], th = coef[4 * C + w.c];
  float gv[kBlock], gsc[kBlock], vinit[kBlock];
  float a_l[kBlock], a_k[kBlock], a_g[kBlock], a_r[kBlock], a_th[kBlock];
  for (std::int64_t i = 0; i < w.len; ++i) {
    gv[i] = gvlast ? gvlast[w.base + i] : 0.0f;
    gsc[i] = 0.0f;
    vinit[i] = v0 ? v0[w.base + i] : v0_value;
    a_l[i] = a_k[i] = a_g[i] = a_r[i] = a_th[i] = 0.0f;
  }
  for (std::int64_t t = T - 1; t >= 0; --t) {
    const std::int64_t o = t * M + w.base;
    const float in = inc[t * C + w.c];
    const float prev = t > 0 ? 1.0f : 0.0f;  // S before the first step is 0
    const float* __restrict vt = vseq + o;
    const float* __restrict vp = t > 0 ? vseq + o - M : vinit;
    const float* __restrict xt = x + o;
    const float* __restrict gst = gs + o;
    float* __restrict gxt = gx + o;
    float sum_in = 0.0f;
#pragma omp simd reduction(+ : sum_in)
    for (std::int64_t i = 0; i < w.len; ++i) {
      const float vpi = vp[i];
      const float sp = (vpi - th) >= 0.0f ? prev : 0.0f;
      const float sg = surrogate_grad<SG>(vt[i] - th, a, b);
      const float g_s = gst[i] + gsc[i];
      const float g_v = gv[i] + g_s * sg;
      const float keep = 1.0f - g * sp;
      gxt[i] = g_v * in;
      sum_in += g_v * xt[i];
      a_th[i] -= g_s * sg;
      a_l[i] += g_v * vpi * keep;
      a_k[i] -= g_v;
      a_g[i] -= g_v * L * vpi * sp;
      a_r[i] -= g_v * sp;
      gv[i] = g_v * L * keep;
      gsc[i] = -g_v * (L * vpi * g + R);
    }
    part[kCoefs + t] = sum_in;
  }
  double sums[kCoefs] = {0.0, 0.0, 0.0, 0.0, 0.0};
  for (std::int64_t i = 0; i < w.len; ++i) {
    sums[0] += a_l[i];
    sums[1] += a_k[i];
    sums[2] += a_g[i];
    sums[3] += a_r[i];
    sums[4] += a_th[i];
  }
  for (int k = 0; k < kCoefs; ++k) part[k] = sums[k];
  if (gv0)
    for (std::int64_t i = 0; i < w.len; ++i) gv0[w.base + i] = gv[i];
}

}  // namespace

void gated_lif_backward(std::uintptr_t gs_, std::uintptr_t gvlast_, std::uintptr_t x_, std::uintptr_t vseq_,
                        std::uintptr_t v0_, float v0_value, std::uintptr_t coef_, std::uintptr_t inc_,
                        std::uintptr_t gx_, std::uintptr_t gv0_, std::uintptr_t gcoef_, std::uintptr_t ginc_,
                        std::int64_t T, std::int64_t NB, std::int64_t C, std::int64_t S, int sg, float a, float b,
                        int nthreads) {
  check(gs_ != 0 && x_ != 0 && vseq_ != 0 && gx_ != 0 && gcoef_ != 0 && ginc_ != 0,
        "gated_lif_backward needs grad_spike, x, v_seq, grad_x, grad_coef and grad_inc");
  check(T >= 0 && NB >= 0 && C >= 1 && S >= 0, "gated_lif_backward: T, NB, S must be >= 0 and C >= 1");
  const std::int64_t M = NB * C * S;
  const std::int64_t nsb = (S + kBlock - 1) / kBlock;
  const std::int64_t units = NB * C * nsb;
  const std::int64_t width = kCoefs + T;
  std::vector<double> part(static_cast<std::size_t>(units * width));
  const float* gs = ptr<const float>(gs_);
  const float* gvlast = gvlast_ ? ptr<const float>(gvlast_) : nullptr;
  const float* x = ptr<const float>(x_);
  const float* vseq = ptr<const float>(vseq_);
  const float* v0 = v0_ ? ptr<const float>(v0_) : nullptr;
  const float* coef = ptr<const float>(coef_);
  const float* inc = ptr<const float>(inc_);
  float* gx = ptr<float>(gx_);
  float* gv0 = gv0_ ? ptr<float>(gv0_) : nullptr;
  const int threads = clamp_threads(nthreads, units, T * M, kMinBackwardPerThread);
  dispatch_surrogate(sg, [&](auto id) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t u = 0; u < units; ++u)
      backward_unit<decltype(id)::value>(unit_of(u, nsb, C, S), a, b, gs, gvlast, x, vseq, v0, v0_value, coef, inc, gx,
                                         gv0, part.data() + u * width, T, M, C);
  });
  // the channel sums, over its units in unit order (rows nb = 0..NB-1, then blocks)
  float* gcoef = ptr<float>(gcoef_);
  float* ginc = ptr<float>(ginc_);
  const int rthreads = clamp_threads(nthreads, C, units * width, kMinBackwardPerThread);
#pragma omp parallel for schedule(static) num_threads(rthreads)
  for (std::int64_t c = 0; c < C; ++c) {
    std::vector<double> acc(static_cast<std::size_t>(width), 0.0);
    for (std::int64_t nb = 0; nb < NB; ++nb)
      for (std::int64_t sb = 0; sb < nsb; ++sb) {
        const double* row = part.data() + ((nb * C + c) * nsb + sb) * width;
        for (std::int64_t k = 0; k < width; ++k) acc[k] += row[k];
      }
    for (int k = 0; k < kCoefs; ++k) gcoef[k * C + c] = static_cast<float>(acc[k]);
    for (std::int64_t t = 0; t < T; ++t) ginc[t * C + c] = static_cast<float>(acc[kCoefs + t]);
  }
}

}  // namespace fastspike
