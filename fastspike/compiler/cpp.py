"""C++ code generation for a traced neuron: a fused multi-step forward and backward over float32 [T, N] buffers.

The generated file includes no torch header (it compiles in about a second) and exports two ``extern "C"``
functions over arrays of raw pointers, called through ctypes:

* ``fs_forward(in, init, out, T, N, threads, store_seq)``: in = inputs [T, N], initial states [N], parameters
  ([1] or [N]); an initial state's pointer may be null, and then every neuron starts from ``init[j]``; out =
  outputs [T, N], final states [N] and, with store_seq, the states after every step [T, N].
* ``fs_backward(in, init, grad, out, T, N, threads, has_seq)``: grad = adjoints of the outputs [T, N], of the
  final states [N] and (has_seq) of the state sequence [T, N]; out = adjoints of the inputs [T, N], of the
  initial states [N] (a null pointer: not written) and of the parameters, per neuron [N] (the caller sums a
  scalar parameter's).

Layout and parallelism follow csrc/neuron.cpp: OpenMP over blocks of 256 neurons, the time loop inside, one
``#pragma omp simd`` loop over the block per step. The backward recomputes a block's states for every step into
a per-thread buffer (nothing but the outputs is saved by the forward), then runs the reverse-time loop.
"""
from __future__ import annotations

import ctypes
import hashlib
import threading
from typing import Callable, Dict, List, Sequence

from . import cache
from .ir import Graph, assignments

__all__ = ["generate", "load"]

_PRELUDE = r"""
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {
constexpr std::int64_t kBlock = 256;

inline float fs_bits(std::int32_t v) { return __builtin_bit_cast(float, v); }
// exp vectorised under `omp simd` (range reduction and a degree-6 polynomial, about 1 ulp); +inf past
// float's range and 0 below it, as std::exp.
inline float fs_exp(float x) {
  const float big = x > 88.72283f ? __builtin_inff() : 0.0f;
  const float c = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  const float n = std::floor(c * 1.44269504088896341f + 0.5f);
  float r = c - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float y = p * fs_bits((static_cast<std::int32_t>(n) + 127) << 23);
  return x > 88.72283f ? big : (x < -103.0f ? 0.0f : y);
}
inline float fs_sigmoid(float x) { return 1.0f / (1.0f + fs_exp(-x)); }
inline float fs_tanh(float x) { return 2.0f / (1.0f + fs_exp(-2.0f * x)) - 1.0f; }
inline float fs_pos(float x) { return x > 0.0f ? x : 0.0f; }
}  // namespace
"""


def _literal(value: float) -> str:
    text = repr(float(value))
    if "e" not in text and "." not in text:
        text += ".0"
    return f"{text}f"


def _expr(op: str, a: List[str], attr: tuple) -> str:
    simple = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
    if op in simple:
        return f"{a[0]} {simple[op]} {a[1]}"
    compare = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "eq": "==", "ne": "!="}
    if op in compare:
        return f"({a[0]} {compare[op]} {a[1]} ? 1.0f : 0.0f)"
    if op == "pow":
        return _pow(a[0], attr[0])
    return {
        "neg": lambda: f"-{a[0]}", "exp": lambda: f"fs_exp({a[0]})", "log": lambda: f"std::log({a[0]})",
        "sqrt": lambda: f"std::sqrt({a[0]})", "tanh": lambda: f"fs_tanh({a[0]})",
        "sigmoid": lambda: f"fs_sigmoid({a[0]})", "abs": lambda: f"std::fabs({a[0]})",
        "relu": lambda: f"fs_pos({a[0]})", "detach": lambda: a[0], "floor": lambda: f"std::floor({a[0]})",
        "minimum": lambda: f"({a[1]} < {a[0]} ? {a[1]} : {a[0]})",
        "maximum": lambda: f"({a[1]} > {a[0]} ? {a[1]} : {a[0]})",
        "where": lambda: f"({a[0]} != 0.0f ? {a[1]} : {a[2]})",
        "spike": lambda: f"({a[0]} >= 0.0f ? 1.0f : 0.0f)",
    }[op]()


def _pow(x: str, e: float) -> str:
    if e == int(e) and 1 <= abs(e) <= 4:
        prod = " * ".join([x] * int(abs(e)))
        return f"({prod})" if e > 0 else f"1.0f / ({prod})"
    if e == 0.5:
        return f"std::sqrt({x})"
    return f"fs_exp({_literal(e)} * std::log({x}))"


def _body(graph: Graph, roots: Sequence[int], leaf: Callable[[str, int], str], indent: str) -> List[str]:
    """``const float vI = ...;`` for every node the roots need, leaves through ``leaf(op, index)``."""
    return [f"{indent}const float v{i} = {rhs};" for i, rhs in assignments(graph, roots, leaf, _expr, _name)]


