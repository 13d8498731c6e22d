// Differential test: the compiled classifier against a linear scan of RuleMatches, on random
// and adversarial rule sets, for several build options. Every failure prints the seed; rerun
// one with SLUICE_SEED=<seed>. Besides fixed seeds, each run adds one fresh seed.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <deque>

#include "engine/rules/classifier.h"
#include "tests/rules/rule_gen.h"

namespace sluice {
namespace {

using testing::RuleGen;

// Fixed seeds, plus one fresh seed per run (printed with any failure); SLUICE_SEED=<n> runs
// just that one. The heavy tests (big rule sets under every option set) use fewer.
std::vector<uint64_t> Seeds(bool heavy = false) {
  if (const char* s = std::getenv("SLUICE_SEED")) return {std::strtoull(s, nullptr, 10)};
  const auto fresh = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  if (heavy) return {1, 42, fresh};
  return {1, 2, 3, 42, 20240601, fresh};
}

struct NamedOptions {
  const char* name;
  ClassifierOptions options;
};

std::vector<NamedOptions> AllOptions() {
  std::vector<NamedOptions> v;
  v.push_back({"default", {}});
  ClassifierOptions single;
  single.partition = ClassifierOptions::Partition::kNever;
  v.push_back({"single-tree", single});
  ClassifierOptions split;
  split.partition = ClassifierOptions::Partition::kAlways;
  v.push_back({"partitioned", split});
  ClassifierOptions deep;
  deep.leaf_size = 1;
  deep.space_factor = 8;
  v.push_back({"leaf1", deep});
  ClassifierOptions narrow;
  narrow.leaf_size = 2;
  narrow.space_factor = 1;
  v.push_back({"binary-cuts-spfac1", narrow});
  ClassifierOptions tiny_budget;
  tiny_budget.replication = 1;
  tiny_budget.max_leaf_records = 64;  // runs out at once: big leaves from the first levels on
  v.push_back({"memory-capped", tiny_budget});
  v.push_back({"linear", ClassifierOptions::Linear()});
  return v;
}

// Compares both classifiers on one packet; returns false (after an ADD_FAILURE) on a mismatch.
bool Agree(const Classifier& tree, const LinearClassifier& linear, const PacketFields& f) {
  std::vector<uint32_t> want_counts;
  const uint32_t want = linear.Lookup(f, &want_counts);
  CountMatches counts;
  const uint32_t got = tree.Lookup(f, &counts);
  std::vector<uint32_t> got_counts;
  if (counts.overflow) {
    tree.ForEachCountMatch(f, got, [&](uint32_t r) { got_counts.push_back(r); });
  } else {
    got_counts.assign(counts.rule, counts.rule + counts.n);
  }
  if (got == want && got_counts == want_counts) return true;
  ADD_FAILURE() << "terminal: tree " << static_cast<int64_t>(got == kNoMatch ? -1 : got) << " linear "
                << static_cast<int64_t>(want == kNoMatch ? -1 : want) << "; count rules: tree " << got_counts.size()
                << " linear " << want_counts.size() << "; packet family " << static_cast<int>(f.family) << " proto "
                << int{f.proto} << " ports " << f.has_ports << " " << f.sport << "->" << f.dport;
  return false;
}

// LookupMany over a batch must give, packet by packet, what Lookup gives.
bool BatchAgrees(const Classifier& tree, const std::vector<PacketFields>& batch) {
  std::vector<const PacketFields*> ptrs;
  for (const PacketFields& f : batch) ptrs.push_back(&f);
  std::vector<uint32_t> out(batch.size());
  std::vector<CountMatches> counts(batch.size());
  tree.LookupMany(ptrs.data(), static_cast<uint32_t>(batch.size()), out.data(), counts.data());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    CountMatches one;
    const uint32_t want = tree.Lookup(batch[i], &one);
    if (out[i] != want || counts[i].n != one.n || counts[i].overflow != one.overflow ||
        !std::equal(one.rule, one.rule + one.n, counts[i].rule)) {
      ADD_FAILURE() << "LookupMany disagrees with Lookup at packet " << i << " of " << batch.size();
      return false;
    }
  }
  return true;
}

// Runs `packets` packets (half drawn inside random rules) through every option set, one by
// one against the linear scan and in batches of varying size against Lookup.
void CheckRuleSet(RuleGen& gen, const std::vector<RuleMatchInput>& rules, int packets) {
  LinearClassifier linear(rules);
  for (const NamedOptions& o : AllOptions()) {
    SCOPED_TRACE(o.name);
    const Classifier tree = Classifier::Build(rules, o.options);
    std::vector<PacketFields> batch;
    for (int i = 0; i < packets; ++i) {
      const PacketFields f = rules.empty() || gen.Chance(0.5) ? gen.RandomPacket()
                                                              : gen.PacketInside(rules[gen.Uniform(0, rules.size() - 1)]);
      if (!Agree(tree, linear, f)) return;
      batch.push_back(f);
      if (batch.size() == 1 + gen.Uniform(0, 70)) {
        if (!BatchAgrees(tree, batch)) return;
        batch.clear();
      }
    }
    if (!BatchAgrees(tree, batch)) return;
  }
}

TEST(ClassifierDiffTest, RandomRuleSets) {
  for (uint64_t seed : Seeds(/*heavy=*/true)) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::printf("ClassifierDiffTest.RandomRuleSets seed %llu\n", static_cast<unsigned long long>(seed));
    RuleGen gen(seed);
    for (int n : {0, 1, 5, 40, 300, 1200}) {
      SCOPED_TRACE("rules " + std::to_string(n));
      std::deque<MatchSpec> specs;
      std::vector<RuleMatchInput> rules;
      for (int i = 0; i < n; ++i) rules.push_back(gen.Input(&specs.emplace_back(gen.RandomMatch())));
      CheckRuleSet(gen, rules, n >= 1000 ? 1500 : 3000);
    }
  }
}

