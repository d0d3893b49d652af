// The one instruction-set switch of the extension, and the thin vector layer the kernels are written in.
//
// Exactly one of FASTSPIKE_AVX512 (AVX-512 F + BW), FASTSPIKE_AVX2 (AVX2 + FMA), FASTSPIKE_NEON (aarch64
// Advanced SIMD) or FASTSPIKE_PORTABLE_SIMD is defined, from what the compiler targets (-march): nothing here
// checks the CPU at run time. Every kernel is written once against the names below; each branch maps them to
// its registers, and the portable one to plain arrays that the compiler vectorises as far as its target allows.
//
//   vf                   a vector of kWidth floats          vzero, vset1, vload, vstore, vadd, vmul, vstream
//   nonzero_mask16(p, bad)   bit i set when p[i] != 0 (NaN counts as nonzero), i < 16; bad |= nonzero and != 1
//   add_offset16(dst, src, off)  dst[i] = src[i] + off, i < 16 (int32)
//   stream_fence()       orders this thread's non-temporal stores (vstream) before a barrier
//
// Arithmetic order is the same on every branch (no fused multiply-add unless asked for by name), so results
// differ between builds only where a kernel's own summation order depends on kWidth.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#define FASTSPIKE_AVX512 1
#include <immintrin.h>
#elif defined(__AVX2__) && defined(__FMA__)
#define FASTSPIKE_AVX2 1
#include <immintrin.h>
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define FASTSPIKE_NEON 1
#include <arm_neon.h>
#else
#define FASTSPIKE_PORTABLE_SIMD 1
#endif

// Hardware fused multiply-add (surrogate.h's madd uses it; without it std::fma would be a library call).
#if defined(__FMA__) || defined(__AVX512F__) || defined(__ARM_FEATURE_FMA)
#define FASTSPIKE_HAS_FMA 1
#endif

namespace fastspike {
namespace simd {

#if defined(FASTSPIKE_AVX512)
constexpr const char* kIsa = "avx512";
constexpr int kWidth = 16;
using vf = __m512;
inline vf vzero() { return _mm512_setzero_ps(); }
inline vf vset1(float v) { return _mm512_set1_ps(v); }
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
inline float vsum(vf v) { return _mm512_reduce_add_ps(v); }
// p must be kWidth * 4 byte aligned
inline void vstream(float* p, vf v) { _mm512_stream_ps(p, v); }
inline void stream_fence() { _mm_sfence(); }
constexpr bool kHasStream = true;

inline std::uint32_t nonzero_mask16(const float* p, std::uint32_t& bad) {
  const __m512 v = _mm512_loadu_ps(p);
  const __mmask16 nz = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
  bad |= nz & _mm512_cmp_ps_mask(v, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ);
  return nz;
}

inline void add_offset16(std::int32_t* dst, const std::int32_t* src, std::int32_t off) {
  _mm512_storeu_si512(reinterpret_cast<void*>(dst),
                      _mm512_add_epi32(_mm512_loadu_si512(reinterpret_cast<const void*>(src)), _mm512_set1_epi32(off)));
}

#elif defined(FASTSPIKE_AVX2)
constexpr const char* kIsa = "avx2";
constexpr int kWidth = 8;
using vf = __m256;
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vset1(float v) { return _mm256_set1_ps(v); }
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline float vsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline void vstream(float* p, vf v) { _mm256_stream_ps(p, v); }
inline void stream_fence() { _mm_sfence(); }
constexpr bool kHasStream = true;

inline std::uint32_t nonzero_mask16(const float* p, std::uint32_t& bad) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
  const __m256 nza = _mm256_cmp_ps(a, zero, _CMP_NEQ_UQ), nzb = _mm256_cmp_ps(b, zero, _CMP_NEQ_UQ);
  const __m256 bda = _mm256_and_ps(nza, _mm256_cmp_ps(a, one, _CMP_NEQ_UQ));
  const __m256 bdb = _mm256_and_ps(nzb, _mm256_cmp_ps(b, one, _CMP_NEQ_UQ));
  bad |= static_cast<std::uint32_t>(_mm256_movemask_ps(bda) | (_mm256_movemask_ps(bdb) << 8));
  return static_cast<std::uint32_t>(_mm256_movemask_ps(nza) | (_mm256_movemask_ps(nzb) << 8));
}

inline void add_offset16(std::int32_t* dst, const std::int32_t* src, std::int32_t off) {
  const __m256i o = _mm256_set1_epi32(off);
  for (int h = 0; h < 16; h += 8)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + h),
                        _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + h)), o));
}

