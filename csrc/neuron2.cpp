// Fused multi-step neurons with two state variables (V and U) on the CPU: forward and backward through time.
//
// Layout: every tensor is [T, N] row-major (time outer, neurons inner), float32, contiguous.
// Parallelism: OpenMP over blocks of kBlock neurons, time loop outside a `#pragma omp simd` loop over the
// block (as csrc/neuron.cpp). Never over time.
//
// Model (mode), p[0..6] the parameters:
//   0 Izhikevich (U = w)   H = V + (X + a0 (V - v_rest)(V - v_c) - W) / tau
//                          W' = W + (a (H - v_rest) - W) / tau_w + b S       p = tau, a0, v_rest, v_c, tau_w, a, b
//   1 CUBA-LIF (U = c)     C' = C c_decay + X;  H = V v_decay + C'           p = c_decay, v_decay
//   2 CLIF (U = m)         H = V - V / tau + X;  M' = M sigmoid(H / tau) + S
//                          V' = H - S (v_th + sigmoid(M'))                   p = tau
// Fire: S = H >= v_th. Reset (modes 0, 1): hard V' = S v_reset + (1 - S) H, soft V' = H - v_th S.
// The expressions follow the reference (fastspike/ops/reference/neuron2.py) operation by operation; CLIF's
// sigmoid uses the vectorisable vexp of surrogate.h (to the rounding of exp).
//
// The forward stores neither H nor U: the backward recomputes, block by block into per-thread buffers of
// T x kBlock floats, H and the state before each step that its derivatives need (Izhikevich: V[t-1] for
// dH/dV; CLIF: M[t-1]), then runs the reverse-time loop. A V0 / U0 address of 0 means a constant start.
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "api.h"
#include "common.h"
#include "surrogate.h"

namespace fastspike {
namespace {

constexpr std::int64_t kBlock = kNeuron2Block;
constexpr std::int64_t kMinForwardPerThread = std::int64_t(1) << 17;
constexpr std::int64_t kMinBackwardPerThread = std::int64_t(1) << 15;
constexpr int kNumModes = 3;

struct Params {
  float p[7];
  float v_th;
  float v_reset;  // 0 with soft reset
};

inline float sigmoid(float x) { return 1.0f / (1.0f + vexp(-x)); }

// One step over a block: reads V, U in place, writes the new ones; optionally S, H, the previous state
// the backward needs (P) and the state sequences.
template <int MODE, bool SOFT, bool STORE_S, bool STORE_HP, bool STORE_SEQ>
inline void step_row(const Params& c, const float* __restrict xt, float* __restrict v, float* __restrict u,
                     float* __restrict st, float* __restrict ht, float* __restrict pt, float* __restrict vt,
                     float* __restrict ut, std::int64_t len) {
  const float v_th = c.v_th, v_reset = c.v_reset;
  const float p0 = c.p[0], p1 = c.p[1], p2 = c.p[2], p3 = c.p[3], p4 = c.p[4], p5 = c.p[5], p6 = c.p[6];
#pragma omp simd
  for (std::int64_t i = 0; i < len; ++i) {
    const float vv = v[i];
    const float uv = u[i];
    const float xv = xt[i];
    float hv, sv, un, vn;
    if constexpr (MODE == 0) {
      hv = vv + (xv + p1 * (vv - p2) * (vv - p3) - uv) / p0;
      sv = hv >= v_th ? 1.0f : 0.0f;
      un = uv + (p5 * (hv - p2) - uv) / p4 + p6 * sv;
      vn = SOFT ? hv - sv * v_th : sv * v_reset + (1.0f - sv) * hv;
    } else if constexpr (MODE == 1) {
      un = uv * p0 + xv;
      hv = vv * p1 + un;
      sv = hv >= v_th ? 1.0f : 0.0f;
      vn = SOFT ? hv - sv * v_th : sv * v_reset + (1.0f - sv) * hv;
    } else {
      hv = vv - vv / p0 + xv;
      sv = hv >= v_th ? 1.0f : 0.0f;
      un = uv * sigmoid(hv / p0) + sv;
      vn = hv - sv * (v_th + sigmoid(un));
    }
    if constexpr (STORE_HP) {
      ht[i] = hv;
      pt[i] = MODE == 0 ? vv : uv;
    }
    v[i] = vn;
    u[i] = un;
    if constexpr (STORE_S) st[i] = sv;
    if constexpr (STORE_SEQ) {
      vt[i] = vn;
      ut[i] = un;
    }
  }
}

template <int MODE, bool SOFT, bool STORE_SEQ>
void forward_impl(const Params& c, const float* x, const float* v0, float v0_value, const float* u0, float u0_value,
                  float* s, float* vseq, float* useq, float* vlast, float* ulast, std::int64_t T, std::int64_t N,
                  int nthreads) {
  const std::int64_t nblocks = (N + kBlock - 1) / kBlock;
  const int threads = clamp_threads(nthreads, nblocks, T * N, kMinForwardPerThread);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const std::int64_t n0 = b * kBlock;
    const std::int64_t len = std::min(kBlock, N - n0);
    float v[kBlock], u[kBlock];
    for (std::int64_t i = 0; i < len; ++i) {
      v[i] = v0 ? v0[n0 + i] : v0_value;
      u[i] = u0 ? u0[n0 + i] : u0_value;
    }
    for (std::int64_t t = 0; t < T; ++t) {
      const std::int64_t o = t * N + n0;
      if (t + kRowsAhead < T) {
        prefetch_row(x + o + kRowsAhead * N, len);
        prefetch_row_for_write(s + o + kRowsAhead * N, len);
      }
      step_row<MODE, SOFT, true, false, STORE_SEQ>(c, x + o, v, u, s + o, nullptr, nullptr,
                                                   STORE_SEQ ? vseq + o : nullptr, STORE_SEQ ? useq + o : nullptr, len);
    }
    for (std::int64_t i = 0; i < len; ++i) {
      vlast[n0 + i] = v[i];
      ulast[n0 + i] = u[i];
    }
  }
}

template <typename F>
void dispatch_mode(int mode, F&& f) {
  if (mode == 0) f(std::integral_constant<int, 0>{});
  else if (mode == 1) f(std::integral_constant<int, 1>{});
  else f(std::integral_constant<int, 2>{});
}

Params make_params(float v_th, float v_reset, bool soft, float p0, float p1, float p2, float p3, float p4, float p5,
                   float p6) {
  return Params{{p0, p1, p2, p3, p4, p5, p6}, v_th, soft ? 0.0f : v_reset};
}

}  // namespace

