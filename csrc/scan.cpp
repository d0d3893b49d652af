// Linear recurrence h[t] = a[t] * h[t-1] + b[t] on the CPU, forward and backward (a reversed scan).
//
// Layout: b, h, grad tensors are [T, M] row-major float32, contiguous (time outer, columns inner).
// The decay `a` comes in one of three modes:
//   0  scalar       one float for every step and column (a_scalar)
//   1  per step     a[T]           (a tensor broadcast over the columns)
//   2  full         a[T, M]
// On the CPU the memory-bound optimum is sequential over time and parallel + SIMD over columns: each
// OpenMP thread owns blocks of `block` columns (chosen by the caller: wide enough that every row read is
// several KiB, so the prefetchers and the TLB keep up), keeps their state in a local array and streams the rows.
// Never parallel over time.
//
// Backward, with g[t] = dL/dh[t] accumulated through the recurrence:
//   g[t] = g_out[t] + a[t+1] * g[t+1]       (g[T] = 0)
//   grad_b[t] = g[t],  grad_a[t] = g[t] * h[t-1] (h[-1] = h0),  grad_h0 = a[0] * g[0].
// Mode 1 reduces grad_a over the columns of each block into grad_a_partial[nblocks, T] (float64), summed
// by the caller: deterministic for a given block size (the caller derives it from M and the thread count).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "api.h"
#include "common.h"
#include "simd.h"

namespace fastspike {
namespace {

inline float decay_at(int mode, const float* a, float a_scalar, std::int64_t t, std::int64_t idx) {
  return mode == 0 ? a_scalar : (mode == 1 ? a[t] : a[idx]);
}

// Streaming rows (x86 vector builds): outputs of tens of MiB are written with non-temporal stores (no read-for-
// ownership, no cache pollution) and the next input row is prefetched while the current one is computed,
// which brings the scan to about the speed of a copy. Used when the outputs are large, 64-byte aligned
// and the rows a multiple of 16 floats; the portable SIMD loops below handle everything else. Arithmetic
// is the same (multiply then add, no FMA), so both paths give identical h.
constexpr std::int64_t kStreamMinBytes = std::int64_t(16) << 20;

inline bool can_stream(std::int64_t T, std::int64_t M, std::initializer_list<const void*> outs) {
  if (!simd::kHasStream) return false;
  if (T * M * static_cast<std::int64_t>(sizeof(float)) < kStreamMinBytes || M % 16 != 0) return false;
  for (const void* p : outs)
    if (p && (reinterpret_cast<std::uintptr_t>(p) & 63) != 0) return false;
  return true;
}

// state <- a * state + b; h <- state. a_row == nullptr: the scalar `at` for every column.
inline void forward_row_stream(const float* a_row, float at, const float* br, float* state, float* hr,
                               std::int64_t len) {
  using namespace simd;
  const vf va = vset1(at);
  for (std::int64_t i = 0; i < len; i += kWidth) {
    const vf ai = a_row ? vload(a_row + i) : va;
    const vf v = vadd(vmul(ai, vload(state + i)), vload(br + i));
    vstore(state + i, v);
    vstream(hr + i, v);
  }
}

// carry <- g_out + a * carry; gb <- carry; ga <- carry * hprev (if ga); returns sum(carry * hprev) if want_sum.
inline float backward_row_stream(const float* a_row, float an, const float* gor, float* carry, float* gbr, float* gar,
                                 const float* hprev, bool want_sum, std::int64_t len) {
  using namespace simd;
  const vf va = vset1(an);
  vf acc = vzero();
  for (std::int64_t i = 0; i < len; i += kWidth) {
    const vf ai = a_row ? vload(a_row + i) : va;
    const vf g = vadd(vload(gor + i), vmul(ai, vload(carry + i)));
    vstore(carry + i, g);
    vstream(gbr + i, g);
    if (gar) vstream(gar + i, hprev ? vmul(g, vload(hprev + i)) : vzero());
    if (want_sum && hprev) acc = vadd(acc, vmul(g, vload(hprev + i)));
  }
  return vsum(acc);
}

}  // namespace

void scan_forward(std::uintptr_t a_, std::uintptr_t b_, std::uintptr_t h0_, std::uintptr_t h_, std::int64_t T,
                  std::int64_t M, int mode, float a_scalar, std::int64_t block, int nthreads) {
  check(block >= 1 && block <= kScanMaxBlock, "linear_scan: block must be in [1, SCAN_MAX_BLOCK]");
  check(mode >= 0 && mode <= 2, "linear_scan: a mode must be 0 (scalar), 1 (per step) or 2 (full)");
  check(mode == 0 || a_ != 0, "linear_scan: a tensor is required for modes 1 and 2");
  const float* a = mode == 0 ? nullptr : ptr<const float>(a_);
  const float* b = ptr<const float>(b_);
  const float* h0 = h0_ ? ptr<const float>(h0_) : nullptr;
  float* h = ptr<float>(h_);
  const std::int64_t nblocks = (M + block - 1) / block;
  const bool stream = can_stream(T, M, {h}) && block % 16 == 0;
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, nblocks))
  for (std::int64_t blk = 0; blk < nblocks; ++blk) {
    const std::int64_t n0 = blk * block;
    const std::int64_t len = std::min(block, M - n0);
    alignas(64) float state[kScanMaxBlock];
    for (std::int64_t i = 0; i < len; ++i) state[i] = h0 ? h0[n0 + i] : 0.0f;
    for (std::int64_t t = 0; t < T; ++t) {
      const std::int64_t o = t * M + n0;
      if (stream) {
        if (t + 1 < T) {
          prefetch_row(b + o + M, len);
          if (mode == 2) prefetch_row(a + o + M, len);
        }
        forward_row_stream(mode == 2 ? a + o : nullptr, mode == 0 ? a_scalar : (mode == 1 ? a[t] : 0.0f), b + o, state,
                           h + o, len);
        continue;
      }
      if (mode == 2) {
#pragma omp simd
        for (std::int64_t i = 0; i < len; ++i) {
          const float v = a[o + i] * state[i] + b[o + i];
          state[i] = v;
          h[o + i] = v;
        }
      } else {
        const float at = mode == 0 ? a_scalar : a[t];
#pragma omp simd
        for (std::int64_t i = 0; i < len; ++i) {
          const float v = at * state[i] + b[o + i];
          state[i] = v;
          h[o + i] = v;
        }
      }
    }
    if (stream) simd::stream_fence();
  }
}

