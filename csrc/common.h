// What the kernel sources share: raw buffers from addresses, argument checks, thread counts, prefetching, scratch
// memory and exceptions inside OpenMP regions. Free of Python and its binding library: the kernels compile without
// them, and only the binding sources (registry.h) pay for those headers.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace fastspike {

// Raw buffers cross the boundary as integer addresses (tensor.data_ptr()); the Python launcher owns
// validation (dtype, contiguity, device). These helpers turn them back into typed pointers.
template <typename T>
inline T* ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

inline void check(bool cond, const std::string& msg) {
  if (!cond) throw std::invalid_argument(msg);
}

// Kernels that walk a [T, N] buffer one strip of neurons at a time read a short run of each row (1 KiB for a strip of
// 256), N floats after the run of the step before: a pattern the hardware prefetchers, which follow streams within
// a page, do not foresee. Such a kernel prefetches the rows it reads (and writes) kRowsAhead steps ahead; a hint
// only, results are unchanged. LIF at [64, 16 x 4096] on a Zen 3 EPYC: forward -14%, backward -12..16%
// (docs/cpu_kernels.md, which also says where it did not pay).
constexpr std::int64_t kRowsAhead = 4;
inline void prefetch_row(const float* p, std::int64_t len) {
  for (std::int64_t i = 0; i < len; i += 16) __builtin_prefetch(p + i, 0, 3);
}
inline void prefetch_row_for_write(const float* p, std::int64_t len) {
  for (std::int64_t i = 0; i < len; i += 16) __builtin_prefetch(p + i, 1, 3);
}

// Threads used by a kernel: never more than asked (torch.get_num_threads()), never more than work items.
inline int clamp_threads(int requested, std::int64_t work_items) {
  if (requested < 1) requested = 1;
  if (work_items < requested) requested = static_cast<int>(work_items < 1 ? 1 : work_items);
  return requested;
}

// The same, and at least `min_elements_per_thread` elements of work per thread: waking an OpenMP team
// costs tens of microseconds, more than a small kernel itself (measured: a [64, 1024] neuron forward
// takes 10 us on one thread and 45 us on two).
inline int clamp_threads(int requested, std::int64_t work_items, std::int64_t elements,
                         std::int64_t min_elements_per_thread) {
  const std::int64_t by_size = elements / (min_elements_per_thread < 1 ? 1 : min_elements_per_thread);
  const int n = clamp_threads(requested, work_items);
  return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(n, by_size)));
}

// Scratch memory that outlives the call: a kernel's temporary buffers, kept per thread (OpenMP's pool
// threads persist) and per Tag, grown when a call needs more, never zeroed. Fresh pages fault on first
// touch, and on the VMs measured here that costs about 1 us per 4 KiB page: a conv2d forward on
// [32, 128, 32, 32] spent a third of its time faulting in its temporaries. Tag: any distinct type per
// buffer of a kernel, e.g. `struct ConvStage;`. At most one live pointer per (Tag, thread).
// Exception safe: the capacity is recorded only once an allocation has succeeded, so after a std::bad_alloc
// the buffer is empty (capacity 0) and the next call allocates again. Inside an OpenMP parallel region, call
// it through ThreadErrors::run: an exception must not leave the region.
template <typename Tag, typename T>
T* scratch(std::size_t n) {
  static thread_local std::unique_ptr<T[]> buf;
  static thread_local std::size_t cap = 0;
  if (n > cap) {
    constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max() / sizeof(T);
    if (n > kMax - kMax / 5) throw std::bad_alloc();  // n + n / 4 elements would not fit size_t
    cap = 0;                                          // the buffer is gone until a new one exists
    buf.reset();                                      // release first: never hold both
    try {
      buf.reset(new T[n + n / 4]);
      cap = n + n / 4;
    } catch (const std::bad_alloc&) {
      buf.reset(new T[n]);  // no room for the headroom: exactly n, or bad_alloc again (capacity still 0)
      cap = n;
    }
  }
  return buf.get();
}

// Exceptions (std::bad_alloc from scratch memory or a std::vector) must not leave an OpenMP parallel region:
// the program would terminate. Each thread runs its throwing part through run(), which keeps the first
// exception and returns false; the region then skips its work (every thread still meets the same worksharing
// constructs) and, after the region, rethrow() raises the exception on the calling thread.
class ThreadErrors {
 public:
  template <typename F>
  bool run(F&& f) noexcept {
    try {
      f();
      return true;
    } catch (...) {
      keep(std::current_exception());
      return false;
    }
  }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  void keep(std::exception_ptr e) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!first_) first_ = std::move(e);
    failed_.store(true, std::memory_order_relaxed);
  }
  std::mutex mutex_;
  std::exception_ptr first_;
  std::atomic<bool> failed_{false};
};

// Compile-time dispatch: f(std::true_type{}) or f(std::false_type{}) by a run-time flag; IntC<V> names an int constant.
template <typename F>
void dispatch_bool(bool flag, F&& f) {
  if (flag) f(std::true_type{});
  else f(std::false_type{});
}

template <int V>
using IntC = std::integral_constant<int, V>;

}  // namespace fastspike