// Prefixes nested 32 deep, in both orders, each with a few port variants: every packet in the
// innermost prefix matches dozens of rules.
TEST(ClassifierDiffTest, ManyOverlappingPrefixes) {
  for (uint64_t seed : Seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    RuleGen gen(seed);
    std::deque<MatchSpec> specs;
    std::vector<RuleMatchInput> rules;
    for (bool widening : {false, true}) {
      for (int len = 0; len <= 32; ++len) {
        const int l = widening ? len : 32 - len;
        for (int variant = 0; variant < 3; ++variant) {
          MatchSpec& m = specs.emplace_back();
          m.src = {RuleGen::HostPrefix(L3Type::kIpv4, 0x0a0b0c0du, static_cast<uint8_t>(l))};
          if (variant == 1) m.dst_ports = {{80, 80}}, m.protos = {6};
          if (variant == 2) m.dst = {RuleGen::HostPrefix(L3Type::kIpv4, 0xc6120001u, static_cast<uint8_t>(32 - l))};
          rules.push_back(gen.Input(&m));
        }
      }
    }
    for (int i = 0; i < 300; ++i) {
      MatchSpec& m = specs.emplace_back(gen.RandomMatch(0.0));
      rules.push_back(gen.Input(&m));
    }
    CheckRuleSet(gen, rules, 4000);
    // And packets right at the nest's centre.
    LinearClassifier linear(rules);
    const Classifier tree = Classifier::Build(rules);
    for (int i = 0; i < 2000; ++i) {
      PacketFields f = gen.RandomPacket();
      f.family = L3Type::kIpv4;
      f.src = 0x0a0b0c0du ^ (gen.Uniform(0, 1) << gen.Uniform(0, 31));
      f.dst = 0xc6120001u ^ (gen.Uniform(0, 1) << gen.Uniform(0, 31));
      if (!Agree(tree, linear, f)) return;
    }
  }
}

