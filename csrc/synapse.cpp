// Event-driven synapses on the CPU: spike-gather Linear and Conv2d (forward and weight gradient) and
// bit packing of binary spike tensors (8 spikes a byte) for the tensors saved for backward.
//
// Conventions (fastspike/ops/synapse.py is the launcher and validates everything):
// * float32, contiguous buffers passed as addresses; at most `nthreads` OpenMP threads.
// * Bit layout: a [rows, cols] tensor packs to [rows, ceil(cols / 8)] bytes; bit j of byte b of a row holds
//   element 8 b + j (little-endian within the byte). A flat tensor is packed as one row.
// * A spike is any value != 0; a value outside {0, 1} makes the op report "not binary" (status 0) so
//   the caller can raise or fall back to the dense path; outputs are then left unwritten.
//
// Linear, forward: every row of x is compacted into the list of its active inputs (one pass: AVX-512 compress
// where available, bits packed on the way); then, per tile of 64 outputs, each active input k adds row k of
// the tile-blocked transposed weight WT[tile][K][64] (a contiguous 256-byte row that stays in L2 across rows).
// Linear, weight gradient: the packed bits are turned into per-input lists of active rows (CSC), then per
// (64-output tile, 16-input block) gW[n, k] = sum over active rows m of g[m, n], read from the tile-blocked
// copy G[tile][M][64] of the upstream gradient.
// Conv2d, forward: gather per output pixel. Each input pixel gets the list of its active channels; an output
// row (b, oy) keeps a local accumulator [OW][Cout] and, for every tap whose input pixel is active, adds the
// contiguous weight row WT[c][ky][kx][0:Cout/groups]; the row is written once, transposed to NCHW. Race-free.
// Conv2d, weight gradient: parallel over input channels; per image and channel the active pixels are sorted
// into one list per tap (the output pixel each lands on) and gWT[c][ky][kx][:] gains the sum, in registers, of
// the contiguous rows g_nhwc[b, oy, ox, group] of its list.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define FASTSPIKE_SYN_AVX512 1
#endif

#include "registry.h"

