// Event-to-frame integration for fastspike.datasets (torch-free).
//
// Input: a numpy structured array of events (fastspike.datasets.EVENT_DTYPE: int64 t, int16 x, int16 y,
// int8 p) given as a base address, a record stride and field offsets; frame segments as event index
// ranges [j_l[i], j_r[i]) computed in Python (SpikingJelly's split rules).  Output: float32 frames
// [T, P, H, W], zero-initialised by the caller.
// Parallelism: OpenMP over frames; frame i is written only by the thread that owns segment i, so no
// atomics are needed.  One pass over the events, reading the fields in place (no temporaries).
// Returns (index of the first event outside the sensor or -1, whether t decreases inside a segment
// or across the segment boundaries it checks).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>

#include "api.h"
#include "common.h"

namespace fastspike {
namespace {

template <typename T>
inline T load(const char* rec, std::int64_t off) {
  T v;
  std::memcpy(&v, rec + off, sizeof(T));  // records are packed (13 bytes): fields may be unaligned
  return v;
}

}  // namespace

std::tuple<std::int64_t, bool> events_integrate(std::uintptr_t ev_, std::int64_t n, std::int64_t stride,
                                                std::int64_t off_t, std::int64_t off_x, std::int64_t off_y,
                                                std::int64_t off_p, std::uintptr_t jl_, std::uintptr_t jr_,
                                                std::int64_t T, std::int64_t P, std::int64_t H, std::int64_t W,
                                                std::uintptr_t out_, bool check_sorted, int nthreads) {
  check(stride > 0 && n >= 0 && T >= 0 && (P == 1 || P == 2) && H > 0 && W > 0, "events_integrate: bad sizes");
  const char* ev = ptr<const char>(ev_);
  const std::int64_t* jl = ptr<const std::int64_t>(jl_);
  const std::int64_t* jr = ptr<const std::int64_t>(jr_);
  float* out = ptr<float>(out_);
  const std::int64_t frame = P * H * W;
  std::int64_t first_bad = std::numeric_limits<std::int64_t>::max();
  bool unsorted = false;
#pragma omp parallel for schedule(dynamic, 1) num_threads(clamp_threads(nthreads, T)) reduction(min : first_bad) \
    reduction(|| : unsorted)
  for (std::int64_t i = 0; i < T; ++i) {
    const std::int64_t a = std::max<std::int64_t>(jl[i], 0), b = std::min<std::int64_t>(jr[i], n);
    float* f = out + i * frame;
    std::int64_t prev_t = std::numeric_limits<std::int64_t>::min();
    if (check_sorted && a > 0 && a < b) prev_t = load<std::int64_t>(ev + (a - 1) * stride, off_t);
    for (std::int64_t j = a; j < b; ++j) {
      const char* rec = ev + j * stride;
      const std::int64_t x = load<std::int16_t>(rec, off_x);
      const std::int64_t y = load<std::int16_t>(rec, off_y);
      if (check_sorted) {
        const std::int64_t t = load<std::int64_t>(rec, off_t);
        if (t < prev_t) unsorted = true;
        prev_t = t;
      }
      if (x < 0 || x >= W || y < 0 || y >= H) {
        if (j < first_bad) first_bad = j;
        continue;
      }
      const std::int64_t c = (P == 2 && load<std::int8_t>(rec, off_p) != 0) ? 1 : 0;
      f[(c * H + y) * W + x] += 1.0f;
    }
  }
  return {first_bad == std::numeric_limits<std::int64_t>::max() ? -1 : first_bad, unsorted};
}

}  // namespace fastspike