// Every packet's answer is the last rule: each rule before it misses the packets (most in
// exactly one field), and the last rule is a catch-all (or, second round, a specific match).
TEST(ClassifierDiffTest, EveryPacketMatchesTheLastRule) {
  for (uint64_t seed : Seeds(/*heavy=*/true)) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    RuleGen gen(seed);
    for (bool catch_all : {true, false}) {
      const std::vector<PacketFields> packets = gen.WebPackets(64);
      std::deque<MatchSpec> specs;
      std::vector<RuleMatchInput> rules;
      gen.NearMissRules(packets, 600, specs, rules);
      MatchSpec& last = specs.emplace_back();
      if (!catch_all) last.protos = {6}, last.dst_ports = {{443, 443}};
      rules.push_back({&last, 0, 0, true});

      LinearClassifier linear(rules);
      for (const PacketFields& p : packets) ASSERT_EQ(linear.Lookup(p, nullptr), rules.size() - 1);
      for (const NamedOptions& o : AllOptions()) {
        SCOPED_TRACE(o.name);
        const Classifier tree = Classifier::Build(rules, o.options);
        for (const PacketFields& p : packets) {
          if (!Agree(tree, linear, p)) return;
        }
        // Neighbours of the probe packets (one field changed) exercise the near misses.
        for (int i = 0; i < 1000; ++i) {
          PacketFields p = packets[gen.Uniform(0, packets.size() - 1)];
          switch (gen.Uniform(0, 3)) {
            case 0: p.src ^= 1; break;
            case 1: p.dst ^= 1; break;
            case 2: p.dport = static_cast<uint16_t>(gen.Uniform(1, 65535)); break;
            default: p.proto = 7; p.has_ports = false; break;
          }
          if (!Agree(tree, linear, p)) return;
        }
      }
    }
  }
}

// More count rules match than CountMatches holds: the overflow path must list them all.
TEST(ClassifierDiffTest, CountRuleOverflow) {
  std::deque<MatchSpec> specs;
  std::vector<RuleMatchInput> rules;
  for (int i = 0; i < 3 * static_cast<int>(kMaxCountMatches); ++i) {
    MatchSpec& m = specs.emplace_back();
    if (i % 2 == 0) m.protos = {17};
    rules.push_back({&m, 0, 0, false});
  }
  MatchSpec& drop = specs.emplace_back();
  drop.dst_ports = {{53, 53}};
  rules.push_back({&drop, 0, 0, true});
  LinearClassifier linear(rules);
  RuleGen gen(7);
  for (const NamedOptions& o : AllOptions()) {
    SCOPED_TRACE(o.name);
    const Classifier tree = Classifier::Build(rules, o.options);
    for (int i = 0; i < 500; ++i) {
      PacketFields f = gen.RandomPacket();
      if (i % 3 == 0) f.proto = 17, f.has_ports = true, f.dport = 53;
      if (!Agree(tree, linear, f)) return;
    }
  }
}

// A one-rule classifier agrees with RuleMatches: list expansion loses and invents nothing.
TEST(ClassifierDiffTest, OneRuleExpansionIsExact) {
  RuleGen gen(11);
  for (int i = 0; i < 3000; ++i) {
    MatchSpec m = gen.RandomMatch(0.5);
    const RuleMatchInput in = gen.Input(&m);
    std::vector<MatchRecord> recs;
    ExpandRecords(in, 0, L3Type::kIpv4, &recs);
    ExpandRecords(in, 0, L3Type::kIpv6, &recs);
    ASSERT_LE(recs.size(), MatchRecordCount(m));
    const Classifier c = Classifier::Build(std::vector<RuleMatchInput>{in});
    for (int j = 0; j < 10; ++j) {
      const PacketFields f = j % 2 ? gen.RandomPacket() : gen.PacketInside(in);
      CountMatches counts;
      const uint32_t got = c.Lookup(f, &counts);
      const bool matched = in.terminal ? got == 0 : counts.n == 1;
      ASSERT_EQ(matched, RuleMatches(in, f)) << "seed 11, rule " << i << ", packet " << j;
    }
  }
}

TEST(ClassifierTest, StatsDescribeTheBuild) {
  RuleGen gen(5);
  std::deque<MatchSpec> specs;
  std::vector<RuleMatchInput> rules;
  for (int i = 0; i < 1000; ++i) rules.push_back(gen.Input(&specs.emplace_back(gen.RandomMatch()), false));
  const Classifier c = Classifier::Build(rules);
  const ClassifierStats& s = c.stats();
  EXPECT_EQ(s.rules, 1000u);
  EXPECT_GE(s.records, 1000u);
  EXPECT_GE(s.trees, 2u);  // at least one per family
  EXPECT_LE(s.trees, 6u);
  EXPECT_GT(s.nodes, 0u);
  EXPECT_GT(s.bytes, 0u);
  EXPECT_LE(s.max_leaf, 64u) << "random rules should cut well";
  const Classifier linear = Classifier::Build(rules, ClassifierOptions::Linear());
  EXPECT_EQ(linear.stats().nodes, 0u);
  EXPECT_LE(linear.stats().leaves, 2u) << "one leaf per family";
}

}  // namespace
}  // namespace sluice