namespace fastspike {
namespace {

constexpr std::int64_t kTile = 64;     // outputs per weight tile (4 AVX-512 registers)
constexpr std::int64_t kKBlock = 16;   // inputs per weight-gradient block
constexpr std::int64_t kChunk = 4096;  // elements per work item of pack / unpack / stats (multiple of 8)
constexpr std::int64_t kSlack = 16;    // extra index slots a vector compaction may write past the count

// ---------------------------------------------------------------------------------------------------------
// Row compaction: writes the indices (plus `base`) of the nonzeros of x[0, n) to idx (which must have
// n + kSlack slots), packs the nonzero mask into bits (byte aligned at element 0) when bits != nullptr, and
// ORs into `bad` whether any value is outside {0, 1} (NaN included). Returns the number of nonzeros.
inline std::int64_t compact_row(const float* x, std::int64_t n, std::int32_t* idx, std::int32_t base,
                                std::uint8_t* bits, bool& bad) {
  std::int64_t c = 0;
  std::int64_t k = 0;
#ifdef FASTSPIKE_SYN_AVX512
  const __m512 zero = _mm512_setzero_ps();
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512i step = _mm512_set1_epi32(16);
  __m512i vk = _mm512_add_epi32(_mm512_set1_epi32(base),
                                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  __mmask16 badm = 0;
  for (; k + 16 <= n; k += 16) {
    const __m512 v = _mm512_loadu_ps(x + k);
    const __mmask16 nz = _mm512_cmp_ps_mask(v, zero, _CMP_NEQ_UQ);
    if (nz) {
      badm |= nz & _mm512_cmp_ps_mask(v, one, _CMP_NEQ_UQ);
      // register-form compress (fast everywhere), then a plain unaligned store of all 16 lanes
      _mm512_storeu_si512(reinterpret_cast<void*>(idx + c), _mm512_maskz_compress_epi32(nz, vk));
      c += _mm_popcnt_u32(static_cast<unsigned>(nz));
    }
    if (bits) {
      const std::uint16_t m16 = static_cast<std::uint16_t>(nz);
      std::memcpy(bits + k / 8, &m16, 2);
    }
    vk = _mm512_add_epi32(vk, step);
  }
  if (k < n) {
    const __mmask16 live = static_cast<__mmask16>((1u << (n - k)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(live, x + k);
    const __mmask16 nz = _mm512_mask_cmp_ps_mask(live, v, zero, _CMP_NEQ_UQ);
    badm |= nz & _mm512_cmp_ps_mask(v, one, _CMP_NEQ_UQ);
    _mm512_storeu_si512(reinterpret_cast<void*>(idx + c), _mm512_maskz_compress_epi32(nz, vk));
    c += _mm_popcnt_u32(static_cast<unsigned>(nz));
    if (bits) {
      const std::uint16_t m16 = static_cast<std::uint16_t>(nz);
      std::memcpy(bits + k / 8, &m16, static_cast<std::size_t>((n - k + 7) / 8));
    }
  }
  if (badm) bad = true;
#else
  bool b = false;
  for (; k < n; k += 8) {
    const std::int64_t end = std::min<std::int64_t>(k + 8, n);
    unsigned byte = 0;
    for (std::int64_t i = k; i < end; ++i) {
      const float v = x[i];
      const bool nz = v != 0.0f;
      idx[c] = base + static_cast<std::int32_t>(i);
      c += nz;
      b |= nz && v != 1.0f;
      byte |= static_cast<unsigned>(nz) << (i - k);
    }
    if (bits) bits[k / 8] = static_cast<std::uint8_t>(byte);
  }
  if (b) bad = true;
#endif
  return c;
}

// Pack x[0, n) to bits (byte aligned) and report non-binary values; no index output.
inline void pack_span(const float* x, std::int64_t n, std::uint8_t* bits, bool& bad) {
  bool b = false;
  std::int64_t k = 0;
#ifdef FASTSPIKE_SYN_AVX512
  const __m512 zero = _mm512_setzero_ps();
  const __m512 one = _mm512_set1_ps(1.0f);
  __mmask16 badm = 0;
  for (; k + 16 <= n; k += 16) {
    const __m512 v = _mm512_loadu_ps(x + k);
    const __mmask16 nz = _mm512_cmp_ps_mask(v, zero, _CMP_NEQ_UQ);
    badm |= nz & _mm512_cmp_ps_mask(v, one, _CMP_NEQ_UQ);
    const std::uint16_t m16 = static_cast<std::uint16_t>(nz);
    std::memcpy(bits + k / 8, &m16, 2);
  }
  b = badm != 0;
#endif
  for (; k < n; k += 8) {
    const std::int64_t end = std::min<std::int64_t>(k + 8, n);
    unsigned byte = 0;
    for (std::int64_t i = k; i < end; ++i) {
      const float v = x[i];
      const bool nz = v != 0.0f;
      b |= nz && v != 1.0f;
      byte |= static_cast<unsigned>(nz) << (i - k);
    }
    bits[k / 8] = static_cast<std::uint8_t>(byte);
  }
  if (b) bad = true;
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

// acc[0, 64) += w[0, 64)
inline void add_tile(float* acc, const float* w) {
#pragma omp simd
  for (int i = 0; i < kTile; ++i) acc[i] += w[i];
}

// ------------------------------------------------------------------------------------------------- bits
bool spike_pack(std::uintptr_t x_, std::uintptr_t out_, std::int64_t rows, std::int64_t cols, int nthreads) {
  const float* x = ptr<const float>(x_);
  std::uint8_t* out = ptr<std::uint8_t>(out_);
  const std::int64_t nb = (cols + 7) / 8;
  const std::int64_t chunks = (cols + kChunk - 1) / kChunk;
  const std::int64_t items = rows * chunks;
  bool bad = false;
#pragma omp parallel for schedule(static) reduction(|| : bad) num_threads(clamp_threads(nthreads, items))
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t r = it / chunks, c0 = (it % chunks) * kChunk;
    const std::int64_t len = std::min(kChunk, cols - c0);
    bool b = false;
    pack_span(x + r * cols + c0, len, out + r * nb + c0 / 8, b);
    bad = bad || b;
  }
  return !bad;
}

void spike_unpack(std::uintptr_t bits_, std::uintptr_t out_, std::int64_t rows, std::int64_t cols, int nthreads) {
  const std::uint8_t* bits = ptr<const std::uint8_t>(bits_);
  float* out = ptr<float>(out_);
  const std::int64_t nb = (cols + 7) / 8;
  const std::int64_t chunks = (cols + kChunk - 1) / kChunk;
  const std::int64_t items = rows * chunks;
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, items))
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t r = it / chunks, c0 = (it % chunks) * kChunk;
    const std::int64_t len = std::min(kChunk, cols - c0);
    const std::uint8_t* b = bits + r * nb + c0 / 8;
    float* o = out + r * cols + c0;
#pragma omp simd
    for (std::int64_t i = 0; i < len; ++i) o[i] = static_cast<float>((b[i >> 3] >> (i & 7)) & 1);
  }
}

// (number of nonzeros, every value in {0, 1})
std::pair<std::int64_t, bool> spike_stats(std::uintptr_t x_, std::int64_t n, int nthreads) {
  const float* x = ptr<const float>(x_);
  const std::int64_t items = (n + kChunk - 1) / kChunk;
  std::int64_t nnz = 0;
  bool bad = false;
#pragma omp parallel for schedule(static) reduction(+ : nnz) reduction(|| : bad) \
    num_threads(clamp_threads(nthreads, items))
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t c0 = it * kChunk, len = std::min(kChunk, n - c0);
    const float* p = x + c0;
    std::int64_t cnt = 0;
    int b = 0;
#pragma omp simd reduction(+ : cnt) reduction(| : b)
    for (std::int64_t i = 0; i < len; ++i) {
      const float v = p[i];
      cnt += v != 0.0f;
      b |= (v != 0.0f) & (v != 1.0f);
    }
    nnz += cnt;
    bad = bad || b;
  }
  return {nnz, !bad};
}

#ifdef FASTSPIKE_SYN_AVX512
// dst[j * dstride + i] = src[i * sstride + j] for i, j < 16 (register transpose of a 16 x 16 block)
// STREAM: non-temporal stores (dst rows 64-byte aligned): a large NCHW output is written without reading
// its lines first (each output row is 16-float pieces of Cout rows 4 KiB apart).
template <bool STREAM = false>
inline void transpose16(const float* src, std::int64_t sstride, float* dst, std::int64_t dstride) {
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
#endif

// dst[c * dstride + r] = src[r * sstride + c] for rows r < rows and columns c in [c0, c1) (16 x 16 register
// transposes where a whole block fits).
inline void transpose_panel(const float* src, std::int64_t sstride, float* dst, std::int64_t dstride,
                            std::int64_t rows, std::int64_t c0, std::int64_t c1) {
  std::int64_t r0 = 0;
#ifdef FASTSPIKE_SYN_AVX512
  if (c1 - c0 == 16)
    for (; r0 + 16 <= rows; r0 += 16) transpose16(src + r0 * sstride + c0, sstride, dst + c0 * dstride + r0, dstride);
#endif
  for (std::int64_t c = c0; c < c1; ++c)
    for (std::int64_t r = r0; r < rows; ++r) dst[c * dstride + r] = src[r * sstride + c];
}

// ----------------------------------------------------------------------------------------------- linear
// Spike lists of the rows of a [rows, cols] matrix, built one pass per row into per-thread buffers.
struct RowLists {
  std::vector<std::vector<std::int32_t>> local;  // per thread
  std::vector<int> owner;                        // thread that built the row
  std::vector<std::int64_t> offset, count;       // position of the row's list in its owner's buffer
  const std::int32_t* list(std::int64_t r) const { return local[owner[r]].data() + offset[r]; }
};

// Status of an event-driven forward: done, or not run (out unwritten) because x is not binary or because it
// holds more than max_nnz spikes (the caller's density limit: the dense path is faster there).
constexpr int kNotBinary = 0, kDone = 1, kTooDense = 2;

// Returns kDone, kNotBinary, or kTooDense once more than max_nnz spikes are counted (max_nnz < 0: no limit).
// Without bits to fill, both stop the pass early; with bits, every row is packed (the caller keeps them).
int build_row_lists(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* bits, int threads,
                    std::int64_t max_nnz, RowLists& L) {
  L.local.assign(threads, {});
  L.owner.assign(rows, 0);
  L.offset.assign(rows, 0);
  L.count.assign(rows, 0);
  const std::int64_t nb = (cols + 7) / 8;
  bool bad = false;
  int stop = kDone;  // early stop (no bits wanted)
  std::int64_t counted = 0;
#pragma omp parallel num_threads(threads) reduction(|| : bad)
  {
    const int tid = omp_get_thread_num();
    std::vector<std::int32_t>& buf = L.local[tid];
    std::int64_t used = 0;
    bool b = false;
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      if (!bits) {
        int st;
#pragma omp atomic read
        st = stop;
        if (st != kDone) continue;
      }
      if (static_cast<std::int64_t>(buf.size()) < used + cols + kSlack)
        buf.resize(std::max<std::int64_t>(used + cols + kSlack, 2 * static_cast<std::int64_t>(buf.size())));
      const std::int64_t c = compact_row(x + r * cols, cols, buf.data() + used, 0, bits ? bits + r * nb : nullptr, b);
      L.owner[r] = tid;
      L.offset[r] = used;
      L.count[r] = c;
      used += c;
      if (!bits && (b || max_nnz >= 0)) {
        std::int64_t t = 0;
        if (!b) {
#pragma omp atomic capture
          t = counted += c;
        }
        if (b || t > max_nnz) {
#pragma omp critical(fastspike_linear_stop)
          if (b) stop = kNotBinary;
          else if (stop == kDone) stop = kTooDense;
        }
      }
    }
    bad = bad || b;
  }
  if (bad) return kNotBinary;
  if (stop != kDone) return stop;
  if (max_nnz >= 0) {
    std::int64_t total = 0;
    for (std::int64_t r = 0; r < rows; ++r) total += L.count[r];
    if (total > max_nnz) return kTooDense;
  }
  return kDone;
}


// The forwards ask for their output only once the compaction has found x sparse enough: `alloc` is a Python
// callable returning the output buffer's address. A buffer allocated up front and dropped when the dense path
// takes over costs its allocation (and, when huge-page advised, its page setup) for nothing.
float* output_buffer(const pybind11::function& alloc) {
  pybind11::gil_scoped_acquire gil;
  return ptr<float>(alloc().cast<std::uintptr_t>());
}

// torch's weight [N, K] -> the tile-blocked W^T [ceil(N/64)][K][64] (zero padded), into this thread's scratch
// memory (valid until its next call): for a weight that changes every step.
const float* tile_linear_weight(const float* w, std::int64_t K, std::int64_t N, int nthreads) {
  struct LinearWT;
  const std::int64_t ntiles = (N + kTile - 1) / kTile, kblocks = (K + 15) / 16, items = ntiles * kblocks;
  float* t = scratch<LinearWT, float>(static_cast<std::size_t>(ntiles * K * kTile));
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, items, N * K, 1 << 16))
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t tile = it / kblocks, k0 = (it % kblocks) * 16, k1 = std::min(K, k0 + 16);
    const std::int64_t nvalid = std::min(kTile, N - tile * kTile);
    float* dst = t + tile * K * kTile;
    transpose_panel(w + tile * kTile * K, K, dst, kTile, nvalid, k0, k1);
    for (std::int64_t k = k0; k < k1; ++k) std::fill(dst + k * kTile + nvalid, dst + (k + 1) * kTile, 0.0f);
  }
  return t;
}

