// Classifier: first-match lookup of a packet in an ordered rule list, compiled once.
//
// Design (per address family, built off the data path by Build()):
//   1. Rules become MatchRecords: boxes in the 10-dimensional field space of match_records.h.
//   2. Records may be split into up to three groups by address specificity (CutSplit's idea,
//      Li et al., INFOCOM 2018): source prefix at least /16 (IPv4) or /32 (IPv6); else
//      destination prefix that long; else the rest. Each group gets its own tree, so a rule
//      wild in the source does not get copied into every source cut of specific rules. More
//      trees mean more walks per lookup, so by default both layouts are built and the one
//      with the lower estimated cost on sample points (one inside each record) is kept.
//   3. Each tree is a decision tree whose nodes split one dimension at up to 14 points into up
//      to 15 children (HyperSplit's weighted-segment cuts, Qi et al. 2009, made k-way): the
//      points are quantiles of the records' overlap weight and always sit at record
//      boundaries, so a record is copied only where it straddles a cut. The dimension and the
//      fan-out are chosen per node to minimise the largest child within `space_factor`;
//      the tree is built breadth first under a global copy budget (`replication`). A node's
//      records are cut off after the first terminal record covering the whole node region
//      (nothing after it can win there); a stuck node drops records an earlier one shadows; a
//      node with at most `leaf_size` records is a leaf. Siblings with the same records that
//      all span both share one subtree.
//   4. A leaf holds copies of its records in rule order — one 64-byte line each for IPv4,
//      tested with SSE2 — ended by a sentinel. The lookup walks each tree in order of its
//      first rule (stopping once the best match precedes it) and scans the leaf up to the
//      first terminal match.
//
// Semantics: Lookup returns exactly what a linear scan of the rules in file order returns
// (tests/rules/classifier_diff_test.cpp compares the two on random and adversarial rule sets):
// the first matching rule that is not a count rule, and the count rules that matched before it.
//
// Cost: one tree walk (a few dependent loads) plus a short leaf scan per tree, at most three
// trees; no allocation, no strings. bench/rules/classifier_bench.cpp measures it against a
// linear scan of the same compact records at 10 .. 10,000 rules.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/rules/match_records.h"

namespace sluice {

inline constexpr uint32_t kNoMatch = 0xffffffff;
inline constexpr uint32_t kMaxCountMatches = 16;

// The count rules a packet matched before its terminal rule, in rule order.
struct CountMatches {
  uint32_t n = 0;
  bool overflow = false;  // more than kMaxCountMatches matched: Classifier::ForEachCountMatch has them all
  uint32_t rule[kMaxCountMatches];
};

struct ClassifierOptions {
  uint32_t leaf_size = 8;          // binth: a node with at most this many records is a leaf
  uint32_t space_factor = 4;       // a split's children may hold up to this many times its records
  // The copy budget of a tree: min(replication x its records, max_leaf_records) records in
  // leaves. 32 keeps leaves small at 10,000 rules (bench/rules/classifier_bench.cpp); the cap
  // bounds memory (64 MiB of IPv4 leaves) however many rules there are.
  uint32_t replication = 32;
  uint64_t max_leaf_records = uint64_t{1} << 20;
  uint32_t max_depth = 32;
  // kAlways: one tree per address-specificity group; kNever: one tree; kAuto: build both and
  // keep, per family, the one with the lower estimated lookup cost on points drawn from the
  // records themselves.
  enum class Partition : uint8_t { kAuto, kNever, kAlways } partition = Partition::kAuto;

  // Every rule in one leaf: the compiled form of a linear scan (the benchmark's baseline).
  static ClassifierOptions Linear() {
    ClassifierOptions o;
    o.leaf_size = 0xffffffff;
    o.partition = Partition::kNever;
    return o;
  }
};

struct ClassifierStats {
  uint32_t rules = 0;
  uint32_t records = 0;            // after list expansion, both families
  uint32_t trees = 0;
  uint32_t nodes = 0;
  uint32_t leaves = 0;
  uint64_t leaf_records = 0;       // record copies held by leaves
  uint32_t max_leaf = 0;           // records in the largest leaf
  uint32_t max_depth = 0;
  uint64_t bytes = 0;              // lookup structures
};

namespace classifier_detail {
template <typename A>
struct Tables;  // classifier.cpp
}  // namespace classifier_detail

class Classifier {
 public:
  Classifier();
  ~Classifier();
  Classifier(Classifier&&) noexcept;
  Classifier& operator=(Classifier&&) noexcept;

  // `rules` in file order; index i in the result means rules[i]. The MatchSpecs need only live
  // for the call.
  static Classifier Build(std::span<const RuleMatchInput> rules, const ClassifierOptions& options = {});

  // The first terminal rule matching f, or kNoMatch. When `counts` is given it receives the
  // count rules that matched before that rule.
  uint32_t Lookup(const PacketFields& f, CountMatches* counts) const noexcept;

  // Lookup for n packets: out[i] (and counts[i], when counts is given) as Lookup(*f[i]) would
  // give. Walks up to 16 packets through each tree in lockstep so that their cache misses
  // overlap; the classify stage uses it once per batch.
  void LookupMany(const PacketFields* const* f, uint32_t n, uint32_t* out, CountMatches* counts) const noexcept;

  // Calls fn(rule) for every count rule below `before` that f matches, in rule order. The
  // slow path for CountMatches::overflow: a scan of the count records only.
  template <typename Fn>
  void ForEachCountMatch(const PacketFields& f, uint32_t before, Fn&& fn) const {
    uint32_t last = kNoMatch;
    for (const MatchRecord& r : count_records_[f.family == L3Type::kIpv6 ? 1 : 0]) {
      if (r.rule >= before) break;
      if (r.rule != last && RecordMatches(r, f)) {
        fn(r.rule);
        last = r.rule;
      }
    }
  }

  bool has_count_rules() const noexcept { return !count_records_[0].empty() || !count_records_[1].empty(); }
  const ClassifierStats& stats() const noexcept { return stats_; }

  // The generic (slow) record test, exposed for tests.
  static bool RecordMatches(const MatchRecord& r, const PacketFields& f) noexcept;

 private:
  std::unique_ptr<classifier_detail::Tables<uint32_t>> v4_;
  std::unique_ptr<classifier_detail::Tables<U128>> v6_;
  std::vector<MatchRecord> count_records_[2];  // [IPv4, IPv6], rule order
  ClassifierStats stats_;
};

// The reference: RuleMatches over the rules in order. O(rules) per packet; the differential
// test's oracle and the benchmarks' naive baseline.
class LinearClassifier {
 public:
  explicit LinearClassifier(std::vector<RuleMatchInput> rules) : rules_(std::move(rules)) {}
  uint32_t Lookup(const PacketFields& f, std::vector<uint32_t>* counts) const {
    for (uint32_t i = 0; i < rules_.size(); ++i) {
      if (!RuleMatches(rules_[i], f)) continue;
      if (rules_[i].terminal) return i;
      if (counts) counts->push_back(i);
    }
    return kNoMatch;
  }

 private:
  std::vector<RuleMatchInput> rules_;
};

}  // namespace sluice
