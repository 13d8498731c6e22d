// Floods of new flows for the NAPT flow table: what perf/flood/napt_flood and
// tests/reliability/flood_test.cpp push through translate-source-port.
//
// Flow i is UDP 198.18.0.0/15 → 198.19.0.1:443, laid out so distinct i are distinct 5-tuples
// (i < kMaxFloodFlows): source address 198.18.0.0 + (i mod 2^17), source port 1024 + i / 2^17.
// Packets are raw IPv4, 46 bytes, both checksums right. Deterministic for a seed.
//
// Colliding flows: an attacker who knows the flow table's seed can search for 5-tuples whose
// key hash lands in one narrow window of slots. CollidingFlows does that search: flows whose
// FlowTable::KeyHash under `options` has its low 20 bits below `window`, so in any table of at
// most 2^20 slots (slot = hash & mask) they all start probing in slots [0, window) and pile up
// in one cluster. Cost: about 2^20 / window hash evaluations per flow found.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/graph/endpoints.h"
#include "engine/rules/flow_table.h"

namespace sluice::flood {

inline constexpr uint64_t kMaxFloodFlows = uint64_t{1} << 17 << 16;  // addresses × ports
inline constexpr uint32_t kFloodPacketBytes = 46;
inline constexpr uint32_t kCollisionHashBits = 20;

struct Flow {
  uint32_t src = 0, dst = 0;  // host order
  uint16_t sport = 0, dport = 0;
};

Flow FlowAt(uint64_t i);
// The key classify builds for the flow's packets (orig direction; TranslationKey).
FlowKey KeyOf(const Flow& f);
// Writes the flow's packet (kFloodPacketBytes) at out.
void WritePacket(const Flow& f, uint8_t* out);

// n flows, found by scanning i = start, start + 1, ..., whose keys hash below `window` in
// the low kCollisionHashBits bits under options' seed.
std::vector<Flow> CollidingFlows(const FlowTableOptions& options, uint32_t n, uint32_t window, uint64_t start = 0);

// `packets` packets, each of a flow drawn uniformly (xorshift from `seed`) from `flows`.
// Calls `progress(packets_so_far)` every `progress_every` packets, from the reading thread.
class FloodSource final : public PacketSource {
 public:
  FloodSource(std::vector<Flow> flows, uint64_t packets, uint64_t seed);
  bool ReadBurst(PoolCache& cache, Batch& batch, uint32_t max) override;

  void OnProgress(uint64_t every, void (*fn)(uint64_t done, void* ctx), void* ctx) {
    progress_every_ = every, progress_ = fn, progress_ctx_ = ctx;
  }
  uint64_t emitted() const noexcept { return done_; }

 private:
  std::vector<Flow> flows_;
  uint64_t total_;
  uint64_t done_ = 0;
  uint64_t rng_;
  uint64_t progress_every_ = 0;
  void (*progress_)(uint64_t, void*) = nullptr;
  void* progress_ctx_ = nullptr;
};

}  // namespace sluice::flood
