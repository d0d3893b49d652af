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
//
// Huge pages still fault (one zeroed 2 MiB page at a time), and glibc returns every block of more than 32 MiB
// to the kernel when it is freed, so a training loop whose layers make the same large outputs every step paid
// those faults every step: a LIF forward+backward at [256, 32, 8192] took 213 ms, 137 ms of it in the kernel,
// against 130 ms with its two outputs reused. The block cache below keeps such blocks: an output is handed to
// torch through DLPack, torch calls the DLPack deleter when the storage dies, and the deleter puts the block
// (its pages still mapped) back into the cache, where the next output of the same rounded size takes it.
// Cached bytes are capped (least recently freed blocks go first) and can be released from Python.
//
// Medium outputs (from 128 KiB, where glibc starts to map blocks of their own and to unmap them when freed) fault
// the same way, one 4 KiB page at a time: a single-step LIF loop over 16 steps at [32, 4096] that kept its spikes
// (as a network does) faulted 2273 pages per loop and took 11.4 ms, 2.9 ms with no faults. They come from the
// cache as well, in page-aligned blocks rounded up to 64 KiB (no huge pages: a block is then at most 1/2 larger
// than the output, for outputs of 128 KiB).
#include <Python.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "registry.h"

namespace fastspike {
namespace {

constexpr std::uintptr_t kHugePage = std::uintptr_t(1) << 21;
// Outputs of at least kHugeMin bytes take huge-page blocks (multiples of kHugePage); smaller ones page-aligned
// blocks in multiples of kGranule. fastspike/ops/_alloc.py's HUGEPAGE_MIN_BYTES is the same number.
constexpr std::size_t kHugeMin = std::size_t(4) << 20;
constexpr std::size_t kGranule = std::size_t(64) << 10;
constexpr std::size_t kPageAlign = 4096;

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

// -- DLPack (the legacy, unversioned ABI that torch.from_dlpack takes as a "dltensor" capsule) ----------------
struct DLDevice {
  std::int32_t device_type;  // 1: CPU
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;  // 0 int, 1 uint, 2 float, 4 bfloat, 6 bool
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // nullptr: compact row-major
  std::uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};

// -- the block cache ----------------------------------------------------------------------------------------
struct Block {
  void* data;
  std::size_t bytes;  // a multiple of kHugePage (kGranule below kHugeMin)
};

struct BlockCache {
  std::mutex mutex;
  std::vector<Block> free;  // in the order they were freed: the front goes first when over the limit
  std::size_t cached = 0;   // bytes in `free`
  std::size_t limit = 0;    // the most bytes `free` may hold
};

// Never destroyed: torch may free a storage (and call the deleter) while the process exits.
BlockCache& cache() {
  static BlockCache* c = new BlockCache();
  return *c;
}

struct Owner {  // manager_ctx of an output: its block and the shape array DLPack points to
  Block block;
  std::vector<std::int64_t> shape;
};

// Takes the least recently freed blocks out of the cache until it is within its limit (the caller holds the
// mutex and frees what is returned after releasing it).
std::vector<Block> over_limit(BlockCache& c) {
  std::size_t drop = 0;
  std::vector<Block> evicted;
  while (c.cached > c.limit) {
    c.cached -= c.free[drop].bytes;
    evicted.push_back(c.free[drop++]);
  }
  c.free.erase(c.free.begin(), c.free.begin() + static_cast<std::ptrdiff_t>(drop));
  return evicted;
}

void release(Block b) {
  BlockCache& c = cache();
  std::vector<Block> evicted;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (b.bytes <= c.limit) {
      c.free.push_back(b);
      c.cached += b.bytes;
      b.data = nullptr;
      evicted = over_limit(c);
    }
  }
  if (b.data != nullptr) std::free(b.data);
  for (const Block& e : evicted) std::free(e.data);
}

void delete_managed(DLManagedTensor* m) {
  Owner* owner = static_cast<Owner*>(m->manager_ctx);
  release(owner->block);
  delete owner;
  delete m;
}

void destroy_capsule(PyObject* capsule) {
  // torch renames a capsule it took to "used_dltensor": only one that was never taken still owns its block
  if (!PyCapsule_IsValid(capsule, "dltensor")) return;
  auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
  if (m != nullptr) m->deleter(m);
}

// A "dltensor" capsule of a contiguous CPU tensor of `shape` and DLPack type (code, bits) whose memory comes
// from the cache when a block of the same rounded size is there (its old contents left in it: outputs are
// written in full by their kernel) and else from a new block: from kHugeMin bytes 2 MiB-aligned and advised to use
// huge pages, below that page-aligned.
pybind11::capsule cached_empty(const std::vector<std::int64_t>& shape, int code, int bits) {
  check(bits % 8 == 0 && bits > 0, "cached_empty: bits must be a positive multiple of 8");
  std::size_t nbytes = static_cast<std::size_t>(bits / 8);
  for (std::int64_t d : shape) {
    check(d >= 0, "cached_empty: negative dimension");
    nbytes *= static_cast<std::size_t>(d);
  }
  const bool huge = nbytes >= kHugeMin;
  const std::size_t granule = huge ? kHugePage : kGranule;
  const std::size_t bytes = std::max<std::size_t>(granule, (nbytes + granule - 1) & ~(granule - 1));
  Block block{nullptr, bytes};
  {
    BlockCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    for (std::size_t i = c.free.size(); i-- > 0;) {  // the most recently freed block of this size: warmest
      if (c.free[i].bytes == bytes) {
        block = c.free[i];
        c.free.erase(c.free.begin() + static_cast<std::ptrdiff_t>(i));
        c.cached -= bytes;
        break;
      }
    }
  }
  if (block.data == nullptr) {
    block.data = std::aligned_alloc(huge ? kHugePage : kPageAlign, bytes);
    if (block.data == nullptr) throw std::bad_alloc();
    if (huge) advise_hugepages(reinterpret_cast<std::uintptr_t>(block.data), bytes);
  }
  auto* owner = new Owner{block, shape};
  auto* m = new DLManagedTensor{};
  m->dl_tensor.data = block.data;
  m->dl_tensor.device = DLDevice{1, 0};
  m->dl_tensor.ndim = static_cast<std::int32_t>(shape.size());
  m->dl_tensor.dtype = DLDataType{static_cast<std::uint8_t>(code), static_cast<std::uint8_t>(bits), 1};
  m->dl_tensor.shape = owner->shape.data();
  m->dl_tensor.strides = nullptr;
  m->dl_tensor.byte_offset = 0;
  m->manager_ctx = owner;
  m->deleter = &delete_managed;
  return pybind11::capsule(m, "dltensor", &destroy_capsule);
}

// Sets the limit (bytes) and frees cached blocks beyond it (0 frees them all); returns the bytes still cached.
std::size_t set_cache_limit(std::size_t limit) {
  BlockCache& c = cache();
  std::vector<Block> evicted;
  std::size_t left;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.limit = limit;
    evicted = over_limit(c);
    left = c.cached;
  }
  for (const Block& e : evicted) std::free(e.data);
  return left;
}

std::size_t cached_bytes() {
  BlockCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.cached;
}

void register_memory(pybind11::module_& m) {
  m.def("advise_hugepages", &advise_hugepages, pybind11::arg("address"), pybind11::arg("nbytes"),
        "Ask for transparent huge pages on the 2 MiB-aligned interior of a not yet touched buffer; returns the "
        "bytes advised.");
  m.def("cached_empty", &cached_empty, pybind11::arg("shape"), pybind11::arg("code"), pybind11::arg("bits"),
        "A DLPack capsule of a contiguous CPU tensor (DLPack type code and bits) whose memory returns to fastspike's "
        "block cache when torch frees it; its contents are whatever the block held.");
  m.def("set_cache_limit", &set_cache_limit, pybind11::arg("limit"),
        "Cap the block cache at `limit` bytes, freeing the least recently cached blocks beyond it; returns the "
        "bytes still cached.");
  m.def("cached_bytes", &cached_bytes, "Bytes held by the block cache (freed outputs awaiting reuse).");
  m.attr("HUGEPAGE_MIN_BYTES") = kHugeMin;
  m.attr("CACHE_BLOCK_GRANULE") = kGranule;
}
FASTSPIKE_REGISTER(register_memory);

}  // namespace
}  // namespace fastspike