def _name(graph: Graph, i: int) -> str:
    value = graph.const_value(i)
    return _literal(value) if value is not None else f"v{i}"


def generate(graph: Graph, grads, scalar_params: Sequence[bool]) -> str:
    """The C++ source of one neuron (``grads``: the (inputs, states, params) adjoint nodes of ir.backward)."""
    NI, NS, NP, NO = graph.num_inputs, graph.num_states, graph.num_params, graph.num_outputs
    outs, news = graph.outputs[:NO], graph.outputs[NO:]
    g_in, g_st, g_p = grads
    ind = " " * 8

    def _start(j: int) -> str:  # an initial state: from its buffer, or init[j] for every neuron (a null buffer)
        return f"s0_{j} ? s0_{j}[n0 + i] : init[{j}]"

    def param(k: int) -> str:
        return f"p{k}s" if scalar_params[k] else f"p{k}[n0 + i]"

    def fwd_leaf(op: str, k: int) -> str:
        return {"input": lambda: f"x{k}[o + i]", "state": lambda: f"st{k}[i]", "param": lambda: param(k)}[op]()

    def bwd_leaf(op: str, k: int) -> str:
        if op == "state":
            return f"sb[{k} * kBlock + i]"
        if op == "seed":
            if k < NO:
                return f"gy{k}[o + i]"
            j = k - NO
            return f"(HAS_SEQ ? ca{j}[i] + gq{j}[o + i] : ca{j}[i])"
        return fwd_leaf(op, k)

    src = [_PRELUDE]
    unpack_in = ([f"  const float* __restrict x{k} = in[{k}];" for k in range(NI)]
                 + [f"  const float* __restrict s0_{j} = in[{NI + j}];" for j in range(NS)]
                 + [f"  const float* __restrict p{k} = in[{NI + NS + k}];" for k in range(NP)]
                 + [f"  const float p{k}s = p{k}[0];" for k in range(NP) if scalar_params[k]])
    block_open = ["    const std::int64_t n0 = b * kBlock;", "    const std::int64_t len = std::min(kBlock, N - n0);"]
    threads = ("  const std::int64_t nblocks = (N + kBlock - 1) / kBlock;\n"
               "  const int threads = (int)std::max<std::int64_t>(1, std::min<std::int64_t>({nthreads, nblocks, "
               "T * N / WORK}));")
    # -- forward
    src += ["template <bool STORE_SEQ>",
            "void forward_impl(const float* const* in, const float* init, float* const* out, std::int64_t T, "
            "std::int64_t N, int nthreads) {", *unpack_in]
    src += [f"  float* __restrict y{k} = out[{k}];" for k in range(NO)]
    src += [f"  float* __restrict sT{j} = out[{NO + j}];" for j in range(NS)]
    src += [f"  float* __restrict q{j} = STORE_SEQ ? out[{NO + NS + j}] : nullptr;" for j in range(NS)]
    src += [threads.replace("WORK", "(1 << 16)"), "#pragma omp parallel for schedule(static) num_threads(threads)",
            "  for (std::int64_t b = 0; b < nblocks; ++b) {", *block_open]
    src += [f"    float st{j}[kBlock];\n    for (std::int64_t i = 0; i < len; ++i) st{j}[i] = {_start(j)};"
            for j in range(NS)]
    src += ["    for (std::int64_t t = 0; t < T; ++t) {", "      const std::int64_t o = t * N + n0;",
            "#pragma omp simd", "      for (std::int64_t i = 0; i < len; ++i) {"]
    src += _body(graph, graph.outputs, fwd_leaf, ind)
    src += [f"{ind}y{k}[o + i] = {_name(graph, n)};" for k, n in enumerate(outs)]
    src += [f"{ind}if (STORE_SEQ) q{j}[o + i] = {_name(graph, n)};" for j, n in enumerate(news)]
    src += [f"{ind}st{j}[i] = {_name(graph, n)};" for j, n in enumerate(news)]
    src += ["      }", "    }"]
    src += [f"    for (std::int64_t i = 0; i < len; ++i) sT{j}[n0 + i] = st{j}[i];" for j in range(NS)]
    src += ["  }", "}", ""]
    # -- backward
    src += ["template <bool HAS_SEQ>",
            "void backward_impl(const float* const* in, const float* init, const float* const* grad, "
            "float* const* out, std::int64_t T, std::int64_t N, int nthreads) {", *unpack_in]
    src += [f"  const float* __restrict gy{k} = grad[{k}];" for k in range(NO)]
    src += [f"  const float* __restrict gT{j} = grad[{NO + j}];" for j in range(NS)]
    src += [f"  const float* __restrict gq{j} = HAS_SEQ ? grad[{NO + NS + j}] : nullptr;" for j in range(NS)]
    src += [f"  float* __restrict gx{k} = out[{k}];" for k in range(NI)]
    src += [f"  float* __restrict gs0_{j} = out[{NI + j}];" for j in range(NS)]
    src += [f"  float* __restrict gp{k} = out[{NI + NS + k}];" for k in range(NP)]
    src += [threads.replace("WORK", "(1 << 14)"), "#pragma omp parallel num_threads(threads)", "  {",
            f"    std::vector<float> sbuf(static_cast<std::size_t>(T) * {max(NS, 1)} * kBlock);",
            "#pragma omp for schedule(static)", "  for (std::int64_t b = 0; b < nblocks; ++b) {", *block_open]
    for j in range(NS):
        src += [f"    float st{j}[kBlock], ca{j}[kBlock];",
                f"    for (std::int64_t i = 0; i < len; ++i) {{ st{j}[i] = {_start(j)}; "
                f"ca{j}[i] = gT{j}[n0 + i]; }}"]
    for k in range(NP):
        src += [f"    float pa{k}[kBlock];", f"    for (std::int64_t i = 0; i < len; ++i) pa{k}[i] = 0.0f;"]
    src += ["    for (std::int64_t t = 0; t < T; ++t) {", "      const std::int64_t o = t * N + n0;",
            f"      float* __restrict sb = sbuf.data() + t * {NS} * kBlock;", "#pragma omp simd",
            "      for (std::int64_t i = 0; i < len; ++i) {"]
    src += [f"{ind}sb[{j} * kBlock + i] = st{j}[i];" for j in range(NS)]
    src += _body(graph, news, fwd_leaf, ind)
    src += [f"{ind}st{j}[i] = {_name(graph, n)};" for j, n in enumerate(news)]
    src += ["      }", "    }", "    for (std::int64_t t = T - 1; t >= 0; --t) {",
            "      const std::int64_t o = t * N + n0;",
            f"      const float* __restrict sb = sbuf.data() + t * {NS} * kBlock;", "#pragma omp simd",
            "      for (std::int64_t i = 0; i < len; ++i) {"]
    src += _body(graph, [*g_in, *g_st, *g_p], bwd_leaf, ind)
    src += [f"{ind}gx{k}[o + i] = {_name(graph, n)};" for k, n in enumerate(g_in)]
    src += [f"{ind}pa{k}[i] += {_name(graph, n)};" for k, n in enumerate(g_p)]
    src += [f"{ind}ca{j}[i] = {_name(graph, n)};" for j, n in enumerate(g_st)]
    src += ["      }", "    }"]
    src += [f"    if (gs0_{j}) for (std::int64_t i = 0; i < len; ++i) gs0_{j}[n0 + i] = ca{j}[i];"
            for j in range(NS)]
    src += [f"    for (std::int64_t i = 0; i < len; ++i) gp{k}[n0 + i] = pa{k}[i];" for k in range(NP)]
    src += ["  }", "  }", "}", ""]
    src += ['extern "C" int fs_forward(const float* const* in, const float* init, float* const* out, std::int64_t T, '
            "std::int64_t N, int threads, int store_seq) {",
            "  try { if (store_seq) forward_impl<true>(in, init, out, T, N, threads); "
            "else forward_impl<false>(in, init, out, T, N, threads); } catch (...) { return 1; }", "  return 0;", "}",
            'extern "C" int fs_backward(const float* const* in, const float* init, const float* const* grad, '
            "float* const* out, std::int64_t T, std::int64_t N, int threads, int has_seq) {",
            "  try { if (has_seq) backward_impl<true>(in, init, grad, out, T, N, threads); "
            "else backward_impl<false>(in, init, grad, out, T, N, threads); } catch (...) { return 1; }",
            "  return 0;", "}"]
    return "\n".join(src) + "\n"


_LOADED: Dict[str, ctypes.CDLL] = {}
_LOCK = threading.Lock()


def load(source: str) -> ctypes.CDLL:
    """The compiled library of ``source``: from this process, else from the disk cache, else compiled now."""
    key = hashlib.sha256(source.encode()).hexdigest()[:24]
    with _LOCK:
        lib = _LOADED.get(key)
        if lib is None:
            path = cache.cache_dir() / f"neuron_{key}.so"
            if not path.exists():
                cache.compile_shared(source, path)
            lib = ctypes.CDLL(str(path))
            vp = ctypes.c_void_p
            lib.fs_forward.argtypes = [vp, vp, vp, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_int]
            lib.fs_backward.argtypes = [vp, vp, vp, vp, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_int]
            lib.fs_forward.restype = lib.fs_backward.restype = ctypes.c_int
            _LOADED[key] = lib
        return lib