void neuron2_forward(std::uintptr_t x_, std::uintptr_t v0_, float v0_value, std::uintptr_t u0_, float u0_value,
                     std::uintptr_t s_, std::uintptr_t vseq_, std::uintptr_t useq_, std::uintptr_t vlast_,
                     std::uintptr_t ulast_, std::int64_t T, std::int64_t N, int mode, float v_th, float v_reset,
                     bool soft_reset, int nthreads, float p0, float p1, float p2, float p3, float p4, float p5,
                     float p6) {
  check(mode >= 0 && mode < kNumModes, "mode must be 0 (Izhikevich), 1 (CUBA-LIF) or 2 (CLIF)");
  check((vseq_ == 0) == (useq_ == 0), "v_seq and u_seq must both be given or both be 0");
  const Params c = make_params(v_th, v_reset, soft_reset, p0, p1, p2, p3, p4, p5, p6);
  const float* v0 = v0_ ? ptr<const float>(v0_) : nullptr;
  const float* u0 = u0_ ? ptr<const float>(u0_) : nullptr;
  float* vseq = vseq_ ? ptr<float>(vseq_) : nullptr;
  float* useq = useq_ ? ptr<float>(useq_) : nullptr;
  dispatch_mode(mode, [&](auto m) {
    dispatch_bool(soft_reset || m.value == 2, [&](auto soft) {
      dispatch_bool(vseq != nullptr, [&](auto sv) {
        forward_impl<decltype(m)::value, decltype(soft)::value, decltype(sv)::value>(
            c, ptr<const float>(x_), v0, v0_value, u0, u0_value, ptr<float>(s_), vseq, useq, ptr<float>(vlast_),
            ptr<float>(ulast_), T, N, nthreads);
      });
    });
  });
}

