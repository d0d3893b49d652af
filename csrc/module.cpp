// The extension module fastspike._C: calls every registered binding (registry.h) and reports how it was built.
#include <omp.h>

#include <string>

#include "registry.h"
#include "simd.h"

#ifndef FASTSPIKE_MODULE_NAME  // set by CMakeLists.txt: _C, or _C_avx2 / _C_avx512 in a portable build
#define FASTSPIKE_MODULE_NAME _C
#endif
#define FASTSPIKE_STR_(x) #x
#define FASTSPIKE_STR(x) FASTSPIKE_STR_(x)

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

// The widest branch of simd.h this CPU runs, as the CPU reports it (the compiled one is simd::kIsa), by the
// x86-64 levels a portable build's variants are compiled for (CMakeLists.txt): avx512 needs x86-64-v4 (AVX-512
// F/BW/CD/DQ/VL), avx2 x86-64-v3 (AVX2, FMA, BMI1/2, F16C, ...). libgcc's checks include the OS's support for
// the wider registers (XCR0).
std::string cpu_isa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2";
#else
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "avx512";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2") &&
      __builtin_cpu_supports("f16c"))
    return "avx2";
#endif
  return "portable";
#elif defined(__aarch64__)
  return "neon";  // Advanced SIMD is part of every AArch64 CPU
#else
  return "portable";
#endif
}

pybind11::dict build_info() {
  pybind11::dict d;
  d["module"] = "fastspike." FASTSPIKE_STR(FASTSPIKE_MODULE_NAME);
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

PYBIND11_MODULE(FASTSPIKE_MODULE_NAME, m) {
  m.doc() = "fastspike CPU kernels (torch-free C++17, OpenMP)";
  m.def("omp_max_threads", []() { return omp_get_max_threads(); });
  m.def("build_info", &fastspike::build_info,
        "How this module was built: module (its name: fastspike._C, or a portable build's fastspike._C_avx2 / "
        "fastspike._C_avx512), isa (the csrc/simd.h branch compiled in: avx512, avx2, neon or portable), "
        "vector_bits, cpu_isa (the widest branch this CPU could run), fma, flags (fastspike's compiler flags), "
        "compiler, target_processor, openmp (the _OPENMP version).");
  for (auto r : fastspike::registrars()) r(m);
}
