// Reloads under load: shard workers classify and rewrite batches nonstop while another thread
// publishes new rule sets (and tries invalid ones) and a third reads counters. Checks that
// every batch saw exactly one generation of the rules, that translations survive every
// reload, that plans stay alive through rewrite, and (under the tsan preset) that nothing races.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "engine/core/byte_order.h"
#include "engine/stages/classify/classify_stage.h"
#include "engine/stages/parse/parse_stage.h"
#include "engine/stages/rewrite/rewrite_stage.h"
#include "tests/testing/packet_builder.h"
#include "tests/testing/test_batch.h"

namespace sluice {
namespace {

using testing::PacketBuilder;
using testing::TestPacket;

// Generation A drops port 80 and rewrites 81 -> 8081; B accepts 80 and rewrites 81 -> 9091.
// Both translate UDP from the clients, so flows made under one are used under the other.
std::string Rules(bool a) {
  return std::string(R"(
[pipeline]
shards = 2
[nat]
max_flows = 1024
[[rule]]
number = 10
name = "napt"
action = "translate-source-port"
match = { proto = "udp", src = "198.18.0.0/16" }
translate = { ports = "20000-29999" }
[[rule]]
number = 20
name = "port-80"
action = ")") + (a ? "drop" : "accept") + R"("
match = { proto = "tcp", dst_port = 80 }
[[rule]]
number = 30
name = "port-81"
action = "rewrite"
match = { proto = "tcp", dst_port = 81 }
rewrite = { dst_port = )" + (a ? "8081" : "9091") + R"( }
)";
}

TEST(ReloadTest, BatchesSeeOneGenerationAndFlowsSurvive) {
  auto pool_or = BufferPool::Create({.small_buffers = 4096, .large_buffers = 0});
  ASSERT_TRUE(pool_or.ok());
  BufferPool& pool = *pool_or.value();
  ConfigLoad first = LoadConfigText(Rules(true));
  ASSERT_TRUE(first.ok()) << first.ToStatus().message();
  RuleSetOptions options;
  options.shards = 2;
  auto handle_or = RuleSetHandle::Create(*first.config, options);
  ASSERT_TRUE(handle_or.ok());
  RuleSetHandle& handle = *handle_or.value();

  constexpr int kBatches = 400;
  std::atomic<bool> stop{false};
  std::atomic<int> reloads{0};
  constexpr int kMinReloads = 100;
  std::atomic<int> mixed_batches{0}, lost_flows{0}, bad_rewrites{0};
  std::vector<std::unique_ptr<ClassifyStage>> stages;
  for (uint32_t s = 0; s < 2; ++s) {
    stages.push_back(std::make_unique<ClassifyStage>(handle, s, FlowTableOptions::From(first.config->nat, 5, s, 2)));
  }

  auto worker = [&](uint32_t shard) {
    ClassifyStage& stage = *stages[shard];
    ParseStage parse{ParseConfig{}};
    RewriteStage rewrite;
    const std::string client = "198.18.0." + std::to_string(shard + 1);
    // The flow this shard keeps alive across reloads.
    uint16_t xport = 0;
    for (int n = 0; n < kBatches || reloads.load() < kMinReloads; ++n) {
      std::vector<TestPacket> packets;
      for (int i = 0; i < 8; ++i) packets.push_back(PacketBuilder().Ipv4(client.c_str(), "198.19.0.1").Tcp(1000, 80).Build());
      for (int i = 0; i < 8; ++i) packets.push_back(PacketBuilder().Ipv4(client.c_str(), "198.19.0.1").Tcp(1000, 81).Build());
      packets.push_back(PacketBuilder().Ipv4(client.c_str(), "198.19.0.1").Udp(5000, 53).Build());
      if (xport != 0) packets.push_back(PacketBuilder().Ipv4("198.19.0.1", client.c_str()).Udp(53, xport).Build());
      Batch b;
      b.set_limit(kMaxBatch);
      testing::PushPackets(pool, b, packets);
      parse.Process(b);
      stage.Process(b, static_cast<uint64_t>(n) * 1000000);
      rewrite.Process(b);  // plans must still be alive here
      // One generation per batch: all port-80 packets agree, and the port-81 rewrites agree
      // with them (A: drop + 8081, B: accept + 9091).
      const bool dropped = b.next(0) == Next::kDrop;
      for (int i = 0; i < 8; ++i) mixed_batches += (b.next(i) == Next::kDrop) != dropped;
      for (int i = 8; i < 16; ++i) {
        const PacketBuffer& p = b.packet(i);
        const uint16_t port = LoadBe16(p.data() + p.meta().l4_off + 2);
        bad_rewrites += port != (dropped ? 8081 : 9091);
      }
      const PacketBuffer& out = b.packet(16);
      const uint16_t sport = LoadBe16(out.data() + out.meta().l4_off);
      if (xport == 0) xport = sport;
      lost_flows += sport != xport;  // the same translation, whatever the rules
      if (packets.size() > 17) {
        const PacketBuffer& in = b.packet(17);
        lost_flows += LoadBe16(in.data() + in.meta().l4_off + 2) != 5000;
      }
      b.RecordVerdicts();
      b.Clear();
    }
  };

  std::thread reloader([&] {
    bool a = false;
    int good = 0;
    while (!stop.load()) {
      ASSERT_TRUE(handle.ReloadText(Rules(a)).ok());
      a = !a;
      ++good;
      ++reloads;
      const uint64_t gen = handle.generation();
      EXPECT_FALSE(handle.ReloadText("[[rule]]\nnumber = 1\n", "bad.toml").ok());
      EXPECT_EQ(handle.generation(), gen) << "a bad file changes nothing";
      std::this_thread::yield();
    }
    EXPECT_GT(good, 0);
  });
  std::thread reader([&] {
    uint64_t sum = 0;
    while (!stop.load()) {
      auto rs = handle.Load();
      for (uint32_t i = 0; i < rs->size(); ++i) sum += rs->Totals(i).packets;
      for (const auto& s : stages) sum += s->nat_flows() + s->counters().Load(ClassifyCounter::kClassified);
    }
    EXPECT_GT(sum, 0u);
  });
  std::thread w0(worker, 0), w1(worker, 1);
  w0.join();
  w1.join();
  stop = true;
  reloader.join();
  reader.join();

  EXPECT_EQ(mixed_batches.load(), 0);
  EXPECT_EQ(bad_rewrites.load(), 0);
  EXPECT_EQ(lost_flows.load(), 0);
  EXPECT_GT(stages[0]->counters().Load(ClassifyCounter::kRuleSetSwaps), 0u) << "the workers saw reloads";
  EXPECT_EQ(stages[0]->counters().Load(ClassifyCounter::kNatCreated), 1u);
  EXPECT_EQ(stages[1]->counters().Load(ClassifyCounter::kNatCreated), 1u);
}

}  // namespace
}  // namespace sluice
