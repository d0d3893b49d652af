// 2-D max pooling forward with argmax indices on [planes, H, W] float32 (NCHW, N*C planes), and the backward
// of any max pooling from those indices.
//
// torch's CPU kernel for NCHW input walks each output window with scalar code; after a spiking layer this
// pooling took 8.6 ms of a SEW ResNet step on [32, 64, 32, 32]. Same semantics as torch, so outputs and
// indices are identical: the window starts at the first in-bounds row/column (stepping by the dilation),
// the index starts at that first position, and an element replaces the maximum when it is larger or NaN.
// Indices are plane offsets (h * W + w), written as int16 or int32 (the caller picks the narrowest that
// holds H * W + 1), which is also what the backward keeps.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "api.h"
#include "common.h"
#include "simd.h"

namespace fastspike {
namespace {

// One output of one plane, scalar (the windows that touch a left or right border).
inline void pool_one(const float* xp, std::int64_t W, std::int64_t y0, std::int64_t y1, std::int64_t dh,
                     std::int64_t x0, std::int64_t x1, std::int64_t dw, float& out, std::int64_t& index) {
  std::int64_t best = y0 * W + x0;
  float m = -std::numeric_limits<float>::infinity();
  for (std::int64_t y = y0; y < y1; y += dh) {
    const float* row = xp + y * W;
    for (std::int64_t xx = x0; xx < x1; xx += dw) {
      const float v = row[xx];
      if (v > m || std::isnan(v)) {
        m = v;
        best = y * W + xx;
      }
    }
  }
  out = m;
  index = (y0 < y1 && x0 < x1) ? best : -1;
}

// One (y, kx) tap of the windows of outputs [ox_lo, ox_hi): input column ox * stride + off of row `row`.
// SW > 0 is the stride known at compile time; SW == 0 takes `stride` at run time.
template <int SW>
inline void pool_interior_step(const float* __restrict row, std::int64_t off, std::int64_t row_base, std::int64_t ox_lo,
                               std::int64_t ox_hi, std::int64_t stride, float* __restrict m,
                               std::int32_t* __restrict best) {
  const std::int64_t st = SW > 0 ? SW : stride;
#pragma omp simd
  for (std::int64_t ox = ox_lo; ox < ox_hi; ++ox) {
    const std::int64_t xx = ox * st + off;
    const float v = row[xx];
    const bool take = v > m[ox] || v != v;
    m[ox] = take ? v : m[ox];
    best[ox] = take ? static_cast<std::int32_t>(row_base + xx) : best[ox];
  }
}

#ifdef FASTSPIKE_AVX512
// The interior outputs [ox0, ox0 + n) (n <= 16) of one output row, stride SW (1 or 2) along the row: the
// running maximum and its index stay in registers over all (y, kx) taps of the windows (visited in torch's
// row-major order), and are written once. The generic loop above kept them in memory and, on maps of 16
// columns or fewer, ran its remainder scalar.
template <int SW, typename Index>
inline void pool_interior_avx512(const float* xp, std::int64_t W, std::int64_t y0, std::int64_t y1, std::int64_t dh,
                                 std::int64_t kw, std::int64_t dw, std::int64_t pw, std::int64_t ox0, std::int64_t n,
                                 float* orow, Index* irow) {
  const __mmask16 live = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i lane_sw = _mm512_mullo_epi32(lane, _mm512_set1_epi32(SW));
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  // floats read per tap: SW * (n - 1) + 1, over one or two vectors
  const std::int64_t span = SW * (n - 1) + 1;
  const __mmask16 m_lo = static_cast<__mmask16>(span >= 16 ? 0xFFFF : (1u << span) - 1u);
  const __mmask16 m_hi = static_cast<__mmask16>(span <= 16 ? 0 : (1u << (span - 16)) - 1u);
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512i best = _mm512_add_epi32(_mm512_set1_epi32(static_cast<std::int32_t>(y0 * W + ox0 * SW - pw)), lane_sw);
  for (std::int64_t y = y0; y < y1; y += dh) {
    for (std::int64_t kx = 0; kx < kw; ++kx) {
      const std::int64_t first = y * W + ox0 * SW + kx * dw - pw;  // plane offset of lane 0's element
      const float* src = xp + first;
      __m512 v;
      if constexpr (SW == 1) {
        v = _mm512_maskz_loadu_ps(m_lo, src);
      } else {
        const __m512 lo = _mm512_maskz_loadu_ps(m_lo, src);
        const __m512 hi = _mm512_maskz_loadu_ps(m_hi, src + 16);
        v = _mm512_permutex2var_ps(lo, even, hi);
      }
      const __mmask16 take = live & (_mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
      m = _mm512_mask_mov_ps(m, take, v);
      best = _mm512_mask_mov_epi32(best, take,
                                   _mm512_add_epi32(_mm512_set1_epi32(static_cast<std::int32_t>(first)), lane_sw));
    }
  }
  _mm512_mask_storeu_ps(orow + ox0, live, m);
  if constexpr (sizeof(Index) == 2) _mm512_mask_cvtepi32_storeu_epi16(irow + ox0, live, best);
  else _mm512_mask_storeu_epi32(irow + ox0, live, best);
}
#endif

#ifdef FASTSPIKE_AVX2
// The AVX2 counterpart for 8 interior outputs [ox0, ox0 + 8), stride SW (1 or 2): plain (unmasked) loads of
// 8 * SW floats per tap, so the caller makes sure they stay inside the plane; the generic loop below, whose
// strided loads the compiler turns into scalar code, took 5x the AVX-512 version's time on [32, 64, 32, 32].
template <int SW, typename Index>
inline void pool_interior_avx2(const float* xp, std::int64_t W, std::int64_t y0, std::int64_t y1, std::int64_t dh,
                               std::int64_t kw, std::int64_t dw, std::int64_t pw, std::int64_t ox0, float* orow,
                               Index* irow) {
  const __m256i lane_sw = _mm256_setr_epi32(0, SW, 2 * SW, 3 * SW, 4 * SW, 5 * SW, 6 * SW, 7 * SW);
  __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256i best = _mm256_add_epi32(_mm256_set1_epi32(static_cast<std::int32_t>(y0 * W + ox0 * SW - pw)), lane_sw);
  for (std::int64_t y = y0; y < y1; y += dh) {
    for (std::int64_t kx = 0; kx < kw; ++kx) {
      const std::int64_t first = y * W + ox0 * SW + kx * dw - pw;  // plane offset of lane 0's element
      __m256 v;
      if constexpr (SW == 1) {
        v = _mm256_loadu_ps(xp + first);
      } else {  // the even elements of 16: [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs in order
        const __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(xp + first), _mm256_loadu_ps(xp + first + 8), 0x88);
        v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
      }
      const __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      m = _mm256_blendv_ps(m, v, take);
      best = _mm256_blendv_epi8(best, _mm256_add_epi32(_mm256_set1_epi32(static_cast<std::int32_t>(first)), lane_sw),
                                _mm256_castps_si256(take));
    }
  }
  _mm256_storeu_ps(orow + ox0, m);
  if constexpr (sizeof(Index) == 2) {  // indices < 32768 here (the caller picks int16 only then)
    const __m128i packed = _mm_packs_epi32(_mm256_castsi256_si128(best), _mm256_extracti128_si256(best, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(irow + ox0), packed);
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(irow + ox0), best);
  }
}
#endif

template <typename Index>
void max_pool2d_impl(const float* x, float* out, Index* idx, std::int64_t planes, std::int64_t H, std::int64_t W,
                     std::int64_t OH, std::int64_t OW, std::int64_t kh, std::int64_t kw, std::int64_t sh,
                     std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh, std::int64_t dw,
                     int nthreads) {
  // outputs whose window lies inside [0, W) in x: ox * sw - pw >= 0 and ox * sw - pw + (kw - 1) * dw < W
  const std::int64_t ox_lo = std::min<std::int64_t>(OW, (pw + sw - 1) / sw);
  std::int64_t ox_hi = (W - 1 - (kw - 1) * dw + pw) >= 0 ? (W - 1 - (kw - 1) * dw + pw) / sw + 1 : 0;
  ox_hi = std::max(ox_lo, std::min(ox_hi, OW));
  const std::int64_t empty = H * W;  // sentinel index of a window with no in-bounds element
  const int threads = clamp_threads(nthreads, planes, planes * OH * OW * kh * kw, std::int64_t(1) << 16);
  ThreadErrors errors;  // a thread's buffers could not be allocated: raised after the region
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> m;
    std::vector<std::int32_t> best;
    errors.run([&] {
      m.resize(static_cast<std::size_t>(OW));
      best.resize(static_cast<std::size_t>(OW));
    });
#pragma omp for schedule(static)
    for (std::int64_t p = 0; p < planes; ++p) {
      if (errors.failed()) continue;
      const float* xp = x + p * H * W;
      float* op = out + p * OH * OW;
      Index* ip = idx + p * OH * OW;
      for (std::int64_t oy = 0; oy < OH; ++oy) {
        std::int64_t y0 = oy * sh - ph;
        const std::int64_t y1 = std::min(y0 + (kh - 1) * dh + 1, H);
        while (y0 < 0) y0 += dh;
        float* orow = op + oy * OW;
        Index* irow = ip + oy * OW;
        // borders: scalar
        for (std::int64_t ox = 0; ox < OW; ++ox) {
          if (ox == ox_lo) ox = ox_hi;
          if (ox >= OW) break;
          std::int64_t x0 = ox * sw - pw;
          const std::int64_t x1 = std::min(x0 + (kw - 1) * dw + 1, W);
          while (x0 < 0) x0 += dw;
          std::int64_t b;
          pool_one(xp, W, y0, y1, dh, x0, x1, dw, orow[ox], b);
          irow[ox] = static_cast<Index>(b < 0 ? empty : b);
        }
        if (ox_hi <= ox_lo) continue;
        if (y0 >= y1) {  // no row of the window is inside the input
          for (std::int64_t ox = ox_lo; ox < ox_hi; ++ox) {
            orow[ox] = -std::numeric_limits<float>::infinity();
            irow[ox] = static_cast<Index>(empty);
          }
          continue;
        }
#ifdef FASTSPIKE_AVX512
        if (sw == 1 || sw == 2) {
          for (std::int64_t ox0 = ox_lo; ox0 < ox_hi; ox0 += 16) {
            const std::int64_t n = std::min<std::int64_t>(16, ox_hi - ox0);
            if (sw == 1) pool_interior_avx512<1>(xp, W, y0, y1, dh, kw, dw, pw, ox0, n, orow, irow);
            else pool_interior_avx512<2>(xp, W, y0, y1, dh, kw, dw, pw, ox0, n, orow, irow);
          }
          continue;
        }
#endif
        std::int64_t ox_v = ox_lo;  // interior outputs before ox_v are done
#ifdef FASTSPIKE_AVX2
        if (sw == 1 || sw == 2) {
          // whole blocks of 8 whose loads (8 * sw floats from the last row's last tap) stay inside the plane
          const std::int64_t last_row = y0 + (y1 - 1 - y0) / dh * dh;
          auto fits = [&](std::int64_t ox0) { return last_row * W + ox0 * sw + (kw - 1) * dw - pw + 8 * sw <= H * W; };
          auto block = [&](std::int64_t ox0) {
            if (sw == 1) pool_interior_avx2<1>(xp, W, y0, y1, dh, kw, dw, pw, ox0, orow, irow);
            else pool_interior_avx2<2>(xp, W, y0, y1, dh, kw, dw, pw, ox0, orow, irow);
          };
          for (; ox_v + 8 <= ox_hi && fits(ox_v); ox_v += 8) block(ox_v);
          // a short remainder: one more block ending at ox_hi, overlapping outputs already written (same values)
          if (ox_v < ox_hi && ox_hi - ox_lo >= 8 && fits(ox_hi - 8)) {
            block(ox_hi - 8);
            ox_v = ox_hi;
          }
        }
#endif
        // interior: vectorised over ox, visiting (y, kx) in torch's row-major order
        for (std::int64_t ox = ox_v; ox < ox_hi; ++ox) {
          m[ox] = -std::numeric_limits<float>::infinity();
          best[ox] = static_cast<std::int32_t>(y0 * W + ox * sw - pw);
        }
        for (std::int64_t y = y0; y < y1; y += dh) {
          const float* row = xp + y * W;
          for (std::int64_t kx = 0; kx < kw; ++kx) {
            const std::int64_t off = kx * dw - pw;
            // a compile-time stride lets the compiler vectorise the strided loads
            if (sw == 1) pool_interior_step<1>(row, off, y * W, ox_v, ox_hi, 1, m.data(), best.data());
            else if (sw == 2) pool_interior_step<2>(row, off, y * W, ox_v, ox_hi, 2, m.data(), best.data());
            else pool_interior_step<0>(row, off, y * W, ox_v, ox_hi, sw, m.data(), best.data());
          }
        }
        for (std::int64_t ox = ox_v; ox < ox_hi; ++ox) {
          orow[ox] = m[ox];
          irow[ox] = static_cast<Index>(best[ox]);
        }
      }
    }
  }
  errors.rethrow();
}

}  // namespace

