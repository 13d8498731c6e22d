// What the flow graph costs, and what the whole in-memory pipeline costs.
//
// BM_GraphEmptyStages / BM_InlineEmptyStages: pass-through stages through the graph (Run) and
// in one loop (RunInline), 64 B frames, batch 1..256. The difference is the graph's own
// overhead per packet (ARCHITECTURE.md: one node hop ≈ 240–1000 ns per message).
//
// BM_PipelineGraph / BM_PipelineInline: the real stages, built by StageSet from
// examples/demo.toml (two shards; rewrites, a NAPT translation, marks, drops) over traffic
// copied from memory into pool buffers (MemorySource, the memcpy floor of packet_bench's
// BM_MemcpyFloor) to a null sink. perf/run's harnesses (b) graph ÷ inline at batch 64 and
// (c) 2 threads ÷ 1 are ratios of these rows. Mixes (fixed seeds):
//   0 64B          60-byte frames, 16384 flows, 25 % UDP, 30 % replies (TrafficGenerator)
//   1 imix         7:4:1 of 60/590/1514-byte frames, same flows
//   2 ipv6         64 B, every flow IPv6 (the smallest IPv6 frames)
//   3 adversarial  bench_traffic's: 8-header IPv6 chains, truncations, bad options, QinQ
// Items = packets, bytes = frame bytes. The stages persist across iterations, so translations
// made in the first iteration are hits afterwards (the steady state of a long replay).
//
// BM_CoreToCoreRoundTrip: the host, not sluice: what passing a cache line between two CPUs
// and back costs, which the 2-thread rows depend on.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "bench/stages/bench_traffic.h"
#include "engine/core/cpus.h"
#include "engine/graph/pipeline.h"
#include "engine/graph/stage_set.h"
#include "engine/io/gen/traffic_gen.h"
#include "engine/io/memory/memory_source.h"
#include "engine/io/null/null_sink.h"
#include "engine/rules/config_loader.h"

