// The gate's canary: a known slowdown in one stage, compiled only into sluice_gate_canary
// (SLUICE_PERF_CANARY=1), never into sluice or the plain gate. The perf_gate_catches_canary
// test runs the gate on it and asserts that it fails, naming the rewrite workloads: the proof
// that a regression of this size is caught.
//
// The slowdown is a plausible one: after the rewrite stage, the first 24 bytes of every packet
// in the batch are hashed again (as if someone re-derived a flow key after rewriting). About 20
// instructions a packet: 5–8 % on the rewrite/* workloads (perf/README.md has the figures),
// about 1 % on the replay, where rewrite is a small part of the work.
#pragma once

#include <cstdint>
#include <cstring>

#include "engine/packet/batch.h"
#include "engine/stages/rewrite/rewrite_stage.h"

namespace sluice::gate {

#if SLUICE_PERF_CANARY
inline constexpr bool kCanary = true;

class CanaryRewriteStage {
 public:
  explicit CanaryRewriteStage(uint32_t workers = 1) : inner_(workers) {}
  void Process(Batch& b) noexcept {
    inner_.Process(b);
    uint64_t h = 0;
    for (uint32_t i = 0; i < b.size(); ++i) {
      const uint8_t* p = b.packet(i).data();
      for (int k = 0; k < 24; k += 8) {
        uint64_t w;
        std::memcpy(&w, p + k, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
      }
      h ^= h >> 29;
    }
    sink_ = h;
  }
  RewriteCounters counters() const noexcept { return inner_.counters(); }
  uint32_t workers() const noexcept { return inner_.workers(); }

 private:
  RewriteStage inner_;
  volatile uint64_t sink_ = 0;
};
using GateRewriteStage = CanaryRewriteStage;
#else
inline constexpr bool kCanary = false;
using GateRewriteStage = RewriteStage;
#endif

}  // namespace sluice::gate
