#include "registry.h"

#include <omp.h>

namespace fastspike {
std::vector<Registrar>& registrars() {
  static std::vector<Registrar> all;
  return all;
}
}  // namespace fastspike

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastspike CPU kernels (torch-free C++17, OpenMP)";
  m.def("omp_max_threads", []() { return omp_get_max_threads(); });
  for (auto r : fastspike::registrars()) r(m);
}
