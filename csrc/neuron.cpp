// Fused multi-step IF / LIF / ParametricLIF neurons on the CPU: forward and backward through time.
//
// Layout: every tensor is [T, N] row-major (time outer, neurons inner), float32, contiguous.
// Parallelism: OpenMP over blocks of kBlock neurons; each block keeps its membrane state in a small
// local array and runs the time loop outside a `#pragma omp simd` loop over the block. Never over time.
//
// Charge (mode): 0 IF       H = V + X
//                1 LIF      H = V + (X - (V - Vr)) / tau      (decay_input)   or V - (V - Vr) / tau + X
//                2 PLIF     H = V + (X - (V - Vr)) * k        (decay_input)   or V - (V - Vr) * k + X,  k = sigmoid(w)
// Fire:  S = H >= thr.   Reset: hard V = S ? Vr : H,   soft V = H - thr * S.
// The expressions are written exactly as the reference (fastspike/ops/reference.py) evaluates them,
// and the build disables FMA contraction, so forward results match the reference bit for bit.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "registry.h"
#include "surrogate.h"

namespace fastspike {
namespace {

constexpr std::int64_t kBlock = 256;

struct NeuronParams {
  int mode;           // 0 IF, 1 LIF, 2 PLIF
  float decay;        // tau for LIF, k = sigmoid(w) for PLIF, unused for IF
  bool decay_input;
  float v_th;
  float v_reset;      // charge uses 0 when soft
  bool soft_reset;
  bool detach_reset;
};

inline float charge(const NeuronParams& p, float v, float x) {
  if (p.mode == 0) return v + x;
  if (p.mode == 1) return p.decay_input ? v + (x - (v - p.v_reset)) / p.decay : v - (v - p.v_reset) / p.decay + x;
  return p.decay_input ? v + (x - (v - p.v_reset)) * p.decay : v - (v - p.v_reset) * p.decay + x;
}

inline float reset(const NeuronParams& p, float h, float s) {
  return p.soft_reset ? h - p.v_th * s : s * p.v_reset + (1.0f - s) * h;
}

void forward(std::uintptr_t x_, std::uintptr_t v0_, std::uintptr_t s_, std::uintptr_t h_, std::uintptr_t vseq_,
             std::uintptr_t vlast_, std::int64_t T, std::int64_t N, int mode, float decay, bool decay_input,
             float v_th, float v_reset, bool soft_reset, int nthreads) {
  check(mode >= 0 && mode <= 2, "mode must be 0 (IF), 1 (LIF) or 2 (PLIF)");
  const NeuronParams p{mode, decay, decay_input, v_th, soft_reset ? 0.0f : v_reset, soft_reset, false};
  const float* x = ptr<const float>(x_);
  const float* v0 = ptr<const float>(v0_);
  float* s = ptr<float>(s_);
  float* h = h_ ? ptr<float>(h_) : nullptr;
  float* vseq = vseq_ ? ptr<float>(vseq_) : nullptr;
  float* vlast = ptr<float>(vlast_);
  const std::int64_t nblocks = (N + kBlock - 1) / kBlock;
  const float v_reset_value = v_reset;
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, nblocks))
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const std::int64_t n0 = b * kBlock;
    const std::int64_t len = std::min(kBlock, N - n0);
    float v[kBlock];
    for (std::int64_t i = 0; i < len; ++i) v[i] = v0[n0 + i];
    for (std::int64_t t = 0; t < T; ++t) {
      const std::int64_t o = t * N + n0;
#pragma omp simd
      for (std::int64_t i = 0; i < len; ++i) {
        const float hv = charge(p, v[i], x[o + i]);
        const float sv = hv >= p.v_th ? 1.0f : 0.0f;
        v[i] = p.soft_reset ? hv - p.v_th * sv : sv * v_reset_value + (1.0f - sv) * hv;
        s[o + i] = sv;
        if (h) h[o + i] = hv;
        if (vseq) vseq[o + i] = v[i];
      }
    }
    for (std::int64_t i = 0; i < len; ++i) vlast[n0 + i] = v[i];
  }
}

