// Event-driven Conv2d forward on the CPU: F.conv2d for binary x, gathering per output pixel.
//
// Each input pixel gets the list of its active channels; an output row (b, oy) keeps a local accumulator
// [OW][Cout] and, for every tap whose input pixel is active, adds the contiguous weight row
// WT[c][ky][kx][0:Cout/groups]; the row is written once, transposed to NCHW. Race-free.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "api.h"
#include "bits.h"
#include "common.h"
#include "simd.h"
#include "synapse.h"
#include "transpose.h"

namespace fastspike {
namespace {

// One output pixel of a groups == 1 convolution, outputs [cb, cb + kWidth NV): bias + the weight rows at offsets
// rows[0, m) (one per active (channel, tap)), accumulated in NV registers and stored once to
// dst[cb, cb + kWidth NV).
template <int NV>
inline void conv_pixel_block(const float* wt, const float* bias, float* dst, std::int64_t cb, const std::int32_t* rows,
                             std::int64_t m) {
  using namespace simd;
  vf acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = bias ? vload(bias + cb + kWidth * v) : vzero();
  const float* wb = wt + cb;
  for (std::int64_t j = 0; j < m; ++j) {
    const float* w = wb + rows[j];
    for (int v = 0; v < NV; ++v) acc[v] = vadd(acc[v], vload(w + kWidth * v));
  }
  for (int v = 0; v < NV; ++v) vstore(dst + cb + kWidth * v, acc[v]);
}

// torch's weight layout [G][Cout/G][R] (R = Cin/G * KH * KW) -> [G][R][Cout/G], into this thread's scratch
// memory (valid until its next call): the copy of a weight that changes every step, written where pages are
// already mapped.
const float* transpose_conv_weight(const float* w, const ConvShape& s, int nthreads) {
  struct WeightT;
  const std::int64_t cg = s.cout_g(), R = s.cin_g() * s.KH * s.KW;
  float* t = scratch<WeightT, float>(static_cast<std::size_t>(s.G * R * cg));
  const std::int64_t rblocks = (R + 15) / 16, items = s.G * rblocks;
  const int threads = clamp_threads(nthreads, items, s.G * R * cg, 1 << 16);
#pragma omp parallel for schedule(static) num_threads(threads)
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
// alloc() -> out: called once the input is accepted (bindings.cpp passes a Python callable; .ci/kernel_check.cpp a
// lambda).
template <typename Alloc>
int conv2d_forward_impl(std::uintptr_t x_, std::uintptr_t wt_, std::uintptr_t bias_, Alloc&& alloc, const ConvShape& s,
                        std::int64_t max_nnz, bool torch_layout, int nthreads) {
  const std::int64_t B = s.B, Cin = s.Cin, H = s.H, W = s.W, Cout = s.Cout, OH = s.OH, OW = s.OW, KH = s.KH, KW = s.KW,
                     sh = s.sh, sw = s.sw, ph = s.ph, pw = s.pw, dh = s.dh, dw = s.dw, G = s.G;
  const float* x = ptr<const float>(x_);
  const float* wt = ptr<const float>(wt_);
  const float* bias = bias_ ? ptr<const float>(bias_) : nullptr;
  const std::int64_t cg = s.cout_g(), cing = s.cin_g();
  // register-blocked path (vector builds): the lists hold weight-row offsets c * KH * KW * Cout, not c
  const bool fast =
      simd::kRegisterBlocked && G == 1 && Cout % simd::kWidth == 0 && Cin * KH * KW * Cout < (std::int64_t(1) << 31);
  const std::int32_t cmul = static_cast<std::int32_t>(fast ? KH * KW * Cout : 1);

  // Phase 1: per input row (b, iy), the active channels of each pixel, stored pixel by pixel in
  // per-thread buffers: pix_off[b, iy, ix] = start of the pixel's list in its row's buffer, pix_cnt its length.
  // Work item: a band of input rows of one image, so that each channel's part is one contiguous span of x.
  const std::int64_t in_rows = B * H;
  struct PixOff;
  struct PixCnt;
  struct RowBase;
  struct RowOwner;
  struct RowOff;
  struct Lists;
  struct Stage;
  struct Cnt;
  struct Cols;
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
  ThreadErrors errors;  // a thread's buffers could not be allocated: raised after the region
#pragma omp parallel num_threads(th1)
  {
    // a thread's list buffer holds at most every element of its (static) share of the items; the team may
    // be smaller than asked (nested parallelism, thread limits)
    const std::int64_t team = omp_get_num_threads();
    const std::int64_t per_thread = (items1 + team - 1) / team * band * W * Cin + kSlack;
    std::int32_t *buf = nullptr, *stage = nullptr, *cnt = nullptr, *cols = nullptr;
    errors.run([&] {
      buf = scratch<Lists, std::int32_t>(static_cast<std::size_t>(per_thread));
      stage = scratch<Stage, std::int32_t>(static_cast<std::size_t>(band * W * Cin));  // [pixel][channels]
      cnt = scratch<Cnt, std::int32_t>(static_cast<std::size_t>(band * W));
      cols = scratch<Cols, std::int32_t>(static_cast<std::size_t>(band * W + kSlack));
    });
    std::int64_t used = 0;
    bool b = false;
#pragma omp for schedule(static)
    for (std::int64_t it = 0; it < items1; ++it) {
      if (errors.failed()) continue;
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
  errors.rethrow();
  if (stop != kDone) return stop;
  if (torch_layout) wt = transpose_conv_weight(wt, s, nthreads);
  float* out = alloc();
  for (std::int64_t r = 0; r < in_rows; ++r) row_base[r] = row_owner[r] + row_off[r];

  // Phase 2: gather per output row.
  const std::int64_t out_rows = B * OH;
  // streaming stores for outputs past the caches whose rows are 64-byte aligned
  const bool stream = simd::kHasStream && (reinterpret_cast<std::uintptr_t>(out) % 64 == 0) && (OW % 16 == 0) &&
                      B * Cout * OH * OW * 4 >= (std::int64_t(4) << 20);
#pragma omp parallel num_threads(clamp_threads(nthreads, out_rows))
  {
    struct Acc;
    struct Flat;
    float* acc = nullptr;
    std::int32_t* flat = nullptr;
    errors.run([&] {
      acc = scratch<Acc, float>(static_cast<std::size_t>(OW * Cout));
      flat = scratch<Flat, std::int32_t>(static_cast<std::size_t>(fast ? KH * KW * Cin + kSlack : 1));
    });
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < out_rows; ++r) {
      if (errors.failed()) continue;
      const std::int64_t bb = r / OH, oy = r % OH;
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
              const std::int32_t toff = static_cast<std::int32_t>((ky * KW + kx) * Cout);
              std::int32_t j = 0;
              do {  // entries past n are overwritten by the next tap or ignored
                simd::add_offset16(flat + m + j, li + j, toff);
                j += 16;
              } while (j < n);
              m += n;
            }
          }
          float* a = acc + ox * Cout;
          constexpr std::int64_t V = simd::kWidth;
          if (Cout % (8 * V) == 0) {
            for (std::int64_t cb = 0; cb < Cout; cb += 8 * V) conv_pixel_block<8>(wt, bias, a, cb, flat, m);
          } else if (Cout % (4 * V) == 0) {
            for (std::int64_t cb = 0; cb < Cout; cb += 4 * V) conv_pixel_block<4>(wt, bias, a, cb, flat, m);
          } else {
            for (std::int64_t cb = 0; cb < Cout; cb += V) conv_pixel_block<1>(wt, bias, a, cb, flat, m);
          }
        }
      } else {
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
      if (kTBlock > 1) {
        o_done = Cout - Cout % kTBlock;
        ox_done = OW - OW % kTBlock;
        for (std::int64_t o0 = 0; o0 < o_done; o0 += kTBlock)
          for (std::int64_t ox0 = 0; ox0 < ox_done; ox0 += kTBlock) {
            float* dst = out + ((bb * Cout + o0) * OH + oy) * OW + ox0;
            if (stream) transpose_block<true>(acc + ox0 * Cout + o0, Cout, dst, OH * OW);
            else transpose_block(acc + ox0 * Cout + o0, Cout, dst, OH * OW);
          }
      }
      for (std::int64_t o = 0; o < Cout; ++o) {
        float* dst = out + ((bb * Cout + o) * OH + oy) * OW;
        const float* src = acc + o;
        for (std::int64_t ox = o < o_done ? ox_done : 0; ox < OW; ++ox) dst[ox] = src[ox * Cout];
      }
    }
    if (stream) simd::stream_fence();  // order this thread's streaming stores before the team's barrier
  }
  errors.rethrow();
  return kDone;
}

}  // namespace

int conv2d_forward(std::uintptr_t x_, std::uintptr_t wt_, std::uintptr_t bias_,
                   const std::function<std::uintptr_t()>& alloc, std::int64_t B, std::int64_t Cin, std::int64_t H,
                   std::int64_t W, std::int64_t Cout, std::int64_t OH, std::int64_t OW, std::int64_t KH,
                   std::int64_t KW, std::int64_t sh, std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh,
                   std::int64_t dw, std::int64_t G, std::int64_t max_nnz, bool torch_layout, int nthreads) {
  const ConvShape s{B, Cin, H, W, Cout, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, G};
  return conv2d_forward_impl(x_, wt_, bias_, [&] { return ptr<float>(alloc()); }, s, max_nnz, torch_layout, nthreads);
}

}  // namespace fastspike
