// Counters for the data path: one writer, many readers.
//
// Each worker owns its counters and bumps them once per batch (a stage keeps a set per graph
// thread that may run it: WorkerCounterSets); readers (stats export, tests) sum them off the
// hot path. The store is a relaxed load + add + store, which compiles to a plain add: no lock
// prefix, no shared cache line between workers. It is still an atomic, so a concurrent reader
// is defined behaviour (and ThreadSanitizer-clean) and sees a value that was true at some
// recent moment.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/core/assert.h"

namespace sluice {

class Counter {
 public:
  Counter() = default;
  // A copy is a snapshot: what a reader sums per-worker counters into.
  Counter(const Counter& o) noexcept : v_(o.Load()) {}
  Counter& operator=(const Counter& o) noexcept {
    v_.store(o.Load(), std::memory_order_relaxed);
    return *this;
  }

  void Add(uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t Load() const noexcept { return v_.load(std::memory_order_relaxed); }
  void Reset() noexcept { v_.store(0, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// A counter's documentation: every counter a stage declares has a name and a description.
struct CounterInfo {
  std::string_view name;
  std::string_view description;
};

// Declaring a counter table: a list macro X(Enumerator, "name", "description"), as in
// drop_reason.h, expands into the enum and the documentation table with these two helpers:
//   enum class ParseCounter : uint8_t { SLUICE_PARSE_COUNTERS(SLUICE_COUNTER_ENUMERATOR) };
//   inline constexpr std::array kParseCounterTable = {SLUICE_PARSE_COUNTERS(SLUICE_COUNTER_INFO)};
#define SLUICE_COUNTER_ENUMERATOR(e, name, desc) e,
#define SLUICE_COUNTER_INFO(e, name, desc) ::sluice::CounterInfo{name, desc},

// A closed set of counters indexed by an enum whose table is `Table` (size N).
template <typename Enum, std::size_t N>
class CounterSet {
 public:
  void Add(Enum e, uint64_t n = 1) noexcept { c_[static_cast<std::size_t>(e)].Add(n); }
  uint64_t Load(Enum e) const noexcept { return c_[static_cast<std::size_t>(e)].Load(); }
  uint64_t LoadAt(std::size_t i) const noexcept { return c_[i].Load(); }
  static constexpr std::size_t size() noexcept { return N; }
  void Add(const CounterSet& o) noexcept {
    for (std::size_t k = 0; k < N; ++k) c_[k].Add(o.c_[k].Load());
  }

 private:
  std::array<Counter, N> c_;
};

// A stage's CounterSet once per worker (graph thread) that may run it, each on cache lines of
// its own, as VPP keeps node counters per worker: a shard's stage runs on whichever thread
// brings the batch, and a worker bumps only its own set (Batch::worker() says which), so no
// counter line moves between cores. Readers sum them.
template <typename Enum, std::size_t N>
class WorkerCounterSets {
 public:
  explicit WorkerCounterSets(uint32_t workers) : sets_(std::max<uint32_t>(workers, 1)) {}

  CounterSet<Enum, N>& operator[](uint32_t worker) noexcept {
    SLUICE_DCHECK(worker < sets_.size());
    return sets_[worker].set;
  }
  uint32_t workers() const noexcept { return static_cast<uint32_t>(sets_.size()); }
  CounterSet<Enum, N> Sum() const noexcept {
    CounterSet<Enum, N> sum;
    for (const Slot& s : sets_) sum.Add(s.set);
    return sum;
  }

 private:
  struct alignas(64) Slot {
    CounterSet<Enum, N> set;
  };
  std::vector<Slot> sets_;
};

// Bumping: plain integers bumped in the per-packet loop and added to the stage's CounterSet
// once at the end of the batch (one relaxed store per counter that moved, instead of one per
// packet).
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
