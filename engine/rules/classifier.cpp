#include "engine/rules/classifier.h"

#include <algorithm>
#include <deque>
#include <type_traits>

#include "engine/core/assert.h"

namespace sluice {
namespace classifier_detail {

inline constexpr uint32_t kLeafRef = 0x80000000u;
inline constexpr uint32_t kCountBit = 0x80000000u;
inline constexpr uint32_t kRuleMask = 0x7fffffffu;

// The word a tree walk extracts bits from: 64 bits hold every IPv4 dimension.
template <typename A>
struct WordOf {
  using type = uint64_t;
};
template <>
struct WordOf<U128> {
  using type = U128;
};

// A MatchRecord as a leaf stores it: each dimension as (lo, hi - lo), so a range test is one
// subtraction and one unsigned compare. 72 bytes for IPv4, 120 for IPv6.
template <typename A>
struct Record {
  A src_lo, src_span, dst_lo, dst_span;
  uint32_t sport_lo, sport_span, dport_lo, dport_span;
  uint32_t in_lo, in_span, out_lo, out_span;
  uint32_t len_lo, len_span;
  uint8_t proto_lo, proto_span, dir_lo, dir_span, dscp_lo, dscp_span;
  uint16_t flags_mask, flags_value;
  uint32_t rule;  // rule index | kCountBit for a count rule
};

template <typename A>
struct Key {
  std::array<typename WordOf<A>::type, kNumDims> d;
  uint16_t flags;
};

template <typename A>
inline void MakeKey(const PacketFields& f, Key<A>* k) noexcept {
  using W = typename WordOf<A>::type;
  k->d[kDimSrc] = static_cast<W>(f.src);
  k->d[kDimDst] = static_cast<W>(f.dst);
  k->d[kDimSport] = f.has_ports ? kPortPresent | f.sport : 0;
  k->d[kDimDport] = f.has_ports ? kPortPresent | f.dport : 0;
  k->d[kDimProto] = f.proto;
  k->d[kDimDir] = static_cast<uint8_t>(f.direction);
  k->d[kDimInIf] = f.in_if;
  k->d[kDimOutIf] = f.out_if;
  k->d[kDimDscp] = f.dscp;
  k->d[kDimLen] = f.length < kMaxLengthKey ? f.length : kMaxLengthKey;
  k->flags = f.tcp_flags;
}

inline bool In32(uint64_t v, uint32_t lo, uint32_t span) noexcept {
  return static_cast<uint32_t>(static_cast<uint32_t>(v) - lo) <= span;
}

template <typename A>
inline bool Matches(const Record<A>& r, const Key<A>& k) noexcept {
  if (static_cast<A>(static_cast<A>(k.d[kDimSrc]) - r.src_lo) > r.src_span ||
      static_cast<A>(static_cast<A>(k.d[kDimDst]) - r.dst_lo) > r.dst_span) {
    return false;
  }
  // The rest without branches: a leaf scan mostly fails on addresses or on one of these.
  unsigned ok = In32(static_cast<uint64_t>(k.d[kDimDport]), r.dport_lo, r.dport_span);
  ok &= In32(static_cast<uint64_t>(k.d[kDimProto]), r.proto_lo, r.proto_span);
  ok &= In32(static_cast<uint64_t>(k.d[kDimSport]), r.sport_lo, r.sport_span);
  ok &= In32(static_cast<uint64_t>(k.d[kDimDir]), r.dir_lo, r.dir_span);
  ok &= In32(static_cast<uint64_t>(k.d[kDimDscp]), r.dscp_lo, r.dscp_span);
  ok &= In32(static_cast<uint64_t>(k.d[kDimLen]), r.len_lo, r.len_span);
  ok &= In32(static_cast<uint64_t>(k.d[kDimInIf]), r.in_lo, r.in_span);
  ok &= In32(static_cast<uint64_t>(k.d[kDimOutIf]), r.out_lo, r.out_span);
  ok &= (k.flags & r.flags_mask) == r.flags_value;
  return ok != 0;
}

// A node splits one dimension at up to kMaxThresholds points: child c holds the values v with
// thr[c-1] < v <= thr[c]. Unused thresholds are all-ones, so the child index is simply the
// number of thresholds below v: a fixed-length, branch-free count.
inline constexpr uint32_t kMaxThresholds = 14;

template <typename A>
struct Tree {
  using W = typename WordOf<A>::type;
  using T = std::conditional_t<std::is_same_v<A, U128>, U128, uint32_t>;  // every IPv4 dimension fits 32 bits
  struct Node {
    T thr[kMaxThresholds];
    uint8_t dim;
    uint32_t first_child;
  };
  std::vector<Node> nodes;
  std::vector<uint32_t> children;       // a node index, or kLeafRef | leaf index
  std::vector<uint64_t> leaves;         // first record << 32 | record count
  std::vector<Record<A>> leaf_records;  // each leaf's records, contiguous, in rule order
  uint32_t root = kLeafRef;
  uint32_t min_rule = kNoMatch;
};

template <typename A>
struct Tables {
  std::vector<Tree<A>> trees;  // sorted by min_rule
};

template <typename A>
Record<A> Compact(const MatchRecord& m) {
  Record<A> r{};
  r.src_lo = static_cast<A>(m.lo[kDimSrc]);
  r.src_span = static_cast<A>(m.hi[kDimSrc] - m.lo[kDimSrc]);
  r.dst_lo = static_cast<A>(m.lo[kDimDst]);
  r.dst_span = static_cast<A>(m.hi[kDimDst] - m.lo[kDimDst]);
  auto set32 = [&](Dim d, uint32_t& lo, uint32_t& span) {
    lo = static_cast<uint32_t>(m.lo[d]);
    span = static_cast<uint32_t>(m.hi[d] - m.lo[d]);
  };
  auto set8 = [&](Dim d, uint8_t& lo, uint8_t& span) {
    lo = static_cast<uint8_t>(m.lo[d]);
    span = static_cast<uint8_t>(m.hi[d] - m.lo[d]);
  };
  set32(kDimSport, r.sport_lo, r.sport_span);
  set32(kDimDport, r.dport_lo, r.dport_span);
  set32(kDimInIf, r.in_lo, r.in_span);
  set32(kDimOutIf, r.out_lo, r.out_span);
  set32(kDimLen, r.len_lo, r.len_span);
  set8(kDimProto, r.proto_lo, r.proto_span);
  set8(kDimDir, r.dir_lo, r.dir_span);
  set8(kDimDscp, r.dscp_lo, r.dscp_span);
  r.flags_mask = m.flags_mask;
  r.flags_value = m.flags_value;
  r.rule = m.rule | (m.terminal ? 0 : kCountBit);
  return r;
}

// Builds one tree breadth first, so that when the replication budget runs out it is the
// deepest levels that stay unsplit, not whole late subtrees.
template <typename A>
class TreeBuilder {
 public:
  using TreeT = Tree<A>;
  using T = typename TreeT::T;