void scan_backward(std::uintptr_t a_, std::uintptr_t h_, std::uintptr_t h0_, std::uintptr_t gout_, std::uintptr_t gb_,
                   std::uintptr_t ga_, std::uintptr_t ga_partial_, std::uintptr_t gh0_, std::int64_t T, std::int64_t M,
                   int mode, float a_scalar, std::int64_t block, int nthreads) {
  check(block >= 1 && block <= kScanMaxBlock, "linear_scan: block must be in [1, SCAN_MAX_BLOCK]");
  check(mode >= 0 && mode <= 2, "linear_scan: a mode must be 0 (scalar), 1 (per step) or 2 (full)");
  check(mode == 0 || a_ != 0, "linear_scan: a tensor is required for modes 1 and 2");
  check(!(ga_ && mode != 2), "linear_scan: grad_a (full) is only produced in mode 2");
  check(!(ga_partial_ && mode != 1), "linear_scan: grad_a_partial is only produced in mode 1");
  const float* a = mode == 0 ? nullptr : ptr<const float>(a_);
  const float* h = ptr<const float>(h_);
  const float* h0 = h0_ ? ptr<const float>(h0_) : nullptr;
  const float* gout = ptr<const float>(gout_);
  float* gb = ptr<float>(gb_);
  float* ga = ga_ ? ptr<float>(ga_) : nullptr;
  double* gap = ga_partial_ ? ptr<double>(ga_partial_) : nullptr;
  float* gh0 = gh0_ ? ptr<float>(gh0_) : nullptr;
  const std::int64_t nblocks = (M + block - 1) / block;
  const bool stream = can_stream(T, M, {gb, ga}) && block % 16 == 0;
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, nblocks))
  for (std::int64_t blk = 0; blk < nblocks; ++blk) {
    const std::int64_t n0 = blk * block;
    const std::int64_t len = std::min(block, M - n0);
    alignas(64) float carry[kScanMaxBlock];  // g[t+1]
    alignas(64) float ones[kScanMaxBlock];
    for (std::int64_t i = 0; i < len; ++i) carry[i] = 0.0f;
    for (std::int64_t i = 0; i < len; ++i) ones[i] = 1.0f;
    for (std::int64_t t = T - 1; t >= 0; --t) {
      const std::int64_t o = t * M + n0;
      const std::int64_t on = o + M;  // row t + 1
      const float* hprev = t > 0 ? h + (o - M) : h0 ? h0 + n0 : nullptr;
      if (stream) {
        if (t > 0) {
          prefetch_row(gout + o - M, len);
          if (mode == 2) prefetch_row(a + o, len);
          if ((ga || gap) && t > 1) prefetch_row(h + o - 2 * M, len);
        }
        const float* arow = mode == 2 ? (t == T - 1 ? ones : a + on) : nullptr;
        const float an = t == T - 1 ? 0.0f : (mode == 0 ? a_scalar : (mode == 1 ? a[t + 1] : 0.0f));
        const float sum =
            backward_row_stream(arow, an, gout + o, carry, gb + o, ga ? ga + o : nullptr, hprev, gap != nullptr, len);
        if (gap) gap[blk * T + t] = hprev ? sum : 0.0f;
        continue;
      }
      if (mode == 2) {
        // At t = T - 1 there is no row T: the carry is 0 and the decay is never read (a 1 stands in).
        const float* arow = t == T - 1 ? ones : a + on;
#pragma omp simd
        for (std::int64_t i = 0; i < len; ++i) {
          const float g = gout[o + i] + arow[i] * carry[i];
          carry[i] = g;
          gb[o + i] = g;
          if (ga) ga[o + i] = hprev ? g * hprev[i] : 0.0f;
        }
      } else {
        const float an = t == T - 1 ? 0.0f : (mode == 0 ? a_scalar : a[t + 1]);
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (std::int64_t i = 0; i < len; ++i) {
          const float g = gout[o + i] + an * carry[i];
          carry[i] = g;
          gb[o + i] = g;
          if (gap && hprev) acc += g * hprev[i];
        }
        if (gap) gap[blk * T + t] = acc;
      }
    }
    if (stream) simd::stream_fence();
    if (gh0) {
      if (mode == 2) {
#pragma omp simd
        for (std::int64_t i = 0; i < len; ++i) gh0[n0 + i] = a[n0 + i] * carry[i];
      } else {
        const float a0 = decay_at(mode, a, a_scalar, 0, 0);
#pragma omp simd
        for (std::int64_t i = 0; i < len; ++i) gh0[n0 + i] = a0 * carry[i];
      }
    }
  }
}

}  // namespace fastspike