// x [M, K]; wt [ceil(N/64)][K][64] (tile-blocked W^T, zero padded) or, with torch_layout, W [N, K] (blocked
// here once the input is known to be sparse enough); bias [N] or 0; alloc -> out [M, N];
// bits [M, ceil(K/8)] or 0 (filled with the packed spikes on the way, also when the result is kTooDense);
// max_nnz < 0: no density limit.
int linear_forward(std::uintptr_t x_, std::uintptr_t wt_, std::uintptr_t bias_, const pybind11::function& alloc,
                   std::uintptr_t bits_, std::int64_t M, std::int64_t K, std::int64_t N, std::int64_t max_nnz,
                   bool torch_layout, int nthreads) {
  const float* x = ptr<const float>(x_);
  const float* wt = ptr<const float>(wt_);
  const float* bias = bias_ ? ptr<const float>(bias_) : nullptr;
  const int threads = clamp_threads(nthreads, M);
  RowLists L;
  const int status = build_row_lists(x, M, K, bits_ ? ptr<std::uint8_t>(bits_) : nullptr, threads, max_nnz, L);
  if (status != kDone) return status;
  if (torch_layout) wt = tile_linear_weight(wt, K, N, nthreads);
  float* out = output_buffer(alloc);

  const std::int64_t ntiles = (N + kTile - 1) / kTile;
  constexpr std::int64_t kRowBlock = 128;
  const std::int64_t rblocks = (M + kRowBlock - 1) / kRowBlock;
  const std::int64_t items = ntiles * rblocks;
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, items))
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t t = it / rblocks, rb = it % rblocks;
    const std::int64_t n0 = t * kTile, nvalid = std::min(kTile, N - n0);
    const float* wtile = wt + t * K * kTile;
    alignas(64) float b0[kTile];
    for (std::int64_t i = 0; i < kTile; ++i) b0[i] = (bias && i < nvalid) ? bias[n0 + i] : 0.0f;
    const std::int64_t m_end = std::min(M, (rb + 1) * kRowBlock);
    for (std::int64_t m = rb * kRowBlock; m < m_end; ++m) {
      const std::int32_t* li = L.list(m);
      const std::int64_t cnt = L.count[m];
      alignas(64) float acc[kTile];
#ifdef FASTSPIKE_SYN_AVX512
      __m512 a0 = _mm512_load_ps(b0), a1 = _mm512_load_ps(b0 + 16), a2 = _mm512_load_ps(b0 + 32),
             a3 = _mm512_load_ps(b0 + 48);
      __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
      std::int64_t j = 0;
      for (; j + 2 <= cnt; j += 2) {
        const float* w = wtile + static_cast<std::int64_t>(li[j]) * kTile;
        const float* v = wtile + static_cast<std::int64_t>(li[j + 1]) * kTile;
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(w));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(w + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(w + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(w + 48));
        c0 = _mm512_add_ps(c0, _mm512_loadu_ps(v));
        c1 = _mm512_add_ps(c1, _mm512_loadu_ps(v + 16));
        c2 = _mm512_add_ps(c2, _mm512_loadu_ps(v + 32));
        c3 = _mm512_add_ps(c3, _mm512_loadu_ps(v + 48));
      }
      if (j < cnt) {
        const float* w = wtile + static_cast<std::int64_t>(li[j]) * kTile;
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(w));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(w + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(w + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(w + 48));
      }
      _mm512_store_ps(acc, _mm512_add_ps(a0, c0));
      _mm512_store_ps(acc + 16, _mm512_add_ps(a1, c1));
      _mm512_store_ps(acc + 32, _mm512_add_ps(a2, c2));
      _mm512_store_ps(acc + 48, _mm512_add_ps(a3, c3));
#else
      for (std::int64_t i = 0; i < kTile; ++i) acc[i] = b0[i];
      for (std::int64_t j = 0; j < cnt; ++j) add_tile(acc, wtile + static_cast<std::int64_t>(li[j]) * kTile);
#endif
      std::memcpy(out + m * N + n0, acc, static_cast<std::size_t>(nvalid) * sizeof(float));
    }
  }
  return kDone;
}