  TreeBuilder(const std::vector<MatchRecord>& recs, L3Type family, const ClassifierOptions& o, TreeT* tree,
              ClassifierStats* stats)
      : recs_(recs), o_(o), tree_(*tree), stats_(*stats) {
    for (int d = 0; d < kNumDims; ++d) top_[d] = AllOnes(DimWidth(static_cast<Dim>(d), family));
  }

  void Build(std::vector<uint32_t> items) {
    tree_.min_rule = items.empty() ? kNoMatch : recs_[items.front()].rule;
    budget_ = std::max<uint64_t>(uint64_t{o_.replication} * items.size(), 4096);
    committed_ = items.size();
    Work root;
    root.region.lo.fill(0);
    root.region.hi = top_;
    root.items = std::move(items);
    root.slot = kRootSlot;
    queue_.push_back(std::move(root));
    while (!queue_.empty()) {
      Work w = std::move(queue_.front());
      queue_.pop_front();
      const uint32_t ref = MakeNode(w);
      if (w.slot == kRootSlot) tree_.root = ref;
      else tree_.children[w.slot] = ref;
    }
    for (const auto& [slot, same_as] : aliases_) tree_.children[slot] = tree_.children[same_as];
  }

 private:
  static constexpr uint32_t kRootSlot = 0xffffffff;
  struct Region {
    std::array<U128, kNumDims> lo, hi;
  };
  struct Work {
    std::vector<uint32_t> items;
    Region region;
    uint32_t depth = 0;
    uint32_t slot = 0;
  };
  struct Split {
    int dim = -1;
    std::vector<U128> thr;  // sorted, each in [region.lo, region.hi)
    uint64_t max_child = 0;
    uint64_t sum = 0;
  };

