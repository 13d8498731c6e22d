#include "tests/testing/alloc_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

#if defined(SLUICE_TSAN)
#include <sanitizer/allocator_interface.h>
#endif

namespace {
thread_local uint64_t g_allocations = 0;
std::atomic<uint64_t> g_process_allocations{0};

void Count() noexcept {
  ++g_allocations;
  g_process_allocations.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

namespace sluice::testing {
uint64_t ThreadAllocations() noexcept { return g_allocations; }
uint64_t ProcessAllocations() noexcept { return g_process_allocations.load(std::memory_order_relaxed); }
}  // namespace sluice::testing

#if defined(SLUICE_TSAN)
// clang's TSan runtime is linked statically and defines operator new/delete itself, so they
// cannot be replaced here; its allocator's hook counts instead (every malloc as well as every
// operator new: a stricter count).
namespace {
void OnMalloc(const volatile void*, std::size_t) { Count(); }
void OnFree(const volatile void*) {}
[[maybe_unused]] const int g_hooks_installed = __sanitizer_install_malloc_and_free_hooks(OnMalloc, OnFree);
}  // namespace
#else
namespace {
void* CountedAlloc(std::size_t n) {
  Count();
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}

void* CountedAlignedAlloc(std::size_t n, std::align_val_t al) {
  Count();
  const auto a = static_cast<std::size_t>(al);
  const std::size_t size = (n + a - 1) / a * a;
  if (void* p = std::aligned_alloc(a, size == 0 ? a : size)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return CountedAlloc(n); }
void* operator new[](std::size_t n) { return CountedAlloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return CountedAlloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return CountedAlloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t al) { return CountedAlignedAlloc(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return CountedAlignedAlloc(n, al); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#endif  // SLUICE_TSAN
