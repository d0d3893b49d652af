// SpikeZIP's signed, bounded IF neuron (ST-BIF) on the CPU, forward only (an inference transition).
//
// Layout: x and the output are [T, N] row-major float32, the states [N] float32, all contiguous.
// Parallelism: OpenMP over blocks of kBlock neurons, the time loop outside a `#pragma omp simd` loop over the
// block (as csrc/neuron2.cpp). Never over time.
//
// Per step, in the reference's order of operations (fastspike/ops/reference/stbif.py):
//   q += x / thr;  a = round(a) (half to even);  up = q >= 1 and a < pos_max;  down = q < 0 and a > neg_min;
//   e = up - down;  a += e;  q = q - up + down;  out = e * thr.
// The last step's e is returned too (SpikingJelly's cur_output).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "api.h"
#include "common.h"

namespace fastspike {
namespace {

constexpr std::int64_t kBlock = kStbifBlock;
constexpr std::int64_t kMinPerThread = std::int64_t(1) << 17;

}  // namespace

void stbif_forward(std::uintptr_t x_, std::uintptr_t q0_, std::uintptr_t acc0_, std::uintptr_t out_, std::uintptr_t q_,
                   std::uintptr_t acc_, std::uintptr_t event_, std::int64_t T, std::int64_t N, float thr, float pos_max,
                   float neg_min, int nthreads) {
  check(T >= 1, "stbif_forward: T must be >= 1");
  const float* x = ptr<const float>(x_);
  const float* q0 = ptr<const float>(q0_);
  const float* acc0 = ptr<const float>(acc0_);
  float* out = ptr<float>(out_);
  float* q_last = ptr<float>(q_);
  float* acc_last = ptr<float>(acc_);
  float* event_last = ptr<float>(event_);
  const std::int64_t nblocks = (N + kBlock - 1) / kBlock;
  const int threads = clamp_threads(nthreads, nblocks, T * N, kMinPerThread);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const std::int64_t n0 = b * kBlock;
    const std::int64_t len = std::min(kBlock, N - n0);
    float q[kBlock], a[kBlock], e[kBlock];
    for (std::int64_t i = 0; i < len; ++i) {
      q[i] = q0[n0 + i];
      a[i] = acc0[n0 + i];
    }
    for (std::int64_t t = 0; t < T; ++t) {
      if (t + kRowsAhead < T) {
        prefetch_row(x + (t + kRowsAhead) * N + n0, len);
        prefetch_row_for_write(out + (t + kRowsAhead) * N + n0, len);
      }
      const float* __restrict xt = x + t * N + n0;
      float* __restrict ot = out + t * N + n0;
#pragma omp simd
      for (std::int64_t i = 0; i < len; ++i) {
        const float qv = q[i] + xt[i] / thr;
        const float av = std::nearbyint(a[i]);
        const float up = (qv >= 1.0f) & (av < pos_max) ? 1.0f : 0.0f;
        const float down = (qv < 0.0f) & (av > neg_min) ? 1.0f : 0.0f;
        const float ev = up - down;
        a[i] = av + ev;
        q[i] = qv - up + down;
        e[i] = ev;
        ot[i] = ev * thr;
      }
    }
    for (std::int64_t i = 0; i < len; ++i) {
      q_last[n0 + i] = q[i];
      acc_last[n0 + i] = a[i];
      event_last[n0 + i] = e[i];
    }
  }
}

}  // namespace fastspike