  static bool Covers(const MatchRecord& r, const Region& g) {
    for (int d = 0; d < kNumDims; ++d) {
      if (r.lo[d] > g.lo[d] || r.hi[d] < g.hi[d]) return false;
    }
    return true;
  }

  // Records after the first terminal record covering the region can never be the answer in
  // it (and count rules after it are never reached).
  void Prune(std::vector<uint32_t>& items, const Region& g) const {
    for (std::size_t i = 0; i < items.size(); ++i) {
      const MatchRecord& r = recs_[items[i]];
      if (r.terminal && r.flags_mask == 0 && Covers(r, g)) {
        items.resize(i + 1);
        return;
      }
    }
  }

  // Removes each record that an earlier terminal record without a flags test covers within
  // the region: a scan reaching it would have stopped before. O(n^2), only on stuck nodes.
  void RemoveShadowed(std::vector<uint32_t>& items, const Region& g) const {
    std::vector<uint32_t> kept;
    kept.reserve(items.size());
    for (uint32_t j : items) {
      const MatchRecord& b = recs_[j];
      const bool shadowed = std::any_of(kept.begin(), kept.end(), [&](uint32_t i) {
        const MatchRecord& a = recs_[i];
        if (!a.terminal || a.flags_mask != 0) return false;
        for (int d = 0; d < kNumDims; ++d) {
          if (a.lo[d] > std::max(b.lo[d], g.lo[d]) || a.hi[d] < std::min(b.hi[d], g.hi[d])) return false;
        }
        return true;
      });
      if (!shadowed) kept.push_back(j);
    }
    items.swap(kept);
  }

  static uint32_t ChildOf(const std::vector<U128>& thr, U128 v) {
    return static_cast<uint32_t>(std::lower_bound(thr.begin(), thr.end(), v) - thr.begin());
  }

  // Weighted-segment split (HyperSplit, Qi et al. 2009), k-way: the dimension's elementary
  // intervals weighted by how many records overlap them, cut at the weight quantiles, always at
  // record boundaries, so a record is copied only where it really straddles a cut.
  Split Choose(const std::vector<uint32_t>& items, const Region& g) const {
    Split best;
    const uint64_t n = items.size();
    std::vector<std::pair<U128, int>> events;  // (boundary, +1 start at lo / -1 end after hi)
    std::vector<U128> bounds;
    std::vector<uint64_t> weight;
    for (int d = 0; d < kNumDims; ++d) {
      if (g.lo[d] == g.hi[d]) continue;
      events.clear();
      for (uint32_t i : items) {
        const MatchRecord& r = recs_[i];
        const U128 lo = std::max(r.lo[d], g.lo[d]);
        const U128 hi = std::min(r.hi[d], g.hi[d]);
        events.push_back({lo, +1});
        if (hi < g.hi[d]) events.push_back({hi + 1, -1});
      }
      std::sort(events.begin(), events.end());
      // Elementary interval j starts at bounds[j]; weight[j] records overlap it.
      bounds.clear();
      weight.clear();
      int64_t open = 0;
      for (std::size_t e = 0; e < events.size();) {
        const U128 at = events[e].first;
        while (e < events.size() && events[e].first == at) open += events[e++].second;
        if (at < g.lo[d]) continue;
        bounds.push_back(at);
        weight.push_back(static_cast<uint64_t>(open));
      }
      if (bounds.empty() || bounds.front() != g.lo[d]) {
        bounds.insert(bounds.begin(), g.lo[d]);
        weight.insert(weight.begin(), 0);
      }
      if (bounds.size() < 2) continue;  // every record spans the region here
      uint64_t total = 0;
      for (uint64_t w : weight) total += w;
      for (uint32_t k : {2u, 4u, 8u, kMaxThresholds + 1}) {
        std::vector<U128> thr;
        uint64_t acc = 0;
        uint32_t next = 1;
        for (std::size_t j = 0; j + 1 < bounds.size() && next < k; ++j) {
          acc += weight[j];
          if (acc * k >= uint64_t{next} * total) {
            thr.push_back(bounds[j + 1] - 1);  // interval j ends just before bounds[j + 1]
            while (next < k && acc * k >= uint64_t{next} * total) ++next;
          }
        }
        if (thr.empty()) thr.push_back(bounds[bounds.size() / 2] - 1);
        std::vector<int64_t> diff(thr.size() + 2, 0);
        uint64_t sum = 0;
        for (uint32_t i : items) {
          const MatchRecord& r = recs_[i];
          const uint32_t a = ChildOf(thr, std::max(r.lo[d], g.lo[d]));
          const uint32_t b = ChildOf(thr, std::min(r.hi[d], g.hi[d]));
          ++diff[a];
          --diff[b + 1];
          sum += b - a + 1;
        }
        int64_t run = 0;
        uint64_t max_child = 0;
        for (std::size_t c = 0; c <= thr.size(); ++c) {
          run += diff[c];
          max_child = std::max(max_child, static_cast<uint64_t>(run));
        }
        if (k > 2 && sum > uint64_t{o_.space_factor} * n) break;
        const bool better = best.dim < 0 || max_child < best.max_child ||
                            (max_child == best.max_child && sum < best.sum);
        if (better) best = {d, std::move(thr), max_child, sum};
        if (bounds.size() <= k) break;  // every boundary is already a cut
      }
    }
    return best;
  }

