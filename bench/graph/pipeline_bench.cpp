// What the flow graph costs: the same stages run through the graph (Run) and called inline in
// one loop (RunInline), over 64 B frames copied from memory into pool buffers, to a null sink.
// With empty stages the difference is the graph's own overhead per packet, at batch 1..256.
#include <benchmark/benchmark.h>

#include "engine/graph/pipeline.h"
#include "engine/io/gen/traffic_gen.h"
#include "engine/io/memory/memory_source.h"
#include "engine/io/null/null_sink.h"

namespace sluice {
namespace {

constexpr uint64_t kPacketsPerRun = 1 << 18;

const std::vector<std::vector<uint8_t>>& Frames64() {
  static const auto frames = TrafficGenerator({.seed = 1, .flows = 1024, .sizes = SizeMix::k64}).Generate(4096);
  return frames;
}

BufferPool& Pool() {
  static auto pool = std::move(BufferPool::Create({.small_buffers = 32768, .large_buffers = 0})).value();
  return *pool;
}

struct EmptyStages {
  PassStage<Next::kParse, Next::kClassify> parse;
  PassStage<Next::kClassify, Next::kRewrite> classify;
  PassStage<Next::kRewrite, Next::kAccept> rewrite;
};

template <bool kInline>
void BM_EmptyStages(benchmark::State& state) {
  const auto batch = static_cast<uint32_t>(state.range(0));
  const auto threads = static_cast<uint32_t>(state.range(1));
  EmptyStages st;
  const ShardStages shard{StageRef::Of(st.classify), StageRef::Of(st.rewrite)};
  for (auto _ : state) {
    OfflinePipeline p({.shards = 1, .threads = threads, .batch_size = batch}, Pool(), StageRef::Of(st.parse),
                      std::span(&shard, 1));
    const uint64_t loops = kPacketsPerRun / Frames64().size();
    MemorySource src(&Frames64(), LinkType::kEthernet, loops);
    NullSink sink;
    const Status s = kInline ? p.RunInline(src, sink) : p.Run(src, sink);
    if (!s.ok()) state.SkipWithError(s.message().c_str());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kPacketsPerRun));
  state.SetLabel(kInline ? "inline" : "graph");
}
BENCHMARK(BM_EmptyStages<false>)->Name("BM_GraphEmptyStages")->ArgsProduct({{1, 32, 64, 256}, {1}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EmptyStages<true>)->Name("BM_InlineEmptyStages")->ArgsProduct({{1, 32, 64, 256}, {1}})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace sluice
