// Bit packing of binary spike tensors, written once: every kernel that packs spikes (spike_pack, the
// event-driven Linear and Conv2d compactions, compact_saved) goes through pack_groups.
//
// Bit layout: a [rows, cols] tensor packs to [rows, ceil(cols / 8)] bytes; bit j of byte b of a row holds
// element 8 b + j (little-endian within the byte). A flat tensor is packed as one row. A spike is any
// value != 0 (NaN included); a value outside {0, 1} marks the input "not binary".
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "simd.h"

namespace fastspike {

constexpr std::int64_t kSlack = 16;  // extra index slots a vector compaction may write past the count

// The one packing loop. Visits x[0, n) in groups of 16: computes the nonzero mask of the group, writes it to
// bits (byte aligned at element 0; the last group writes only its ceil(len / 8) bytes) when bits != nullptr,
// and calls on_group(k, len, mask, group), where group points to the group's 16 floats (for the last, short
// group: a copy padded with zeros, so mask has no bit at or past len). Returns whether a value outside {0, 1}
// was seen.
template <typename OnGroup>
inline bool pack_groups(const float* x, std::int64_t n, std::uint8_t* bits, OnGroup&& on_group) {
  std::uint32_t bad = 0;
  std::int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    const std::uint32_t m = simd::nonzero_mask16(x + k, bad);
    if (bits) {
      const std::uint16_t m16 = static_cast<std::uint16_t>(m);
      std::memcpy(bits + k / 8, &m16, 2);
    }
    on_group(k, std::int64_t{16}, m, x + k);
  }
  if (k < n) {
    const std::int64_t len = n - k;
    alignas(64) float tail[16] = {};
    std::memcpy(tail, x + k, static_cast<std::size_t>(len) * sizeof(float));
    const std::uint32_t m = simd::nonzero_mask16(tail, bad);
    if (bits) {
      const std::uint16_t m16 = static_cast<std::uint16_t>(m);
      std::memcpy(bits + k / 8, &m16, static_cast<std::size_t>((len + 7) / 8));
    }
    on_group(k, len, m, tail);
  }
  return bad != 0;
}

// Pack x[0, n) to bits (byte aligned) and OR into `bad` whether a value is outside {0, 1}.
inline void pack_span(const float* x, std::int64_t n, std::uint8_t* bits, bool& bad) {
  if (pack_groups(x, n, bits, [](std::int64_t, std::int64_t, std::uint32_t, const float*) {})) bad = true;
}

// Row compaction: writes the indices (plus `base`) of the nonzeros of x[0, n) to idx (which must have
// n + kSlack slots), packs the nonzero mask into bits when bits != nullptr, and ORs into `bad` whether any
// value is outside {0, 1}. Returns the number of nonzeros.
inline std::int64_t compact_row(const float* x, std::int64_t n, std::int32_t* idx, std::int32_t base,
                                std::uint8_t* bits, bool& bad) {
  std::int64_t c = 0;
#if defined(FASTSPIKE_AVX512)
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const bool b = pack_groups(x, n, bits, [&](std::int64_t k, std::int64_t, std::uint32_t m, const float*) {
    if (!m) return;
    // register-form compress (fast everywhere), then a plain unaligned store of all 16 lanes
    const __m512i vk = _mm512_add_epi32(_mm512_set1_epi32(base + static_cast<std::int32_t>(k)), iota);
    _mm512_storeu_si512(reinterpret_cast<void*>(idx + c), _mm512_maskz_compress_epi32(static_cast<__mmask16>(m), vk));
    c += __builtin_popcount(m);
  });
#else
  const bool b = pack_groups(x, n, bits, [&](std::int64_t k, std::int64_t, std::uint32_t m, const float*) {
    const std::int32_t at = base + static_cast<std::int32_t>(k);
    while (m) {
      idx[c++] = at + __builtin_ctz(m);
      m &= m - 1;
    }
  });
#endif
  if (b) bad = true;
  return c;
}

// Up to 56 bits of a packed stream starting at bit position `pos` (bytes beyond `nbytes` read as 0).
inline std::uint64_t load_bits(const std::uint8_t* bytes, std::int64_t nbytes, std::int64_t pos, int count) {
  const std::int64_t byte = pos >> 3;
  std::uint64_t w = 0;
  const std::int64_t avail = std::min<std::int64_t>(8, nbytes - byte);
  if (avail > 0) std::memcpy(&w, bytes + byte, static_cast<std::size_t>(avail));
  w >>= (pos & 7);
  return count >= 64 ? w : (w & ((std::uint64_t{1} << count) - 1));
}

}  // namespace fastspike