  uint32_t MakeLeaf(const std::vector<uint32_t>& items) {
    if (items.empty() && empty_leaf_ != 0) return empty_leaf_;
    const auto index = static_cast<uint32_t>(tree_.leaves.size());
    tree_.leaves.push_back((static_cast<uint64_t>(tree_.leaf_records.size()) << 32) | items.size());
    for (uint32_t i : items) tree_.leaf_records.push_back(Compact<A>(recs_[i]));
    stats_.leaves++;
    stats_.leaf_records += items.size();
    stats_.max_leaf = std::max<uint32_t>(stats_.max_leaf, static_cast<uint32_t>(items.size()));
    const uint32_t ref = kLeafRef | index;
    if (items.empty()) empty_leaf_ = ref;
    return ref;
  }

  uint32_t MakeNode(Work& w) {
    std::vector<uint32_t>& items = w.items;
    const Region& g = w.region;
    stats_.max_depth = std::max(stats_.max_depth, w.depth);
    const std::size_t before = items.size();
    Prune(items, g);
    committed_ -= before - items.size();
    if (items.size() <= o_.leaf_size || w.depth >= o_.max_depth) return MakeLeaf(items);
    Split split = Choose(items, g);
    if (split.dim < 0 || split.max_child >= items.size()) {
      // Stuck: no split separates these records. Drop the ones an earlier record hides here
      // and try once more; what remains differs only where splits cannot help (TCP flags).
      const std::size_t n = items.size();
      RemoveShadowed(items, g);
      committed_ -= n - items.size();
      if (items.size() <= o_.leaf_size) return MakeLeaf(items);
      split = Choose(items, g);
      if (split.dim < 0 || split.max_child >= items.size()) return MakeLeaf(items);
    }
    if (committed_ + split.sum - items.size() > budget_) return MakeLeaf(items);  // out of replication budget
    committed_ += split.sum - items.size();

    const int d = split.dim;
    const auto nchild = static_cast<uint32_t>(split.thr.size() + 1);
    std::vector<std::vector<uint32_t>> child_items(nchild);
    for (uint32_t i : items) {
      const MatchRecord& r = recs_[i];
      const uint32_t a = ChildOf(split.thr, std::max(r.lo[d], g.lo[d]));
      const uint32_t b = ChildOf(split.thr, std::min(r.hi[d], g.hi[d]));
      for (uint32_t c = a; c <= b; ++c) child_items[c].push_back(i);
    }

    const auto node = static_cast<uint32_t>(tree_.nodes.size());
    const auto first = static_cast<uint32_t>(tree_.children.size());
    typename TreeT::Node n{};
    for (uint32_t t = 0; t < kMaxThresholds; ++t) {
      n.thr[t] = t < split.thr.size() ? static_cast<T>(split.thr[t]) : static_cast<T>(~static_cast<T>(0));
    }
    n.dim = static_cast<uint8_t>(d);
    n.first_child = first;
    tree_.nodes.push_back(n);
    tree_.children.resize(first + nchild, kLeafRef);
    stats_.nodes++;

    auto child_lo = [&](uint32_t c) { return c == 0 ? g.lo[d] : split.thr[c - 1] + 1; };
    auto child_hi = [&](uint32_t c) { return c + 1 == nchild ? g.hi[d] : split.thr[c]; };
    std::vector<bool> shares(nchild, false);
    for (uint32_t c = 1; c < nchild; ++c) {
      shares[c] = child_items[c] == child_items[c - 1] && SpansAll(child_items[c], d, child_lo(c - 1), child_hi(c));
    }
    for (uint32_t c = 0; c < nchild; ++c) {
      if (shares[c]) {
        committed_ -= child_items[c].size();
        aliases_.push_back({first + c, first + c - 1});
        continue;
      }
      Work child;
      child.region = g;
      child.region.lo[d] = child_lo(c);
      child.region.hi[d] = child_hi(c);
      child.items = std::move(child_items[c]);
      child.depth = w.depth + 1;
      child.slot = first + c;
      queue_.push_back(std::move(child));
    }
    return node;
  }

