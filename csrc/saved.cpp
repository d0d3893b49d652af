// Lossless compact storage of tensors kept for the backward pass (fastspike/ops/_saved.py).
//
// Spiking networks save many activations that hold only 0 and 1 (spikes: 1 bit each is enough) or small
// non-negative integers (spike counts, e.g. SEW ResNet 'ADD' block outputs: 1 byte each). classify_saved
// finds out which in one read pass that stops as soon as the answer is 'neither' (a real-valued input is
// rejected after its first chunks); the caller then packs the bits (spike_pack) or converts to bytes.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <utility>

#include "registry.h"

namespace fastspike {
namespace {

constexpr std::int64_t kClassifyChunk = 1 << 14;

// (kind, nonzeros): kind 1 when every value is 0 or 1; 2 when every value is an integer in [0, 255] (some
// above 1); 0 for anything else (fractions, negatives, NaN, infinities), with the count then meaningless.
std::pair<int, std::int64_t> classify_saved(std::uintptr_t x_, std::int64_t n, int nthreads) {
  const float* x = ptr<const float>(x_);
  const std::int64_t items = (n + kClassifyChunk - 1) / kClassifyChunk;
  std::atomic<int> not_binary{0};
  std::atomic<int> not_bytes{0};
  std::int64_t nnz = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : nnz) \
    num_threads(clamp_threads(nthreads, items, n, std::int64_t(1) << 18))
  for (std::int64_t it = 0; it < items; ++it) {
    if (not_bytes.load(std::memory_order_relaxed)) continue;  // answer known: 'neither'
    const std::int64_t c0 = it * kClassifyChunk;
    const std::int64_t len = std::min(kClassifyChunk, n - c0);
    const float* p = x + c0;
    int big = 0, bad = 0;
    std::int64_t cnt = 0;
#pragma omp simd reduction(| : big, bad) reduction(+ : cnt)
    for (std::int64_t i = 0; i < len; ++i) {
      const float v = p[i];
      // v == floor(v) is false for NaN; the range test rejects infinities
      bad |= !(v >= 0.0f && v <= 255.0f && v == std::floor(v));
      big |= v > 1.0f;
      cnt += v != 0.0f;
    }
    nnz += cnt;
    if (bad) not_bytes.store(1, std::memory_order_relaxed);
    if (big) not_binary.store(1, std::memory_order_relaxed);
  }
  if (not_bytes.load()) return {0, 0};
  return {not_binary.load() ? 2 : 1, nnz};
}

// out[i] = (uint8) x[i] for values known to be integers in [0, 255].
void to_bytes(std::uintptr_t x_, std::uintptr_t out_, std::int64_t n, int nthreads) {
  const float* x = ptr<const float>(x_);
  std::uint8_t* out = ptr<std::uint8_t>(out_);
#pragma omp parallel for simd schedule(static) num_threads(clamp_threads(nthreads, n, n, std::int64_t(1) << 18))
  for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(x[i]);
}

void register_saved(pybind11::module_& m) {
  namespace py = pybind11;
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("classify_saved", &classify_saved, nogil, py::arg("x"), py::arg("n"), py::arg("nthreads"),
        "float32 buffer (address, n) -> (kind, nonzeros): kind 1 if every value is 0 or 1, 2 if every value is an "
        "integer in [0, 255], else 0 (then the count is 0); stops reading once the kind is 0.");
  m.def("to_bytes", &to_bytes, nogil, py::arg("x"), py::arg("out"), py::arg("n"), py::arg("nthreads"),
        "uint8 copy of a float32 buffer that classify_saved found to hold integers in [0, 255].");
}
FASTSPIKE_REGISTER(register_saved);

}  // namespace
}  // namespace fastspike