namespace {

// One reverse time step over one block: carries cv = dL/dV[t], cu = dL/dU[t] become dL/dV[t-1], dL/dU[t-1]. SG: a
// fused surrogate, or kSurrogateRow to read sgt, this step's row.
template <int SG, int MODE, bool SOFT, bool DETACH, bool HAS_GSEQ>
inline void backward_step(const Params& c, float a, float b, std::int64_t len, const float* __restrict ht,
                          const float* __restrict sgt, const float* __restrict pt, const float* __restrict gst,
                          const float* __restrict gvt, const float* __restrict gut, float* __restrict gxt,
                          float* __restrict cv, float* __restrict cu) {
  const float v_th = c.v_th, vr = c.v_reset;
  const float p0 = c.p[0], p1 = c.p[1], p2 = c.p[2], p3 = c.p[3], p4 = c.p[4], p5 = c.p[5], p6 = c.p[6];
#pragma omp simd
  for (std::int64_t i = 0; i < len; ++i) {
    const float hv = ht[i];
    const float sv = hv >= v_th ? 1.0f : 0.0f;
    const float sg = step_surrogate<SG>(sgt, i, hv - v_th, a, b);
    float gv = cv[i], gu = cu[i];
    if constexpr (HAS_GSEQ) {
      gv += gvt[i];
      gu += gut[i];
    }
    if constexpr (MODE == 2) {
      const float mp = pt[i];
      const float sh = sigmoid(hv / p0);
      const float sm = sigmoid(mp * sh + sv);
      const float gm = gu - gv * sv * sm * (1.0f - sm);
      const float gsp = gst[i] - gv * (v_th + sm) + gm;
      const float gh = gv + gsp * sg + gm * mp * sh * (1.0f - sh) / p0;
      gxt[i] = gh;
      cv[i] = gh * (1.0f - 1.0f / p0);
      cu[i] = gm * sh;
    } else {
      float dv_dh;
      if constexpr (SOFT) dv_dh = DETACH ? 1.0f : 1.0f - v_th * sg;
      else dv_dh = DETACH ? 1.0f - sv : (1.0f - sv) + (vr - hv) * sg;
      if constexpr (MODE == 0) {
        const float gh = gst[i] * sg + gv * dv_dh + gu * (p5 / p4 + p6 * sg);
        gxt[i] = gh / p0;
        cv[i] = gh * (1.0f + p1 * (2.0f * pt[i] - p2 - p3) / p0);
        cu[i] = gu * (1.0f - 1.0f / p4) - gh / p0;
      } else {
        const float gh = gst[i] * sg + gv * dv_dh;
        const float gc = gu + gh;
        gxt[i] = gc;
        cv[i] = gh * p1;
        cu[i] = gc * p0;
      }
    }
  }
}

template <int SG, int MODE, bool SOFT, bool DETACH, bool HAS_GSEQ>
void backward_impl(const Params& c, SurrogateRow sg_row, float a, float b, const float* gs, const float* gvseq,
                   const float* guseq, const float* gvlast, const float* gulast, const float* x, const float* v0,
                   float v0_value, const float* u0, float u0_value, float* gx, float* gv0, float* gu0, std::int64_t T,
                   std::int64_t N, int nthreads) {
  const std::int64_t nblocks = (N + kBlock - 1) / kBlock;
  const int threads = clamp_threads(nthreads, nblocks, T * N, kMinBackwardPerThread);
  ThreadErrors errors;
#pragma omp parallel num_threads(threads)
  {
    // this thread's H and previous state, [T][kBlock]: scratch kept between calls (common.h), neither allocated
    // nor zeroed per call; every element read was written by the recomputation below (the first len of each row)
    float *hbuf = nullptr, *pbuf = nullptr;
    errors.run([&] {
      hbuf = scratch<struct Neuron2BackwardH, float>(static_cast<std::size_t>(T) * kBlock);
      pbuf = scratch<struct Neuron2BackwardPrev, float>(static_cast<std::size_t>(T) * kBlock);
    });
#pragma omp for schedule(static)
    for (std::int64_t blk = 0; blk < nblocks; ++blk) {
      if (errors.failed()) continue;
      const std::int64_t n0 = blk * kBlock;
      const std::int64_t len = std::min(kBlock, N - n0);
      float v[kBlock], u[kBlock], cv[kBlock], cu[kBlock], sgbuf[kBlock];
      for (std::int64_t i = 0; i < len; ++i) {
        v[i] = v0 ? v0[n0 + i] : v0_value;
        u[i] = u0 ? u0[n0 + i] : u0_value;
        cv[i] = gvlast ? gvlast[n0 + i] : 0.0f;
        cu[i] = gulast ? gulast[n0 + i] : 0.0f;
      }
      for (std::int64_t t = 0; t < T; ++t) {
        if (t + kRowsAhead < T) prefetch_row(x + (t + kRowsAhead) * N + n0, len);
        step_row<MODE, SOFT, false, true, false>(c, x + t * N + n0, v, u, nullptr, hbuf + t * kBlock, pbuf + t * kBlock,
                                                 nullptr, nullptr, len);
      }
      for (std::int64_t t = T - 1; t >= 0; --t) {
        const std::int64_t o = t * N + n0;
        if (t >= kRowsAhead) {
          prefetch_row(gs + o - kRowsAhead * N, len);
          prefetch_row_for_write(gx + o - kRowsAhead * N, len);
        }
        const float* ht = hbuf + t * kBlock;
        if constexpr (SG == kSurrogateRow) sg_row(ht, nullptr, c.v_th, len, a, b, sgbuf);
        backward_step<SG, MODE, SOFT, DETACH, HAS_GSEQ>(c, a, b, len, ht, sgbuf, pbuf + t * kBlock, gs + o,
                                                        HAS_GSEQ ? gvseq + o : nullptr, HAS_GSEQ ? guseq + o : nullptr,
                                                        gx + o, cv, cu);
      }
      if (gv0)
        for (std::int64_t i = 0; i < len; ++i) gv0[n0 + i] = cv[i];
      if (gu0)
        for (std::int64_t i = 0; i < len; ++i) gu0[n0 + i] = cu[i];
    }
  }
  errors.rethrow();
}

}  // namespace