namespace sluice {
namespace {

constexpr uint64_t kPacketsPerRun = 1 << 18;
constexpr uint32_t kDistinctFrames = 8192;

using Frames = std::vector<std::vector<uint8_t>>;

BufferPool& Pool() {
  static auto pool = std::move(BufferPool::Create({.small_buffers = 32768, .large_buffers = 0})).value();
  return *pool;
}

// ---- graph overhead: empty stages -----------------------------------------------------------

const Frames& Frames64() {
  static const auto frames = TrafficGenerator({.seed = 1, .flows = 1024, .sizes = SizeMix::k64}).Generate(4096);
  return frames;
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
  const uint64_t loops = kPacketsPerRun / Frames64().size();
  for (auto _ : state) {
    OfflinePipeline p({.shards = 1, .threads = threads, .batch_size = batch}, Pool(), StageRef::Of(st.parse),
                      std::span(&shard, 1));
    MemorySource src(&Frames64(), LinkType::kEthernet, loops);
    NullSink sink;
    const Status s = kInline ? p.RunInline(src, sink) : p.Run(src, sink);
    if (!s.ok()) state.SkipWithError(s.message().c_str());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kPacketsPerRun));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPacketsPerRun * Frames64()[0].size()));
  state.SetLabel(kInline ? "inline" : "graph");
}
BENCHMARK(BM_EmptyStages<false>)
    ->Name("BM_GraphEmptyStages")
    ->ArgNames({"batch", "threads"})
    ->ArgsProduct({{1, 32, 64, 256}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_EmptyStages<true>)
    ->Name("BM_InlineEmptyStages")
    ->ArgNames({"batch", "threads"})
    ->ArgsProduct({{1, 32, 64, 256}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- the whole pipeline: real stages, demo rules ---------------------------------------------

enum PipelineMix : int { k64B = 0, kImix = 1, kIpv6 = 2, kAdversarial = 3 };

const char* PipelineMixName(int mix) {
  static const char* const kNames[] = {"64B", "imix", "ipv6", "adversarial"};
  return kNames[mix];
}

const Frames& MixFrames(int mix) {
  static std::map<int, Frames> cache;
  Frames& f = cache[mix];
  if (!f.empty()) return f;
  switch (mix) {
    case k64B:
      f = TrafficGenerator({.seed = 1, .flows = 16384, .sizes = SizeMix::k64}).Generate(kDistinctFrames);
      break;
    case kImix:
      f = TrafficGenerator({.seed = 1, .flows = 16384, .sizes = SizeMix::kImix}).Generate(kDistinctFrames);
      break;
    case kIpv6:
      f = TrafficGenerator({.seed = 1, .flows = 16384, .sizes = SizeMix::k64, .ipv6_share = 1.0})
              .Generate(kDistinctFrames);
      break;
    default:
      for (const testing::TestPacket& p : bench::MixPackets(bench::kAdversarial, kDistinctFrames)) {
        if (p.link != LinkType::kEthernet) std::abort();  // MemorySource carries one link type
        f.push_back(p.bytes);
      }
      break;
  }
  return f;
}

const Config& DemoConfig() {
  static const Config config = [] {
    ConfigLoad load = LoadConfigFile(SLUICE_SOURCE_DIR "/examples/demo.toml");
    if (!load.ok()) {
      for (const ConfigError& e : load.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
      std::abort();
    }
    return *load.config;
  }();
  return config;
}

template <bool kInline>
void BM_Pipeline(benchmark::State& state) {
  const int mix = static_cast<int>(state.range(0));
  const auto batch = static_cast<uint32_t>(state.range(1));
  const auto threads = static_cast<uint32_t>(state.range(2));
  const Config& config = DemoConfig();
  const Frames& frames = MixFrames(mix);
  const PipelineOptions opts{.shards = config.pipeline.shards, .threads = threads, .batch_size = batch};
  if (Status s = OfflinePipeline::Validate(opts, Pool()); !s.ok()) return state.SkipWithError(s.message().c_str());
  StageSet::Options stage_options;
  stage_options.shards = opts.shards;
  stage_options.workers = opts.threads;
  stage_options.flow_hash_seed = 1;
  auto stages = StageSet::Build(config, stage_options);
  if (!stages.ok()) return state.SkipWithError(stages.status().message().c_str());
  const std::vector<ShardStages> shard_stages = (*stages)->OfflineShards();
  const uint64_t loops = kPacketsPerRun / frames.size();
  uint64_t frame_bytes = 0;
  for (const auto& f : frames) frame_bytes += f.size();
  uint64_t dropped = 0, rewritten = 0, packets = 0;
  for (auto _ : state) {
    OfflinePipeline p(opts, Pool(), (*stages)->parse(0), shard_stages);
    MemorySource src(&frames, LinkType::kEthernet, loops);
    NullSink sink;
    const Status s = kInline ? p.RunInline(src, sink) : p.Run(src, sink);
    if (!s.ok()) return state.SkipWithError(s.message().c_str());
    const RunStats& run = p.run_stats();
    if (run.packets_in.Load() != loops * frames.size()) return state.SkipWithError("packets lost");
    packets += run.packets_in.Load();
    dropped += run.Dropped();
    rewritten += run.rewritten.Load();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * loops * frames.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * loops * frame_bytes));
  state.counters["dropped_pct"] = 100.0 * static_cast<double>(dropped) / static_cast<double>(packets);
  state.counters["rewritten_pct"] = 100.0 * static_cast<double>(rewritten) / static_cast<double>(packets);
  state.SetLabel(std::string(kInline ? "inline " : "graph ") + PipelineMixName(mix) + " demo.toml");
}
// Mixes at batch 64 with 1 and 2 threads; the 64 B mix also at batch 1, 32, 256 (1 thread).
void PipelineArgs(benchmark::internal::Benchmark* b, bool graph) {
  b->ArgNames({"mix", "batch", "threads"});
  for (int mix : {k64B, kImix, kIpv6, kAdversarial}) {
    b->Args({mix, 64, 1});
    if (graph) b->Args({mix, 64, 2});
  }
  for (int batch : {1, 32, 256}) b->Args({k64B, batch, 1});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
void GraphArgs(benchmark::internal::Benchmark* b) { PipelineArgs(b, true); }
void InlineArgs(benchmark::internal::Benchmark* b) { PipelineArgs(b, false); }
BENCHMARK(BM_Pipeline<false>)->Name("BM_PipelineGraph")->Apply(GraphArgs);
BENCHMARK(BM_Pipeline<true>)->Name("BM_PipelineInline")->Apply(InlineArgs);

// ---- the host: what moving a cache line between two CPUs costs --------------------------------

// Two threads, on the first two CPUs this process may use, pass a counter back and forth; time
// per round trip (two line transfers). The 2-thread pipeline's scaling follows it: under a
// hypervisor it changes with where the host happens to place the vCPUs (seen on one 2-vCPU VM
// within an hour: about 100 ns, then about 480 ns), and with it the 2-thread row. perf/run's
// threads harness records it once per round, so a ratio can be read with it.
void BM_CoreToCoreRoundTrip(benchmark::State& state) {
  const std::vector<uint32_t> cpus = AllowedCpus();
  if (cpus.size() < 2) return state.SkipWithError("needs 2 CPUs");
  struct alignas(64) Line {
    std::atomic<uint64_t> ball{0};
  };
  static Line line;  // its own line, whatever the stack holds
  line.ball.store(0);
  std::atomic<bool> done{false};
  std::thread partner([&] {
    PinThread(pthread_self(), cpus[1]);
    for (uint64_t want = 1;; want += 2) {  // answers each odd value with the next even one
      while (line.ball.load(std::memory_order_acquire) != want) {
        if (done.load(std::memory_order_relaxed)) return;
      }
      line.ball.store(want + 1, std::memory_order_release);
    }
  });
  PinThread(pthread_self(), cpus[0]);
  uint64_t v = 0;
  for (auto _ : state) {
    line.ball.store(v + 1, std::memory_order_release);
    while (line.ball.load(std::memory_order_acquire) != v + 2) {
    }
    v += 2;
  }
  done.store(true);
  partner.join();
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));  // round trips
  SetThreadCpus(pthread_self(), cpus);  // back on every CPU it had, for the rows after this one
}
BENCHMARK(BM_CoreToCoreRoundTrip)->Unit(benchmark::kNanosecond);

}  // namespace
}  // namespace sluice
