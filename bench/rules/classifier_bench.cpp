// Classifier lookup, ns per packet, at 10 .. 10,000 rules: the compiled trees against a linear
// scan of the same compact records (the fair baseline) and the naive rule-by-rule scan.
//
// Rule sets (seed 1, tests/rules/rule_gen.h):
//   acl        ClassBench-acl-like rules (specific destinations, usually a source, TCP/UDP,
//              a port or range); traffic: half drawn inside random rules, half from the same
//              address pools.
//   last-rule  adversarial: n-1 near-miss rules that miss every packet, then one rule that
//              matches them all, so every lookup's answer is the last rule.
// Each iteration classifies one 256-packet batch of precomputed PacketFields; items = packets.
#include <benchmark/benchmark.h>

#include <deque>
#include <map>
#include <memory>

#include "engine/rules/classifier.h"
#include "tests/rules/rule_gen.h"

namespace sluice {
namespace {

constexpr int kPackets = 4096;
constexpr int kBatch = 256;

struct Workload {
  std::deque<MatchSpec> specs;
  std::vector<RuleMatchInput> rules;
  std::vector<PacketFields> packets;
  Classifier tree;
  Classifier linear;
  std::unique_ptr<LinearClassifier> naive;
};

enum Profile { kAcl = 0, kLastRule = 1 };

const Workload& Get(Profile profile, int n) {
  static std::map<std::pair<int, int>, std::unique_ptr<Workload>> cache;
  auto& slot = cache[{profile, n}];
  if (slot) return *slot;
  slot = std::make_unique<Workload>();
  Workload& w = *slot;
  testing::RuleGen gen(1);
  if (profile == kAcl) gen.AclWorkload(n, kPackets, w.specs, w.rules, w.packets);
  else gen.LastRuleWorkload(n, kPackets, w.specs, w.rules, w.packets);
  w.tree = Classifier::Build(w.rules);
  w.linear = Classifier::Build(w.rules, ClassifierOptions::Linear());
  w.naive = std::make_unique<LinearClassifier>(w.rules);
  return w;
}

void Label(benchmark::State& state, Profile p, const Classifier& c) {
  const ClassifierStats& s = c.stats();
  state.SetLabel(std::string(p == kAcl ? "acl" : "last-rule") + " trees=" + std::to_string(s.trees) +
                 " max_leaf=" + std::to_string(s.max_leaf) + " KiB=" + std::to_string(s.bytes / 1024));
}

template <bool kLinear>
void BM_Classify(benchmark::State& state) {
  const auto profile = static_cast<Profile>(state.range(0));
  const int n = static_cast<int>(state.range(1));
  const Workload& w = Get(profile, n);
  const Classifier& c = kLinear ? w.linear : w.tree;
  std::size_t next = 0;
  uint64_t sink = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      sink += c.Lookup(w.packets[next], nullptr);
      next = (next + 1) % w.packets.size();
    }
    benchmark::DoNotOptimize(sink);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  Label(state, profile, c);
}

// The compiled trees.
void BM_ClassifyTree(benchmark::State& state) { BM_Classify<false>(state); }
// The same compact records in one leaf: a linear scan at its fastest.
void BM_ClassifyLinearRecords(benchmark::State& state) { BM_Classify<true>(state); }

// The compiled trees through LookupMany, 256 packets a call: how the classify stage calls it.
void BM_ClassifyTreeBatched(benchmark::State& state) {
  const auto profile = static_cast<Profile>(state.range(0));
  const Workload& w = Get(profile, static_cast<int>(state.range(1)));
  std::vector<const PacketFields*> ptrs;
  for (const PacketFields& f : w.packets) ptrs.push_back(&f);
  std::vector<uint32_t> out(kBatch);
  std::size_t next = 0;
  for (auto _ : state) {
    w.tree.LookupMany(ptrs.data() + next, kBatch, out.data(), nullptr);
    benchmark::DoNotOptimize(out.data());
    next = (next + kBatch) % w.packets.size();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  Label(state, profile, w.tree);
}

// RuleMatches over the rules in order: the reference semantics.
void BM_ClassifyNaive(benchmark::State& state) {
  const auto profile = static_cast<Profile>(state.range(0));
  const Workload& w = Get(profile, static_cast<int>(state.range(1)));
  std::size_t next = 0;
  uint64_t sink = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      sink += w.naive->Lookup(w.packets[next], nullptr);
      next = (next + 1) % w.packets.size();
    }
    benchmark::DoNotOptimize(sink);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

// Build time, for reload budgeting (off the data path).
void BM_Build(benchmark::State& state) {
  const auto profile = static_cast<Profile>(state.range(0));
  const Workload& w = Get(profile, static_cast<int>(state.range(1)));
  for (auto _ : state) benchmark::DoNotOptimize(Classifier::Build(w.rules));
  state.SetItemsProcessed(state.iterations() * state.range(1));
}

#define SLUICE_SIZES ->ArgsProduct({{kAcl, kLastRule}, {10, 100, 1000, 10000}})
BENCHMARK(BM_ClassifyTree) SLUICE_SIZES;
BENCHMARK(BM_ClassifyTreeBatched) SLUICE_SIZES;
BENCHMARK(BM_ClassifyLinearRecords) SLUICE_SIZES;
BENCHMARK(BM_ClassifyNaive) SLUICE_SIZES;
BENCHMARK(BM_Build) SLUICE_SIZES->Unit(benchmark::kMillisecond);
#undef SLUICE_SIZES

}  // namespace
}  // namespace sluice
