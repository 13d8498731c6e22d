// What the graph needs of a stage, and how it calls one.
//
// A stage is a plain object with one hot method, `void Process(Batch&) noexcept` (the brief's
// `process(Batch&)`): no allocation, no exceptions, no locks, no I/O, no virtual call per
// packet. (One exception, per batch and not per packet: classify's NatPeers lock, which
// only other shards' ICMP errors contend for.) It works on the slots whose next() names it
// and leaves every other slot alone.
//
// The graph holds stages through StageRef: an object pointer and a function pointer, bound once
// at construction. That is the one indirect call per batch per stage; nothing per packet.
#pragma once

#include <concepts>

#include "engine/core/limits.h"
#include "engine/packet/batch.h"

namespace sluice {

template <typename S>
concept Stage = requires(S& s, Batch& b) {
  { s.Process(b) } noexcept;
};

class StageRef {
 public:
  template <Stage S>
  static StageRef Of(S& stage) noexcept {
    uint32_t workers = kMaxThreads;  // a stage without per-worker state serves any number
    if constexpr (requires { { stage.workers() } -> std::convertible_to<uint32_t>; }) workers = stage.workers();
    return StageRef(&stage, [](void* self, Batch& b) noexcept { static_cast<S*>(self)->Process(b); }, workers);
  }

  void Process(Batch& b) const noexcept { fn_(obj_, b); }
  // How many graph threads may run the stage: batches it is given have worker() below this
  // (a stage with per-worker counters has one set per worker; WorkerCounterSets).
  uint32_t workers() const noexcept { return workers_; }

 private:
  using Fn = void (*)(void*, Batch&) noexcept;
  StageRef(void* obj, Fn fn, uint32_t workers) noexcept : obj_(obj), fn_(fn), workers_(workers) {}
  void* obj_;
  Fn fn_;
  uint32_t workers_;
};

// A stage that does nothing: what the graph-overhead benchmark runs, and the classify or
// rewrite step of a pipeline configured without rules. It moves `from` slots to `to`.
template <Next kFrom, Next kTo>
struct PassStage {
  void Process(Batch& b) noexcept {
    for (uint32_t i = 0; i < b.size(); ++i) {
      if (b.next(i) == kFrom) b.set_next(i, kTo);
    }
  }
};

}  // namespace sluice
