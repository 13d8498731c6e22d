// Running ParseStage on one built packet placed against a guard page.
#pragma once

#include <vector>

#include "engine/packet/batch.h"
#include "engine/stages/parse/parse_stage.h"
#include "tests/testing/guarded_packet.h"
#include "tests/testing/packet_builder.h"

namespace sluice::testing {

inline ParseConfig WithPolicy(MalformedPolicy policy) {
  ParseConfig c;
  c.malformed = policy;
  return c;
}
inline ParseConfig WithSeed(uint64_t seed) {
  ParseConfig c;
  c.flow_hash_seed = seed;
  return c;
}

struct ParseOutcome {
  Next next;
  DropReason reason;
  PacketMeta meta;
  std::vector<uint8_t> bytes;  // the data after parse (trimmed)
};

// Parses p in a fresh stage with config; returns what the slot and the buffer looked like.
inline ParseOutcome ParseOnce(const TestPacket& p, const ParseConfig& config = {},
                              ParseCounts* counts = nullptr) {
  GuardedPacket g(static_cast<uint32_t>(p.bytes.size()) + 64);
  PacketBuffer& buf = g.Load(p.bytes, p.link);
  ParseStage stage(config);
  Batch batch;
  batch.Push(PacketRef(&buf));
  stage.Process(batch);
  ParseOutcome o{batch.next(0), batch.reason(0), buf.meta(),
                 std::vector<uint8_t>(buf.data(), buf.data() + buf.len())};
  if (counts != nullptr) {
    for (std::size_t k = 0; k < kNumParseCounters; ++k) counts->v[k] = stage.counters().LoadAt(k);
  }
  ReleaseAll(batch);
  return o;
}

}  // namespace sluice::testing