// bits [M, ceil(K/8)] (packed x); gt [ceil(N/64)][M][64] (tile-blocked upstream gradient, zero padded);
// gw [N, K] = g^T x, accumulated only over the active inputs.
void linear_grad_weight(std::uintptr_t bits_, std::uintptr_t gt_, std::uintptr_t gw_, std::int64_t M,
                        std::int64_t K, std::int64_t N, int nthreads) {
  const std::uint8_t* bits = ptr<const std::uint8_t>(bits_);
  const float* gt = ptr<const float>(gt_);
  float* gw = ptr<float>(gw_);
  const std::int64_t nb = (K + 7) / 8;
  // CSC: for every input k, the rows m where it fired (ascending m, so the sum order is deterministic).
  std::vector<std::int64_t> col_ptr(K + 1, 0);
  const int th_b = clamp_threads(nthreads, nb);
#pragma omp parallel for schedule(static) num_threads(th_b)
  for (std::int64_t b = 0; b < nb; ++b) {
    std::int64_t cnt[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (std::int64_t m = 0; m < M; ++m) {
      unsigned v = bits[m * nb + b];
      while (v) {
        cnt[__builtin_ctz(v)]++;
        v &= v - 1;
      }
    }
    for (int j = 0; j < 8 && 8 * b + j < K; ++j) col_ptr[8 * b + j + 1] = cnt[j];
  }
  for (std::int64_t k = 0; k < K; ++k) col_ptr[k + 1] += col_ptr[k];
  std::vector<std::int32_t> rows_of(static_cast<std::size_t>(std::max<std::int64_t>(col_ptr[K], 1)));
#pragma omp parallel for schedule(static) num_threads(th_b)
  for (std::int64_t b = 0; b < nb; ++b) {
    std::int64_t pos[8];
    for (int j = 0; j < 8; ++j) pos[j] = 8 * b + j < K ? col_ptr[8 * b + j] : 0;
    for (std::int64_t m = 0; m < M; ++m) {
      unsigned v = bits[m * nb + b];
      while (v) {
        const int j = __builtin_ctz(v);
        rows_of[pos[j]++] = static_cast<std::int32_t>(m);
        v &= v - 1;
      }
    }
  }
  const std::int64_t ntiles = (N + kTile - 1) / kTile;
  const std::int64_t kblocks = (K + kKBlock - 1) / kKBlock;
  const std::int64_t items = ntiles * kblocks;
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, items))
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t t = it / kblocks, kb = it % kblocks;
    const std::int64_t n0 = t * kTile, nvalid = std::min(kTile, N - n0);
    const std::int64_t k0 = kb * kKBlock, kvalid = std::min(kKBlock, K - k0);
    const float* gtile = gt + t * M * kTile;
    alignas(64) float buf[kKBlock][kTile];
    for (std::int64_t kk = 0; kk < kvalid; ++kk) {
      float* acc = buf[kk];
      for (std::int64_t i = 0; i < kTile; ++i) acc[i] = 0.0f;
      const std::int64_t e = col_ptr[k0 + kk + 1];
      for (std::int64_t j = col_ptr[k0 + kk]; j < e; ++j) add_tile(acc, gtile + static_cast<std::int64_t>(rows_of[j]) * kTile);
    }
    for (std::int64_t i = 0; i < nvalid; ++i) {
      float* dst = gw + (n0 + i) * K + k0;
      for (std::int64_t kk = 0; kk < kvalid; ++kk) dst[kk] = buf[kk][i];
    }
  }
}

// ----------------------------------------------------------------------------------------------- conv2d
struct ConvShape {
  std::int64_t B, Cin, H, W, Cout, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, G;
  std::int64_t cin_g() const { return Cin / G; }
  std::int64_t cout_g() const { return Cout / G; }
};

#ifdef FASTSPIKE_SYN_AVX512
// One output pixel of a groups == 1 convolution, outputs [cb, cb + 16 NV): bias + the weight rows at offsets
// rows[0, m) (one per active (channel, tap)), accumulated in NV registers and stored once to dst[cb, cb + 16 NV).
template <int NV>
inline void conv_pixel_block(const float* wt, const float* bias, float* dst, std::int64_t cb,
                             const std::int32_t* rows, std::int64_t m) {
  __m512 acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = bias ? _mm512_loadu_ps(bias + cb + 16 * v) : _mm512_setzero_ps();
  const float* wb = wt + cb;
  for (std::int64_t j = 0; j < m; ++j) {
    const float* w = wb + rows[j];
    for (int v = 0; v < NV; ++v) acc[v] = _mm512_add_ps(acc[v], _mm512_loadu_ps(w + 16 * v));
  }
  for (int v = 0; v < NV; ++v) _mm512_storeu_ps(dst + cb + 16 * v, acc[v]);
}
#endif

// torch's weight layout [G][Cout/G][R] (R = Cin/G * KH * KW) -> [G][R][Cout/G], into this thread's scratch
// memory (valid until its next call): the copy of a weight that changes every step, written where pages are
// already mapped.
const float* transpose_conv_weight(const float* w, const ConvShape& s, int nthreads) {
  struct WeightT;
  const std::int64_t cg = s.cout_g(), R = s.cin_g() * s.KH * s.KW;
  float* t = scratch<WeightT, float>(static_cast<std::size_t>(s.G * R * cg));
  const std::int64_t rblocks = (R + 15) / 16, items = s.G * rblocks;
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, items, s.G * R * cg, 1 << 16))
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t g = it / rblocks, r0 = (it % rblocks) * 16;
    transpose_panel(w + g * cg * R, R, t + g * R * cg, cg, cg, r0, std::min(R, r0 + 16));
  }
  return t;
}