#elif defined(FASTSPIKE_NEON)
constexpr const char* kIsa = "neon";
constexpr int kWidth = 4;
using vf = float32x4_t;
inline vf vzero() { return vdupq_n_f32(0.0f); }
inline vf vset1(float v) { return vdupq_n_f32(v); }
inline vf vload(const float* p) { return vld1q_f32(p); }
inline void vstore(float* p, vf v) { vst1q_f32(p, v); }
inline vf vadd(vf a, vf b) { return vaddq_f32(a, b); }
inline vf vmul(vf a, vf b) { return vmulq_f32(a, b); }
inline float vsum(vf v) { return vaddvq_f32(v); }
inline void vstream(float* p, vf v) { vst1q_f32(p, v); }
inline void stream_fence() {}
constexpr bool kHasStream = false;

inline std::uint32_t nonzero_mask16(const float* p, std::uint32_t& bad) {
  static const std::uint32_t kBit[4] = {1, 2, 4, 8};
  const uint32x4_t bit = vld1q_u32(kBit);
  std::uint32_t nz = 0, bd = 0;
  for (int q = 0; q < 4; ++q) {
    const float32x4_t v = vld1q_f32(p + 4 * q);
    const uint32x4_t z = vmvnq_u32(vceqq_f32(v, vdupq_n_f32(0.0f)));  // NaN != 0
    const uint32x4_t b = vandq_u32(z, vmvnq_u32(vceqq_f32(v, vdupq_n_f32(1.0f))));
    nz |= vaddvq_u32(vandq_u32(z, bit)) << (4 * q);
    bd |= vaddvq_u32(vandq_u32(b, bit)) << (4 * q);
  }
  bad |= bd;
  return nz;
}

inline void add_offset16(std::int32_t* dst, const std::int32_t* src, std::int32_t off) {
  const int32x4_t o = vdupq_n_s32(off);
  for (int q = 0; q < 16; q += 4) vst1q_s32(dst + q, vaddq_s32(vld1q_s32(src + q), o));
}

#else
constexpr const char* kIsa = "portable";
constexpr int kWidth = 8;
struct vf {
  float v[kWidth];
};
inline vf vzero() {
  vf r;
  for (int i = 0; i < kWidth; ++i) r.v[i] = 0.0f;
  return r;
}
inline vf vset1(float x) {
  vf r;
  for (int i = 0; i < kWidth; ++i) r.v[i] = x;
  return r;
}
inline vf vload(const float* p) {
  vf r;
  std::memcpy(r.v, p, sizeof(r.v));
  return r;
}
inline void vstore(float* p, vf v) { std::memcpy(p, v.v, sizeof(v.v)); }
inline vf vadd(vf a, vf b) {
  for (int i = 0; i < kWidth; ++i) a.v[i] += b.v[i];
  return a;
}
inline vf vmul(vf a, vf b) {
  for (int i = 0; i < kWidth; ++i) a.v[i] *= b.v[i];
  return a;
}
inline float vsum(vf v) {
  float s = 0.0f;
  for (int i = 0; i < kWidth; ++i) s += v.v[i];
  return s;
}
inline void vstream(float* p, vf v) { vstore(p, v); }
inline void stream_fence() {}
constexpr bool kHasStream = false;

inline std::uint32_t nonzero_mask16(const float* p, std::uint32_t& bad) {
  std::uint32_t nz = 0, bd = 0;
  for (int i = 0; i < 16; ++i) {
    const bool z = p[i] != 0.0f;
    nz |= static_cast<std::uint32_t>(z) << i;
    bd |= static_cast<std::uint32_t>(z && p[i] != 1.0f) << i;
  }
  bad |= bd;
  return nz;
}

inline void add_offset16(std::int32_t* dst, const std::int32_t* src, std::int32_t off) {
  for (int i = 0; i < 16; ++i) dst[i] = src[i] + off;
}
#endif

// Bytes of one vector: the alignment vstream needs.
constexpr int kVecBytes = kWidth * static_cast<int>(sizeof(float));

// Whether kernels keep accumulators in vector registers (arrays of vf); the portable build keeps its plain loops.
#if defined(FASTSPIKE_PORTABLE_SIMD)
constexpr bool kRegisterBlocked = false;
#else
constexpr bool kRegisterBlocked = true;
#endif

}  // namespace simd
}  // namespace fastspike