  // Every record spans [lo, hi] in dimension d: a subtree built for one part of it serves all.
  bool SpansAll(const std::vector<uint32_t>& items, int d, U128 lo, U128 hi) const {
    return std::all_of(items.begin(), items.end(), [&](uint32_t i) { return recs_[i].lo[d] <= lo && recs_[i].hi[d] >= hi; });
  }

  const std::vector<MatchRecord>& recs_;
  const ClassifierOptions& o_;
  TreeT& tree_;
  ClassifierStats& stats_;
  std::array<U128, kNumDims> top_{};
  std::deque<Work> queue_;
  std::vector<std::pair<uint32_t, uint32_t>> aliases_;  // (child slot, the earlier sibling slot it shares)
  uint64_t budget_ = 0;
  uint64_t committed_ = 0;  // records in leaves made plus in work queued
  uint32_t empty_leaf_ = 0;
};

template <typename A>
void BuildFamily(std::span<const RuleMatchInput> rules, L3Type family, const ClassifierOptions& o, Tables<A>* out,
                 std::vector<MatchRecord>* count_records, ClassifierStats* stats) {
  std::vector<MatchRecord> recs;
  for (uint32_t i = 0; i < rules.size(); ++i) ExpandRecords(rules[i], i, family, &recs);
  stats->records += static_cast<uint32_t>(recs.size());
  for (const MatchRecord& r : recs) {
    if (!r.terminal) count_records->push_back(r);
  }
  if (recs.empty()) return;

  // Group by address specificity: 0 = specific source, 1 = specific destination, 2 = neither.
  const uint32_t width = DimWidth(kDimSrc, family);
  const U128 specific = static_cast<U128>(1) << (width - (family == L3Type::kIpv6 ? 32 : 16));
  std::array<std::vector<uint32_t>, 3> groups;
  for (uint32_t i = 0; i < recs.size(); ++i) {
    int g = 2;
    if (o.partition) {
      if (recs[i].hi[kDimSrc] - recs[i].lo[kDimSrc] < specific) g = 0;
      else if (recs[i].hi[kDimDst] - recs[i].lo[kDimDst] < specific) g = 1;
    }
    groups[g].push_back(i);
  }
  // A group too small to be worth a tree walk joins the catch-all group.
  for (int g = 0; g < 2; ++g) {
    if (!groups[g].empty() && groups[g].size() <= 4 * uint64_t{o.leaf_size}) {
      groups[2].insert(groups[2].end(), groups[g].begin(), groups[g].end());
      groups[g].clear();
    }
  }
  std::sort(groups[2].begin(), groups[2].end());
  for (auto& items : groups) {
    if (items.empty()) continue;
    Tree<A>& tree = out->trees.emplace_back();
    TreeBuilder<A>(recs, family, o, &tree, stats).Build(std::move(items));
    stats->trees++;
    stats->bytes += tree.nodes.size() * sizeof(typename Tree<A>::Node) + tree.children.size() * 4 +
                    tree.leaves.size() * 8 + tree.leaf_records.size() * sizeof(Record<A>);
  }
  std::sort(out->trees.begin(), out->trees.end(),
            [](const Tree<A>& a, const Tree<A>& b) { return a.min_rule < b.min_rule; });
}

template <typename A>
uint32_t LookupIn(const Tables<A>& t, const Key<A>& k, CountMatches* counts) noexcept {
  uint32_t best = kNoMatch;
  for (const Tree<A>& tree : t.trees) {
    if (tree.min_rule >= best) break;
    uint32_t ref = tree.root;
    while ((ref & kLeafRef) == 0) {
      const typename Tree<A>::Node& n = tree.nodes[ref];
      const auto v = static_cast<typename Tree<A>::T>(k.d[n.dim]);
      uint32_t idx = 0;
      for (uint32_t t = 0; t < kMaxThresholds; ++t) idx += v > n.thr[t];
      ref = tree.children[n.first_child + idx];
    }
    const uint64_t leaf = tree.leaves[ref & ~kLeafRef];
    const Record<A>* r = tree.leaf_records.data() + (leaf >> 32);
    const Record<A>* const end = r + static_cast<uint32_t>(leaf);
    for (; r != end; ++r) {
      const uint32_t rule = r->rule & kRuleMask;
      if (rule >= best) break;
      if (!Matches(*r, k)) continue;
      if ((r->rule & kCountBit) == 0) {
        best = rule;
        break;
      }
      if (counts != nullptr) {
        if (counts->n < kMaxCountMatches) {
          if (counts->n == 0 || counts->rule[counts->n - 1] != rule) counts->rule[counts->n++] = rule;
        } else {
          counts->overflow = true;
        }
      }
    }
  }
  if (counts != nullptr && counts->n > 1) {
    // Count matches from several trees: keep those before the winner, in rule order, once.
    std::sort(counts->rule, counts->rule + counts->n);
    counts->n = static_cast<uint32_t>(std::unique(counts->rule, counts->rule + counts->n) - counts->rule);
  }
  if (counts != nullptr) {
    while (counts->n > 0 && counts->rule[counts->n - 1] >= best) --counts->n;
  }
  return best;
}

}  // namespace classifier_detail

using classifier_detail::Key;
using classifier_detail::Tables;

Classifier::Classifier() = default;
Classifier::~Classifier() = default;
Classifier::Classifier(Classifier&&) noexcept = default;
Classifier& Classifier::operator=(Classifier&&) noexcept = default;

Classifier Classifier::Build(std::span<const RuleMatchInput> rules, const ClassifierOptions& options) {
  SLUICE_CHECK(rules.size() < classifier_detail::kRuleMask);
  Classifier c;
  c.stats_.rules = static_cast<uint32_t>(rules.size());
  c.v4_ = std::make_unique<Tables<uint32_t>>();
  c.v6_ = std::make_unique<Tables<U128>>();
  classifier_detail::BuildFamily(rules, L3Type::kIpv4, options, c.v4_.get(), &c.count_records_[0], &c.stats_);
  classifier_detail::BuildFamily(rules, L3Type::kIpv6, options, c.v6_.get(), &c.count_records_[1], &c.stats_);
  return c;
}

uint32_t Classifier::Lookup(const PacketFields& f, CountMatches* counts) const noexcept {
  if (counts != nullptr) {
    counts->n = 0;
    counts->overflow = false;
  }
  if (f.family == L3Type::kIpv4) {
    Key<uint32_t> k;
    classifier_detail::MakeKey(f, &k);
    return classifier_detail::LookupIn(*v4_, k, counts);
  }
  if (f.family == L3Type::kIpv6) {
    Key<U128> k;
    classifier_detail::MakeKey(f, &k);
    return classifier_detail::LookupIn(*v6_, k, counts);
  }
  return kNoMatch;
}

bool Classifier::RecordMatches(const MatchRecord& r, const PacketFields& f) noexcept {
  for (int d = 0; d < kNumDims; ++d) {
    const U128 v = DimValue(f, static_cast<Dim>(d));
    if (v < r.lo[d] || v > r.hi[d]) return false;
  }
  return (f.tcp_flags & r.flags_mask) == r.flags_value;
}

}  // namespace sluice
