#pragma once
// Allocation counting for the tests that promise "no allocation in steady
// state": every allocation of the process goes through these replacements,
// and each thread counts its own, so a rank (a thread of an InProcWorld)
// measures exactly what its own calls allocate. The replacements are
// definitions: include this header from one source file of a test program.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace {
thread_local std::uint64_t t_allocations = 0;
thread_local std::uint64_t t_allocated_bytes = 0;
// Every thread's, for code that allocates on threads of its own (a
// background context).
std::atomic<std::uint64_t> g_allocations{0};

void* counted_malloc(std::size_t n) noexcept {
  ++t_allocations;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  t_allocated_bytes += n;
  return std::malloc(n ? n : 1);
}
void* counted_aligned(std::size_t n, std::align_val_t align) noexcept {
  ++t_allocations;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  t_allocated_bytes += n;
  const std::size_t a = std::max(static_cast<std::size_t>(align), sizeof(void*));
  void* p = nullptr;
  return posix_memalign(&p, a, n ? n : 1) == 0 ? p : nullptr;
}
// Out of line, so that GCC does not see operator delete call free() on what
// operator new returned and warn (-Wmismatched-new-delete) at every inlined use.
[[gnu::noinline]] void release(void* p) noexcept { std::free(p); }
void* or_throw(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return or_throw(counted_malloc(n)); }
void* operator new[](std::size_t n) { return or_throw(counted_malloc(n)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void* operator new(std::size_t n, std::align_val_t a) { return or_throw(counted_aligned(n, a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return or_throw(counted_aligned(n, a)); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_aligned(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_aligned(n, a);
}
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }

namespace {
// How many allocations this thread made while call() ran.
[[maybe_unused]] std::uint64_t allocations_in(const auto& call) {
  const std::uint64_t before = t_allocations;
  call();
  return t_allocations - before;
}
}  // namespace
