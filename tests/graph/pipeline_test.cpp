// The offline graph: every packet accounted once, per-flow order kept, output independent of
// threads and shards, drain on stop, nothing allocated per packet. The stages are stand-ins
// (tests/testing/fake_stages.h) so the graph is tested on its own.
#include "engine/graph/pipeline.h"

#include <gtest/gtest.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "engine/core/byte_order.h"
#include "engine/io/memory/memory_source.h"
#include "engine/io/null/null_sink.h"
#include "tests/testing/alloc_counter.h"
#include "tests/testing/fake_stages.h"

namespace sluice {
namespace {

using namespace sluice::testing;  // NOLINT(google-build-using-namespace): test stand-ins

// Keeps every accepted packet's bytes, in the order the pipeline delivered them.
class CaptureSink final : public PacketSink {
 public:
  void Consume(std::span<PacketBuffer* const> packets) noexcept override {
    for (PacketBuffer* p : packets) {
      ++seen;
      if (p->meta().verdict == Verdict::kAccept) out.emplace_back(p->data(), p->data() + p->len());
    }
  }
  std::vector<std::vector<uint8_t>> out;
  uint64_t seen = 0;
};

// The pipeline on stand-in stages, one classify (of type Classify) and rewrite per shard.
template <typename Classify = FakeClassify>
struct Harness {
  explicit Harness(PipelineOptions o) : options(o), rewrites(o.shards), classifies(o.shards) {
    pool = std::move(BufferPool::Create({.small_buffers = 16384, .large_buffers = 4})).value();
    for (uint32_t s = 0; s < o.shards; ++s) {
      stages.push_back({StageRef::Of(classifies[s]), StageRef::Of(rewrites[s])});
    }
    pipeline = std::make_unique<OfflinePipeline>(options, *pool, StageRef::Of(parse), stages);
  }
  uint64_t OrderViolations() const {
    uint64_t v = 0;
    for (const auto& r : rewrites) v += r.order_violations;
    return v;
  }
  PipelineOptions options;
  std::unique_ptr<BufferPool> pool;
  FakeParse parse;
  std::vector<FakeRewrite> rewrites;
  std::vector<Classify> classifies;
  std::vector<ShardStages> stages;
  std::unique_ptr<OfflinePipeline> pipeline;
};

void ExpectBalanced(const RunStats& r, uint64_t expected_in) {
  EXPECT_EQ(r.packets_in.Load(), expected_in);
  EXPECT_TRUE(r.Balanced()) << "in " << r.packets_in.Load() << " accepted " << r.accepted.Load()
                            << " rewritten " << r.rewritten.Load() << " dropped " << r.Dropped()
                            << " skipped " << r.Skipped();
}

TEST(OfflinePipeline, EveryPacketIsAccountedForExactlyOnce) {
  const auto traffic = MakeTraffic(97, 300, 1);
  uint64_t want[4] = {};
  for (const auto& p : traffic) ++want[p[8]];
  for (uint32_t shards : {1u, 3u, 4u}) {
    for (uint32_t threads : {1u, 2u}) {
      SCOPED_TRACE(::testing::Message() << shards << " shards, " << threads << " threads");
      Harness h({.shards = shards, .threads = threads, .batch_size = 32});
      MemorySource src(&traffic, LinkType::kRaw);
      CaptureSink sink;
      ASSERT_TRUE(h.pipeline->Run(src, sink).ok());
      const RunStats& r = h.pipeline->run_stats();
      ExpectBalanced(r, traffic.size());
      EXPECT_EQ(sink.seen, traffic.size());
      EXPECT_EQ(r.accepted.Load(), want[kAcceptIt]);
      EXPECT_EQ(r.rewritten.Load(), want[kRewriteIt]);
      EXPECT_EQ(r.dropped[static_cast<int>(DropReason::kUnsupportedLinkType)].Load(), want[kDropIt]);
      EXPECT_EQ(r.skipped[static_cast<int>(DropReason::kNotIp)].Load(), want[kSkipIt]);
      EXPECT_EQ(r.latency_ns.Read().total, traffic.size());
      EXPECT_EQ(h.pool->Stats().orphaned, 0u);
      // Stage counters agree with the run's: parse skipped, classify dropped.
      EXPECT_EQ(h.pipeline->parse_stats().ended[static_cast<int>(DropReason::kNotIp)].Load(), want[kSkipIt]);
      // Each stage's packets are the slots it was given to work on: rewrite gets only those
      // classify chose to rewrite, not the accepted, dropped or skipped ones beside them.
      uint64_t classify_drops = 0, classify_packets = 0, rewrite_packets = 0;
      for (uint32_t s = 0; s < shards; ++s) {
        classify_drops += h.pipeline->classify_stats(s).ended[static_cast<int>(DropReason::kUnsupportedLinkType)].Load();
        classify_packets += h.pipeline->classify_stats(s).packets.Load();
        rewrite_packets += h.pipeline->rewrite_stats(s).packets.Load();
      }
      EXPECT_EQ(classify_drops, want[kDropIt]);
      EXPECT_EQ(classify_packets, traffic.size() - want[kSkipIt]);
      EXPECT_EQ(rewrite_packets, want[kRewriteIt]);
      EXPECT_EQ(h.pipeline->parse_stats().packets.Load(), traffic.size());
    }
  }
}

// The graph reads bursts of up to four batches per shard (so that handing a burst between
// threads is paid once per several batches) but hands each shard's stages batches of at most
// batch_size, in input order: also when one flow, hence one shard, has every packet.
TEST(OfflinePipeline, StagesSeeBatchesOfAtMostTheBatchSize) {
  struct Sizes {
    void Process(Batch& b) noexcept {
      largest = std::max(largest, b.size());
      ++calls;
      stage.Process(b);
    }
    uint32_t largest = 0;
    uint64_t calls = 0;
    FakeClassify stage;
  };
  for (uint32_t flows : {1u, 50u}) {
    for (uint32_t shards : {1u, 2u}) {
      SCOPED_TRACE(::testing::Message() << flows << " flows, " << shards << " shards");
      // 3050 packets, 2 more than a multiple of 24: each run's last burst ends in a part of 2.
      const auto traffic = MakeTraffic(flows, 3050 / flows, 5);
      Harness<Sizes> h({.shards = shards, .threads = 2, .batch_size = 24});
      EXPECT_EQ(h.pipeline->burst_size(), shards == 1 ? 96u : 192u);
      MemorySource src(&traffic, LinkType::kRaw);
      CaptureSink sink;
      ASSERT_TRUE(h.pipeline->Run(src, sink).ok());
      ExpectBalanced(h.pipeline->run_stats(), traffic.size());
      EXPECT_EQ(h.OrderViolations(), 0u);
      uint64_t calls = 0;
      for (const Sizes& classify : h.classifies) {
        EXPECT_LE(classify.largest, 24u);
        calls += classify.calls;
      }
      // A burst's packets of one shard fill its batches in turn: with one flow, every batch
      // but a burst's last is full.
      if (flows == 1) {
        EXPECT_EQ(calls, (traffic.size() + 23) / 24);
      }
    }
  }
}

// A stage that takes a while per batch and notes the threads it ran on. With parse and
// classify slow (both in a burst's work), the thread that read a burst is busy long enough for
// the other thread to read the next: both threads read, parse and retire bursts.
template <typename S>
struct Slow {
  void Process(Batch& b) noexcept {
    {
      std::lock_guard lock(mu);
      threads.insert(std::this_thread::get_id());
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    stage.Process(b);
  }
  std::mutex mu;
  std::set<std::thread::id> threads;
  S stage;
};

// One run of `traffic` on 2 threads and 1 shard, batch 32, through the given parse and
// classify stand-ins and `rewrite`; the pipeline is returned for its counters.
template <typename Parse, typename Classify>
std::unique_ptr<OfflinePipeline> RunOnTwoThreads(Parse& parse, Classify& classify,
                                                 FakeRewrite& rewrite, BufferPool& pool,
                                                 const std::vector<std::vector<uint8_t>>& traffic) {
  const std::vector<ShardStages> stages = {{StageRef::Of(classify), StageRef::Of(rewrite)}};
  auto pipeline = std::make_unique<OfflinePipeline>(
      PipelineOptions{.shards = 1, .threads = 2, .batch_size = 32}, pool, StageRef::Of(parse),
      stages);
  MemorySource src(&traffic, LinkType::kRaw);
  CaptureSink sink;
  EXPECT_TRUE(pipeline->Run(src, sink).ok());
  return pipeline;
}

// Each arena thread counts into its own stats; the accessors sum them. Fails if a reader
// misses a thread's counts. The run is repeated (a few times at most) until both threads
// took part: on a loaded machine oneTBB's worker may not wake in time for the first.
TEST(OfflinePipeline, StatsAreTheSumOfEveryThreadsCounts) {
  // 6400 packets: 50 bursts of 4 batches of 32 (the graph gathers up to 4 per shard), parsed
  // a burst at a time and classified a batch at a time.
  const auto traffic = MakeTraffic(64, 100, 7);
  uint64_t skipped = 0;
  for (const auto& p : traffic) skipped += p[8] == kSkipIt;
  auto pool = std::move(BufferPool::Create({.small_buffers = 16384, .large_buffers = 4})).value();
  bool both = false;
  for (int attempt = 0; attempt < 10 && !both; ++attempt) {
    Slow<FakeParse> parse;
    Slow<FakeClassify> classify;
    FakeRewrite rewrite;
    const auto pipeline = RunOnTwoThreads(parse, classify, rewrite, *pool, traffic);
    both = parse.threads.size() == 2;
    ExpectBalanced(pipeline->run_stats(), traffic.size());
    EXPECT_EQ(pipeline->run_stats().latency_ns.Read().total, traffic.size());
    ASSERT_EQ(pipeline->burst_size(), 128u);
    EXPECT_EQ(pipeline->parse_stats().calls.Load(), traffic.size() / 128);
    EXPECT_EQ(pipeline->parse_stats().packets.Load(), traffic.size());
    EXPECT_EQ(pipeline->classify_stats(0).calls.Load(), traffic.size() / 32);
    EXPECT_EQ(pipeline->classify_stats(0).packets.Load(), traffic.size() - skipped);
  }
  EXPECT_TRUE(both) << "both threads must have counted for this test to mean anything";
}

// Parse keeps nothing from one packet to the next, so the graph runs it in each burst's work,
// beside other threads' bursts, and not in the serial source (where it was a fifth of a
// replay's serial read). A slow parse that notes how many of its calls overlap sees two at
// once; with parse in the source it could never see more than one. Retried like the test
// above, since oneTBB's worker may not wake in time for the first run.
TEST(OfflinePipeline, ParseRunsOnSeveralThreadsAtOnce) {
  struct Overlapping {
    void Process(Batch& b) noexcept {
      {
        std::lock_guard lock(mu);
        most = std::max(most, ++inside);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      stage.Process(b);
      std::lock_guard lock(mu);
      --inside;
    }
    std::mutex mu;
    int inside = 0, most = 0;
    FakeParse stage;
  };
  // 6400 packets: 50 bursts of 4 batches of 32 (the graph gathers up to 4 per shard), parsed
  // a burst at a time and classified a batch at a time.
  const auto traffic = MakeTraffic(64, 100, 7);
  auto pool = std::move(BufferPool::Create({.small_buffers = 16384, .large_buffers = 4})).value();
  int most = 0;
  for (int attempt = 0; attempt < 10 && most < 2; ++attempt) {
    Overlapping parse;
    FakeClassify classify;
    FakeRewrite rewrite;
    const auto pipeline = RunOnTwoThreads(parse, classify, rewrite, *pool, traffic);
    ExpectBalanced(pipeline->run_stats(), traffic.size());
    EXPECT_EQ(pipeline->parse_stats().packets.Load(), traffic.size());
    most = parse.most;
  }
  EXPECT_EQ(most, 2) << "two threads must parse bursts at once";
}

TEST(OfflinePipeline, PerFlowOrderIsKeptWithTwoThreadsAndFourShards) {
  const auto traffic = MakeTraffic(50, 2000, 2);
  Harness h({.shards = 4, .threads = 2, .batch_size = 16});
  MemorySource src(&traffic, LinkType::kRaw);
  CaptureSink sink;
  ASSERT_TRUE(h.pipeline->Run(src, sink).ok());
  EXPECT_EQ(h.OrderViolations(), 0u);
  // And the sink saw every flow in order too (it gets the bursts reassembled).
  std::map<uint32_t, uint32_t> last;
  for (const auto& p : sink.out) {
    const uint32_t flow = LoadBe32(p.data()), seq = LoadBe32(p.data() + 4);
    auto it = last.find(flow);
    if (it != last.end()) {
      ASSERT_GT(seq, it->second);
    }
    last[flow] = seq;
  }
}

TEST(OfflinePipeline, OutputIsIdenticalWhateverTheThreadsAndShards) {
  const auto traffic = MakeTraffic(200, 100, 3);
  std::vector<std::vector<uint8_t>> reference;
  for (auto [shards, threads] : {std::pair{1u, 1u}, {4u, 1u}, {4u, 2u}, {7u, 2u}, {2u, 4u}}) {
    SCOPED_TRACE(::testing::Message() << shards << " shards, " << threads << " threads");
    Harness h({.shards = shards, .threads = threads, .batch_size = 64});
    MemorySource src(&traffic, LinkType::kRaw);
    CaptureSink sink;
    ASSERT_TRUE(h.pipeline->Run(src, sink).ok());
    if (reference.empty()) {
      reference = sink.out;
      ASSERT_FALSE(reference.empty());
    } else {
      ASSERT_EQ(sink.out.size(), reference.size());
      EXPECT_TRUE(sink.out == reference);
    }
  }
}

TEST(OfflinePipeline, StopDrainsEveryPacketInFlight) {
  const auto traffic = MakeTraffic(64, 64, 4);
  Harness h({.shards = 4, .threads = 2, .batch_size = 64});
  MemorySource src(&traffic, LinkType::kRaw, /*loops=*/100000);  // far more than will run
  CaptureSink sink;
  std::thread stopper([&] {
    while (h.pipeline->run_stats().packets_in.Load() < 200000) std::this_thread::yield();
    h.pipeline->Stop();
  });
  ASSERT_TRUE(h.pipeline->Run(src, sink).ok());
  stopper.join();
  const RunStats& r = h.pipeline->run_stats();
  EXPECT_GE(r.packets_in.Load(), 200000u);
  EXPECT_LT(r.packets_in.Load(), traffic.size() * 100000);
  ExpectBalanced(r, r.packets_in.Load());
  EXPECT_EQ(sink.seen, r.packets_in.Load());
  EXPECT_EQ(h.pool->Stats().orphaned, 0u);
  EXPECT_EQ(h.pool->Stats().free_central[0] , 16384u);  // every buffer came home
}

TEST(OfflinePipeline, NoHeapAllocationPerPacket) {
  const auto traffic = MakeTraffic(16, 64, 5);  // few flows: the fake rewrite's map stays put
  uint32_t burst = 0;
  auto allocations_for = [&](uint64_t loops) {
    Harness h({.shards = 2, .threads = 2, .batch_size = 64});
    burst = h.pipeline->burst_size();
    MemorySource src(&traffic, LinkType::kRaw, loops);
    NullSink sink;
    const uint64_t before = testing::ProcessAllocations();
    EXPECT_TRUE(h.pipeline->Run(src, sink).ok());
    EXPECT_EQ(sink.seen(), traffic.size() * loops);
    return testing::ProcessAllocations() - before;
  };
  const uint64_t small = allocations_for(10);    // 10k packets
  const uint64_t large = allocations_for(1000);  // 1M packets
  // Set-up allocates (graph nodes, queues, the fake stage's map). Per packet nothing. oneTBB
  // allocates two list nodes each time back-pressure reverses the source's edge to the limiter
  // and back: at most once per burst (256 packets here), in practice far less (dozens a run
  // in release, a few per hundred bursts under ASan). The bound is one per burst.
  ASSERT_EQ(burst, 256u);
  const uint64_t bursts = 1000 * 1024 / burst;
  EXPECT_LT(large, small + bursts) << "small run " << small << ", large run " << large;
  std::printf("allocations: %llu for 10k packets, %llu for 1M\n", (unsigned long long)small, (unsigned long long)large);
}

// `threads` is the user's: above the machine's CPU count the graph still runs on that many
// threads (oneTBB alone would cap them at the CPUs and print a warning). The offline graph
// works bursts to completion through ordered sections, so its threads cannot all be made to
// meet inside one stage (a thread waiting there holds its section, and the bursts behind it
// queue up); the stage checks instead, while the graph runs, that its arena has the threads
// and that oneTBB allows them all. (The inline graph's test has them meet.)
struct ThreadLimitProbe {
  void Process(Batch& b) noexcept {
    allowed = tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism);
    arena = tbb::this_task_arena::max_concurrency();
    classify.Process(b);
  }
  std::size_t allowed = 0;
  int arena = 0;
  FakeClassify classify;
};

TEST(OfflinePipeline, RunsOnAsManyThreadsAsAskedEvenAboveTheCpuCount) {
  const uint32_t threads = ThreadsAboveCpus();
  if (threads == 0) GTEST_SKIP() << "needs more threads than CPUs";
  auto pool = std::move(BufferPool::Create({.small_buffers = 16384, .large_buffers = 4})).value();
  FakeParse parse;
  ThreadLimitProbe probe;
  FakeRewrite rewrite;
  const std::vector<ShardStages> stages = {{StageRef::Of(probe), StageRef::Of(rewrite)}};
  OfflinePipeline pipeline({.shards = 1, .threads = threads, .batch_size = 32}, *pool, StageRef::Of(parse), stages);
  const auto traffic = MakeTraffic(512, 8, 6);
  MemorySource src(&traffic, LinkType::kRaw);
  CaptureSink sink;
  ASSERT_TRUE(pipeline.Run(src, sink).ok());
  EXPECT_EQ(probe.arena, static_cast<int>(threads));
  EXPECT_GE(probe.allowed, threads);
  EXPECT_EQ(rewrite.order_violations, 0u);
  ExpectBalanced(pipeline.run_stats(), traffic.size());
}

TEST(OfflinePipeline, ValidateRejectsImpossibleOptions) {
  auto pool = std::move(BufferPool::Create({.small_buffers = 2048, .large_buffers = 0})).value();
  EXPECT_FALSE(OfflinePipeline::Validate({.shards = 0}, *pool).ok());
  EXPECT_FALSE(OfflinePipeline::Validate({.shards = 65}, *pool).ok());
  EXPECT_FALSE(OfflinePipeline::Validate({.threads = 0}, *pool).ok());
  EXPECT_FALSE(OfflinePipeline::Validate({.batch_size = 257}, *pool).ok());
  const Status s = OfflinePipeline::Validate({.shards = 4, .threads = 2, .batch_size = 64}, *pool);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("pool too small"), std::string::npos) << s.message();
  EXPECT_TRUE(OfflinePipeline::Validate({.shards = 1, .threads = 1, .batch_size = 16}, *pool).ok());
}

}  // namespace
}  // namespace sluice
