// Event-driven Conv2d weight gradient on the CPU: accumulated over the active inputs only.
//
// Parallel over blocks of input channels; per image and channel the active pixels are sorted into one list
// per tap (the output pixel each lands on) and gWT[c][ky][kx][:] gains the sum, in registers, of the
// contiguous rows g_nhwc[b, oy, ox, group] of its list.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "api.h"
#include "bits.h"
#include "common.h"
#include "simd.h"
#include "synapse.h"
#include "transpose.h"

namespace fastspike {
namespace {

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
  using namespace simd;
  constexpr int U = R >= 8 ? 1 : 8 / R;  // interleaved sums
  vf r[U][R];
  for (int u = 0; u < U; ++u)
    for (int k = 0; k < R; ++k) r[u][k] = u == 0 ? vload(dst + kWidth * k) : vzero();
  std::int64_t j = 0;
  for (; j + U <= n; j += U)
    for (int u = 0; u < U; ++u) {
      const float* s = base + static_cast<std::int64_t>(pix[j + u]) * stride;
      if constexpr (BYTES) {
        const vf v = vset1(val[j + u]);
        for (int k = 0; k < R; ++k) r[u][k] = vadd(r[u][k], vmul(v, vload(s + kWidth * k)));
      } else {
        for (int k = 0; k < R; ++k) r[u][k] = vadd(r[u][k], vload(s + kWidth * k));
      }
    }
  for (; j < n; ++j) {
    const float* s = base + static_cast<std::int64_t>(pix[j]) * stride;
    const vf v = vset1(BYTES ? val[j] : 1.0f);
    for (int k = 0; k < R; ++k) r[0][k] = vadd(r[0][k], vmul(v, vload(s + kWidth * k)));
  }
  for (int u = 1; u < U; ++u)
    for (int k = 0; k < R; ++k) r[0][k] = vadd(r[0][k], r[u][k]);
  for (int k = 0; k < R; ++k) vstore(dst + kWidth * k, r[0][k]);
}

template <bool BYTES>
inline void add_rows(const float* base, std::int64_t stride, const std::int32_t* pix, const float* val, std::int64_t n,
                     float* dst, std::int64_t len) {
  std::int64_t i0 = 0;
  if (simd::kRegisterBlocked) {
    constexpr std::int64_t V = simd::kWidth;
    for (; i0 + 8 * V <= len; i0 += 8 * V) add_rows_vec<BYTES, 8>(base + i0, stride, pix, val, n, dst + i0);
    for (; i0 + 4 * V <= len; i0 += 4 * V) add_rows_vec<BYTES, 4>(base + i0, stride, pix, val, n, dst + i0);
    for (; i0 + V <= len; i0 += V) add_rows_vec<BYTES, 1>(base + i0, stride, pix, val, n, dst + i0);
  }
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
void conv2d_grad_weight_impl(const std::uint8_t* data, std::int64_t nbytes, const float* g, float* gw, std::int64_t B,
                             std::int64_t Cin, std::int64_t H, std::int64_t W, std::int64_t Cout, std::int64_t OH,
                             std::int64_t OW, std::int64_t KH, std::int64_t KW, std::int64_t sh, std::int64_t sw,
                             std::int64_t ph, std::int64_t pw, std::int64_t dh, std::int64_t dw, std::int64_t G,
                             int nthreads) {
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
  ThreadErrors errors;  // a thread's buffers could not be allocated: raised after the region
#pragma omp parallel num_threads(clamp_threads(nthreads, nblocks))
  {
    struct GradAcc;
    struct GradTaps;
    struct GradVals;
    float* acc = nullptr;
    std::int32_t* lists = nullptr;  // per tap: the output pixels (oy * OW + ox) of up to `chunk` spikes
    float* vals = nullptr;          // (BYTES) and their values
    std::vector<std::int32_t> counts;
    errors.run([&] {
      acc = scratch<GradAcc, float>(static_cast<std::size_t>(kCB * row));
      lists = scratch<GradTaps, std::int32_t>(static_cast<std::size_t>(taps * chunk));
      if (BYTES) vals = scratch<GradVals, float>(static_cast<std::size_t>(taps * chunk));
      counts.resize(static_cast<std::size_t>(taps));
    });
#pragma omp for schedule(static)
    for (std::int64_t blk = 0; blk < nblocks; ++blk) {
      if (errors.failed()) continue;
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
              if (counts[k])
                add_rows<BYTES>(gb, Cout, lists + k * chunk, vals ? vals + k * chunk : nullptr, counts[k],
                                dst_c + k * cg, cg);
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
  errors.rethrow();
}

}  // namespace

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
  const int threads = clamp_threads(nthreads, items, B * L * Cout, 1 << 16);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t bb = it / lblocks, l0 = (it % lblocks) * 16;
    transpose_panel(g + bb * Cout * L, L, gt + bb * L * Cout, Cout, Cout, l0, std::min(L, l0 + 16));
  }
  if (bytes)
    conv2d_grad_weight_impl<true>(data, nbytes, gt, ptr<float>(gw_), B, Cin, H, W, Cout, OH, OW, KH, KW, sh, sw, ph, pw,
                                  dh, dw, G, nthreads);
  else
    conv2d_grad_weight_impl<false>(data, nbytes, gt, ptr<float>(gw_), B, Cin, H, W, Cout, OH, OW, KH, KW, sh, sw, ph,
                                   pw, dh, dw, G, nthreads);
}

}  // namespace fastspike
