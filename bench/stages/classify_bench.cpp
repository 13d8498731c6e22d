// ClassifyStage::Process ns/packet (batch time / 256) on parsed packets, at 10 .. 10,000 rules:
// field extraction, the flow-table check, the classifier, actions and counters — everything the
// stage does per packet except creating translations (bench/rules/flow_table_bench.cpp).
//
// Rules and traffic are tests/rules/rule_gen.h's (seed 1), made into real packets
// (bench::ClassifyWorkload):
//   acl        ClassBench-acl-like rules; half the packets inside a random rule, half not
//   last-rule  n-1 near misses, every packet's answer the last rule (a linear scan's worst case)
// Each iteration resets the 256 slots to kClassify (a byte store each) and classifies them.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <string>

#include "bench/stages/stage_workloads.h"

namespace sluice {
namespace {

bench::ClassifyWorkload& Get(bench::ClassifyProfile profile, int n) {
  static std::map<std::pair<int, int>, std::unique_ptr<bench::ClassifyWorkload>> cache;
  auto& slot = cache[{profile, n}];
  if (!slot) slot = std::make_unique<bench::ClassifyWorkload>(bench::Pool(), profile, n);
  return *slot;
}

void BM_ClassifyStage(benchmark::State& state) {
  const auto profile = static_cast<bench::ClassifyProfile>(state.range(0));
  bench::ClassifyWorkload& w = Get(profile, static_cast<int>(state.range(1)));
  uint64_t now = 0;
  for (auto _ : state) {
    w.Restore();
    w.stage().Process(w.batch(), now += 1000);
    benchmark::DoNotOptimize(w.batch().nexts());
  }
  state.SetItemsProcessed(state.iterations() * w.batch().size());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * w.bytes()));
  const ClassifierStats& s = w.rules().Load()->classifier_stats();
  state.SetLabel(std::string(profile == bench::kAcl ? "acl" : "last-rule") + " trees=" + std::to_string(s.trees) +
                 " KiB=" + std::to_string(s.bytes / 1024));
}
BENCHMARK(BM_ClassifyStage)->ArgsProduct({{bench::kAcl, bench::kLastRule}, {10, 100, 1000, 10000}});

}  // namespace
}  // namespace sluice
