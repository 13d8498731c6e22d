// How a stage declares and bumps its counters.
//
// Declaring: a list macro X(Enumerator, "name", "description"), as in drop_reason.h, expands
// into the enum and the documentation table with the two helpers below:
//   enum class ParseCounter : uint8_t { SLUICE_PARSE_COUNTERS(SLUICE_COUNTER_ENUMERATOR) };
//   inline constexpr std::array kParseCounterTable = {SLUICE_PARSE_COUNTERS(SLUICE_COUNTER_INFO)};
// Bumping: BatchCounts, plain integers bumped in the per-packet loop and added to the stage's
// CounterSet once at the end of the batch (one relaxed store per counter that moved, instead
// of one per packet).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "engine/core/counter.h"

#define SLUICE_COUNTER_ENUMERATOR(e, name, desc) e,
#define SLUICE_COUNTER_INFO(e, name, desc) ::sluice::CounterInfo{name, desc},

namespace sluice {

template <typename Enum, std::size_t N>
struct BatchCounts {
  std::array<uint64_t, N> v{};

  void Bump(Enum e, uint64_t n = 1) noexcept { v[static_cast<std::size_t>(e)] += n; }
  uint64_t operator[](Enum e) const noexcept { return v[static_cast<std::size_t>(e)]; }
  void AddTo(CounterSet<Enum, N>& set) const noexcept {
    for (std::size_t k = 0; k < N; ++k) {
      if (v[k] != 0) set.Add(static_cast<Enum>(k), v[k]);
    }
  }
};

}  // namespace sluice
