// Memory advice for large CPU buffers that the kernels are about to fill.
//
// A fresh multi-megabyte buffer from malloc is mapped lazily: the first write to every 4 KiB page
// faults into the kernel, which zeroes the page. For the streaming kernels here that costs more than
// the kernel itself (a 64 MB output: 19 ms to allocate and fill against 6.4 ms to fill a buffer that
// already exists, on the 2-core VM this was written on). Asking for transparent huge pages
// (MADV_HUGEPAGE, which takes effect where /sys/kernel/mm/transparent_hugepage/enabled is 'always' or
// 'madvise') turns 512 faults into one: the same fill took 11.4 ms. PyTorch does the same for every
// allocation when THP_MEM_ALLOC_ENABLE=1 is set before it starts; this lets fastspike do it for its own
// outputs without a process-wide switch.
#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "registry.h"

namespace fastspike {
namespace {

constexpr std::uintptr_t kHugePage = std::uintptr_t(1) << 21;

// Advises the 2 MiB-aligned interior of [address, address + nbytes); returns the bytes advised (0 when
// the platform has no such advice, the range holds no whole huge page, or the kernel refused).
std::size_t advise_hugepages(std::uintptr_t address, std::size_t nbytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const std::uintptr_t begin = (address + kHugePage - 1) & ~(kHugePage - 1);
  const std::uintptr_t end = (address + nbytes) & ~(kHugePage - 1);
  if (end <= begin) return 0;
  if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) != 0) return 0;
  return end - begin;
#else
  (void)address;
  (void)nbytes;
  return 0;
#endif
}

void register_memory(pybind11::module_& m) {
  m.def("advise_hugepages", &advise_hugepages, pybind11::arg("address"), pybind11::arg("nbytes"),
        "Ask for transparent huge pages on the 2 MiB-aligned interior of a not yet touched buffer; returns the "
        "bytes advised.");
}
FASTSPIKE_REGISTER(register_memory);

}  // namespace
}  // namespace fastspike
