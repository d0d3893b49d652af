// What the event-driven synapse kernels share (linear.cpp, conv2d_forward.cpp, conv2d_grad_weight.cpp).
//
// Conventions (fastspike/ops/synapse.py is the launcher and validates everything):
// * float32, contiguous buffers passed as addresses; at most `nthreads` OpenMP threads.
// * Spikes are packed as bits.h describes. A value outside {0, 1} makes a forward report "not binary"
//   (kNotBinary) so the caller can raise or fall back to the dense path; outputs are then left unwritten.
#pragma once
#include <cstdint>

#include "common.h"

namespace fastspike {

constexpr std::int64_t kTile = 64;  // outputs per weight tile of the linear kernels (SYNAPSE_TILE in Python)

// Status of an event-driven forward: done, or not run (out unwritten) because x is not binary or because it
// holds more than max_nnz spikes (the caller's density limit: the dense path is faster there).
constexpr int kNotBinary = 0, kDone = 1, kTooDense = 2;

// Shape of a conv2d: input [B, Cin, H, W], weight [Cout, Cin/G, KH, KW], output [B, Cout, OH, OW].
struct ConvShape {
  std::int64_t B, Cin, H, W, Cout, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, G;
  std::int64_t cin_g() const { return Cin / G; }
  std::int64_t cout_g() const { return Cout / G; }
};

}  // namespace fastspike