void max_pool2d(std::uintptr_t x_, std::uintptr_t out_, std::uintptr_t idx_, int index_bytes, std::int64_t planes,
                std::int64_t H, std::int64_t W, std::int64_t OH, std::int64_t OW, std::int64_t kh, std::int64_t kw,
                std::int64_t sh, std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh, std::int64_t dw,
                int nthreads) {
  check(index_bytes == 2 || index_bytes == 4, "max_pool2d: index_bytes must be 2 (int16) or 4 (int32)");
  check(H * W < (index_bytes == 2 ? 32768 : std::int64_t(1) << 31), "max_pool2d: H * W does not fit the index type");
  const float* x = ptr<const float>(x_);
  float* out = ptr<float>(out_);
  if (index_bytes == 2)
    max_pool2d_impl(x, out, ptr<std::int16_t>(idx_), planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, nthreads);
  else max_pool2d_impl(x, out, ptr<std::int32_t>(idx_), planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, nthreads);
}

namespace {

// The backward: gx [rows, cols] = 0, then gx[r, idx[r, j]] += g[r, j] in the order of j (torch's scatter_add_
// order, so the sums are the same to the bit). One pass per row while the row is in cache, instead of zeroing
// the whole gradient and scattering into it afterwards.
template <typename Index>
void max_pool_backward_impl(const Index* idx, const float* g, float* gx, std::int64_t rows, std::int64_t L,
                            std::int64_t cols, int nthreads) {
  bool bad = false;
  const int threads = clamp_threads(nthreads, rows, rows * cols, std::int64_t(1) << 16);
#pragma omp parallel for schedule(static) num_threads(threads) reduction(|| : bad)
  for (std::int64_t r = 0; r < rows; ++r) {
    float* dst = gx + r * cols;
    std::fill(dst, dst + cols, 0.0f);
    const Index* ir = idx + r * L;
    const float* gr = g + r * L;
    for (std::int64_t j = 0; j < L; ++j) {
      const std::int64_t c = ir[j];
      if (c < 0 || c >= cols) {
        bad = true;
        continue;
      }
      dst[c] += gr[j];
    }
  }
  check(!bad, "max_pool_backward: an index lies outside [0, cols)");
}

}  // namespace

void max_pool_backward(std::uintptr_t idx_, int index_bytes, std::uintptr_t g_, std::uintptr_t gx_, std::int64_t rows,
                       std::int64_t L, std::int64_t cols, int nthreads) {
  check(index_bytes == 2 || index_bytes == 4, "max_pool_backward: index_bytes must be 2 (int16) or 4 (int32)");
  if (index_bytes == 2)
    max_pool_backward_impl(ptr<const std::int16_t>(idx_), ptr<const float>(g_), ptr<float>(gx_), rows, L, cols,
                           nthreads);
  else
    max_pool_backward_impl(ptr<const std::int32_t>(idx_), ptr<const float>(g_), ptr<float>(gx_), rows, L, cols,
                           nthreads);
}

}  // namespace fastspike