// x [B, Cin, H, W]; wt [Cin][KH][KW][Cout/G] (for input channel c, the weights of the outputs of its group),
// or, with torch_layout, the weight as torch holds it, [Cout][Cin/G][KH][KW] (transposed here once the input
// is known to be sparse enough);
// bias [Cout] or 0; alloc -> out [B, Cout, OH, OW]. Returns kDone, or kNotBinary / kTooDense (more than max_nnz spikes;
// max_nnz < 0: no limit) with out unwritten. Both stop the compaction early: kTooDense says nothing about
// whether x is binary.
int conv2d_forward(std::uintptr_t x_, std::uintptr_t wt_, std::uintptr_t bias_, const pybind11::function& alloc,
                   std::int64_t B, std::int64_t Cin, std::int64_t H, std::int64_t W, std::int64_t Cout,
                   std::int64_t OH, std::int64_t OW, std::int64_t KH, std::int64_t KW, std::int64_t sh,
                   std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh, std::int64_t dw,
                   std::int64_t G, std::int64_t max_nnz, bool torch_layout, int nthreads) {
  const ConvShape s{B, Cin, H, W, Cout, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, G};
  const float* x = ptr<const float>(x_);
  const float* wt = ptr<const float>(wt_);
  const float* bias = bias_ ? ptr<const float>(bias_) : nullptr;
  const std::int64_t cg = s.cout_g(), cing = s.cin_g();
  // register-blocked path (AVX-512 builds): the lists hold weight-row offsets c * KH * KW * Cout, not c
  bool fast = false;
#ifdef FASTSPIKE_SYN_AVX512
  fast = G == 1 && Cout % 16 == 0 && Cin * KH * KW * Cout < (std::int64_t(1) << 31);
#endif
  const std::int32_t cmul = static_cast<std::int32_t>(fast ? KH * KW * Cout : 1);

  // Phase 1: per input row (b, iy), the active channels of each pixel, stored pixel by pixel in
  // per-thread buffers: pix_off[b, iy, ix] = start of the pixel's list in its row's buffer, pix_cnt its length.
  // Work item: a band of input rows of one image, so that each channel's part is one contiguous span of x.
  const std::int64_t in_rows = B * H;
  struct PixOff; struct PixCnt; struct RowBase; struct RowOwner; struct RowOff; struct Lists; struct Stage;
  struct Cnt; struct Cols;
  std::int32_t* pix_off = scratch<PixOff, std::int32_t>(static_cast<std::size_t>(B * H * W));
  std::int32_t* pix_cnt = scratch<PixCnt, std::int32_t>(static_cast<std::size_t>(B * H * W));
  const std::int32_t** row_base = scratch<RowBase, const std::int32_t*>(static_cast<std::size_t>(in_rows));
  std::int32_t** row_owner = scratch<RowOwner, std::int32_t*>(static_cast<std::size_t>(in_rows));
  std::int64_t* row_off = scratch<RowOff, std::int64_t>(static_cast<std::size_t>(in_rows));
  std::int64_t band = std::clamp<std::int64_t>(2048 / std::max<std::int64_t>(W, 1), 1, H);
  const std::int64_t want_items = 4 * static_cast<std::int64_t>(std::max(nthreads, 1));
  if (B * ((H + band - 1) / band) < want_items) band = std::max<std::int64_t>(1, (B * H) / want_items);
  const std::int64_t bands = (H + band - 1) / band, items1 = B * bands;
  const int th1 = clamp_threads(nthreads, items1);
  // stop early: at the first non-binary value, or once more than max_nnz spikes are counted
  int stop = kDone;
  std::int64_t counted = 0;
#pragma omp parallel num_threads(th1)
  {
    // a thread's list buffer holds at most every element of its (static) share of the items; the team may
    // be smaller than asked (nested parallelism, thread limits)
    const std::int64_t team = omp_get_num_threads();
    const std::int64_t per_thread = (items1 + team - 1) / team * band * W * Cin + kSlack;
    std::int32_t* buf = scratch<Lists, std::int32_t>(static_cast<std::size_t>(per_thread));
    std::int32_t* stage = scratch<Stage, std::int32_t>(static_cast<std::size_t>(band * W * Cin));  // [pixel][channels]
    std::int32_t* cnt = scratch<Cnt, std::int32_t>(static_cast<std::size_t>(band * W));
    std::int32_t* cols = scratch<Cols, std::int32_t>(static_cast<std::size_t>(band * W + kSlack));
    std::int64_t used = 0;
    bool b = false;
#pragma omp for schedule(static)
    for (std::int64_t it = 0; it < items1; ++it) {
      int st;
#pragma omp atomic read
      st = stop;
      if (st != kDone) continue;
      const std::int64_t bb = it / bands, iy0 = (it % bands) * band, iy1 = std::min(H, iy0 + band);
      const std::int64_t npix = (iy1 - iy0) * W;
      std::fill(cnt, cnt + npix, 0);
      std::int64_t item_nnz = 0;
      for (std::int64_t c = 0; c < Cin; ++c) {
        const std::int64_t n = compact_row(x + ((bb * Cin + c) * H + iy0) * W, npix, cols, 0, nullptr, b);
        const std::int32_t cv = static_cast<std::int32_t>(c) * cmul;
        for (std::int64_t j = 0; j < n; ++j) {
          const std::int32_t q = cols[j];
          stage[q * Cin + cnt[q]++] = cv;
        }
        item_nnz += n;
      }
      if (b) {
#pragma omp critical(fastspike_conv_stop)
        stop = kNotBinary;
        continue;
      }
      if (max_nnz >= 0) {
        std::int64_t t;
#pragma omp atomic capture
        t = counted += item_nnz;
        if (t > max_nnz) {
#pragma omp critical(fastspike_conv_stop)
          if (stop == kDone) stop = kTooDense;
          continue;
        }
      }
      for (std::int64_t iy = iy0; iy < iy1; ++iy) {
        const std::int64_t r = bb * H + iy;
        row_owner[r] = buf;
        row_off[r] = used;
        std::int64_t o = 0;
        for (std::int64_t ix = 0; ix < W; ++ix) {
          const std::int64_t q = (iy - iy0) * W + ix;
          pix_off[r * W + ix] = static_cast<std::int32_t>(o);
          pix_cnt[r * W + ix] = cnt[q];
          std::memcpy(buf + used + o, stage + q * Cin, sizeof(std::int32_t) * cnt[q]);
          o += cnt[q];
        }
        used += o;
      }
    }
    // the gather copies lists 16 entries at a time: the slack past the last list is read, never used
  }
  if (stop != kDone) return stop;
  if (torch_layout) wt = transpose_conv_weight(wt, s, nthreads);
  float* out = output_buffer(alloc);
  for (std::int64_t r = 0; r < in_rows; ++r) row_base[r] = row_owner[r] + row_off[r];

  // Phase 2: gather per output row.
  const std::int64_t out_rows = B * OH;
#ifdef FASTSPIKE_SYN_AVX512
  // streaming stores for outputs past the caches whose rows are 64-byte aligned
  const bool stream = (reinterpret_cast<std::uintptr_t>(out) % 64 == 0) && (OW % 16 == 0) &&
                      B * Cout * OH * OW * 4 >= (std::int64_t(4) << 20);
#endif
#pragma omp parallel num_threads(clamp_threads(nthreads, out_rows))
  {
    struct Acc; struct Flat;
    float* acc = scratch<Acc, float>(static_cast<std::size_t>(OW * Cout));
    std::int32_t* flat = scratch<Flat, std::int32_t>(static_cast<std::size_t>(fast ? KH * KW * Cin + kSlack : 1));
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < out_rows; ++r) {
      const std::int64_t bb = r / OH, oy = r % OH;
#ifdef FASTSPIKE_SYN_AVX512
      if (fast) {
        // register-blocked: per output pixel, the weight-row offsets of every active (channel, tap) are
        // gathered into one flat list (16-lane copies, no branch per tap), then summed block by block with
        // the accumulators in registers
        for (std::int64_t ox = 0; ox < OW; ++ox) {
          std::int64_t m = 0;
          for (std::int64_t ky = 0; ky < KH; ++ky) {
            const std::int64_t iy = oy * sh - ph + ky * dh;
            if (iy < 0 || iy >= H) continue;
            const std::int64_t irow = bb * H + iy;
            const std::int32_t* base = row_base[irow];
            for (std::int64_t kx = 0; kx < KW; ++kx) {
              const std::int64_t ix = ox * sw - pw + kx * dw;
              if (ix < 0 || ix >= W) continue;
              const std::int64_t p = irow * W + ix;
              const std::int32_t* li = base + pix_off[p];
              const std::int32_t n = pix_cnt[p];
              const __m512i toff = _mm512_set1_epi32(static_cast<std::int32_t>((ky * KW + kx) * Cout));
              std::int32_t j = 0;
              do {  // entries past n are overwritten by the next tap or ignored
                _mm512_storeu_si512(reinterpret_cast<void*>(flat + m + j),
                                    _mm512_add_epi32(_mm512_loadu_si512(reinterpret_cast<const void*>(li + j)), toff));
                j += 16;
              } while (j < n);
              m += n;
            }
          }
          float* a = acc + ox * Cout;
          if (Cout % 128 == 0) {
            for (std::int64_t cb = 0; cb < Cout; cb += 128) conv_pixel_block<8>(wt, bias, a, cb, flat, m);
          } else if (Cout % 64 == 0) {
            for (std::int64_t cb = 0; cb < Cout; cb += 64) conv_pixel_block<4>(wt, bias, a, cb, flat, m);
          } else {
            for (std::int64_t cb = 0; cb < Cout; cb += 16) conv_pixel_block<1>(wt, bias, a, cb, flat, m);
          }
        }
      } else
#endif
      {
      for (std::int64_t ox = 0; ox < OW; ++ox) {
        float* a = acc + ox * Cout;
        if (bias) std::memcpy(a, bias, sizeof(float) * Cout);
        else std::fill(a, a + Cout, 0.0f);
      }
      for (std::int64_t ky = 0; ky < KH; ++ky) {
        const std::int64_t iy = oy * sh - ph + ky * dh;
        if (iy < 0 || iy >= H) continue;
        const std::int64_t irow = bb * H + iy;
        const std::int32_t* base = row_base[irow];
        for (std::int64_t ox = 0; ox < OW; ++ox) {
          float* a = acc + ox * Cout;
          for (std::int64_t kx = 0; kx < KW; ++kx) {
            const std::int64_t ix = ox * sw - pw + kx * dw;
            if (ix < 0 || ix >= W) continue;
            const std::int64_t p = irow * W + ix;
            const std::int32_t* li = base + pix_off[p];
            const std::int32_t n = pix_cnt[p];
            for (std::int32_t j = 0; j < n; ++j) {
              const std::int64_t c = li[j];
              const float* w = wt + ((c * KH + ky) * KW + kx) * cg;
              float* ag = a + (G == 1 ? 0 : (c / cing) * cg);
#pragma omp simd
              for (std::int64_t i = 0; i < cg; ++i) ag[i] += w[i];
            }
          }
        }
      }
      }
      // write the row [OW][Cout] transposed to out[b, :, oy, :]
      std::int64_t o_done = 0, ox_done = 0;
#ifdef FASTSPIKE_SYN_AVX512
      o_done = Cout - Cout % 16;
      ox_done = OW - OW % 16;
      for (std::int64_t o0 = 0; o0 < o_done; o0 += 16)
        for (std::int64_t ox0 = 0; ox0 < ox_done; ox0 += 16) {
          float* dst = out + ((bb * Cout + o0) * OH + oy) * OW + ox0;
          if (stream) transpose16<true>(acc + ox0 * Cout + o0, Cout, dst, OH * OW);
          else transpose16(acc + ox0 * Cout + o0, Cout, dst, OH * OW);
        }
#endif
      for (std::int64_t o = 0; o < Cout; ++o) {
        float* dst = out + ((bb * Cout + o) * OH + oy) * OW;
        const float* src = acc + o;
        for (std::int64_t ox = o < o_done ? ox_done : 0; ox < OW; ++ox) dst[ox] = src[ox * Cout];
      }
    }
#ifdef FASTSPIKE_SYN_AVX512
    if (stream) _mm_sfence();  // order this thread's streaming stores before the team's barrier
#endif
  }
  return kDone;
}

