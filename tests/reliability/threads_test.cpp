// The configured stages (examples/demo.toml: translations, rewrites, drops, marks) on the
// offline graph with 1, 2 and 4 threads over 4 shards, against the same work done inline on
// one thread: every packet's verdict, drop reason, mark and bytes are identical. Under the
// tsan preset this is the multi-threaded replay ThreadSanitizer watches (docs/reliability.md),
// with the one lookup that crosses shards (NatPeers) beside it.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/assert.h"
#include "engine/graph/pipeline.h"
#include "engine/graph/stage_set.h"
#include "engine/io/gen/traffic_gen.h"
#include "engine/io/memory/memory_source.h"
#include "engine/rules/config_loader.h"
#include "engine/stages/classify/classify_stage.h"
#include "engine/stages/classify/nat_peers.h"
#include "engine/stages/parse/parse_stage.h"
#include "tests/testing/packet_builder.h"
#include "tests/testing/test_batch.h"

#ifndef SLUICE_SOURCE_DIR
#error "SLUICE_SOURCE_DIR must name the source tree"
#endif

namespace sluice {
namespace {

struct Outcome {
  Verdict verdict;
  DropReason reason;
  uint32_t mark;
  std::vector<uint8_t> bytes;  // accepted packets only
  bool operator==(const Outcome&) const = default;
};

// Keeps what the sink is handed, in order.
class RecordingSink final : public PacketSink {
 public:
  void Consume(std::span<PacketBuffer* const> packets) noexcept override {
    for (const PacketBuffer* p : packets) {
      Outcome o{p->meta().verdict, p->meta().drop_reason, p->meta().mark, {}};
      if (o.verdict == Verdict::kAccept) o.bytes.assign(p->data(), p->data() + p->len());
      out.push_back(std::move(o));
    }
  }
  std::vector<Outcome> out;
};

const std::vector<std::vector<uint8_t>>& Traffic() {
  static const auto traffic = [] {
    TrafficSpec spec;
    spec.seed = 11;
    spec.flows = 4096;
    spec.sizes = SizeMix::kImix;
    spec.ipv6_share = 0.3;
    spec.udp_share = 0.3;
    return TrafficGenerator(spec).Generate(40000);
  }();
  return traffic;
}

// One run of demo.toml's stages; threads == 0 means RunInline.
std::vector<Outcome> RunDemo(uint32_t shards, uint32_t threads, StatsReport* report = nullptr) {
  ConfigLoad load = LoadConfigFile(std::string(SLUICE_SOURCE_DIR) + "/examples/demo.toml");
  SLUICE_CHECK(load.ok());  // demo.toml is checked by its own tests; without it nothing runs
  PipelineOptions opts{.shards = shards, .threads = threads == 0 ? 1 : threads, .batch_size = 32};
  PoolConfig pc;
  pc.small_buffers = static_cast<uint32_t>(OfflinePipeline::SmallBuffersNeeded(opts));
  auto pool = std::move(BufferPool::Create(pc)).value();
  StageSet::Options so;
  so.shards = shards;
  so.workers = opts.threads;
  so.flow_hash_seed = 17;
  auto stages = std::move(StageSet::Build(*load.config, so)).value();
  std::vector<ShardStages> shard_stages = stages->OfflineShards();
  OfflinePipeline pipeline(opts, *pool, stages->parse(0), shard_stages);
  MemorySource source(&Traffic(), LinkType::kEthernet);
  RecordingSink sink;
  EXPECT_TRUE((threads == 0 ? pipeline.RunInline(source, sink) : pipeline.Run(source, sink)).ok());
  // The pool is sized exactly (SmallBuffersNeeded) and each thread's cache may keep its whole
  // room (PoolCache::Share::kReserved): no read may still find it short.
  EXPECT_EQ(pool->Stats().exhausted, 0u);
  if (report != nullptr) {
    AddRun(pipeline.run_stats(), *report);
    stages->Report(*report);
  }
  return std::move(sink.out);
}

TEST(Threads, FourShardsGiveTheSameOutputOnOneTwoOrFourThreadsAsInline) {
  StatsReport report;
  const std::vector<Outcome> inline_run = RunDemo(4, 0, &report);
  ASSERT_EQ(inline_run.size(), Traffic().size());
  // The demo's rules do something to this traffic: translations, rewrites and drops.
  EXPECT_GT(report.rewritten, 1000u);
  EXPECT_GT(report.DroppedTotal(), 100u);
  for (uint32_t threads : {1u, 2u, 4u}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    const std::vector<Outcome> run = RunDemo(4, threads);
    ASSERT_EQ(run.size(), inline_run.size());
    for (std::size_t i = 0; i < run.size(); ++i) {
      ASSERT_TRUE(run[i] == inline_run[i]) << "packet " << i << " differs from the one-thread run";
    }
  }
}

TEST(Threads, OneShardOnTwoThreadsMatchesInline) {
  const std::vector<Outcome> a = RunDemo(1, 0), b = RunDemo(1, 2);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b);
}

// NatPeers under load: shard 1's thread translates ICMP errors about a flow of shard 0 while
// shard 0's thread keeps creating, evicting and expiring flows in the same table. Every error
// about the live flow is translated; under the tsan preset, with no report.
TEST(Threads, PeersTranslateErrorsWhileTheOwnerChurnsItsTable) {
  ConfigLoad load = LoadConfigText(R"(
[pipeline]
shards = 2
[nat]
max_flows = 64
udp_s = 1
[[rule]]
number = 1
name = "masquerade"
action = "translate-source-port"
match = { src = "10.0.0.0/8", proto = ["udp", "icmp"] }
translate = { ports = "1024-65535" }
)",
                                   "peers.toml");
  ASSERT_TRUE(load.ok()) << load.ToStatus().message();
  RuleSetOptions rule_options;
  rule_options.shards = 2;
  auto handle = std::move(RuleSetHandle::Create(*load.config, rule_options)).value();
  auto pool = std::move(BufferPool::Create({.small_buffers = 256, .large_buffers = 0})).value();
  NatPeers peers(2);
  ClassifyStage owner(*handle, 0, FlowTableOptions::From(load.config->nat, 7, 0, 2), StageClock{}, &peers);
  ClassifyStage asker(*handle, 1, FlowTableOptions::From(load.config->nat, 7, 1, 2), StageClock{}, &peers);
  ParseStage parse0{ParseConfig{}}, parse1{ParseConfig{}};
  // Classifies the packets on `stage` at `now`; each packet's next stage and bytes as it left.
  const auto run = [&](ParseStage& parse, ClassifyStage& stage, const std::vector<testing::TestPacket>& packets,
                       uint64_t now) {
    Batch b;
    b.set_limit(kMaxBatch);
    testing::PushPackets(*pool, b, packets);
    parse.Process(b);
    stage.Process(b, now);
    std::vector<std::pair<Next, std::vector<uint8_t>>> out;
    for (uint32_t i = 0; i < b.size(); ++i) out.push_back({b.next(i), {b.packet(i).data(), b.packet(i).data() + b.packet(i).len()}});
    b.RecordVerdicts();
    b.Clear();
    return out;
  };
  const auto udp = [](uint16_t sport) {
    return testing::PacketBuilder().Ipv4("10.1.2.3", "198.19.0.9").Udp(sport, 53).Payload(8).Build();
  };
  const std::vector<uint8_t> sent = run(parse0, owner, {udp(999)}, 0)[0].second;
  const testing::TestPacket error =
      testing::PacketBuilder().Ipv4("198.19.0.254", "10.1.2.3").Icmp(3, 4, 0, 1400).Payload(sent).Build();

