// Per-stage and per-run counters, in the spirit of VPP's `show runtime` and `show errors`.
//
// StageStats: one stage's calls, packets, cycles (rdtsc), and the packets it sent to kDrop or
// kSkip, by reason. RunStage bumps it once per batch.
//
// RunStats: what happened to every packet that entered (packets_in and bytes_in are counted
// where packets are read, the rest where batches retire). Its invariant, checked by tests and
// reported by `replay`:
//   packets_in == accepted + rewritten + sum(dropped) + sum(skipped)
//
// The offline graph keeps a set of each per arena thread, each with that thread as its one
// writer, and sums them for its readers (Add), as VPP keeps its node counters per worker. The
// inline graph keeps one set per queue: its StageStats are written by whichever thread runs
// the queue's stages (one batch at a time), its RunStats by the queue's I/O thread (packets_in,
// bytes_in) and where its batches retire (the rest). A copy is a snapshot.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "engine/core/counter.h"
#include "engine/packet/drop_reason.h"
#include "engine/stats/histogram.h"

namespace sluice {

using ReasonCounters = std::array<Counter, kNumDropReasons>;

inline void AddReasons(ReasonCounters& to, const ReasonCounters& from) noexcept {
  for (std::size_t r = 0; r < to.size(); ++r) to[r].Add(from[r].Load());
}

// Each on cache lines of its own: the shards' stages run side by side on different threads.
struct alignas(64) StageStats {
  Counter calls;    // batches processed
  Counter packets;  // packets in those batches
  Counter cycles;   // rdtsc cycles inside Process()
  ReasonCounters ended;  // packets this stage dropped or skipped, by reason

  void Add(const StageStats& o) noexcept {
    calls.Add(o.calls.Load());
    packets.Add(o.packets.Load());
    cycles.Add(o.cycles.Load());
    AddReasons(ended, o.ended);
  }
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

  void Add(const RunStats& o) noexcept {
    for (auto [to, from] : {std::pair{&packets_in, &o.packets_in}, std::pair{&bytes_in, &o.bytes_in},
                            std::pair{&accepted, &o.accepted}, std::pair{&rewritten, &o.rewritten},
                            std::pair{&bytes_out, &o.bytes_out}}) {
      to->Add(from->Load());
    }
    AddReasons(dropped, o.dropped);
    AddReasons(skipped, o.skipped);
    latency_ns.Add(o.latency_ns);
  }

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