// The positions p0 + i (i < len) of x's nonzeros among 32 consecutive elements, as a bit mask: from the
// packed bits, or from one byte per element.
template <bool BYTES>
inline std::uint64_t nonzero_mask(const std::uint8_t* data, std::int64_t nbytes, std::int64_t pos, int len) {
  if constexpr (BYTES) {
    std::uint64_t m = 0;
    const std::uint8_t* v = data + pos;
    for (int i = 0; i < len; ++i) m |= static_cast<std::uint64_t>(v[i] != 0) << i;
    return m;
  } else {
    return load_bits(data, nbytes, pos, len);
  }
}

// dst[0, len) += sum over j < n of (val[j] *) base[pix[j] * stride + i], i < len: the rows are summed in
// registers (several independent sums per lane group, to hide the add latency) and dst is read and written
// once. Every spike of a channel adds to the same KH*KW rows of the gradient, so accumulating in memory, one
// spike at a time, chained each row's load-add-store through store forwarding: about 8 cycles per vector.
template <bool BYTES, int R>
inline void add_rows_vec(const float* base, std::int64_t stride, const std::int32_t* pix, const float* val,
                         std::int64_t n, float* dst) {
#ifdef FASTSPIKE_SYN_AVX512
  constexpr int U = R >= 8 ? 1 : 8 / R;  // interleaved sums
  __m512 r[U][R];
  for (int u = 0; u < U; ++u)
    for (int k = 0; k < R; ++k) r[u][k] = u == 0 ? _mm512_loadu_ps(dst + 16 * k) : _mm512_setzero_ps();
  std::int64_t j = 0;
  for (; j + U <= n; j += U)
    for (int u = 0; u < U; ++u) {
      const float* s = base + static_cast<std::int64_t>(pix[j + u]) * stride;
      if constexpr (BYTES) {
        const __m512 v = _mm512_set1_ps(val[j + u]);
        for (int k = 0; k < R; ++k) r[u][k] = _mm512_add_ps(r[u][k], _mm512_mul_ps(v, _mm512_loadu_ps(s + 16 * k)));
      } else {
        for (int k = 0; k < R; ++k) r[u][k] = _mm512_add_ps(r[u][k], _mm512_loadu_ps(s + 16 * k));
      }
    }
  for (; j < n; ++j) {
    const float* s = base + static_cast<std::int64_t>(pix[j]) * stride;
    const __m512 v = _mm512_set1_ps(BYTES ? val[j] : 1.0f);
    for (int k = 0; k < R; ++k) r[0][k] = _mm512_add_ps(r[0][k], _mm512_mul_ps(v, _mm512_loadu_ps(s + 16 * k)));
  }
  for (int u = 1; u < U; ++u)
    for (int k = 0; k < R; ++k) r[0][k] = _mm512_add_ps(r[0][k], r[u][k]);
  for (int k = 0; k < R; ++k) _mm512_storeu_ps(dst + 16 * k, r[0][k]);
#else
  (void)base, (void)stride, (void)pix, (void)val, (void)n, (void)dst;
#endif
}

