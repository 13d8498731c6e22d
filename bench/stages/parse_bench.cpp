// ParseStage ns/packet per traffic mix and batch size. Each iteration restores every slot
// to what the source delivered (length, next = parse) and parses the batch; the restore is
// two stores per packet and is part of what is measured.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "bench/stages/bench_traffic.h"
#include "engine/pool/buffer_pool.h"
#include "engine/stages/parse/parse_stage.h"

namespace sluice {
namespace {

// Parse a batch of one mix: args are the mix (bench::Mix) and the batch size.
void BM_Parse(benchmark::State& state) {
  const int mix = static_cast<int>(state.range(0));
  const auto n = static_cast<uint32_t>(state.range(1));
  const auto packets = bench::MixPackets(mix, n);
  PoolCache cache(bench::Pool());
  Batch batch;
  batch.set_limit(kMaxBatch);
  std::vector<uint32_t> len(n);
  uint64_t bytes = 0;
  for (uint32_t i = 0; i < n; ++i) {
    PacketBuffer* b = cache.Get(SizeClass::kSmall);
    b->Assign(packets[i].bytes.data(), static_cast<uint32_t>(packets[i].bytes.size()));
    b->meta().link_type = packets[i].link;
    len[i] = b->len();
    bytes += len[i];
    batch.Push(PacketRef(b));
  }
  ParseStage stage({});
  for (auto _ : state) {
    for (uint32_t i = 0; i < n; ++i) {
      batch.packet(i).meta().len = len[i];
      batch.set_next(i, Next::kParse);
    }
    stage.Process(batch);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["parsed_pct"] = 100.0 *
                                 static_cast<double>(stage.counters().Load(ParseCounter::kParsed)) /
                                 static_cast<double>(state.iterations() * n);
  state.SetLabel(bench::MixName(mix));
  for (uint32_t i = 0; i < n; ++i) batch.set_next(i, Next::kAccept);
  batch.RecordVerdicts();
  PacketBuffer* out[kMaxBatch];
  cache.PutBulk(out, batch.TakeBuffers(out));
}
BENCHMARK(BM_Parse)->ArgsProduct(
    {{bench::kIpv4Tcp64, bench::kIpv6Ext, bench::kImix, bench::kAdversarial}, {64, 256}});

}  // namespace
}  // namespace sluice