  // The inside host's "port unreachable" about a reply to its port `sport`: looked up by the
  // original key, so the asker probes where the owner is inserting and erasing right now.
  const auto unreachable = [](uint16_t sport) {
    const testing::TestPacket reply =
        testing::PacketBuilder().Ipv4("198.19.0.9", "10.1.2.3").Udp(53, sport).Payload(8).Build();
    return testing::PacketBuilder().Ipv4("10.1.2.3", "198.19.0.9").Icmp(3, 3, 0, 0).Payload(reply.bytes).Build();
  };
  const auto sport_of = [](uint32_t round, uint16_t k) { return static_cast<uint16_t>(2000 + (round * 31 + k) % 30000); };

  constexpr uint32_t kRounds = 2000;
  constexpr uint32_t kMeet = 50;  // every kMeet rounds the owner waits for one of the asker's batches
  std::atomic<uint32_t> round{0}, asked_in{0};
  std::atomic<bool> done{false};
  std::thread churn([&] {
    constexpr uint64_t kMs = 1000000;
    uint64_t now = 0;
    for (uint32_t r = 1; r <= kRounds; ++r) {
      // 10 ms a round, so the table fills and evicts; every 100 rounds two 600 ms steps, so
      // the flows made before them expire (udp_s = 1) while the one below, touched in
      // between, does not.
      now += (r % 100 < 2 ? 600 : 10) * kMs;
      std::vector<testing::TestPacket> batch = {udp(999)};  // the flow the errors are about
      for (uint16_t k = 0; k < 31; ++k) batch.push_back(udp(sport_of(r, k)));
      run(parse0, owner, batch, now);
      round = r;
      // So that the asker certainly asks about live churned flows now and then.
      while (r % kMeet == 0 && asked_in < r) std::this_thread::yield();
    }
    done = true;
  });
  uint64_t asked = 0, about_999 = 0, about_churned = 0, bad = 0;
  while (!done) {
    const uint32_t r = round;
    std::vector<testing::TestPacket> batch = {error};
    for (uint16_t k = 0; k < 31; ++k) batch.push_back(unreachable(sport_of(r, k)));
    const auto out = run(parse1, asker, batch, 0);
    ++asked;
    asked_in = r;
    // Each error is either translated with a live flow, whole and with valid checksums, or
    // left as it was and dropped by the rule (an error about no live flow is untranslatable).
    for (std::size_t i = 0; i < out.size(); ++i) {
      const auto& [next, bytes] = out[i];
      const uint16_t quoted_port = LoadBe16(bytes.data() + 28 + (i == 0 ? 20 : 22));
      if (next == Next::kAccept && testing::RefL4ChecksumOk(bytes.data(), bytes.size())) {
        if (i == 0 && quoted_port == 999) ++about_999;
        else if (i != 0 && quoted_port >= 1024 && quoted_port % 2 == 0) ++about_churned;
        else ++bad;
      } else if (next != Next::kDrop || bytes != batch[i].bytes) {
        ++bad;
      }
    }
  }
  churn.join();
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(about_999, asked) << "the flow the errors are about lives throughout";
  EXPECT_GE(asked, kRounds / kMeet);
  EXPECT_GE(about_churned, kRounds / kMeet) << "errors about the churned flows too";
  const ClassifyCounters& c = owner.counters();
  EXPECT_GT(c.Load(ClassifyCounter::kNatEvicted), 0u);
  EXPECT_GT(c.Load(ClassifyCounter::kNatExpired), 0u);
  EXPECT_EQ(asker.flows().size(), 0u);
}

}  // namespace
}  // namespace sluice