template <bool BYTES>
inline void add_rows(const float* base, std::int64_t stride, const std::int32_t* pix, const float* val,
                     std::int64_t n, float* dst, std::int64_t len) {
  std::int64_t i0 = 0;
#ifdef FASTSPIKE_SYN_AVX512
  for (; i0 + 128 <= len; i0 += 128) add_rows_vec<BYTES, 8>(base + i0, stride, pix, val, n, dst + i0);
  for (; i0 + 64 <= len; i0 += 64) add_rows_vec<BYTES, 4>(base + i0, stride, pix, val, n, dst + i0);
  for (; i0 + 16 <= len; i0 += 16) add_rows_vec<BYTES, 1>(base + i0, stride, pix, val, n, dst + i0);
#endif
  for (; i0 < len; i0 += 16) {  // portable path, and the last len % 16 lanes
    const std::int64_t w = std::min<std::int64_t>(16, len - i0);
    float r[16];
    for (std::int64_t i = 0; i < w; ++i) r[i] = dst[i0 + i];
    for (std::int64_t j = 0; j < n; ++j) {
      const float* s = base + static_cast<std::int64_t>(pix[j]) * stride + i0;
      const float v = BYTES ? val[j] : 1.0f;
#pragma omp simd
      for (std::int64_t i = 0; i < w; ++i) r[i] += v * s[i];
    }
    for (std::int64_t i = 0; i < w; ++i) dst[i0 + i] = r[i];
  }
}

// x [B, Cin, H, W], flat: packed bits (BYTES false: every active input is 1) or one uint8 value per element
// (BYTES true: spike counts); g_nhwc [B, OH, OW, Cout]; gw [Cout][Cin/G][KH][KW] (written, torch's layout).
// Each thread owns blocks of input channels and accumulates their KH*KW*Cout/G weights over every batch
// element in a local [block][KH][KW][Cout/G] buffer that stays in its cache, then writes them to gw. Per image
// and channel, the active pixels are gathered in chunks and sorted into one list per tap (the output pixel each
// lands on), and each tap's gradient row is the sum of the rows of g at those pixels (add_rows).
template <bool BYTES>
void conv2d_grad_weight_impl(const std::uint8_t* data, std::int64_t nbytes, const float* g, float* gw,
                             std::int64_t B, std::int64_t Cin, std::int64_t H, std::int64_t W, std::int64_t Cout,
                             std::int64_t OH, std::int64_t OW, std::int64_t KH, std::int64_t KW, std::int64_t sh,
                             std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh, std::int64_t dw,
                             std::int64_t G, int nthreads) {
  const std::int64_t cg = Cout / G, cing = Cin / G, HW = H * W;
  const std::int64_t taps = KH * KW;
  const std::int64_t row = taps * cg;
  // Integer divisions by run-time strides and widths cost tens of cycles each and ran several times per spike:
  // the positions' (row, column) and each shifted coordinate's output index (-1: no output) are looked up.
  std::vector<std::int32_t> iy_of(static_cast<std::size_t>(HW)), ix_of(static_cast<std::size_t>(HW));
  for (std::int64_t q = 0; q < HW; ++q) {
    iy_of[q] = static_cast<std::int32_t>(q / W);
    ix_of[q] = static_cast<std::int32_t>(q % W);
  }
  auto out_index = [](std::int64_t n, std::int64_t stride, std::int64_t limit) {
    std::vector<std::int32_t> t(static_cast<std::size_t>(n));
    for (std::int64_t v = 0; v < n; ++v)
      t[v] = (v % stride == 0 && v / stride < limit) ? static_cast<std::int32_t>(v / stride) : -1;
    return t;
  };
  const std::vector<std::int32_t> oy_of = out_index(H + ph, sh, OH);  // index: iy + ph - ky * dh >= 0
  const std::vector<std::int32_t> ox_of = out_index(W + pw, sw, OW);
  // Blocks of up to kCB input channels of one group: their gradients are accumulated in a per-thread
  // [kCB][KH][KW][Cout/G] buffer (L2-sized) over one image at a time (that image's g is then read from cache by
  // every channel of the block) and then written as whole runs of kCB * KH * KW floats per output channel.
  constexpr std::int64_t kCB = 16;
  constexpr std::int64_t kSpikes = 256;  // active pixels sorted into tap lists at a time
  const std::int64_t blocks_per_group = (cing + kCB - 1) / kCB;
  const std::int64_t nblocks = G * blocks_per_group;
  const std::int64_t chunk = std::min<std::int64_t>(kSpikes, HW);
#pragma omp parallel num_threads(clamp_threads(nthreads, nblocks))
  {
  struct GradAcc;
  struct GradTaps;
  struct GradVals;
  float* acc = scratch<GradAcc, float>(static_cast<std::size_t>(kCB * row));
  // per tap: the output pixels (oy * OW + ox) of up to `chunk` spikes, then (BYTES) their values
  std::int32_t* lists = scratch<GradTaps, std::int32_t>(static_cast<std::size_t>(taps * chunk));
  float* vals = BYTES ? scratch<GradVals, float>(static_cast<std::size_t>(taps * chunk)) : nullptr;
  std::vector<std::int32_t> counts(static_cast<std::size_t>(taps));
#pragma omp for schedule(static)
  for (std::int64_t blk = 0; blk < nblocks; ++blk) {
  const std::int64_t grp = blk / blocks_per_group;
  const std::int64_t c0 = grp * cing + (blk % blocks_per_group) * kCB;
  const std::int64_t c1 = std::min(c0 + kCB, (grp + 1) * cing);
  std::fill(acc, acc + (c1 - c0) * row, 0.0f);
  for (std::int64_t bb = 0; bb < B; ++bb) {
    const float* gb = g + bb * OH * OW * Cout + grp * cg;
    for (std::int64_t c = c0; c < c1; ++c) {
      float* dst_c = acc + (c - c0) * row;
      const std::int64_t base = (bb * Cin + c) * HW;
      std::int64_t held = 0;  // spikes sorted into the lists since the last flush
      std::fill(counts.begin(), counts.end(), 0);
      auto flush = [&]() {
        for (std::int64_t k = 0; k < taps; ++k)
          if (counts[k]) add_rows<BYTES>(gb, Cout, lists + k * chunk, vals ? vals + k * chunk : nullptr,
                                         counts[k], dst_c + k * cg, cg);
        std::fill(counts.begin(), counts.end(), 0);
        held = 0;
      };
      for (std::int64_t p0 = 0; p0 < HW; p0 += 32) {
        const int len = static_cast<int>(std::min<std::int64_t>(32, HW - p0));
        std::uint64_t word = nonzero_mask<BYTES>(data, nbytes, base + p0, len);
        while (word) {
          const std::int64_t p = p0 + __builtin_ctzll(word);
          word &= word - 1;
          if (held == chunk) flush();
          ++held;
          const float v = BYTES ? static_cast<float>(data[base + p]) : 1.0f;
          const std::int64_t iy = iy_of[p], ix = ix_of[p];
          for (std::int64_t ky = 0; ky < KH; ++ky) {
            const std::int64_t ty = iy + ph - ky * dh;
            if (ty < 0) break;  // ty only decreases with ky
            const std::int64_t oy = oy_of[ty];
            if (oy < 0) continue;
            for (std::int64_t kx = 0; kx < KW; ++kx) {
              const std::int64_t tx = ix + pw - kx * dw;
              if (tx < 0) break;
              const std::int64_t ox = ox_of[tx];
              if (ox < 0) continue;
              const std::int64_t k = ky * KW + kx;
              const std::int32_t at = counts[k]++;
              lists[k * chunk + at] = static_cast<std::int32_t>(oy * OW + ox);
              if constexpr (BYTES) vals[k * chunk + at] = v;
            }
          }
        }
      }
      if (held) flush();
    }
  }
  // gw[grp * cg + o][c - grp * cing][ky][kx] = acc[c - c0][ky][kx][o]: a transpose of acc as a
  // [(c1 - c0) * taps][cg] matrix into rows cing * taps apart (16 x 16 register blocks; reading acc
  // column-wise one output at a time touched a new cache line per element: 1.75 ms per 512x512x3x3 weight)
  const std::int64_t nc = c1 - c0;
  float* dst = gw + (grp * cg * cing + (c0 - grp * cing)) * taps;
  for (std::int64_t o0 = 0; o0 < cg; o0 += 16)
    transpose_panel(acc, cg, dst, cing * taps, nc * taps, o0, std::min(cg, o0 + 16));
  }
  }
}

