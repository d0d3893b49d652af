// Parallel Spiking Neuron family on the CPU: H = W X + B over time, S = Heaviside(H), fused with the
// surrogate gradient in the backward.
//
// Layout: x, s, grad tensors are [T, N] row-major float32, contiguous; w is [T, T] (row t: the weights of
// the inputs that step t sees), b is [T]. `band` > 0 restricts W to its causal band of width `band`
// (w[t][j] used only for t - band < j <= t; MaskedPSN with lambda >= 1 and SlidingPSN); entries outside
// the band are treated as 0 and get no gradient. band == 0 means dense W (PSN, MaskedPSN while lambda < 1).
//
// The time matrix is tiny (T x T) and N is large, so each OpenMP thread takes blocks of kPsnBlock columns:
// the T x kPsnBlock slice of X stays in L1/L2 while every row of H is accumulated with a SIMD loop over the
// columns. The forward reads X once and writes S once; H never reaches memory. The backward recomputes H
// from X, forms dH = dS * surrogate'(H) in a thread-local buffer and produces dX = W^T dH, dW = dH X^T and
// dB = sum dH in the same pass. dW/dB partial sums are per chunk of columns (a fixed partition that does
// not depend on the thread count), in float64, summed by the caller: deterministic results.
// dW's lane sums take T * T * 64 bytes per thread: past L1 (T = 64: 256 KiB) every update goes to L2 and
// dominated the backward (30 ms of it at [64, 65536]); for such sizes the caller passes a dH buffer and
// computes dW = dH X^T with a GEMM library instead.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "api.h"
#include "common.h"
#include "surrogate.h"

namespace fastspike {
namespace {

// dW accumulates in kLanes-wide lane sums per (t, j) (one vector register), reduced once per flush, instead of
// one horizontal reduction per (t, j) per block, which dominated the backward.
constexpr std::int64_t kLanes = 16;

struct Band {
  std::int64_t T, k;  // k == 0: dense
  std::int64_t lo(std::int64_t t) const { return k > 0 ? std::max<std::int64_t>(0, t - k + 1) : 0; }
  std::int64_t hi(std::int64_t t) const { return k > 0 ? t + 1 : T; }  // exclusive
};

// acc[i] = b[t] + sum_j w[t][j] x[j][n0 + i] for i < n. FULL blocks have the compile-time length
// kPsnBlock, so the accumulator lives in vector registers; the ragged last block takes the generic path.
template <bool FULL>
inline void accumulate_row(const float* w, const float* x, float bias, const Band& band, std::int64_t t, std::int64_t N,
                           std::int64_t n0, std::int64_t len, float* out) {
  const std::int64_t n = FULL ? kPsnBlock : len;
  const std::int64_t T = band.T;
  float acc[kPsnBlock];
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) acc[i] = 0.0f;
  for (std::int64_t j = band.lo(t); j < band.hi(t); ++j) {
    const float wtj = w[t * T + j];
    const float* xr = x + j * N + n0;
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) acc[i] = madd(wtj, xr[i], acc[i]);
  }
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) out[i] = acc[i] + bias;
}

// Copies the block's columns [n0, n0 + len) of every time step into xb [T][kPsnBlock] and returns xb. The
// products read each X row of the block T times; in place, the rows are N floats apart, and with N a large
// power of two (65536 at [64, 16, 4096]) the T rows fall into the same cache sets and evict each other
// (the forward took 10 to 66 ms from run to run there, by where the pages landed); the copy is read from L1.
inline const float* stage_block(const float* x, std::int64_t T, std::int64_t N, std::int64_t n0, std::int64_t len,
                                float* xb) {
  for (std::int64_t t = 0; t < T; ++t) std::memcpy(xb + t * kPsnBlock, x + t * N + n0, sizeof(float) * len);
  return xb;
}

template <bool FULL>
inline void forward_block(const float* x_in, const float* w, const float* b, float* s, float* h, const Band& band,
                          std::int64_t N, std::int64_t n0, std::int64_t len, float* xb) {
  const std::int64_t n = FULL ? kPsnBlock : len;
  const float* x = stage_block(x_in, band.T, N, n0, len, xb);
  float hv[kPsnBlock];
  for (std::int64_t t = 0; t < band.T; ++t) {
    accumulate_row<FULL>(w, x, b[t], band, t, kPsnBlock, 0, len, hv);
    float* sr = s + t * N + n0;
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) sr[i] = hv[i] >= 0.0f ? 1.0f : 0.0f;
    if (h) {
      float* hr = h + t * N + n0;
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) hr[i] = hv[i];
    }
  }
}

}  // namespace

