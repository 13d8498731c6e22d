// RewriteStage ns/packet per operation, and the whole data path of a 64 B port rewrite
// (copy in, parse, rewrite, give back) to compare with the memcpy floor of packet_bench.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <vector>

#include "bench/stages/stage_workloads.h"
#include "engine/pool/buffer_pool.h"
#include "engine/stages/parse/parse_stage.h"
#include "engine/stages/rewrite/rewrite_stage.h"

namespace sluice {
namespace {

// One rewrite operation (bench::RewriteOp) over a batch of 64 parsed 64 B TCP SYNs (IPv6 for
// addr6_set). Each iteration first restores the pristine bytes (a 60-byte copy per packet:
// the noop row measures that alone), then rewrites. Items = packets.
void BM_RewriteOp(benchmark::State& state) {
  const int op = static_cast<int>(state.range(0));
  bench::RewriteWorkload w(bench::Pool(), op);
  RewriteStage stage;
  for (auto _ : state) {
    w.Restore();
    stage.Process(w.batch());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * bench::RewriteWorkload::kPackets));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * w.bytes()));
  state.SetLabel(bench::RewriteOpName(op));
}
BENCHMARK(BM_RewriteOp)->DenseRange(0, bench::kNumRewriteOps - 1);

// The data path at 64 B, to set against BM_MemcpyFloor/0/64 (packet_bench), which does the
// first and last steps only: take buffers from the pool cache, copy each 60-byte frame in
// (IPv4 TCP to port 80, many flows), parse, rewrite port 80 to 8080 with the checksum fixed
// (the classify stand-in sets next and plan), record verdicts, give the buffers back.
// Args: batch size. Items = packets.
void BM_ParseRewritePort64B(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const auto packets = bench::MixPackets(bench::kIpv4Tcp64, n);
  RewritePlan plan;
  plan.dst_port = PortRewrite::Map({{.first = 80, .last = 80, .to = 8080}});
  PoolCache cache(bench::Pool());
  ParseStage parse({});
  RewriteStage rewrite;
  Batch batch;
  batch.set_limit(kMaxBatch);
  PacketBuffer* bufs[kMaxBatch];
  for (auto _ : state) {
    const uint32_t got = cache.GetBulk(SizeClass::kSmall, bufs, n);
    for (uint32_t i = 0; i < got; ++i) {
      bufs[i]->Assign(packets[i].bytes.data(), static_cast<uint32_t>(packets[i].bytes.size()));
      bufs[i]->meta().link_type = LinkType::kEthernet;
      batch.Push(PacketRef(bufs[i]));
    }
    parse.Process(batch);
    for (uint32_t i = 0; i < got; ++i) {
      if (batch.next(i) != Next::kClassify) continue;
      batch.set_next(i, Next::kRewrite);
      batch.set_plan(i, &plan);
    }
    rewrite.Process(batch);
    batch.RecordVerdicts();
    cache.PutBulk(bufs, batch.TakeBuffers(bufs));
  }
  uint64_t bytes = 0;
  for (const auto& p : packets) bytes += p.bytes.size();
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["rewritten_pct"] =
      100.0 * static_cast<double>(rewrite.counters().Load(RewriteCounter::kRewritten)) /
      static_cast<double>(state.iterations() * n);
}
BENCHMARK(BM_ParseRewritePort64B)->Arg(64)->Arg(256);

}  // namespace
}  // namespace sluice
