// Self-registration of bindings: each binding source (bindings.cpp, memory.cpp) declares
//   void register_xxx(pybind11::module_& m) { m.def(...); }
//   FASTSPIKE_REGISTER(register_xxx);
// and module.cpp calls every registered function when Python imports fastspike._C. Only these sources include
// pybind11: its headers cost ~7 s of compile time per source (pybind11 3 emits its dispatcher and internals in every
// translation unit), which the kernel sources (common.h, api.h) do not pay.
#pragma once
#include <pybind11/pybind11.h>

#include <vector>

#include "common.h"

namespace fastspike {

using Registrar = void (*)(pybind11::module_&);

std::vector<Registrar>& registrars();

struct Register {
  explicit Register(Registrar r) { registrars().push_back(r); }
};

}  // namespace fastspike

#define FASTSPIKE_CONCAT_(a, b) a##b
#define FASTSPIKE_CONCAT(a, b) FASTSPIKE_CONCAT_(a, b)
#define FASTSPIKE_REGISTER(fn) static ::fastspike::Register FASTSPIKE_CONCAT(fastspike_register_, fn)(fn)
