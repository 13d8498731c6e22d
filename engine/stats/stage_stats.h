// Per-stage and per-run counters, in the spirit of VPP's `show runtime` and `show errors`.
//
// StageStats belongs to one graph node instance (one stage of one shard): calls, packets,
// cycles (rdtsc), and the packets this stage sent to kDrop or kSkip, by reason. The node
// wrapper bumps it once per batch; nobody else writes it.
//
// RunStats belongs to the node that retires batches (one writer): what happened to every
// packet that entered. Its invariant, checked by tests and reported by `replay`:
//   packets_in == accepted + rewritten + sum(dropped) + sum(skipped)
#pragma once

#include <array>
#include <cstdint>

#include "engine/core/counter.h"
#include "engine/packet/drop_reason.h"
#include "engine/stats/histogram.h"

namespace sluice {

using ReasonCounters = std::array<Counter, kNumDropReasons>;

struct StageStats {
  Counter calls;    // batches processed
  Counter packets;  // packets in those batches
  Counter cycles;   // rdtsc cycles inside Process()
  ReasonCounters ended;  // packets this stage dropped or skipped, by reason
};

struct RunStats {
  Counter packets_in;
  Counter bytes_in;
  Counter accepted;   // returned unmodified after classification
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