void conv2d_grad_weight(std::uintptr_t data_, std::int64_t nbytes, bool bytes, std::uintptr_t g_, std::uintptr_t gw_,
                        std::int64_t B, std::int64_t Cin, std::int64_t H, std::int64_t W, std::int64_t Cout,
                        std::int64_t OH, std::int64_t OW, std::int64_t KH, std::int64_t KW, std::int64_t sh,
                        std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh, std::int64_t dw,
                        std::int64_t G, int nthreads) {
  const auto* data = ptr<const std::uint8_t>(data_);
  check(!bytes || nbytes >= B * Cin * H * W, "conv2d_grad_weight: one byte per input element expected");
  // g arrives as torch holds it, [B][Cout][OH*OW]; the kernel adds contiguous rows of Cout gradients, so it is
  // transposed per image into scratch memory first ([B][OH*OW][Cout])
  struct GradNHWC;
  const float* g = ptr<const float>(g_);
  const std::int64_t L = OH * OW, lblocks = (L + 15) / 16, items = B * lblocks;
  float* gt = scratch<GradNHWC, float>(static_cast<std::size_t>(B * L * Cout));
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, items, B * L * Cout, 1 << 16))
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t bb = it / lblocks, l0 = (it % lblocks) * 16;
    transpose_panel(g + bb * Cout * L, L, gt + bb * L * Cout, Cout, Cout, l0, std::min(L, l0 + 16));
  }
  if (bytes)
    conv2d_grad_weight_impl<true>(data, nbytes, gt, ptr<float>(gw_), B, Cin, H, W, Cout, OH, OW,
                                  KH, KW, sh, sw, ph, pw, dh, dw, G, nthreads);
  else
    conv2d_grad_weight_impl<false>(data, nbytes, gt, ptr<float>(gw_), B, Cin, H, W, Cout, OH, OW,
                                   KH, KW, sh, sw, ph, pw, dh, dw, G, nthreads);
}

void register_synapse(pybind11::module_& m) {
  namespace py = pybind11;
  m.attr("SYNAPSE_TILE") = kTile;
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("spike_pack", &spike_pack, nogil, py::arg("x"), py::arg("out"), py::arg("rows"), py::arg("cols"),
        py::arg("nthreads"), "Pack float32 [rows, cols] to uint8 [rows, ceil(cols/8)] bits; returns True if binary.");
  m.def("spike_unpack", &spike_unpack, nogil, py::arg("bits"), py::arg("out"), py::arg("rows"), py::arg("cols"),
        py::arg("nthreads"), "Unpack uint8 [rows, ceil(cols/8)] bits to float32 [rows, cols].");
  m.def("spike_stats", &spike_stats, nogil, py::arg("x"), py::arg("n"), py::arg("nthreads"),
        "(number of nonzeros, all values in {0, 1}) of a float32 buffer.");
  m.def("synapse_linear_forward", &linear_forward, nogil, py::arg("x"), py::arg("wt"), py::arg("bias"),
        py::arg("alloc"), py::arg("bits"), py::arg("M"), py::arg("K"), py::arg("N"), py::arg("max_nnz"),
        py::arg("torch_layout"), py::arg("nthreads"),
        "Event-driven x @ W^T + b on float32 buffers; wt tile-blocked, or W [N, K] with torch_layout=True; "
        "alloc() -> address of out [M, N], called only when the "
        "kernel runs. Returns 1 (done), 0 (x not binary) or 2 (more than max_nnz spikes; max_nnz < 0: no "
        "limit); bits (if given) are written unless 0.");
  m.def("synapse_linear_grad_weight", &linear_grad_weight, nogil, py::arg("bits"), py::arg("gt"), py::arg("gw"),
        py::arg("M"), py::arg("K"), py::arg("N"), py::arg("nthreads"),
        "Event-driven grad of W = g^T x from packed x bits and the tile-blocked g.");
  m.def("synapse_conv2d_forward", &conv2d_forward, nogil, py::arg("x"), py::arg("wt"), py::arg("bias"),
        py::arg("alloc"), py::arg("B"), py::arg("Cin"), py::arg("H"), py::arg("W"), py::arg("Cout"), py::arg("OH"),
        py::arg("OW"), py::arg("KH"), py::arg("KW"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
        py::arg("dh"), py::arg("dw"), py::arg("groups"), py::arg("max_nnz"), py::arg("torch_layout"),
        py::arg("nthreads"),
        "Event-driven conv2d forward (gather per output row); wt pre-transposed, or torch's layout with "
        "torch_layout=True; alloc() -> address of out, called only when the kernel runs. Returns 1 (done), 0 "
        "(x not binary) or 2 (more than max_nnz spikes; max_nnz < 0: no limit).");
  m.def("synapse_conv2d_grad_weight", &conv2d_grad_weight, nogil, py::arg("data"), py::arg("nbytes"),
        py::arg("bytes"), py::arg("g"),
        py::arg("gw"), py::arg("B"), py::arg("Cin"), py::arg("H"), py::arg("W"), py::arg("Cout"), py::arg("OH"),
        py::arg("OW"), py::arg("KH"), py::arg("KW"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
        py::arg("dh"), py::arg("dw"), py::arg("groups"), py::arg("nthreads"),
        "Event-driven conv2d weight gradient from x as packed bits (bytes=False) or one uint8 value per element "
        "(bytes=True) and g [B, Cout, OH, OW] (contiguous); writes gw [Cout][Cin/G][KH][KW].");
}
FASTSPIKE_REGISTER(register_synapse);

}  // namespace
}  // namespace fastspike
