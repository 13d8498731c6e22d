// ParseStage ns/packet per traffic mix and batch size. Each iteration restores every slot
// to what the source delivered (length, next = parse) and parses the batch; the restore is
// two stores per packet and is part of what is measured.
#include <benchmark/benchmark.h>

#include "bench/stages/stage_workloads.h"
#include "engine/stages/parse/parse_stage.h"

namespace sluice {
namespace {

// Parse a batch of one mix: args are the mix (bench::Mix) and the batch size.
void BM_Parse(benchmark::State& state) {
  const int mix = static_cast<int>(state.range(0));
  const auto n = static_cast<uint32_t>(state.range(1));
  bench::ParseWorkload w(bench::Pool(), mix, n);
  ParseStage stage({});
  for (auto _ : state) {
    w.Restore();
    stage.Process(w.batch());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * w.bytes()));
  state.counters["parsed_pct"] = 100.0 *
                                 static_cast<double>(stage.counters().Load(ParseCounter::kParsed)) /
                                 static_cast<double>(state.iterations() * n);
  state.SetLabel(bench::MixName(mix));
}
BENCHMARK(BM_Parse)->ArgsProduct(
    {{bench::kIpv4Tcp64, bench::kIpv6Ext, bench::kImix, bench::kAdversarial}, {64, 256}});

}  // namespace
}  // namespace sluice
