// Lossless compact storage of tensors kept for the backward pass (fastspike/ops/_saved.py).
//
// Spiking networks save many activations that hold only 0 and 1 (spikes: 1 bit each is enough) or small
// non-negative integers (spike counts, e.g. SEW ResNet 'ADD' block outputs: 1 byte each). compact_saved
// finds out which in one read pass that stops as soon as the answer is 'neither' (a real-valued input is
// rejected after its first chunks), and writes both compact forms on the way.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "api.h"
#include "bits.h"
#include "common.h"
#include "simd.h"

namespace fastspike {
namespace {

constexpr std::int64_t kClassifyChunk = 1 << 14;

// Bytes of the group p[0, n) (n <= 16; p holds 16 readable floats): out[i] = p[i] where p[i] is an integer in
// [0, 255], else 0; ORs into bad whether a value is not, and into big whether a value is above 1.
inline void classify_group(const float* p, std::int64_t n, std::uint8_t* out, bool& bad, bool& big) {
#if defined(FASTSPIKE_AVX512)
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f), top = _mm512_set1_ps(255.0f);
  const __m512 v = _mm512_loadu_ps(p);
  // not (0 <= v <= 255 and integral); NaN fails every ordered comparison
  const __mmask16 ok = _mm512_cmp_ps_mask(v, zero, _CMP_GE_OQ) & _mm512_cmp_ps_mask(v, top, _CMP_LE_OQ) &
                       _mm512_cmp_ps_mask(v, _mm512_roundscale_ps(v, _MM_FROUND_TO_NEG_INF), _CMP_EQ_OQ);
  const __mmask16 live = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u);
  if (static_cast<__mmask16>(~ok) & live) bad = true;
  if (_mm512_cmp_ps_mask(v, one, _CMP_GT_OQ) & live) big = true;
  _mm512_mask_cvtepi32_storeu_epi8(out, live, _mm512_cvttps_epi32(_mm512_maskz_mov_ps(ok, v)));
#else
  int b = 0, g = 0;
#pragma omp simd reduction(| : b, g)
  for (std::int64_t k = 0; k < n; ++k) {
    const float v = p[k];
    const bool valid = v >= 0.0f && v <= 255.0f && v == std::floor(v);
    b |= !valid;
    g |= v > 1.0f;
    out[k] = valid ? static_cast<std::uint8_t>(v) : 0;
  }
  if (b) bad = true;
  if (g) big = true;
#endif
}

// (kind, nonzeros): kind 1 when every value is 0 or 1; 2 when every value is an integer in [0, 255] (some
// above 1); 0 for anything else (fractions, negatives, NaN, infinities), with the count then meaningless. The
// same read pass writes both compact forms: bits (as spike_pack packs a flat tensor: bit j of byte b is element
// 8 b + j) and bytes; the caller keeps the one the kind calls for (neither means anything for kind 0).
// Classifying first and converting afterwards read the tensor twice, and the two calls' fixed costs were most
// of the time on the small maps of deep layers.
}  // namespace

std::pair<int, std::int64_t> compact_saved(std::uintptr_t x_, std::int64_t n, std::uintptr_t bits_,
                                           std::uintptr_t bytes_, int nthreads) {
  const float* x = ptr<const float>(x_);
  std::uint8_t* bits = ptr<std::uint8_t>(bits_);
  std::uint8_t* bytes = ptr<std::uint8_t>(bytes_);
  const std::int64_t items = (n + kClassifyChunk - 1) / kClassifyChunk;
  std::atomic<int> not_binary{0};
  std::atomic<int> not_bytes{0};
  std::int64_t nnz = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : nnz) \
    num_threads(clamp_threads(nthreads, items, n, std::int64_t(1) << 18))
  for (std::int64_t it = 0; it < items; ++it) {
    if (not_bytes.load(std::memory_order_relaxed)) continue;  // answer known: 'neither'
    const std::int64_t c0 = it * kClassifyChunk;              // a multiple of 8: whole bytes of bits per chunk
    const std::int64_t len = std::min(kClassifyChunk, n - c0);
    const float* p = x + c0;
    std::uint8_t* pb = bits + c0 / 8;
    std::uint8_t* py = bytes + c0;
    bool bad = false, big = false;
    std::int64_t cnt = 0;
    // the bits come from the one packing loop (bits.h); its "not binary" answer is implied by bad and big
    pack_groups(p, len, pb, [&](std::int64_t k, std::int64_t m, std::uint32_t mask, const float* group) {
      cnt += __builtin_popcount(mask);
      classify_group(group, m, py + k, bad, big);
    });
    nnz += cnt;
    if (bad) not_bytes.store(1, std::memory_order_relaxed);
    if (big) not_binary.store(1, std::memory_order_relaxed);
  }
  if (not_bytes.load()) return {0, 0};
  return {not_binary.load() ? 2 : 1, nnz};
}

}  // namespace fastspike
