// The Python bindings of the kernels (api.h) for fastspike._C: argument names, defaults and docstrings. The GIL is
// released around every kernel; the event-driven forwards call their `alloc` (a Python callable, converted by
// pybind11/functional.h, which takes the GIL back for the call) only once the input is found sparse enough.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "api.h"
#include "registry.h"
#include "synapse.h"

namespace fastspike {

// bits.cpp
void register_bits(pybind11::module_& m) {
  namespace py = pybind11;
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("spike_pack", &spike_pack, nogil, py::arg("x"), py::arg("out"), py::arg("rows"), py::arg("cols"),
        py::arg("nthreads"), "Pack float32 [rows, cols] to uint8 [rows, ceil(cols/8)] bits; returns True if binary.");
  m.def("spike_unpack", &spike_unpack, nogil, py::arg("bits"), py::arg("out"), py::arg("rows"), py::arg("cols"),
        py::arg("nthreads"), "Unpack uint8 [rows, ceil(cols/8)] bits to float32 [rows, cols].");
  m.def("spike_stats", &spike_stats, nogil, py::arg("x"), py::arg("n"), py::arg("nthreads"),
        "(number of nonzeros, all values in {0, 1}) of a float32 buffer.");
}
FASTSPIKE_REGISTER(register_bits);

// conv2d_forward.cpp
void register_conv2d_forward(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("synapse_conv2d_forward", &conv2d_forward, py::call_guard<py::gil_scoped_release>(), py::arg("x"),
        py::arg("wt"), py::arg("bias"), py::arg("alloc"), py::arg("B"), py::arg("Cin"), py::arg("H"), py::arg("W"),
        py::arg("Cout"), py::arg("OH"), py::arg("OW"), py::arg("KH"), py::arg("KW"), py::arg("sh"), py::arg("sw"),
        py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("groups"), py::arg("max_nnz"),
        py::arg("torch_layout"), py::arg("nthreads"),
        "Event-driven conv2d forward (gather per output row); wt pre-transposed, or torch's layout with "
        "torch_layout=True; alloc() -> address of out, called only when the kernel runs. Returns 1 (done), 0 "
        "(x not binary) or 2 (more than max_nnz spikes; max_nnz < 0: no limit).");
}
FASTSPIKE_REGISTER(register_conv2d_forward);

// conv2d_grad_weight.cpp
void register_conv2d_grad_weight(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("synapse_conv2d_grad_weight", &conv2d_grad_weight, py::call_guard<py::gil_scoped_release>(), py::arg("data"),
        py::arg("nbytes"), py::arg("bytes"), py::arg("g"), py::arg("gw"), py::arg("B"), py::arg("Cin"), py::arg("H"),
        py::arg("W"), py::arg("Cout"), py::arg("OH"), py::arg("OW"), py::arg("KH"), py::arg("KW"), py::arg("sh"),
        py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("groups"),
        py::arg("nthreads"),
        "Event-driven conv2d weight gradient from x as packed bits (bytes=False) or one uint8 value per element "
        "(bytes=True) and g [B, Cout, OH, OW] (contiguous); writes gw [Cout][Cin/G][KH][KW].");
}
FASTSPIKE_REGISTER(register_conv2d_grad_weight);

// events.cpp
void register_events(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("events_integrate", &events_integrate, py::call_guard<py::gil_scoped_release>(), py::arg("events"),
        py::arg("n"), py::arg("stride"), py::arg("off_t"), py::arg("off_x"), py::arg("off_y"), py::arg("off_p"),
        py::arg("j_l"), py::arg("j_r"), py::arg("T"), py::arg("P"), py::arg("H"), py::arg("W"), py::arg("out"),
        py::arg("check_sorted"), py::arg("nthreads"),
        "Integrate EVENT_DTYPE records into float32 frames [T, P, H, W] over index segments.");
}
FASTSPIKE_REGISTER(register_events);

// gated_lif.cpp
void register_gated_lif(pybind11::module_& m) {
  namespace py = pybind11;
  m.attr("GATED_LIF_BLOCK") = kGatedLifBlock;
  m.def("gated_lif_forward", &gated_lif_forward, py::call_guard<py::gil_scoped_release>(), py::arg("x"), py::arg("v0"),
        py::arg("v0_value"), py::arg("coef"), py::arg("inc"), py::arg("spike"), py::arg("v_seq"), py::arg("v_last"),
        py::arg("T"), py::arg("NB"), py::arg("C"), py::arg("S"), py::arg("nthreads"),
        "Fused multi-step GLIF forward on [T, NB x C x S] float32 buffers (addresses); v_seq may be 0 (not "
        "stored); v0 = 0 starts every neuron at v0_value.");
  m.def("gated_lif_backward", &gated_lif_backward, py::call_guard<py::gil_scoped_release>(), py::arg("grad_spike"),
        py::arg("grad_v_last"), py::arg("x"), py::arg("v_seq"), py::arg("v0"), py::arg("v0_value"), py::arg("coef"),
        py::arg("inc"), py::arg("grad_x"), py::arg("grad_v0"), py::arg("grad_coef"), py::arg("grad_inc"), py::arg("T"),
        py::arg("NB"), py::arg("C"), py::arg("S"), py::arg("surrogate"), py::arg("alpha"), py::arg("beta"),
        py::arg("nthreads"),
        "Reverse-time backward of gated_lif_forward from the stored V sequence; grad_v_last / grad_v0 may be 0; "
        "grad_coef [5, C] and grad_inc [T, C] get the per-channel sums (deterministic).");
}
FASTSPIKE_REGISTER(register_gated_lif);

// linear.cpp
void register_linear(pybind11::module_& m) {
  namespace py = pybind11;
  m.attr("SYNAPSE_TILE") = kTile;
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("synapse_linear_forward", &linear_forward, nogil, py::arg("x"), py::arg("wt"), py::arg("bias"),
        py::arg("alloc"), py::arg("bits"), py::arg("M"), py::arg("K"), py::arg("N"), py::arg("max_nnz"),
        py::arg("torch_layout"), py::arg("nthreads"),
        "Event-driven x @ W^T + b on float32 buffers; wt tile-blocked, or W [N, K] with torch_layout=True; "
        "alloc() -> address of out [M, N], called only when the "
        "kernel runs. Returns 1 (done), 0 (x not binary) or 2 (more than max_nnz spikes; max_nnz < 0: no "
        "limit); bits (if given) are written unless 0.");
  m.def("synapse_linear_grad_weight", &linear_grad_weight, nogil, py::arg("bits"), py::arg("gt"), py::arg("gw"),
        py::arg("M"), py::arg("K"), py::arg("N"), py::arg("nthreads"),
        "Event-driven grad of W = g^T x from packed x bits and the tile-blocked g.");
}
FASTSPIKE_REGISTER(register_linear);

// neuron.cpp
void register_neuron(pybind11::module_& m) {
  namespace py = pybind11;
  m.attr("NEURON_BLOCK") = kNeuronBlock;
  m.def("neuron_forward", &neuron_forward, py::call_guard<py::gil_scoped_release>(), py::arg("x"), py::arg("v0"),
        py::arg("v0_value"), py::arg("spike"), py::arg("h"), py::arg("v_seq"), py::arg("v_last"), py::arg("T"),
        py::arg("N"), py::arg("mode"), py::arg("decay"), py::arg("decay_input"), py::arg("v_threshold"),
        py::arg("v_reset"), py::arg("soft_reset"), py::arg("nthreads"), py::arg("p1") = 0.0f, py::arg("p2") = 0.0f,
        py::arg("p3") = 0.0f, py::arg("fire") = 0, py::arg("act") = 0, py::arg("k") = 1.0f, py::arg("q1") = 0.0f,
        py::arg("pc") = 0, py::arg("channels") = 1, py::arg("inner") = 1,
        "Fused multi-step neuron forward on [T, N] float32 buffers (addresses); h and v_seq may be 0; v0 = 0 "
        "starts every neuron at v0_value; p1-p3: QIF's (a0, v_rest, v_c), EIF's (delta_T, theta_rh, v_rest) or leaky's "
        "decay in p1; fire / act / k / q1: "
        "csrc/neuron_fire.h; pc: 0 or a [2, channels] buffer of per-channel thresholds and offsets (the offset fire), "
        "neuron n of a row in channel (n / inner) % channels.");
  m.def("neuron_backward", &neuron_backward, py::call_guard<py::gil_scoped_release>(), py::arg("grad_spike"),
        py::arg("grad_v_seq"), py::arg("grad_v_last"), py::arg("x"), py::arg("v0"), py::arg("v0_value"),
        py::arg("grad_x"), py::arg("grad_v0"), py::arg("grad_k_partial"), py::arg("T"), py::arg("N"), py::arg("mode"),
        py::arg("decay"), py::arg("decay_input"), py::arg("v_threshold"), py::arg("v_reset"), py::arg("soft_reset"),
        py::arg("detach_reset"), py::arg("surrogate"), py::arg("alpha"), py::arg("beta"), py::arg("nthreads"),
        py::arg("p1") = 0.0f, py::arg("p2") = 0.0f, py::arg("p3") = 0.0f, py::arg("fire") = 0, py::arg("act") = 0,
        py::arg("k") = 1.0f, py::arg("q1") = 0.0f, py::arg("q2") = 0.0f, py::arg("q3") = 0.0f, py::arg("pc") = 0,
        py::arg("channels") = 1, py::arg("inner") = 1,
        "Reverse-time backward of neuron_forward (recomputes H from x and v0 per block; v0 = 0 means the "
        "constant v0_value); grad_v0 may be 0 (not wanted); grad_k_partial gets one float64 per block of "
        "NEURON_BLOCK neurons.");
}
FASTSPIKE_REGISTER(register_neuron);

// neuron2.cpp
void register_neuron2(pybind11::module_& m) {
  namespace py = pybind11;
  m.attr("NEURON2_BLOCK") = kNeuron2Block;
  m.def("neuron2_forward", &neuron2_forward, py::call_guard<py::gil_scoped_release>(), py::arg("x"), py::arg("v0"),
        py::arg("v0_value"), py::arg("u0"), py::arg("u0_value"), py::arg("spike"), py::arg("v_seq"), py::arg("u_seq"),
        py::arg("v_last"), py::arg("u_last"), py::arg("T"), py::arg("N"), py::arg("mode"), py::arg("v_threshold"),
        py::arg("v_reset"), py::arg("soft_reset"), py::arg("nthreads"), py::arg("p0"), py::arg("p1"), py::arg("p2"),
        py::arg("p3"), py::arg("p4"), py::arg("p5"), py::arg("p6"),
        "Fused multi-step two-state neuron forward on [T, N] float32 buffers (addresses); v_seq / u_seq may be "
        "0; v0 / u0 = 0 start every neuron at v0_value / u0_value.");
  m.def("neuron2_backward", &neuron2_backward, py::call_guard<py::gil_scoped_release>(), py::arg("grad_spike"),
        py::arg("grad_v_seq"), py::arg("grad_u_seq"), py::arg("grad_v_last"), py::arg("grad_u_last"), py::arg("x"),
        py::arg("v0"), py::arg("v0_value"), py::arg("u0"), py::arg("u0_value"), py::arg("grad_x"), py::arg("grad_v0"),
        py::arg("grad_u0"), py::arg("T"), py::arg("N"), py::arg("mode"), py::arg("v_threshold"), py::arg("v_reset"),
        py::arg("soft_reset"), py::arg("detach_reset"), py::arg("surrogate"), py::arg("alpha"), py::arg("beta"),
        py::arg("nthreads"), py::arg("p0"), py::arg("p1"), py::arg("p2"), py::arg("p3"), py::arg("p4"), py::arg("p5"),
        py::arg("p6"),
        "Reverse-time backward of neuron2_forward (recomputes H per block from x, v0, u0); grad_v_seq / "
        "grad_u_seq / grad_v_last / grad_u_last / grad_v0 / grad_u0 may be 0.");
}
FASTSPIKE_REGISTER(register_neuron2);

// pool.cpp
void register_pool(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("max_pool2d", &max_pool2d, py::call_guard<py::gil_scoped_release>(), py::arg("x"), py::arg("out"),
        py::arg("indices"), py::arg("index_bytes"), py::arg("planes"), py::arg("H"), py::arg("W"), py::arg("OH"),
        py::arg("OW"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
        py::arg("dh"), py::arg("dw"), py::arg("nthreads"),
        "Max pooling of float32 [planes, H, W] into [planes, OH, OW] with plane-offset indices (int16 or int32), "
        "torch's semantics (first maximum, NaN wins).");
  m.def("max_pool_backward", &max_pool_backward, py::call_guard<py::gil_scoped_release>(), py::arg("indices"),
        py::arg("index_bytes"), py::arg("g"), py::arg("gx"), py::arg("rows"), py::arg("L"), py::arg("cols"),
        py::arg("nthreads"),
        "gx [rows, cols] (float32, written) = scatter-add of g [rows, L] into the columns indices [rows, L] "
        "(int16 or int32, each in [0, cols)).");
}
FASTSPIKE_REGISTER(register_pool);

// psn.cpp
void register_psn(pybind11::module_& m) {
  namespace py = pybind11;
  m.attr("PSN_BLOCK") = kPsnBlock;
  m.def("psn_forward", &psn_forward, py::call_guard<py::gil_scoped_release>(), py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("spike"), py::arg("h"), py::arg("T"), py::arg("N"), py::arg("band"), py::arg("nthreads"),
        "S = (W X + B >= 0) on [T, N] float32 buffers (addresses); h (may be 0) receives W X + B.");
  m.def("psn_backward", &psn_backward, py::call_guard<py::gil_scoped_release>(), py::arg("x"), py::arg("grad_spike"),
        py::arg("w"), py::arg("b"), py::arg("grad_x"), py::arg("grad_w_partial"), py::arg("grad_b_partial"),
        py::arg("grad_h"), py::arg("T"), py::arg("N"), py::arg("band"), py::arg("nchunks"), py::arg("surrogate"),
        py::arg("alpha"), py::arg("beta"), py::arg("nthreads"),
        "Fused backward: grad_x [T, N]; float64 partials grad_w [nchunks, T, T] and grad_b [nchunks, T]. With a "
        "grad_h buffer [T, N] (else 0), dH is stored there instead and grad_w is left untouched (the caller's "
        "GEMM dH X^T).");
}
FASTSPIKE_REGISTER(register_psn);

// saved.cpp
void register_saved(pybind11::module_& m) {
  namespace py = pybind11;
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("compact_saved", &compact_saved, nogil, py::arg("x"), py::arg("n"), py::arg("bits"), py::arg("bytes"),
        py::arg("nthreads"),
        "float32 buffer (address, n) -> (kind, nonzeros): kind 1 if every value is 0 or 1, 2 if every value is "
        "an integer in [0, 255], else 0 (then the count is 0; reading stops once the kind is 0). The same pass "
        "writes the packed bits (ceil(n / 8) bytes) and the uint8 values (n bytes): keep bits for kind 1, bytes "
        "for kind 2.");
}
FASTSPIKE_REGISTER(register_saved);

// scan.cpp
void register_scan(pybind11::module_& m) {
  namespace py = pybind11;
  m.attr("SCAN_MAX_BLOCK") = kScanMaxBlock;
  m.def("scan_forward", &scan_forward, py::call_guard<py::gil_scoped_release>(), py::arg("a"), py::arg("b"),
        py::arg("h0"), py::arg("h"), py::arg("T"), py::arg("M"), py::arg("mode"), py::arg("a_scalar"), py::arg("block"),
        py::arg("nthreads"),
        "h[t] = a[t] h[t-1] + b[t] on [T, M] float32 buffers (addresses); a is 0 in mode 0, h0 may be 0.");
  m.def("scan_backward", &scan_backward, py::call_guard<py::gil_scoped_release>(), py::arg("a"), py::arg("h"),
        py::arg("h0"), py::arg("grad_out"), py::arg("grad_b"), py::arg("grad_a"), py::arg("grad_a_partial"),
        py::arg("grad_h0"), py::arg("T"), py::arg("M"), py::arg("mode"), py::arg("a_scalar"), py::arg("block"),
        py::arg("nthreads"),
        "Reversed scan of scan_forward's gradient; grad_a (mode 2), grad_a_partial (mode 1, float64 "
        "[ceil(M / block), T]) and grad_h0 may be 0.");
}
FASTSPIKE_REGISTER(register_scan);

// stbif.cpp
void register_stbif(pybind11::module_& m) {
  namespace py = pybind11;
  m.attr("STBIF_BLOCK") = kStbifBlock;
  m.def("stbif_forward", &stbif_forward, py::call_guard<py::gil_scoped_release>(), py::arg("x"), py::arg("q0"),
        py::arg("acc0"), py::arg("out"), py::arg("q"), py::arg("acc"), py::arg("event"), py::arg("T"), py::arg("N"),
        py::arg("q_threshold"), py::arg("pos_max"), py::arg("neg_min"), py::arg("nthreads"),
        "ST-BIF forward on [T, N] float32 buffers (addresses): the outputs event * q_threshold [T, N], and q, acc_q "
        "and the last event [N] after the last step.");
}
FASTSPIKE_REGISTER(register_stbif);

}  // namespace fastspike