void psn_forward(std::uintptr_t x_, std::uintptr_t w_, std::uintptr_t b_, std::uintptr_t s_, std::uintptr_t h_,
                 std::int64_t T, std::int64_t N, std::int64_t band_k, int nthreads) {
  check(band_k >= 0, "psn: band must be >= 0 (0 = dense)");
  const float* x = ptr<const float>(x_);
  const float* w = ptr<const float>(w_);
  const float* b = ptr<const float>(b_);
  float* s = ptr<float>(s_);
  float* h = h_ ? ptr<float>(h_) : nullptr;
  const Band band{T, band_k};
  const std::int64_t nblocks = (N + kPsnBlock - 1) / kPsnBlock;
  ThreadErrors errors;  // a thread's buffer could not be allocated: raised after the region
#pragma omp parallel num_threads(clamp_threads(nthreads, nblocks))
  {
    std::vector<float> xb;
    errors.run([&] { xb.resize(static_cast<std::size_t>(T * kPsnBlock)); });
#pragma omp for schedule(static)
    for (std::int64_t blk = 0; blk < nblocks; ++blk) {
      if (errors.failed()) continue;
      const std::int64_t n0 = blk * kPsnBlock;
      const std::int64_t len = std::min(kPsnBlock, N - n0);
      if (len == kPsnBlock) forward_block<true>(x, w, b, s, h, band, N, n0, len, xb.data());
      else forward_block<false>(x, w, b, s, h, band, N, n0, len, xb.data());
    }
  }
  errors.rethrow();
}

namespace {

// One block of columns of the backward: dH (in gh, T x kPsnBlock), dX, and the float block sums of dW, dB.
template <int SG, bool FULL>
inline void backward_block(const float* x_in, const float* gs, const float* w, const float* b, float* gx, float* gh,
                           float* gw_blk, float* gb_blk, float* gh_out, const Band& band, std::int64_t N,
                           std::int64_t n0, std::int64_t len, float sa, float sb, float* xb) {
  const std::int64_t n = FULL ? kPsnBlock : len;
  const std::int64_t T = band.T;
  const float* x = stage_block(x_in, T, N, n0, len, xb);  // x[j * kPsnBlock + i]
  float hv[kPsnBlock];
  // dH = dS * surrogate'(H), H recomputed; dB and dW = dH X^T block sums
  for (std::int64_t t = 0; t < T; ++t) {
    accumulate_row<FULL>(w, x, b[t], band, t, kPsnBlock, 0, len, hv);
    const float* gsr = gs + t * N + n0;
    float* ghr = gh + t * kPsnBlock;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t i = 0; i < n; ++i) {
      const float g = gsr[i] * surrogate_grad<SG>(hv[i], sa, sb);
      ghr[i] = g;
      sum += g;
    }
    gb_blk[t] += sum;
    if (gh_out) {  // dW is left to the caller (a GEMM of dH and X): store this row of dH
      float* gor = gh_out + t * N + n0;
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) gor[i] = ghr[i];
      continue;
    }
    for (std::int64_t j = band.lo(t); j < band.hi(t); ++j) {
      const float* xr = x + j * kPsnBlock;
      float* lanes = gw_blk + (t * T + j) * kLanes;
      if constexpr (FULL) {
        for (std::int64_t c = 0; c < kPsnBlock; c += kLanes) {
#pragma omp simd
          for (std::int64_t l = 0; l < kLanes; ++l) lanes[l] = madd(ghr[c + l], xr[c + l], lanes[l]);
        }
      } else {
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (std::int64_t i = 0; i < n; ++i) dot = madd(ghr[i], xr[i], dot);
        lanes[0] += dot;
      }
    }
  }
  // dX[j] = sum_t W[t][j] dH[t] over the t whose band contains j
  for (std::int64_t j = 0; j < T; ++j) {
    const std::int64_t t_lo = band.k > 0 ? j : 0;
    const std::int64_t t_hi = band.k > 0 ? std::min(T, j + band.k) : T;
    float acc[kPsnBlock];
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) acc[i] = 0.0f;
    for (std::int64_t t = t_lo; t < t_hi; ++t) {
      const float wtj = w[t * T + j];
      const float* ghr = gh + t * kPsnBlock;
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) acc[i] = madd(wtj, ghr[i], acc[i]);
    }
    float* gxr = gx + j * N + n0;
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) gxr[i] = acc[i];
  }
}

