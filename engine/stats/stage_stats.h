// Per-stage and per-run counters, in the spirit of VPP's `show runtime` and `show errors`.
//
// StageStats belongs to one graph node instance (one stage of one shard): calls, packets,
// cycles (rdtsc), and the packets this stage sent to kDrop or kSkip, by reason. The node
// wrapper bumps it once per batch; nobody else writes it.
//
// RunStats belongs to the node that retires batches (one writer; packets_in and bytes_in are
// the source's): what happened to every packet that entered. Its invariant, checked by tests
// and reported by `replay`:
//   packets_in == accepted + rewritten + sum(dropped) + sum(skipped)
#pragma once

#include <array>
#include <cstdint>

#include "engine/core/counter.h"
#include "engine/packet/drop_reason.h"
#include "engine/stats/histogram.h"

namespace sluice {

using ReasonCounters = std::array<Counter, kNumDropReasons>;

// Each on cache lines of its own: the shards' stages run side by side on different threads.
struct alignas(64) StageStats {
  Counter calls;    // batches processed
  Counter packets;  // packets in those batches
  Counter cycles;   // rdtsc cycles inside Process()
  ReasonCounters ended;  // packets this stage dropped or skipped, by reason
};

struct alignas(64) RunStats {
  Counter packets_in;
  Counter bytes_in;
  // The source writes the two above; what follows is written where batches retire, often on
  // another thread at the same moment, so it starts a cache line of its own.
  alignas(64) Counter accepted;   // returned unmodified after classification
  Counter rewritten;  // returned with changed bytes or mark
  ReasonCounters dropped;
  ReasonCounters skipped;  // returned unmodified without classification
  Counter bytes_out;
  LatencyHistogram latency_ns;  // receive to verdict, per packet

  uint64_t Dropped() const noexcept {
    uint64_t n = 0;
    for (const Counter& c : dropped) n += c.Load();
    return n;
  }
  uint64_t Skipped() const noexcept {
    uint64_t n = 0;
    for (const Counter& c : skipped) n += c.Load();
    return n;
  }
  // True when every packet that came in is accounted for exactly once.
  bool Balanced() const noexcept {
    return packets_in.Load() == accepted.Load() + rewritten.Load() + Dropped() + Skipped();
  }
};

}  // namespace sluice