void neuron2_backward(std::uintptr_t gs_, std::uintptr_t gvseq_, std::uintptr_t guseq_, std::uintptr_t gvlast_,
                      std::uintptr_t gulast_, std::uintptr_t x_, std::uintptr_t v0_, float v0_value, std::uintptr_t u0_,
                      float u0_value, std::uintptr_t gx_, std::uintptr_t gv0_, std::uintptr_t gu0_, std::int64_t T,
                      std::int64_t N, int mode, float v_th, float v_reset, bool soft_reset, bool detach_reset, int sg,
                      float a, float b, int nthreads, float p0, float p1, float p2, float p3, float p4, float p5,
                      float p6) {
  check(mode >= 0 && mode < kNumModes, "mode must be 0 (Izhikevich), 1 (CUBA-LIF) or 2 (CLIF)");
  check(gs_ != 0 && x_ != 0 && gx_ != 0, "neuron2_backward needs grad_spike, x and grad_x");
  check((gvseq_ == 0) == (guseq_ == 0), "grad_v_seq and grad_u_seq must both be given or both be 0");
  const Params c = make_params(v_th, v_reset, soft_reset, p0, p1, p2, p3, p4, p5, p6);
  SurrogateRow sg_row = nullptr;
  dispatch_fused_surrogate(sg, sg_row, [&](auto id) {
    dispatch_mode(mode, [&](auto m) {
      dispatch_bool(soft_reset || m.value == 2, [&](auto soft) {
        dispatch_bool(detach_reset && m.value != 2, [&](auto det) {
          dispatch_bool(gvseq_ != 0, [&](auto has_gseq) {
            backward_impl<decltype(id)::value, decltype(m)::value, decltype(soft)::value, decltype(det)::value,
                          decltype(has_gseq)::value>(
                c, sg_row, a, b, ptr<const float>(gs_), gvseq_ ? ptr<const float>(gvseq_) : nullptr,
                guseq_ ? ptr<const float>(guseq_) : nullptr, gvlast_ ? ptr<const float>(gvlast_) : nullptr,
                gulast_ ? ptr<const float>(gulast_) : nullptr, ptr<const float>(x_),
                v0_ ? ptr<const float>(v0_) : nullptr, v0_value, u0_ ? ptr<const float>(u0_) : nullptr, u0_value,
                ptr<float>(gx_), gv0_ ? ptr<float>(gv0_) : nullptr, gu0_ ? ptr<float>(gu0_) : nullptr, T, N, nthreads);
          });
        });
      });
    });
  });
}

}  // namespace fastspike
