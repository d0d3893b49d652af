// Event-driven Linear on the CPU: out = x W^T + b for binary x, and the weight gradient g^T x, both touching
// only the weights of active inputs.
//
// Forward: every row of x is compacted into the list of its active inputs (one pass, bits packed on the way:
// bits.h); then, per tile of 64 outputs and block of up to 1024 rows, each active input k adds row k of the
// tile-blocked transposed weight WT[tile][K][64] (a contiguous 256-byte row) to its row's accumulator, one
// 512-input slice of the panel at a time so that the slice is read from cache by every row of the block.
// Weight gradient: the packed bits are turned into per-input lists of active rows (CSC), then per (64-output
// tile, 16-input block) gW[n, k] = sum over active rows m of g[m, n], read from the tile-blocked copy
// G[tile][M][64] of the upstream gradient.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "api.h"
#include "bits.h"
#include "common.h"
#include "simd.h"
#include "synapse.h"
#include "transpose.h"

namespace fastspike {
namespace {

constexpr std::int64_t kKBlock = 16;      // inputs per weight-gradient block
constexpr std::int64_t kPanelRows = 512;  // forward: weight rows (inputs) of a tile walked at a time (128 KiB)
constexpr std::int64_t kRowBlock = 1024;  // forward: most rows of x sharing one pass over a tile's weight panel

// acc[0, 64) += w[0, 64)
inline void add_tile(float* acc, const float* w) {
#pragma omp simd
  for (int i = 0; i < kTile; ++i) acc[i] += w[i];
}

// The L2 size per core the forward plans for: FASTSPIKE_L2_BYTES if set (tests use it to take the sliced path),
// else glibc's sysconf, else 512 KiB (a small one).
inline std::int64_t l2_cache_bytes() {
  if (const char* env = std::getenv("FASTSPIKE_L2_BYTES")) {
    const long long v = std::atoll(env);
    if (v > 0) return v;
  }
#if defined(_SC_LEVEL2_CACHE_SIZE)
  static const long bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#else
  static const long bytes = 0;
#endif
  return bytes > 0 ? bytes : std::int64_t(512) << 10;
}

// acc[0, 64) = b0[0, 64) (may be acc itself) + the sum of the tile rows wtile[li[j] * 64, +64), j < cnt, in registers:
// kTile / kWidth vectors per chain, and two interleaved chains (even and odd j, added at the end) where that leaves
// enough registers, to hide the add latency.
inline void gather_tile(const float* wtile, const std::int32_t* li, std::int64_t cnt, const float* b0, float* acc) {
  using namespace simd;
  constexpr int NV = static_cast<int>(kTile) / kWidth;
  constexpr int CH = NV >= 8 ? 1 : 2;
  vf a[CH][NV];
  for (int v = 0; v < NV; ++v) a[0][v] = vload(b0 + kWidth * v);
  for (int c = 1; c < CH; ++c)
    for (int v = 0; v < NV; ++v) a[c][v] = vzero();
  std::int64_t j = 0;
  for (; j + CH <= cnt; j += CH)
    for (int c = 0; c < CH; ++c) {
      const float* w = wtile + static_cast<std::int64_t>(li[j + c]) * kTile;
      for (int v = 0; v < NV; ++v) a[c][v] = vadd(a[c][v], vload(w + kWidth * v));
    }
  for (; j < cnt; ++j) {
    const float* w = wtile + static_cast<std::int64_t>(li[j]) * kTile;
    for (int v = 0; v < NV; ++v) a[0][v] = vadd(a[0][v], vload(w + kWidth * v));
  }
  for (int c = 1; c < CH; ++c)
    for (int v = 0; v < NV; ++v) a[0][v] = vadd(a[0][v], a[c][v]);
  for (int v = 0; v < NV; ++v) vstore(acc + kWidth * v, a[0][v]);
}

// Spike lists of the rows of a [rows, cols] matrix, built one pass per row into per-thread buffers.
struct RowLists {
  std::vector<std::vector<std::int32_t>> local;  // per thread
  std::vector<int> owner;                        // thread that built the row
  std::vector<std::int64_t> offset, count;       // position of the row's list in its owner's buffer
  const std::int32_t* list(std::int64_t r) const { return local[owner[r]].data() + offset[r]; }
};

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
  ThreadErrors errors;  // a list buffer that cannot grow (std::bad_alloc): raised after the region
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
      if (errors.failed()) continue;
      if (static_cast<std::int64_t>(buf.size()) < used + cols + kSlack && !errors.run([&] {
            buf.resize(std::max<std::int64_t>(used + cols + kSlack, 2 * static_cast<std::int64_t>(buf.size())));
          }))
        continue;
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
  errors.rethrow();
  if (bad) return kNotBinary;
  if (stop != kDone) return stop;
  if (max_nnz >= 0) {
    std::int64_t total = 0;
    for (std::int64_t r = 0; r < rows; ++r) total += L.count[r];
    if (total > max_nnz) return kTooDense;
  }
  return kDone;
}

// torch's weight [N, K] -> the tile-blocked W^T [ceil(N/64)][K][64] (zero padded), into this thread's scratch
// memory (valid until its next call): for a weight that changes every step.
const float* tile_linear_weight(const float* w, std::int64_t K, std::int64_t N, int nthreads) {
  struct LinearWT;
  const std::int64_t ntiles = (N + kTile - 1) / kTile, kblocks = (K + 15) / 16, items = ntiles * kblocks;
  float* t = scratch<LinearWT, float>(static_cast<std::size_t>(ntiles * K * kTile));
  const int threads = clamp_threads(nthreads, items, N * K, 1 << 16);
#pragma omp parallel for schedule(static) num_threads(threads)
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
// alloc() -> out: called once the input is accepted (bindings.cpp passes a Python callable; .ci/kernel_check.cpp a
// lambda).
template <typename Alloc>
int linear_forward_impl(std::uintptr_t x_, std::uintptr_t wt_, std::uintptr_t bias_, Alloc&& alloc,
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
  float* out = alloc();

  // Work item: one tile of 64 outputs for a block of up to kRowBlock rows. A tile's weight panel (K * 256 bytes)
  // that fits half the L2 is read row after row with the accumulators in registers. A larger one is walked
  // kPanelRows inputs at a time (128 KiB), the rows' accumulators [rows][64] (256 KiB) staying in L2, so that each
  // panel slice is fetched once and used by every row of the block: about ceil(M / kRowBlock) passes over the
  // weight. Row after row, each row read most of a panel that no longer fitted (on a 512 KiB L2, K = 4096) from
  // memory; the slices cost per-(row, slice) accumulator traffic, which does not pay while the panel fits.
  const std::int64_t ntiles = (N + kTile - 1) / kTile;
  const bool sliced = K * kTile * static_cast<std::int64_t>(sizeof(float)) > l2_cache_bytes() / 2;
  const std::int64_t KB = sliced ? std::min(K, kPanelRows) : K;
  const std::int64_t nkb = (K + KB - 1) / KB;
  const std::int64_t rblocks = std::max((M + kRowBlock - 1) / kRowBlock,
                                        std::min<std::int64_t>(M, (4 * std::max(nthreads, 1) + ntiles - 1) / ntiles));
  const std::int64_t R = (M + rblocks - 1) / rblocks;
  const std::int64_t items = ntiles * rblocks;
  // per row, where each panel slice's spikes start in the row's list (lists are ascending)
  std::vector<std::int32_t> slice_at(static_cast<std::size_t>(nkb > 1 ? M * (nkb + 1) : 0));
  const std::int64_t slice_rows = nkb > 1 ? M : 0;
  const int slice_threads = clamp_threads(nthreads, M, slice_rows * nkb, 1 << 14);
#pragma omp parallel for schedule(static) num_threads(slice_threads)
  for (std::int64_t m = 0; m < slice_rows; ++m) {
    const std::int32_t* li = L.list(m);
    const std::int64_t cnt = L.count[m];
    std::int32_t* at = slice_at.data() + m * (nkb + 1);
    std::int64_t p = 0;
    for (std::int64_t j = 0; j < nkb; ++j) {
      at[j] = static_cast<std::int32_t>(p);
      const std::int64_t k1 = std::min(K, (j + 1) * KB);
      while (p < cnt && li[p] < k1) ++p;
    }
    at[nkb] = static_cast<std::int32_t>(cnt);
  }
  ThreadErrors errors;  // a thread's accumulators could not be allocated: raised after the region
#pragma omp parallel num_threads(clamp_threads(nthreads, items))
  {
    struct LinearAcc;
    float* accs = nullptr;
    if (nkb > 1) errors.run([&] { accs = scratch<LinearAcc, float>(static_cast<std::size_t>(R * kTile)); });
#pragma omp for schedule(static)
    for (std::int64_t it = 0; it < items; ++it) {
      if (errors.failed()) continue;
      const std::int64_t t = it / rblocks, rb = it % rblocks;
      const std::int64_t n0 = t * kTile, nvalid = std::min(kTile, N - n0);
      const float* wtile = wt + t * K * kTile;
      const std::int64_t m0 = rb * R, m1 = std::min(M, m0 + R);
      // the bias row (zero padded), then copied to every row: a select between bias[i] and 0 vectorised into
      // masked loads from address 0 when bias was null, a microcode assist per load (50 ms per call on AVX2)
      alignas(64) float b0[kTile] = {};
      if (bias) std::memcpy(b0, bias + n0, static_cast<std::size_t>(nvalid) * sizeof(float));
      if (nkb == 1) {  // the whole panel at once: accumulators in registers
        for (std::int64_t m = m0; m < m1; ++m) {
          alignas(64) float acc[kTile];
          gather_tile(wtile, L.list(m), L.count[m], b0, acc);
          std::memcpy(out + m * N + n0, acc, static_cast<std::size_t>(nvalid) * sizeof(float));
        }
        continue;
      }
      for (std::int64_t m = m0; m < m1; ++m) std::memcpy(accs + (m - m0) * kTile, b0, sizeof(b0));
      for (std::int64_t j = 0; j < nkb; ++j)
        for (std::int64_t m = m0; m < m1; ++m) {
          const std::int32_t* at = slice_at.data() + m * (nkb + 1);
          if (at[j + 1] > at[j]) {
            float* a = accs + (m - m0) * kTile;
            gather_tile(wtile, L.list(m) + at[j], at[j + 1] - at[j], a, a);
          }
        }
      for (std::int64_t m = m0; m < m1; ++m)
        std::memcpy(out + m * N + n0, accs + (m - m0) * kTile, static_cast<std::size_t>(nvalid) * sizeof(float));
    }
  }
  errors.rethrow();
  return kDone;
}

}  // namespace

int linear_forward(std::uintptr_t x_, std::uintptr_t wt_, std::uintptr_t bias_,
                   const std::function<std::uintptr_t()>& alloc, std::uintptr_t bits_, std::int64_t M, std::int64_t K,
                   std::int64_t N, std::int64_t max_nnz, bool torch_layout, int nthreads) {
  return linear_forward_impl(
      x_, wt_, bias_, [&] { return ptr<float>(alloc()); }, bits_, M, K, N, max_nnz, torch_layout, nthreads);
}

namespace {

// bits [M, ceil(K/8)] (packed x); gt [ceil(N/64)][M][64] (tile-blocked upstream gradient, zero padded);
// gw [N, K] = g^T x, accumulated only over the active inputs.
}  // namespace

void linear_grad_weight(std::uintptr_t bits_, std::uintptr_t gt_, std::uintptr_t gw_, std::int64_t M, std::int64_t K,
                        std::int64_t N, int nthreads) {
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
      for (std::int64_t j = col_ptr[k0 + kk]; j < e; ++j)
        add_tile(acc, gtile + static_cast<std::int64_t>(rows_of[j]) * kTile);
    }
    for (std::int64_t i = 0; i < nvalid; ++i) {
      float* dst = gw + (n0 + i) * K + k0;
      for (std::int64_t kk = 0; kk < kvalid; ++kk) dst[kk] = buf[kk][i];
    }
  }
}

}  // namespace fastspike
