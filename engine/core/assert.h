// Invariant checks.
//
// SLUICE_CHECK is always on: it guards conditions whose failure would corrupt memory or state
// (a pool handed a foreign buffer, a batch overfilled). It is for programmer errors, never for
// bad input: malformed packets and configs are data, reported with a reason.
// SLUICE_DCHECK compiles away in release builds and may sit on the hot path.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace sluice::detail {
[[noreturn]] inline void CheckFailed(const char* expr, const char* file, int line) noexcept {
  std::fprintf(stderr, "sluice: check failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}
}  // namespace sluice::detail

#define SLUICE_CHECK(cond)                                                 \
  do {                                                                     \
    if (__builtin_expect(!(cond), 0)) {                                    \
      ::sluice::detail::CheckFailed(#cond, __FILE__, __LINE__);            \
    }                                                                      \
  } while (0)

#ifdef NDEBUG
#define SLUICE_DCHECK(cond) \
  do {                      \
  } while (0)
#else
#define SLUICE_DCHECK(cond) SLUICE_CHECK(cond)
#endif

#define SLUICE_LIKELY(x) __builtin_expect(!!(x), 1)
#define SLUICE_UNLIKELY(x) __builtin_expect(!!(x), 0)
