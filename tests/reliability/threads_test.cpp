// The configured stages (examples/demo.toml: translations, rewrites, drops, marks) on the
// offline graph with 1, 2 and 4 threads over 4 shards, against the same work done inline on
// one thread: every packet's verdict, drop reason, mark and bytes are identical. Under the
// tsan preset this is the multi-threaded replay ThreadSanitizer watches (docs/reliability.md).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/assert.h"
#include "engine/graph/pipeline.h"
#include "engine/graph/stage_set.h"
#include "engine/io/gen/traffic_gen.h"
#include "engine/io/memory/memory_source.h"
#include "engine/rules/config_loader.h"

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
  so.flow_hash_seed = 17;
  auto stages = std::move(StageSet::Build(*load.config, so)).value();
  std::vector<ShardStages> shard_stages = stages->OfflineShards();
  OfflinePipeline pipeline(opts, *pool, stages->parse(0), shard_stages);
  MemorySource source(&Traffic(), LinkType::kEthernet);
  RecordingSink sink;
  EXPECT_TRUE((threads == 0 ? pipeline.RunInline(source, sink) : pipeline.Run(source, sink)).ok());
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

}  // namespace
}  // namespace sluice
