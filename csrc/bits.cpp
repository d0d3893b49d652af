// Bit packing of binary spike tensors (8 spikes a byte) and their density statistics: the bindings spike_pack,
// spike_unpack and spike_stats (layout: bits.h).
#include <algorithm>
#include <cstdint>
#include <utility>

#include "api.h"
#include "bits.h"
#include "common.h"

namespace fastspike {
namespace {

constexpr std::int64_t kChunk = 4096;  // elements per work item of pack / unpack / stats (multiple of 8)

}  // namespace

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

namespace {

// (number of nonzeros, every value in {0, 1})
}  // namespace

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

}  // namespace fastspike
