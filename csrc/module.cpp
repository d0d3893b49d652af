// The extension module fastspike._C: calls every registered binding (registry.h) and reports how it was built.
#include <omp.h>

#include <string>

#include "registry.h"
#include "simd.h"

#ifndef FASTSPIKE_BUILD_FLAGS  // set by CMakeLists.txt
#define FASTSPIKE_BUILD_FLAGS "unknown"
#define FASTSPIKE_BUILD_COMPILER "unknown"
#define FASTSPIKE_BUILD_PROCESSOR "unknown"
#endif

namespace fastspike {
std::vector<Registrar>& registrars() {
  static std::vector<Registrar> all;
  return all;
}

namespace {

// The widest branch of simd.h this CPU could run, as the CPU reports it (the compiled one is simd::kIsa).
std::string cpu_isa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return "avx512";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
  return "portable";
#elif defined(__aarch64__)
  return "neon";  // Advanced SIMD is part of every AArch64 CPU
#else
  return "portable";
#endif
}

pybind11::dict build_info() {
  pybind11::dict d;
  d["isa"] = simd::kIsa;
  d["vector_bits"] = simd::kWidth * 32;
  d["cpu_isa"] = cpu_isa();
#if defined(FASTSPIKE_HAS_FMA)
  d["fma"] = true;
#else
  d["fma"] = false;
#endif
  d["flags"] = FASTSPIKE_BUILD_FLAGS;
  d["compiler"] = FASTSPIKE_BUILD_COMPILER;
  d["target_processor"] = FASTSPIKE_BUILD_PROCESSOR;
  d["openmp"] = _OPENMP;
  return d;
}

}  // namespace
}  // namespace fastspike

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastspike CPU kernels (torch-free C++17, OpenMP)";
  m.def("omp_max_threads", []() { return omp_get_max_threads(); });
  m.def("build_info", &fastspike::build_info,
        "How fastspike._C was built: isa (the csrc/simd.h branch compiled in: avx512, avx2, neon or portable), "
        "vector_bits, cpu_isa (the widest branch this CPU could run), fma, flags (fastspike's compiler flags), "
        "compiler, target_processor, openmp (the _OPENMP version).");
  for (auto r : fastspike::registrars()) r(m);
}
