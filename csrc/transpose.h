// Register transposes of float blocks (kTBlock x kTBlock: 16 on AVX-512, 8 on AVX2, 4 on NEON, none on the
// portable build) and the panel transpose built on them.
#pragma once
#include <algorithm>
#include <cstdint>

#include "simd.h"

namespace fastspike {

#if defined(FASTSPIKE_AVX512)
constexpr std::int64_t kTBlock = 16;

// dst[j * dstride + i] = src[i * sstride + j] for i, j < 16 (register transpose of a 16 x 16 block)
// STREAM: non-temporal stores (dst rows 64-byte aligned): a large output is written without reading its lines
// first.
template <bool STREAM = false>
inline void transpose_block(const float* src, std::int64_t sstride, float* dst, std::int64_t dstride) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * sstride);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 16; i += 8)
    for (int k = 0; k < 4; ++k) {
      t[i + k] = _mm512_shuffle_f32x4(r[i + k], r[i + 4 + k], 0x88);
      t[i + 4 + k] = _mm512_shuffle_f32x4(r[i + k], r[i + 4 + k], 0xDD);
    }
  for (int k = 0; k < 8; ++k) {
    r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
    r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xDD);
  }
  for (int j = 0; j < 16; ++j) {
    if constexpr (STREAM) _mm512_stream_ps(dst + j * dstride, r[j]);
    else _mm512_storeu_ps(dst + j * dstride, r[j]);
  }
}

#elif defined(FASTSPIKE_AVX2)
constexpr std::int64_t kTBlock = 8;

// The same for an 8 x 8 block (dst rows 32-byte aligned when STREAM).
template <bool STREAM = false>
inline void transpose_block(const float* src, std::int64_t sstride, float* dst, std::int64_t dstride) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * sstride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    t[k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x20);
    t[4 + k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x31);
  }
  for (int j = 0; j < 8; ++j) {
    if constexpr (STREAM) _mm256_stream_ps(dst + j * dstride, t[j]);
    else _mm256_storeu_ps(dst + j * dstride, t[j]);
  }
}

#elif defined(FASTSPIKE_NEON)
constexpr std::int64_t kTBlock = 4;

// The same for a 4 x 4 block (NEON has no non-temporal store: STREAM is a plain store).
template <bool STREAM = false>
inline void transpose_block(const float* src, std::int64_t sstride, float* dst, std::int64_t dstride) {
  const float32x4_t a = vld1q_f32(src), b = vld1q_f32(src + sstride), c = vld1q_f32(src + 2 * sstride),
                    d = vld1q_f32(src + 3 * sstride);
  const float32x4x2_t ab = vtrnq_f32(a, b), cd = vtrnq_f32(c, d);
  vst1q_f32(dst, vcombine_f32(vget_low_f32(ab.val[0]), vget_low_f32(cd.val[0])));
  vst1q_f32(dst + dstride, vcombine_f32(vget_low_f32(ab.val[1]), vget_low_f32(cd.val[1])));
  vst1q_f32(dst + 2 * dstride, vcombine_f32(vget_high_f32(ab.val[0]), vget_high_f32(cd.val[0])));
  vst1q_f32(dst + 3 * dstride, vcombine_f32(vget_high_f32(ab.val[1]), vget_high_f32(cd.val[1])));
}

#else
constexpr std::int64_t kTBlock = 1;  // no register blocks: the scalar loops do everything

template <bool STREAM = false>
inline void transpose_block(const float* src, std::int64_t sstride, float* dst, std::int64_t dstride) {
  dst[0] = src[0];
  (void)sstride, (void)dstride;
}
#endif

// dst[c * dstride + r] = src[r * sstride + c] for rows r < rows and columns c in [c0, c1): register blocks
// where a whole block fits, scalar copies for the rest.
inline void transpose_panel(const float* src, std::int64_t sstride, float* dst, std::int64_t dstride, std::int64_t rows,
                            std::int64_t c0, std::int64_t c1) {
  std::int64_t cb = c0;
  if (kTBlock > 1) {
    const std::int64_t rfull = rows - rows % kTBlock;
    for (; cb + kTBlock <= c1; cb += kTBlock) {
      for (std::int64_t r0 = 0; r0 < rfull; r0 += kTBlock)
        transpose_block(src + r0 * sstride + cb, sstride, dst + cb * dstride + r0, dstride);
      for (std::int64_t c = cb; c < cb + kTBlock; ++c)
        for (std::int64_t r = rfull; r < rows; ++r) dst[c * dstride + r] = src[r * sstride + c];
    }
  }
  for (std::int64_t c = cb; c < c1; ++c)
    for (std::int64_t r = 0; r < rows; ++r) dst[c * dstride + r] = src[r * sstride + c];
}

}  // namespace fastspike
