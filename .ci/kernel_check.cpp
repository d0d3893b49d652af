// A standalone check of the C++ kernels without Python, for builds that cannot be imported here (the aarch64
// cross build run under qemu-user by .ci/cross_aarch64.sh). The kernel sources are included whole (their helpers
// live in anonymous namespaces); they need neither Python nor pybind11 (their bindings are in csrc/bindings.cpp).
// Each kernel is compared with a naive loop in double precision. Prints the ISA branch of csrc/simd.h and exits
// non-zero on the first mismatch.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../csrc/bits.cpp"
#include "../csrc/conv2d_forward.cpp"
#include "../csrc/conv2d_grad_weight.cpp"
#include "../csrc/linear.cpp"
#include "../csrc/saved.cpp"
#include "../csrc/scan.cpp"

namespace {

using fastspike::ConvShape;
using std::int64_t;

std::uint64_t rng_state = 0x9E3779B97F4A7C15ull;
double uniform() {  // xorshift64*, [0, 1)
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return static_cast<double>((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}
std::vector<float> spikes(int64_t n, double density) {
  std::vector<float> v(n);
  for (auto& e : v) e = uniform() < density ? 1.0f : 0.0f;
  return v;
}
std::vector<float> normal(int64_t n) {
  std::vector<float> v(n);
  for (auto& e : v) e = static_cast<float>(uniform() * 2.0 - 1.0);
  return v;
}
std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

int failures = 0;
void expect_close(const char* name, const std::vector<double>& ref, const float* out) {
  double err = 0.0, base = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    err += (ref[i] - out[i]) * (ref[i] - out[i]);
    base += ref[i] * ref[i];
  }
  const double rel = std::sqrt(err / (base > 0 ? base : 1.0));
  const bool ok = rel <= 1e-5;  // NaN fails too
  std::printf("%-34s relative error %.2e  %s\n", name, rel, ok ? "ok" : "FAIL");
  if (!ok) ++failures;
}
void expect(const char* name, bool ok) {
  std::printf("%-34s %s\n", name, ok ? "ok" : "FAIL");
  if (!ok) ++failures;
}

void check_bits() {
  const int64_t rows = 5, cols = 301, nb = (cols + 7) / 8;
  auto x = spikes(rows * cols, 0.3);
  std::vector<std::uint8_t> bits(rows * nb);
  const bool binary = fastspike::spike_pack(addr(x.data()), addr(bits.data()), rows, cols, 2);
  bool same = binary;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) same &= ((bits[r * nb + c / 8] >> (c % 8)) & 1) == (x[r * cols + c] != 0.0f);
  std::vector<float> back(rows * cols);
  fastspike::spike_unpack(addr(bits.data()), addr(back.data()), rows, cols, 2);
  same &= back == x;
  expect("spike_pack / spike_unpack", same);
  x[77] = 0.5f;
  expect("spike_pack rejects 0.5", !fastspike::spike_pack(addr(x.data()), addr(bits.data()), rows, cols, 2));
  std::vector<float> counts = {0, 1, 2, 0, 3, 255, 0, 1, 0, 0, 4, 0, 0, 0, 0, 0, 7, 1, 0};
  std::vector<std::uint8_t> cb((counts.size() + 7) / 8), cy(counts.size());
  const auto [kind, nnz] = fastspike::compact_saved(addr(counts.data()), counts.size(), addr(cb.data()),
                                                    addr(cy.data()), 2);
  bool bytes_ok = kind == 2 && nnz == 8;
  for (std::size_t i = 0; i < counts.size(); ++i) bytes_ok &= cy[i] == static_cast<std::uint8_t>(counts[i]);
  expect("compact_saved (spike counts)", bytes_ok);
}

void check_linear() {
  const int64_t M = 37, K = 1301, N = 133;  // N not a multiple of the 64-output tile; K: 3 panel slices
  for (double density : {0.02, 0.3}) {
    auto x = spikes(M * K, density);
    auto w = normal(N * K), b = normal(N);
    std::vector<double> ref(M * N);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = b[n];
        for (int64_t k = 0; k < K; ++k) s += static_cast<double>(x[m * K + k]) * w[n * K + k];
        ref[m * N + n] = s;
      }
    std::vector<float> out(M * N);
    std::vector<std::uint8_t> bits(M * ((K + 7) / 8));
    const int status = fastspike::linear_forward_impl(
        addr(x.data()), addr(w.data()), addr(b.data()), [&] { return out.data(); }, addr(bits.data()), M, K, N, -1,
        true, 2);
    expect("linear forward status", status == fastspike::kDone);
    expect_close(density < 0.1 ? "linear forward (2%)" : "linear forward (30%)", ref, out.data());
    // weight gradient from the packed bits and the tile-blocked upstream gradient
    auto g = normal(M * N);
    const int64_t ntiles = (N + 63) / 64;
    std::vector<float> gt(ntiles * M * 64, 0.0f), gw(N * K);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) gt[((n / 64) * M + m) * 64 + n % 64] = g[m * N + n];
    fastspike::linear_grad_weight(addr(bits.data()), addr(gt.data()), addr(gw.data()), M, K, N, 2);
    std::vector<double> gref(N * K, 0.0);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) gref[n * K + k] += static_cast<double>(g[m * N + n]) * x[m * K + k];
    expect_close("linear weight gradient", gref, gw.data());
  }
}

