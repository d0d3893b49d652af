// The kernels' entry points: what bindings.cpp exposes to Python as fastspike._C (same names, except the
// synapse ones, which Python calls synapse_*), declared here so that the kernel sources compile without pybind11.
// Buffers cross as addresses (tensor.data_ptr()); the Python launchers validate dtype, contiguity and sizes. Each
// source's comments say what its functions compute.
#pragma once
#include <cstdint>
#include <functional>
#include <tuple>
#include <utility>

namespace fastspike {

// neurons per work item of the neuron kernels (the launchers size their per-block buffers by these)
constexpr std::int64_t kNeuronBlock = 256, kNeuron2Block = 256, kGatedLifBlock = 256, kStbifBlock = 256;
constexpr std::int64_t kPsnBlock = 64;        // neurons per work item of the PSN kernels
constexpr std::int64_t kScanMaxBlock = 4096;  // the largest time block of the scan kernels

// bits.cpp
bool spike_pack(std::uintptr_t x_, std::uintptr_t out_, std::int64_t rows, std::int64_t cols, int nthreads);
void spike_unpack(std::uintptr_t bits_, std::uintptr_t out_, std::int64_t rows, std::int64_t cols, int nthreads);
std::pair<std::int64_t, bool> spike_stats(std::uintptr_t x_, std::int64_t n, int nthreads);

// conv2d_forward.cpp
int conv2d_forward(std::uintptr_t x_, std::uintptr_t wt_, std::uintptr_t bias_,
                   const std::function<std::uintptr_t()>& alloc, std::int64_t B, std::int64_t Cin, std::int64_t H,
                   std::int64_t W, std::int64_t Cout, std::int64_t OH, std::int64_t OW, std::int64_t KH,
                   std::int64_t KW, std::int64_t sh, std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh,
                   std::int64_t dw, std::int64_t G, std::int64_t max_nnz, bool torch_layout, int nthreads);

// conv2d_grad_weight.cpp
void conv2d_grad_weight(std::uintptr_t data_, std::int64_t nbytes, bool bytes, std::uintptr_t g_, std::uintptr_t gw_,
                        std::int64_t B, std::int64_t Cin, std::int64_t H, std::int64_t W, std::int64_t Cout,
                        std::int64_t OH, std::int64_t OW, std::int64_t KH, std::int64_t KW, std::int64_t sh,
                        std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh, std::int64_t dw,
                        std::int64_t G, int nthreads);

// events.cpp
std::tuple<std::int64_t, bool> events_integrate(std::uintptr_t ev_, std::int64_t n, std::int64_t stride,
                                                std::int64_t off_t, std::int64_t off_x, std::int64_t off_y,
                                                std::int64_t off_p, std::uintptr_t jl_, std::uintptr_t jr_,
                                                std::int64_t T, std::int64_t P, std::int64_t H, std::int64_t W,
                                                std::uintptr_t out_, bool check_sorted, int nthreads);

// gated_lif.cpp
void gated_lif_forward(std::uintptr_t x_, std::uintptr_t v0_, float v0_value, std::uintptr_t coef_, std::uintptr_t inc_,
                       std::uintptr_t s_, std::uintptr_t vseq_, std::uintptr_t vlast_, std::int64_t T, std::int64_t NB,
                       std::int64_t C, std::int64_t S, int nthreads);
void gated_lif_backward(std::uintptr_t gs_, std::uintptr_t gvlast_, std::uintptr_t x_, std::uintptr_t vseq_,
                        std::uintptr_t v0_, float v0_value, std::uintptr_t coef_, std::uintptr_t inc_,
                        std::uintptr_t gx_, std::uintptr_t gv0_, std::uintptr_t gcoef_, std::uintptr_t ginc_,
                        std::int64_t T, std::int64_t NB, std::int64_t C, std::int64_t S, int sg, float a, float b,
                        int nthreads);

// linear.cpp
int linear_forward(std::uintptr_t x_, std::uintptr_t wt_, std::uintptr_t bias_,
                   const std::function<std::uintptr_t()>& alloc, std::uintptr_t bits_, std::int64_t M, std::int64_t K,
                   std::int64_t N, std::int64_t max_nnz, bool torch_layout, int nthreads);
void linear_grad_weight(std::uintptr_t bits_, std::uintptr_t gt_, std::uintptr_t gw_, std::int64_t M, std::int64_t K,
                        std::int64_t N, int nthreads);

// neuron.cpp
void neuron_forward(std::uintptr_t x_, std::uintptr_t v0_, float v0_value, std::uintptr_t s_, std::uintptr_t h_,
                    std::uintptr_t vseq_, std::uintptr_t vlast_, std::int64_t T, std::int64_t N, int mode, float decay,
                    bool decay_input, float v_th, float v_reset, bool soft_reset, int nthreads, float p1, float p2,
                    float p3, int fire, int act, float k, float q1, std::uintptr_t pc_, std::int64_t channels,
                    std::int64_t inner);
void neuron_backward(std::uintptr_t gs_, std::uintptr_t gvseq_, std::uintptr_t gvlast_, std::uintptr_t x_,
                     std::uintptr_t v0_, float v0_value, std::uintptr_t gx_, std::uintptr_t gv0_,
                     std::uintptr_t gk_partial_, std::int64_t T, std::int64_t N, int mode, float decay,
                     bool decay_input, float v_th, float v_reset, bool soft_reset, bool detach_reset, int sg, float a,
                     float b, int nthreads, float p1, float p2, float p3, int fire, int act, float k, float q1,
                     float q2, float q3, std::uintptr_t pc_, std::int64_t channels, std::int64_t inner);

// neuron2.cpp
void neuron2_forward(std::uintptr_t x_, std::uintptr_t v0_, float v0_value, std::uintptr_t u0_, float u0_value,
                     std::uintptr_t s_, std::uintptr_t vseq_, std::uintptr_t useq_, std::uintptr_t vlast_,
                     std::uintptr_t ulast_, std::int64_t T, std::int64_t N, int mode, float v_th, float v_reset,
                     bool soft_reset, int nthreads, float p0, float p1, float p2, float p3, float p4, float p5,
                     float p6);
void neuron2_backward(std::uintptr_t gs_, std::uintptr_t gvseq_, std::uintptr_t guseq_, std::uintptr_t gvlast_,
                      std::uintptr_t gulast_, std::uintptr_t x_, std::uintptr_t v0_, float v0_value, std::uintptr_t u0_,
                      float u0_value, std::uintptr_t gx_, std::uintptr_t gv0_, std::uintptr_t gu0_, std::int64_t T,
                      std::int64_t N, int mode, float v_th, float v_reset, bool soft_reset, bool detach_reset, int sg,
                      float a, float b, int nthreads, float p0, float p1, float p2, float p3, float p4, float p5,
                      float p6);

// pool.cpp
void max_pool2d(std::uintptr_t x_, std::uintptr_t out_, std::uintptr_t idx_, int index_bytes, std::int64_t planes,
                std::int64_t H, std::int64_t W, std::int64_t OH, std::int64_t OW, std::int64_t kh, std::int64_t kw,
                std::int64_t sh, std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh, std::int64_t dw,
                int nthreads);
void max_pool_backward(std::uintptr_t idx_, int index_bytes, std::uintptr_t g_, std::uintptr_t gx_, std::int64_t rows,
                       std::int64_t L, std::int64_t cols, int nthreads);

// psn.cpp
void psn_forward(std::uintptr_t x_, std::uintptr_t w_, std::uintptr_t b_, std::uintptr_t s_, std::uintptr_t h_,
                 std::int64_t T, std::int64_t N, std::int64_t band_k, int nthreads);
void psn_backward(std::uintptr_t x_, std::uintptr_t gs_, std::uintptr_t w_, std::uintptr_t b_, std::uintptr_t gx_,
                  std::uintptr_t gw_part_, std::uintptr_t gb_part_, std::uintptr_t gh_out_, std::int64_t T,
                  std::int64_t N, std::int64_t band_k, std::int64_t nchunks, int sg, float a, float bpar, int nthreads);

// saved.cpp
std::pair<int, std::int64_t> compact_saved(std::uintptr_t x_, std::int64_t n, std::uintptr_t bits_,
                                           std::uintptr_t bytes_, int nthreads);

// scan.cpp
void scan_forward(std::uintptr_t a_, std::uintptr_t b_, std::uintptr_t h0_, std::uintptr_t h_, std::int64_t T,
                  std::int64_t M, int mode, float a_scalar, std::int64_t block, int nthreads);
void scan_backward(std::uintptr_t a_, std::uintptr_t h_, std::uintptr_t h0_, std::uintptr_t gout_, std::uintptr_t gb_,
                   std::uintptr_t ga_, std::uintptr_t ga_partial_, std::uintptr_t gh0_, std::int64_t T, std::int64_t M,
                   int mode, float a_scalar, std::int64_t block, int nthreads);

// stbif.cpp
void stbif_forward(std::uintptr_t x_, std::uintptr_t q0_, std::uintptr_t acc0_, std::uintptr_t out_, std::uintptr_t q_,
                   std::uintptr_t acc_, std::uintptr_t event_, std::int64_t T, std::int64_t N, float thr, float pos_max,
                   float neg_min, int nthreads);

}  // namespace fastspike
