// Time sources for the data path.
//
// NowNs(): CLOCK_MONOTONIC in nanoseconds via steady_clock (about 28 ns a call here, see
// ../shared/MEASURE.md); used for per-packet latency, stamped once per batch, not per packet.
// ReadTsc(): the cycle counter, about 12 ns; used for per-stage cycle counters.
#pragma once

#include <chrono>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace sluice {

inline uint64_t NowNs() noexcept {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

inline uint64_t ReadTsc() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#else
  return NowNs();
#endif
}

}  // namespace sluice