std::vector<double> naive_conv(const std::vector<float>& x, const std::vector<float>& w, const float* bias,
                               const ConvShape& s) {
  std::vector<double> out(s.B * s.Cout * s.OH * s.OW);
  const int64_t cing = s.cin_g(), cg = s.cout_g();
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t o = 0; o < s.Cout; ++o)
      for (int64_t oy = 0; oy < s.OH; ++oy)
        for (int64_t ox = 0; ox < s.OW; ++ox) {
          double acc = bias ? bias[o] : 0.0;
          for (int64_t ci = 0; ci < cing; ++ci)
            for (int64_t ky = 0; ky < s.KH; ++ky)
              for (int64_t kx = 0; kx < s.KW; ++kx) {
                const int64_t iy = oy * s.sh - s.ph + ky * s.dh, ix = ox * s.sw - s.pw + kx * s.dw;
                if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) continue;
                const int64_t c = (o / cg) * cing + ci;
                acc += static_cast<double>(x[((b * s.Cin + c) * s.H + iy) * s.W + ix]) *
                       w[((o * cing + ci) * s.KH + ky) * s.KW + kx];
              }
          out[((b * s.Cout + o) * s.OH + oy) * s.OW + ox] = acc;
        }
  return out;
}

void check_conv() {
  // groups 1 with Cout a multiple of every vector width (the register-blocked path), then groups 2 (plain loops)
  for (int64_t G : {1, 2}) {
    const int64_t B = 2, Cin = 8, H = 11, W = 13, Cout = 32, KH = 3, KW = 3;
    const ConvShape s{B, Cin, H, W, Cout, (H + 2 - 3) / 2 + 1, W, KH, KW, 2, 1, 1, 1, 1, 1, G};
    auto x = spikes(B * Cin * H * W, 0.2);
    auto w = normal(Cout * (Cin / G) * KH * KW), b = normal(Cout);
    std::vector<float> out(B * Cout * s.OH * s.OW);
    const int status = fastspike::conv2d_forward_impl(
        addr(x.data()), addr(w.data()), addr(b.data()), [&] { return out.data(); }, s, -1, true, 2);
    expect("conv2d forward status", status == fastspike::kDone);
    expect_close(G == 1 ? "conv2d forward (groups 1)" : "conv2d forward (groups 2)", naive_conv(x, w, b.data(), s),
                 out.data());
    // weight gradient from packed bits: gw[o][ci][ky][kx] = sum g[b, o, oy, ox] x[b, c, iy, ix]
    auto g = normal(B * Cout * s.OH * s.OW);
    std::vector<std::uint8_t> bits((x.size() + 7) / 8);
    fastspike::spike_pack(addr(x.data()), addr(bits.data()), 1, x.size(), 2);
    std::vector<float> gw(w.size());
    fastspike::conv2d_grad_weight(addr(bits.data()), bits.size(), false, addr(g.data()), addr(gw.data()), B, Cin, H,
                                  W, Cout, s.OH, s.OW, KH, KW, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw, G, 2);
    std::vector<double> gref(w.size(), 0.0);
    const int64_t cing = Cin / G, cg = Cout / G;
    for (int64_t bb = 0; bb < B; ++bb)
      for (int64_t o = 0; o < Cout; ++o)
        for (int64_t oy = 0; oy < s.OH; ++oy)
          for (int64_t ox = 0; ox < s.OW; ++ox)
            for (int64_t ci = 0; ci < cing; ++ci)
              for (int64_t ky = 0; ky < KH; ++ky)
                for (int64_t kx = 0; kx < KW; ++kx) {
                  const int64_t iy = oy * s.sh - s.ph + ky, ix = ox * s.sw - s.pw + kx;
                  if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                  const int64_t c = (o / cg) * cing + ci;
                  gref[((o * cing + ci) * KH + ky) * KW + kx] +=
                      static_cast<double>(g[((bb * Cout + o) * s.OH + oy) * s.OW + ox]) *
                      x[((bb * Cin + c) * H + iy) * W + ix];
                }
    expect_close(G == 1 ? "conv2d weight gradient (groups 1)" : "conv2d weight gradient (groups 2)", gref, gw.data());
  }
}

void check_scan() {
  const int64_t T = 9, M = 100;
  auto a = normal(T * M), b = normal(T * M), h0 = normal(M);
  std::vector<float> h(T * M);
  fastspike::scan_forward(addr(a.data()), addr(b.data()), addr(h0.data()), addr(h.data()), T, M, 2, 0.0f, 32, 2);
  std::vector<double> ref(T * M);
  for (int64_t i = 0; i < M; ++i) {
    float state = h0[i];
    for (int64_t t = 0; t < T; ++t) {
      state = a[t * M + i] * state + b[t * M + i];
      ref[t * M + i] = state;
    }
  }
  expect_close("linear scan forward", ref, h.data());
}

}  // namespace

int main() {
  std::printf("fastspike kernel check: csrc/simd.h branch '%s', %d float lanes\n", fastspike::simd::kIsa,
              fastspike::simd::kWidth);
  check_bits();
  check_linear();
  setenv("FASTSPIKE_L2_BYTES", "65536", 1);  // the sliced path of the linear forward, whatever this CPU's L2
  check_linear();
  unsetenv("FASTSPIKE_L2_BYTES");
  check_conv();
  check_scan();
  std::printf("%s\n", failures ? "kernel check FAILED" : "kernel check passed");
  return failures ? 1 : 0;
}