template <int SG>
void psn_backward_impl(const float* x, const float* gs, const float* w, const float* b, float* gx, double* gw_part,
                       double* gb_part, float* gh_out, std::int64_t T, std::int64_t N, std::int64_t band_k,
                       std::int64_t nchunks, float sa, float sb, int nthreads) {
  const Band band{T, band_k};
  const std::int64_t nblocks = (N + kPsnBlock - 1) / kPsnBlock;
  ThreadErrors errors;  // a chunk's buffers could not be allocated: raised after the loop
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, nchunks))
  for (std::int64_t c = 0; c < nchunks; ++c) {
    if (errors.failed()) continue;
    const std::int64_t blk0 = c * nblocks / nchunks;
    const std::int64_t blk1 = (c + 1) * nblocks / nchunks;
    std::vector<float> gh, xb, gw_blk, gb_blk;  // gw_blk: lane sums per (t, j)
    if (!errors.run([&] {
          gh.resize(static_cast<std::size_t>(T * kPsnBlock));
          xb.resize(static_cast<std::size_t>(T * kPsnBlock));
          gw_blk.assign(gh_out ? 0 : static_cast<std::size_t>(T * T * kLanes), 0.0f);
          gb_blk.assign(static_cast<std::size_t>(T), 0.0f);
        }))
      continue;
    double* gw = gw_part + c * T * T;
    double* gbp = gb_part + c * T;
    for (std::int64_t q = 0; q < T * T; ++q) gw[q] = 0.0;
    for (std::int64_t q = 0; q < T; ++q) gbp[q] = 0.0;
    for (std::int64_t blk = blk0; blk < blk1; ++blk) {
      const std::int64_t n0 = blk * kPsnBlock;
      const std::int64_t len = std::min(kPsnBlock, N - n0);
      if (len == kPsnBlock)
        backward_block<SG, true>(x, gs, w, b, gx, gh.data(), gw_blk.data(), gb_blk.data(), gh_out, band, N, n0, len, sa,
                                 sb, xb.data());
      else
        backward_block<SG, false>(x, gs, w, b, gx, gh.data(), gw_blk.data(), gb_blk.data(), gh_out, band, N, n0, len,
                                  sa, sb, xb.data());
      // flush the float block sums into the float64 chunk partials every few blocks
      if ((blk - blk0) % 16 == 15 || blk == blk1 - 1) {
        for (std::int64_t q = 0; q < (gh_out ? 0 : T * T); ++q) {
          float* lanes = gw_blk.data() + q * kLanes;
          double acc = 0.0;
          for (std::int64_t l = 0; l < kLanes; ++l) {
            acc += lanes[l];
            lanes[l] = 0.0f;
          }
          gw[q] += acc;
        }
        for (std::int64_t q = 0; q < T; ++q) {
          gbp[q] += gb_blk[q];
          gb_blk[q] = 0.0f;
        }
      }
    }
  }
  errors.rethrow();
}

}  // namespace

void psn_backward(std::uintptr_t x_, std::uintptr_t gs_, std::uintptr_t w_, std::uintptr_t b_, std::uintptr_t gx_,
                  std::uintptr_t gw_part_, std::uintptr_t gb_part_, std::uintptr_t gh_out_, std::int64_t T,
                  std::int64_t N, std::int64_t band_k, std::int64_t nchunks, int sg, float a, float bpar,
                  int nthreads) {
  check(band_k >= 0, "psn: band must be >= 0 (0 = dense)");
  check(nchunks >= 1, "psn: nchunks must be >= 1");
  dispatch_surrogate(sg, [&](auto id) {
    psn_backward_impl<decltype(id)::value>(ptr<const float>(x_), ptr<const float>(gs_), ptr<const float>(w_),
                                           ptr<const float>(b_), ptr<float>(gx_), ptr<double>(gw_part_),
                                           ptr<double>(gb_part_), gh_out_ ? ptr<float>(gh_out_) : nullptr, T, N, band_k,
                                           nchunks, a, bpar, nthreads);
  });
}

}  // namespace fastspike
