// Floods of new flows through translate-source-port, at a size ctest runs in seconds (the
// 10M-packet harness is perf/flood/napt_flood): the flow table holds at its cap, every
// creation is an eviction or a live flow, nothing is allocated per packet, and keys crafted
// to collide under one seed are ordinary keys under another. The seeds themselves are drawn
// at random per process.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/assert.h"
#include "engine/graph/pipeline.h"
#include "engine/graph/stage_set.h"
#include "engine/io/null/null_sink.h"
#include "engine/rules/config_loader.h"
#include "engine/rules/packet_fields.h"
#include "engine/stages/classify/translate.h"
#include "perf/flood/flood_traffic.h"
#include "tests/testing/alloc_counter.h"
#include "tests/testing/test_batch.h"

namespace sluice {
namespace {

using flood::Flow;

constexpr uint32_t kCap = 256;

Config NaptConfig(uint32_t cap, const char* on_full, uint64_t seed) {
  const std::string text = "[nat]\nmax_flows = " + std::to_string(cap) + "\non_full = \"" + on_full +
                           "\"\nseed = " + std::to_string(seed) +
                           "\n[[rule]]\nnumber = 100\nname = \"napt-out\"\naction = \"translate-source-port\"\n"
                           "match = { src = \"198.18.0.0/15\", proto = \"udp\" }\ntranslate = { ports = \"1024-65535\" }\n";
  ConfigLoad load = LoadConfigText(text, "<flood_test>");
  for (const ConfigError& e : load.errors) ADD_FAILURE() << e.ToString();
  SLUICE_CHECK(load.ok());  // nothing to run the floods with otherwise
  return std::move(*load.config);
}

testing::TestPacket PacketOf(const Flow& f) {
  testing::TestPacket p;
  p.bytes.resize(flood::kFloodPacketBytes);
  flood::WritePacket(f, p.bytes.data());
  return p;
}

std::vector<Flow> Flows(uint64_t n) {
  std::vector<Flow> v;
  for (uint64_t i = 0; i < n; ++i) v.push_back(flood::FlowAt(i));
  return v;
}

struct FloodRun {
  StatsReport report;
  uint64_t allocations = 0;
  uint64_t Counter(const std::string& name) const {
    uint64_t sum = 0;
    for (const NamedCounter& c : report.counters) {
      if (c.name == name) sum += c.value;
    }
    return sum;
  }
  uint64_t Dropped(DropReason r) const {
    for (const auto& [reason, n] : report.dropped) {
      if (reason == r) return n;
    }
    return 0;
  }
};

FloodRun RunFlood(const Config& config, uint64_t flows, uint64_t packets) {
  PipelineOptions opts{.shards = 1, .threads = 2, .batch_size = 64};
  PoolConfig pc;
  pc.small_buffers = static_cast<uint32_t>(OfflinePipeline::SmallBuffersNeeded(opts));
  auto pool = std::move(BufferPool::Create(pc)).value();
  StageSet::Options so;
  so.workers = opts.threads;
  so.flow_hash_seed = 3;
  auto stages = std::move(StageSet::Build(config, so)).value();
  std::vector<ShardStages> shards = stages->OfflineShards();
  OfflinePipeline pipeline(opts, *pool, stages->parse(0), shards);
  flood::FloodSource source(Flows(flows), packets, 99);
  NullSink sink;
  FloodRun run;
  const uint64_t before = testing::ProcessAllocations();
  EXPECT_TRUE(pipeline.Run(source, sink).ok());
  run.allocations = testing::ProcessAllocations() - before;
  AddRun(pipeline.run_stats(), run.report);
  stages->Report(run.report);
  return run;
}

TEST(Flood, TheFlowTableHoldsAtItsCapAndCountsEveryEviction) {
  const Config config = NaptConfig(kCap, "evict-oldest", 11);
  const FloodRun r = RunFlood(config, 20000, 200000);
  const uint64_t created = r.Counter("classify_nat_created"), evicted = r.Counter("classify_nat_evicted"),
                 expired = r.Counter("classify_nat_expired"), live = r.Counter("nat_flows");
  std::printf("200k packets from 20k flows, cap %u: created %lu, evicted %lu, live %lu\n", kCap, created, evicted, live);
  EXPECT_EQ(r.report.packets_in, 200000u);
  EXPECT_TRUE(r.report.Balanced());
  EXPECT_EQ(live, kCap);
  EXPECT_EQ(created, live + evicted + expired);
  EXPECT_EQ(expired, 0u) << "no timeout passes in a run this short";
  // 20k flows through 256 slots: almost every packet finds its flow evicted and starts anew.
  EXPECT_GT(evicted, 190000u);
  EXPECT_EQ(r.report.DroppedTotal(), 0u);
  // Every packet is translated; a port drawn equal to the original leaves the bytes alone.
  EXPECT_EQ(r.Counter("classify_nat_out") + created, 200000u);
  EXPECT_GE(r.report.rewritten, 200000u - 200000u / 1000);
}

TEST(Flood, DropNewRefusesPastTheCapAndCountsIt) {
  const Config config = NaptConfig(kCap, "drop-new", 11);
  const FloodRun r = RunFlood(config, 20000, 200000);
  EXPECT_EQ(r.Counter("nat_flows"), kCap);
  EXPECT_EQ(r.Counter("classify_nat_created"), kCap);
  EXPECT_EQ(r.Counter("classify_nat_evicted"), 0u);
  const uint64_t refused = r.Counter("classify_nat_table_full");
  EXPECT_GT(refused, 190000u);
  EXPECT_EQ(r.Dropped(DropReason::kNatTableFull), refused);
  EXPECT_EQ(r.report.DroppedTotal(), refused);
  EXPECT_TRUE(r.report.Balanced());
}

// The table and everything else is allocated at start: ten times the packets and flows,
// churned through the same cap, allocate no more than oneTBB's list nodes when back-pressure
// reverses the source's edge (two nodes, at most once per burst: see
// OfflinePipeline.NoHeapAllocationPerPacket). How many depends on scheduling (about 0.45 per
// burst when bursts were 64 packets, with the machine loaded), so the bound is the worst case,
// two per burst (1,562), not a guess. One per flow would be 18,000 more, one per packet
// 180,000.
TEST(Flood, NothingIsAllocatedPerPacketOrPerFlow) {
  const Config config = NaptConfig(kCap, "evict-oldest", 11);
  const FloodRun small = RunFlood(config, 2000, 20000);
  const FloodRun large = RunFlood(config, 20000, 200000);
  const uint64_t bursts = 200000 / 256;  // 4 batches of 64 per burst (pipeline.h)
  EXPECT_LT(large.allocations, small.allocations + 2 * bursts)
      << "small run " << small.allocations << ", large run " << large.allocations;
  std::printf("allocations: %lu for 20k packets, %lu for 200k\n", small.allocations, large.allocations);
}

// What the harness crafts is the key classify builds from the packet.
TEST(Flood, FloodKeysAreTheKeysClassifyBuilds) {
  for (uint64_t i : {0ull, 1ull, 131071ull, 131072ull, 999999ull}) {
    const Flow f = flood::FlowAt(i);
    auto pool = std::move(BufferPool::Create({.small_buffers = 64, .large_buffers = 1})).value();
    Batch batch;
    testing::PushPackets(*pool, batch, {PacketOf(f)});
    ParseStage parse({});
    parse.Process(batch);
    ASSERT_EQ(batch.next(0), Next::kClassify) << Name(batch.reason(0));
    PacketFields fields;
    ExtractFields(batch.packet(0), &fields);
    FlowKey key;
    ASSERT_EQ(TranslationKey(batch.packet(0), fields, &key), KeyKind::kAny);
    EXPECT_TRUE(key == flood::KeyOf(f)) << "flow " << i;
  }
}

// An attacker who knows hash seed A builds keys that all start probing in one window of
// slots; under seed B the same keys spread like any others.
TEST(Flood, KeysCraftedToCollideUnderOneSeedSpreadUnderAnother) {
  constexpr uint32_t kWindow = 256, kKeys = 4096;
  constexpr uint32_t kMask = (1u << flood::kCollisionHashBits) - 1;
  FlowTableOptions a = FlowTableOptions::From(NatConfig{}, 1, 0, 1);
  FlowTableOptions b = a;
  a.hash_seed = 0xa11ce;  // the one the attacker knows
  b.hash_seed = 0xb0b;
  const std::vector<Flow> crafted = flood::CollidingFlows(a, kKeys, kWindow);
  ASSERT_EQ(crafted.size(), kKeys);
  FlowTableOptions small_a = a, small_b = b;
  small_a.capacity = small_b.capacity = 16;
  FlowTable under_a(small_a), under_b(small_b);
  uint32_t in_window_a = 0, in_window_b = 0;
  std::map<uint32_t, uint32_t> buckets;  // 1024 slots each, over 2^20 slots
  for (const Flow& f : crafted) {
    const FlowKey k = flood::KeyOf(f);
    in_window_a += (under_a.KeyHash(k) & kMask) < kWindow;
    const uint32_t hb = under_b.KeyHash(k) & kMask;
    in_window_b += hb < kWindow;
    ++buckets[hb >> 10];
  }
  uint32_t fullest = 0;
  for (const auto& [bucket, n] : buckets) fullest = std::max(fullest, n);
  std::printf("4096 keys crafted under seed A: %u in the window under A, %u under B (expected %u), "
              "fullest of 1024 buckets under B %u (mean 4)\n",
              in_window_a, in_window_b, kKeys * kWindow >> flood::kCollisionHashBits, fullest);
  EXPECT_EQ(in_window_a, kKeys);
  EXPECT_LE(in_window_b, 12u);
  EXPECT_LE(fullest, 20u);
  EXPECT_GT(buckets.size(), 950u);
}

// With no seed in the config (nat.seed = 0) and none from the caller, each StageSet draws its
// own: the same flows get other translated ports and other flow hashes.
TEST(Flood, SeedsAreDrawnAtRandomPerStageSet) {
  const Config config = NaptConfig(kCap, "evict-oldest", 0);
  auto ports_and_hashes = [&] {
    auto set = std::move(StageSet::Build(config, StageSet::Options{})).value();
    auto pool = std::move(BufferPool::Create({.small_buffers = 64, .large_buffers = 1})).value();
    std::vector<testing::TestPacket> packets;
    for (uint64_t i = 0; i < 8; ++i) packets.push_back(PacketOf(flood::FlowAt(i)));
    Batch batch;
    testing::PushPackets(*pool, batch, packets);
    set->parse(0).Process(batch);
    set->OfflineShards()[0].classify.Process(batch);
    std::vector<uint32_t> out;
    for (uint32_t i = 0; i < batch.size(); ++i) {
      const PacketBuffer& p = batch.packet(i);
      out.push_back(LoadBe16(p.data() + p.meta().l4_off) | (p.meta().flow_hash & 0xffff0000u));
      EXPECT_NE(p.meta().flags & pkt_flag::kModified, 0) << "translated";
    }
    return out;
  };
  const std::vector<uint32_t> first = ports_and_hashes(), second = ports_and_hashes();
  uint32_t port_diff = 0, hash_diff = 0;
  for (std::size_t i = 0; i < first.size(); ++i) {
    port_diff += (first[i] & 0xffff) != (second[i] & 0xffff);
    hash_diff += (first[i] >> 16) != (second[i] >> 16);
  }
  EXPECT_GE(port_diff, 6u) << "translated ports repeat across stage sets: the NAT seed is not random";
  EXPECT_GE(hash_diff, 6u) << "flow hashes repeat across stage sets: the flow hash seed is not random";
}

}  // namespace
}  // namespace sluice
