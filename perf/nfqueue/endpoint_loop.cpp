// endpoint_loop: sluice's NFQUEUE path with nothing else — NfqueueEndpoint per queue and the
// InlinePipeline with pass-through stages (every packet accepted unmodified), so a run
// measures the I/O mechanism and the graph, not rules. The counterpart of naive_nfq.
//
//   endpoint_loop [--queues N] [--first-queue Q] [--batch B] [--threads T] [--maxlen N]
//                 [--rcvbuf BYTES] [--mark M] [--gso 0|1] [--fail-open 0|1] [--inline 0|1]
//
// Queues Q … Q+N-1, one shard each. Every verdict sets mark M (default 0x100, mask M).
// --inline 1 (one queue): no graph — one thread loops Receive, the pass stages, Send, the way
// OfflinePipeline::RunInline does: what the endpoint costs without the oneTBB hand-off.
// Runs until SIGINT/SIGTERM, stops the pipeline (every received packet verdicted), then
// prints one line per queue, key=value: the endpoint's counters and the run's totals.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "engine/graph/pipeline.h"
#include "engine/io/nfqueue/nfqueue_endpoint.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

}  // namespace

int main(int argc, char** argv) {
  using namespace sluice;
  uint32_t queues = 1, first = 0, batch = 64, threads = 1;
  bool inline_loop = false;
  NfqueueOptions o;
  o.verdict_mark = o.verdict_mask = 0x100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const unsigned long v = std::strtoul(argv[i + 1], nullptr, 0);
    if (k == "--queues")
      queues = static_cast<uint32_t>(v);
    else if (k == "--first-queue")
      first = static_cast<uint32_t>(v);
    else if (k == "--batch")
      batch = static_cast<uint32_t>(v);
    else if (k == "--threads")
      threads = static_cast<uint32_t>(v);
    else if (k == "--maxlen")
      o.queue_maxlen = static_cast<uint32_t>(v);
    else if (k == "--rcvbuf")
      o.rcvbuf_bytes = static_cast<uint32_t>(v);
    else if (k == "--mark")
      o.verdict_mark = o.verdict_mask = static_cast<uint32_t>(v);
    else if (k == "--gso")
      o.gso = v != 0;
    else if (k == "--fail-open")
      o.fail_open = v != 0;
    else if (k == "--inline")
      inline_loop = v != 0;
    else {
      std::fprintf(stderr,
                   "usage: endpoint_loop [--queues N] [--first-queue Q] [--batch B] [--threads T] "
                   "[--maxlen N]\n"
                   "                     [--rcvbuf BYTES] [--mark M] [--gso 0|1] [--fail-open 0|1] "
                   "[--inline 0|1]\n");
      return 2;
    }
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  auto pool = BufferPool::Create({.small_buffers = 16384, .large_buffers = 256});
  if (!pool.ok())
    return std::fprintf(stderr, "endpoint_loop: %s\n", pool.status().message().c_str()), 1;
  std::vector<std::unique_ptr<NfqueueEndpoint>> endpoints;
  for (uint32_t q = 0; q < queues; ++q) {
    o.queue = static_cast<uint16_t>(first + q);
    auto ep = NfqueueEndpoint::Open(o);
    if (!ep.ok())
      return std::fprintf(stderr, "endpoint_loop: %s\n", ep.status().message().c_str()), 1;
    endpoints.push_back(std::move(ep).value());
  }
  std::deque<PassStage<Next::kParse, Next::kClassify>> parse(queues);
  std::deque<PassStage<Next::kClassify, Next::kAccept>> classify(queues);
  std::deque<PassStage<Next::kRewrite, Next::kAccept>> rewrite(queues);
  std::vector<InlineShard> shards;
  for (uint32_t q = 0; q < queues; ++q) {
    shards.push_back({endpoints[q].get(), StageRef::Of(parse[q]), StageRef::Of(classify[q]),
                      StageRef::Of(rewrite[q])});
  }
  const InlineOptions io{.threads = threads, .batch_size = batch};
  if (Status s = InlinePipeline::Validate(io, queues, **pool); !s.ok()) {
    return std::fprintf(stderr, "endpoint_loop: %s\n", s.message().c_str()), 1;
  }
  if (inline_loop && queues != 1)
    return std::fprintf(stderr, "endpoint_loop: --inline takes one queue\n"), 2;
  std::vector<RunStats> inline_stats(queues);
  std::unique_ptr<InlinePipeline> pipeline;
  if (inline_loop) {
    PoolCache cache(**pool);
    Batch b;
    b.set_limit(batch);
    std::printf("ready\n");
    std::fflush(stdout);
    PacketBuffer* bufs[kMaxBatch];
    while (!g_stop) {
      const uint32_t n = endpoints[0]->Receive(cache, b, batch, io.receive_wait);
      if (n == 0) continue;
      inline_stats[0].packets_in.Add(n);
      parse[0].Process(b);
      classify[0].Process(b);
      rewrite[0].Process(b);
      b.RecordVerdicts();
      inline_stats[0].accepted.Add(n);
      endpoints[0]->Send(b);
      cache.PutBulk(bufs, b.TakeBuffers(bufs));
    }
  } else {
    pipeline = std::make_unique<InlinePipeline>(io, **pool, shards);
    pipeline->Start();
    std::printf("ready\n");
    std::fflush(stdout);
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pipeline->Stop();
  }

  for (uint32_t q = 0; q < queues; ++q) {
    const NfqueueEndpoint& ep = *endpoints[q];
    std::printf("endpoint_loop queue=%u batch=%u rcvbuf=%u", ep.queue(), batch, ep.rcvbuf_bytes());
    for (std::size_t i = 0; i < kNfqueueCounterTable.size(); ++i) {
      std::printf(" %.*s=%llu", static_cast<int>(kNfqueueCounterTable[i].name.size()),
                  kNfqueueCounterTable[i].name.data(),
                  static_cast<unsigned long long>(ep.counters().LoadAt(i)));
    }
    std::printf(" balanced=%d\n",
                (pipeline ? pipeline->run_stats(q) : inline_stats[q]).Balanced() ? 1 : 0);
  }
  return 0;
}