template <int SG>
void backward_impl(const NeuronParams& p, float a, float bpar, const float* gs, const float* gvseq,
                   const float* gvlast, const float* h, const float* x, const float* v0, float* gx, float* gv0,
                   double* gk_partial, std::int64_t T, std::int64_t N, int nthreads) {
  const std::int64_t nblocks = (N + kBlock - 1) / kBlock;
  const bool plif = p.mode == 2;
  const float dh_dv = p.mode == 0 ? 1.0f : (p.mode == 1 ? 1.0f - 1.0f / p.decay : 1.0f - p.decay);
  const float dh_dx = p.decay_input ? (p.mode == 1 ? 1.0f / p.decay : (p.mode == 2 ? p.decay : 1.0f)) : 1.0f;
  const float vr = p.v_reset;
#pragma omp parallel for schedule(static) num_threads(clamp_threads(nthreads, nblocks))
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const std::int64_t n0 = b * kBlock;
    const std::int64_t len = std::min(kBlock, N - n0);
    float carry[kBlock];
    double gk = 0.0;
    for (std::int64_t i = 0; i < len; ++i) carry[i] = gvlast ? gvlast[n0 + i] : 0.0f;
    for (std::int64_t t = T - 1; t >= 0; --t) {
      const std::int64_t o = t * N + n0;
      const std::int64_t op = (t - 1) * N + n0;
      float gk_step = 0.0f;
#pragma omp simd reduction(+ : gk_step)
      for (std::int64_t i = 0; i < len; ++i) {
        const float hv = h[o + i];
        const float sv = hv >= p.v_th ? 1.0f : 0.0f;
        const float sg = surrogate_grad<SG>(hv - p.v_th, a, bpar);
        float dv_dh;
        if (p.soft_reset) dv_dh = p.detach_reset ? 1.0f : 1.0f - p.v_th * sg;
        else dv_dh = p.detach_reset ? 1.0f - sv : (1.0f - sv) + (vr - hv) * sg;
        const float gv = carry[i] + (gvseq ? gvseq[o + i] : 0.0f);
        const float gh = gs[o + i] * sg + gv * dv_dh;
        gx[o + i] = p.mode == 1 && p.decay_input ? gh / p.decay : gh * dh_dx;
        carry[i] = gh * dh_dv;
        if (plif) {
          float vprev;
          if (t > 0) {
            const float hp = h[op + i];
            vprev = reset(p, hp, hp >= p.v_th ? 1.0f : 0.0f);
          } else {
            vprev = v0[n0 + i];
          }
          const float factor = p.decay_input ? x[o + i] - (vprev - vr) : -(vprev - vr);
          gk_step += gh * factor;
        }
      }
      gk += gk_step;
    }
    for (std::int64_t i = 0; i < len; ++i) gv0[n0 + i] = carry[i];
    if (gk_partial) gk_partial[b] = gk;
  }
}

void backward(std::uintptr_t gs_, std::uintptr_t gvseq_, std::uintptr_t gvlast_, std::uintptr_t h_, std::uintptr_t x_,
              std::uintptr_t v0_, std::uintptr_t gx_, std::uintptr_t gv0_, std::uintptr_t gk_partial_, std::int64_t T,
              std::int64_t N, int mode, float decay, bool decay_input, float v_th, float v_reset, bool soft_reset,
              bool detach_reset, int sg, float a, float b, int nthreads) {
  check(mode >= 0 && mode <= 2, "mode must be 0 (IF), 1 (LIF) or 2 (PLIF)");
  check(mode != 2 || (gk_partial_ && v0_ && x_), "PLIF backward needs x, v0 and a gk_partial buffer");
  const NeuronParams p{mode, decay, decay_input, v_th, soft_reset ? 0.0f : v_reset, soft_reset, detach_reset};
  dispatch_surrogate(sg, [&](auto id) {
    backward_impl<decltype(id)::value>(p, a, b, ptr<const float>(gs_), gvseq_ ? ptr<const float>(gvseq_) : nullptr,
                                       gvlast_ ? ptr<const float>(gvlast_) : nullptr, ptr<const float>(h_),
                                       x_ ? ptr<const float>(x_) : nullptr, v0_ ? ptr<const float>(v0_) : nullptr,
                                       ptr<float>(gx_), ptr<float>(gv0_),
                                       gk_partial_ ? ptr<double>(gk_partial_) : nullptr, T, N, nthreads);
  });
}

void register_neuron(pybind11::module_& m) {
  namespace py = pybind11;
  m.attr("NEURON_BLOCK") = kBlock;
  m.def("neuron_forward", &forward, py::call_guard<py::gil_scoped_release>(), py::arg("x"), py::arg("v0"),
        py::arg("spike"), py::arg("h"), py::arg("v_seq"), py::arg("v_last"), py::arg("T"), py::arg("N"),
        py::arg("mode"), py::arg("decay"), py::arg("decay_input"), py::arg("v_threshold"), py::arg("v_reset"),
        py::arg("soft_reset"), py::arg("nthreads"),
        "Fused multi-step neuron forward on [T, N] float32 buffers (addresses); h and v_seq may be 0.");
  m.def("neuron_backward", &backward, py::call_guard<py::gil_scoped_release>(), py::arg("grad_spike"),
        py::arg("grad_v_seq"), py::arg("grad_v_last"), py::arg("h"), py::arg("x"), py::arg("v0"), py::arg("grad_x"),
        py::arg("grad_v0"), py::arg("grad_k_partial"), py::arg("T"), py::arg("N"), py::arg("mode"), py::arg("decay"),
        py::arg("decay_input"), py::arg("v_threshold"), py::arg("v_reset"), py::arg("soft_reset"),
        py::arg("detach_reset"), py::arg("surrogate"), py::arg("alpha"), py::arg("beta"), py::arg("nthreads"),
        "Reverse-time backward of neuron_forward; grad_k_partial gets one float64 per block of NEURON_BLOCK neurons.");
}
FASTSPIKE_REGISTER(register_neuron);

}  // namespace
}  // namespace fastspike
