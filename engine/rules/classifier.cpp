#include "engine/rules/classifier.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <emmintrin.h>
#include <type_traits>

#include "engine/core/assert.h"

namespace sluice {
namespace classifier_detail {

inline constexpr uint32_t kLeafRef = 0x80000000u;
inline constexpr uint32_t kCountBit = 0x80000000u;
inline constexpr uint32_t kRuleMask = 0x7fffffffu;

// Key::flags: TCP flags (bits 0-7), kTcpFlagsValid (bit 8), direction (bits 9-10) and whether
// the packet carries ports (bit 11), so that all four are one mask/value test in a leaf.
inline constexpr uint32_t kDirShift = 9;
inline constexpr uint16_t kHasPortsFlag = 1u << 11;

// The leaf form of an IPv4 MatchRecord: one cache line, tested against the key with SSE2 in
// about fourteen branch-free instructions. Each range is (lo, (hi - lo) ^ bias) so that
// "v - lo <= hi - lo" (unsigned) becomes one signed compare against the biased span.
//   a_lo/a_span   32-bit lanes: src, dst, in_if, out_if
//   b_lo/b_span   16-bit lanes: sport, dport, length, proto, dscp; lane 5 holds the flags
//                 mask (b_lo) and value (b_span); lanes 6-7 of b_lo hold the rule word
struct alignas(64) Record4 {
  uint32_t a_lo[4];
  uint32_t a_span[4];
  uint16_t b_lo[8];
  uint16_t b_span[8];

  uint32_t rule() const noexcept {
    uint32_t r;
    std::memcpy(&r, &b_lo[6], sizeof r);
    return r;
  }
};
static_assert(sizeof(Record4) == 64);

struct Key4 {
  std::array<uint32_t, kNumDims> d;  // for the tree walk
  __m128i a;                         // src, dst, in_if, out_if
  __m128i b;                         // sport, dport, length, proto, dscp, flags, 0, 0
};

inline bool Matches(const Record4& r, const Key4& k) noexcept {
  const auto* p = reinterpret_cast<const __m128i*>(&r);
  const __m128i bias32 = _mm_set1_epi32(INT32_MIN);
  const __m128i bias16 = _mm_set1_epi16(INT16_MIN);
  const __m128i b_lo = _mm_load_si128(p + 2);
  const __m128i b_span = _mm_load_si128(p + 3);
  const __m128i fail_a = _mm_cmpgt_epi32(_mm_xor_si128(_mm_sub_epi32(k.a, _mm_load_si128(p)), bias32),
                                         _mm_load_si128(p + 1));
  const __m128i fail_b = _mm_cmpgt_epi16(_mm_xor_si128(_mm_sub_epi16(k.b, b_lo), bias16), b_span);
  const __m128i flags_ok = _mm_cmpeq_epi16(_mm_and_si128(k.b, b_lo), b_span);
  const __m128i ranges = _mm_set_epi16(0, 0, 0, -1, -1, -1, -1, -1);  // lanes 0-4
  const __m128i flags = _mm_set_epi16(0, 0, -1, 0, 0, 0, 0, 0);       // lane 5
  const __m128i fail = _mm_or_si128(_mm_or_si128(fail_a, _mm_and_si128(fail_b, ranges)),
                                    _mm_andnot_si128(flags_ok, flags));
  return _mm_movemask_epi8(fail) == 0;
}

inline uint16_t KeyFlags(const PacketFields& f) noexcept {
  return static_cast<uint16_t>(f.tcp_flags | (static_cast<uint8_t>(f.direction) << kDirShift) |
                               (f.has_ports ? kHasPortsFlag : 0));
}

// Each dimension's value as DimValue defines it (match_records.h), written out.
template <typename Word>
inline void FillDims(const PacketFields& f, std::array<Word, kNumDims>& d) noexcept {
  d[kDimSrc] = static_cast<Word>(f.src);
  d[kDimDst] = static_cast<Word>(f.dst);
  d[kDimSport] = f.has_ports ? kPortPresent | f.sport : 0;
  d[kDimDport] = f.has_ports ? kPortPresent | f.dport : 0;
  d[kDimProto] = f.proto;
  d[kDimDir] = static_cast<uint8_t>(f.direction);
  d[kDimInIf] = f.in_if;
  d[kDimOutIf] = f.out_if;
  d[kDimDscp] = f.dscp;
  d[kDimLen] = f.length < kMaxLengthKey ? f.length : kMaxLengthKey;
}

inline void MakeKey(const PacketFields& f, Key4* k) noexcept {
  FillDims(f, k->d);
  k->a = _mm_set_epi32(static_cast<int32_t>(f.out_if), static_cast<int32_t>(f.in_if),
                       static_cast<int32_t>(k->d[kDimDst]), static_cast<int32_t>(k->d[kDimSrc]));
  k->b = _mm_set_epi16(0, 0, static_cast<int16_t>(KeyFlags(f)), f.dscp, f.proto,
                       static_cast<int16_t>(k->d[kDimLen]), static_cast<int16_t>(f.has_ports ? f.dport : 0),
                       static_cast<int16_t>(f.has_ports ? f.sport : 0));
}

// The leaf form of an IPv6 MatchRecord: scalar, (lo, hi - lo) per dimension.
struct Record6 {
  U128 src_lo, src_span, dst_lo, dst_span;
  uint32_t sport_lo, sport_span, dport_lo, dport_span;
  uint32_t in_lo, in_span, out_lo, out_span;
  uint16_t len_lo, len_span;
  uint8_t proto_lo, proto_span, dscp_lo, dscp_span;
  uint16_t flags_mask, flags_value;
  uint32_t rule_word;
  uint32_t rule() const noexcept { return rule_word; }
};

struct Key6 {
  std::array<U128, kNumDims> d;
  uint16_t flags;
};

inline bool In32(uint32_t v, uint32_t lo, uint32_t span) noexcept { return v - lo <= span; }

inline bool Matches(const Record6& r, const Key6& k) noexcept {
  if (k.d[kDimSrc] - r.src_lo > r.src_span || k.d[kDimDst] - r.dst_lo > r.dst_span) return false;
  unsigned ok = In32(static_cast<uint32_t>(k.d[kDimDport]), r.dport_lo, r.dport_span);
  ok &= In32(static_cast<uint32_t>(k.d[kDimSport]), r.sport_lo, r.sport_span);
  ok &= In32(static_cast<uint32_t>(k.d[kDimProto]), r.proto_lo, r.proto_span);
  ok &= In32(static_cast<uint32_t>(k.d[kDimDscp]), r.dscp_lo, r.dscp_span);
  ok &= In32(static_cast<uint32_t>(k.d[kDimLen]), r.len_lo, r.len_span);
  ok &= In32(static_cast<uint32_t>(k.d[kDimInIf]), r.in_lo, r.in_span);
  ok &= In32(static_cast<uint32_t>(k.d[kDimOutIf]), r.out_lo, r.out_span);
  ok &= (k.flags & r.flags_mask) == r.flags_value;
  return ok != 0;
}

inline void MakeKey(const PacketFields& f, Key6* k) noexcept {
  FillDims(f, k->d);
  k->flags = static_cast<uint16_t>(f.tcp_flags | (static_cast<uint8_t>(f.direction) << kDirShift));
}

// The direction folded into the flags test when the record fixes it.
inline void FlagsOf(const MatchRecord& m, uint16_t* mask, uint16_t* value) {
  *mask = m.flags_mask;
  *value = m.flags_value;
  if (m.lo[kDimDir] == m.hi[kDimDir]) {
    *mask |= 3u << kDirShift;
    *value |= static_cast<uint16_t>(m.lo[kDimDir] << kDirShift);
  }
}

inline uint32_t RuleWord(const MatchRecord& m) { return m.rule | (m.terminal ? 0 : kCountBit); }

inline Record4 Compact4(const MatchRecord& m) {
  Record4 r{};
  const Dim a[4] = {kDimSrc, kDimDst, kDimInIf, kDimOutIf};
  for (int i = 0; i < 4; ++i) {
    r.a_lo[i] = static_cast<uint32_t>(m.lo[a[i]]);
    r.a_span[i] = static_cast<uint32_t>(m.hi[a[i]] - m.lo[a[i]]) ^ 0x80000000u;
  }
  const Dim b[5] = {kDimSport, kDimDport, kDimLen, kDimProto, kDimDscp};
  for (int i = 0; i < 5; ++i) {
    // Ports: the 17th bit (ports present) moves into the flags test.
    r.b_lo[i] = static_cast<uint16_t>(m.lo[b[i]]);
    r.b_span[i] = static_cast<uint16_t>((m.hi[b[i]] - m.lo[b[i]]) & 0xffff) ^ 0x8000u;
  }
  FlagsOf(m, &r.b_lo[5], &r.b_span[5]);
  if (m.lo[kDimSport] >= kPortPresent || m.lo[kDimDport] >= kPortPresent) {
    r.b_lo[5] |= kHasPortsFlag;
    r.b_span[5] |= kHasPortsFlag;
  }
  const uint32_t rule = RuleWord(m);
  std::memcpy(&r.b_lo[6], &rule, sizeof rule);
  return r;
}

inline Record6 Compact6(const MatchRecord& m) {
  Record6 r{};
  r.src_lo = m.lo[kDimSrc];
  r.src_span = m.hi[kDimSrc] - m.lo[kDimSrc];
  r.dst_lo = m.lo[kDimDst];
  r.dst_span = m.hi[kDimDst] - m.lo[kDimDst];
  auto set32 = [&](Dim d, uint32_t& lo, uint32_t& span) {
    lo = static_cast<uint32_t>(m.lo[d]);
    span = static_cast<uint32_t>(m.hi[d] - m.lo[d]);
  };
  set32(kDimSport, r.sport_lo, r.sport_span);
  set32(kDimDport, r.dport_lo, r.dport_span);
  set32(kDimInIf, r.in_lo, r.in_span);
  set32(kDimOutIf, r.out_lo, r.out_span);
  r.len_lo = static_cast<uint16_t>(m.lo[kDimLen]);
  r.len_span = static_cast<uint16_t>(m.hi[kDimLen] - m.lo[kDimLen]);
  r.proto_lo = static_cast<uint8_t>(m.lo[kDimProto]);
  r.proto_span = static_cast<uint8_t>(m.hi[kDimProto] - m.lo[kDimProto]);
  r.dscp_lo = static_cast<uint8_t>(m.lo[kDimDscp]);
  r.dscp_span = static_cast<uint8_t>(m.hi[kDimDscp] - m.lo[kDimDscp]);
  FlagsOf(m, &r.flags_mask, &r.flags_value);
  r.rule_word = RuleWord(m);
  return r;
}

// Per family: the address word, its leaf record and key.
template <typename A>
struct Family;
template <>
struct Family<uint32_t> {
  using RecordT = Record4;
  using KeyT = Key4;
  static Record4 Compact(const MatchRecord& m) { return Compact4(m); }
  static void Sentinel(Record4* r) {
    const uint32_t rule = kRuleMask;
    std::memcpy(&r->b_lo[6], &rule, sizeof rule);
  }
};
template <>
struct Family<U128> {
  using RecordT = Record6;
  using KeyT = Key6;
  static Record6 Compact(const MatchRecord& m) { return Compact6(m); }
  static void Sentinel(Record6* r) { r->rule_word = kRuleMask; }
};

// A node splits one dimension at up to kMaxThresholds points: child c holds the values v with
// thr[c-1] < v <= thr[c]. Unused thresholds are the largest value, so the child index is the
// number of thresholds below v: a fixed-length, branch-free count (four SSE2 compares for
// IPv4). Children are stored in the node itself: a step is one node (two adjacent cache lines
// for IPv4) and no side table. A child is a node index, or kLeafRef | the offset of its leaf's
// first record in leaf_records; a leaf ends at a sentinel record whose rule is kRuleMask.
inline constexpr uint32_t kMaxThresholds = 14;

template <typename A>
struct Node;

template <>
struct alignas(64) Node<uint32_t> {
  int32_t thr[16];                 // threshold ^ 0x80000000 (signed compare = unsigned order); 14, 15 unused
  uint32_t child[kMaxThresholds + 1];
  uint32_t dim;

  void SetThreshold(uint32_t i, U128 v) { thr[i] = static_cast<int32_t>(static_cast<uint32_t>(v) ^ 0x80000000u); }
  void Pad(uint32_t i) { thr[i] = INT32_MAX; }
  uint32_t ChildIndex(uint64_t value) const noexcept {
    const __m128i v = _mm_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(value) ^ 0x80000000u));
    const auto* t = reinterpret_cast<const __m128i*>(thr);
    __m128i acc = _mm_add_epi32(_mm_cmpgt_epi32(v, _mm_load_si128(t)), _mm_cmpgt_epi32(v, _mm_load_si128(t + 1)));
    acc = _mm_add_epi32(acc, _mm_add_epi32(_mm_cmpgt_epi32(v, _mm_load_si128(t + 2)),
                                           _mm_cmpgt_epi32(v, _mm_load_si128(t + 3))));
    acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, 0x4e));
    acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, 0xb1));
    return static_cast<uint32_t>(-_mm_cvtsi128_si32(acc));  // each true compare added -1
  }
};

// IPv6: 128-bit compares are dearer, so a branch-free binary search over 16 sorted slots
// (four compares) replaces the count.
template <>
struct Node<U128> {
  U128 thr[16];
  uint32_t child[kMaxThresholds + 1];
  uint32_t dim;

  void SetThreshold(uint32_t i, U128 v) { thr[i] = v; }
  void Pad(uint32_t i) { thr[i] = ~static_cast<U128>(0); }
  uint32_t ChildIndex(U128 value) const noexcept {
    uint32_t idx = 0;  // thresholds below value, found as the first slot not below it
    for (uint32_t step = 8; step != 0; step >>= 1) idx += value > thr[idx + step - 1] ? step : 0;
    return idx;
  }
};

template <typename A>
struct Tree {
  std::vector<Node<A>> nodes;
  std::vector<typename Family<A>::RecordT> leaf_records;  // each leaf's records in rule order, then a sentinel
  uint32_t root = kLeafRef;
  uint32_t min_rule = kNoMatch;
};

template <typename A>
struct Tables {
  std::vector<Tree<A>> trees;  // sorted by min_rule
};

// Builds one tree breadth first, so that when the replication budget runs out it is the
// deepest levels that stay unsplit, not whole late subtrees.
template <typename A>
class TreeBuilder {
 public:
  using TreeT = Tree<A>;

  TreeBuilder(const std::vector<MatchRecord>& recs, L3Type family, const ClassifierOptions& o, TreeT* tree,
              ClassifierStats* stats)
      : recs_(recs), o_(o), tree_(*tree), stats_(*stats) {
    for (int d = 0; d < kNumDims; ++d) top_[d] = AllOnes(DimWidth(static_cast<Dim>(d), family));
  }

  void Build(std::vector<uint32_t> items) {
    tree_.min_rule = items.empty() ? kNoMatch : recs_[items.front()].rule;
    budget_ = std::min(std::max<uint64_t>(uint64_t{o_.replication} * items.size(), 4096), o_.max_leaf_records);
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
      else tree_.nodes[w.slot / kSlots].child[w.slot % kSlots] = ref;
    }
    for (const auto& [slot, same_as] : aliases_) {
      tree_.nodes[slot / kSlots].child[slot % kSlots] = tree_.nodes[same_as / kSlots].child[same_as % kSlots];
    }
  }

 private:
  static constexpr uint32_t kRootSlot = 0xffffffff;
  static constexpr uint32_t kSlots = kMaxThresholds + 1;  // a child slot is node * kSlots + child
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
    const auto offset = static_cast<uint32_t>(tree_.leaf_records.size());
    SLUICE_CHECK(offset < kLeafRef);
    for (uint32_t i : items) tree_.leaf_records.push_back(Family<A>::Compact(recs_[i]));
    typename Family<A>::RecordT sentinel{};
    Family<A>::Sentinel(&sentinel);
    tree_.leaf_records.push_back(sentinel);
    stats_.leaves++;
    stats_.leaf_records += items.size();
    stats_.max_leaf = std::max<uint32_t>(stats_.max_leaf, static_cast<uint32_t>(items.size()));
    const uint32_t ref = kLeafRef | offset;
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
    const uint32_t first = node * kSlots;
    Node<A> n{};
    for (uint32_t t = 0; t < sizeof(n.thr) / sizeof(n.thr[0]); ++t) {
      if (t < split.thr.size()) n.SetThreshold(t, split.thr[t]);
      else n.Pad(t);
    }
    n.dim = static_cast<uint32_t>(d);
    tree_.nodes.push_back(n);
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

// Scans a leaf from r up to the first terminal match below `best` (the sentinel ends it), noting
// count rules on the way; returns the records looked at.
template <typename RecordT, typename KeyT>
inline uint32_t ScanLeaf(const RecordT* r, const KeyT& k, uint32_t* best, CountMatches* counts) noexcept {
  for (uint32_t seen = 1;; ++r, ++seen) {
    const uint32_t word = r->rule();
    const uint32_t rule = word & kRuleMask;
    if (rule >= *best) return seen;
    if (!Matches(*r, k)) continue;
    if ((word & kCountBit) == 0) {
      *best = rule;
      return seen;
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

// Count matches from several trees: keep those before the winner, in rule order, once.
inline void FinishCounts(CountMatches* counts, uint32_t best) noexcept {
  if (counts == nullptr) return;
  if (counts->n > 1) {
    std::sort(counts->rule, counts->rule + counts->n);
    counts->n = static_cast<uint32_t>(std::unique(counts->rule, counts->rule + counts->n) - counts->rule);
  }
  while (counts->n > 0 && counts->rule[counts->n - 1] >= best) --counts->n;
}

// Many lookups at once: up to kGroup packets walk each tree in lockstep, so the dependent
// loads of different packets are in flight together instead of one after another. Same
// answers as LookupIn, packet by packet (the differential test checks both).
inline constexpr uint32_t kGroup = 16;

template <typename A>
void LookupGroup(const Tables<A>& t, const typename Family<A>::KeyT* keys, uint32_t n, uint32_t* out,
                 CountMatches* counts) noexcept {
  uint32_t best[kGroup];
  uint32_t ref[kGroup];
  for (uint32_t g = 0; g < n; ++g) {
    best[g] = kRuleMask;
    if (counts != nullptr) counts[g].n = 0, counts[g].overflow = false;
  }
  for (const Tree<A>& tree : t.trees) {
    bool walking = false;
    for (uint32_t g = 0; g < n; ++g) {
      ref[g] = tree.min_rule < best[g] ? tree.root : kLeafRef;  // kLeafRef alone: skip this tree
      walking |= (ref[g] & kLeafRef) == 0;
    }
    while (walking) {
      walking = false;
      for (uint32_t g = 0; g < n; ++g) {
        if ((ref[g] & kLeafRef) != 0) continue;
        const Node<A>& node = tree.nodes[ref[g]];
        ref[g] = node.child[node.ChildIndex(keys[g].d[node.dim])];
        if ((ref[g] & kLeafRef) != 0) __builtin_prefetch(tree.leaf_records.data() + (ref[g] & ~kLeafRef));
        walking |= (ref[g] & kLeafRef) == 0;
      }
    }
    for (uint32_t g = 0; g < n; ++g) {
      if (tree.min_rule >= best[g]) continue;
      ScanLeaf(tree.leaf_records.data() + (ref[g] & ~kLeafRef), keys[g], &best[g],
               counts != nullptr ? &counts[g] : nullptr);
    }
  }
  for (uint32_t g = 0; g < n; ++g) {
    FinishCounts(counts != nullptr ? &counts[g] : nullptr, best[g]);
    out[g] = best[g] == kRuleMask ? kNoMatch : best[g];
  }
}

// What a lookup did, for the build's choice between layouts (never on the data path).
struct LookupCost {
  uint64_t trees = 0;
  uint64_t nodes = 0;
  uint64_t records = 0;
  // Weights from callgrind on bench/rules/classifier_bench.cpp workloads: instructions plus
  // L1 misses (a node spans two lines, a record one).
  uint64_t Total() const { return 15 * trees + 40 * nodes + 30 * records; }
};

template <typename A, typename Cost = std::nullptr_t>
uint32_t LookupIn(const Tables<A>& t, const typename Family<A>::KeyT& k, CountMatches* counts,
                  Cost cost = nullptr) noexcept {
  constexpr bool kMeasure = !std::is_same_v<Cost, std::nullptr_t>;
  uint32_t best = kRuleMask;  // no match yet; the leaf sentinel's rule, so it ends every scan
  for (const Tree<A>& tree : t.trees) {
    if (tree.min_rule >= best) break;
    if constexpr (kMeasure) cost->trees++;
    uint32_t ref = tree.root;
    while ((ref & kLeafRef) == 0) {
      const Node<A>& n = tree.nodes[ref];
      ref = n.child[n.ChildIndex(k.d[n.dim])];
      if constexpr (kMeasure) cost->nodes++;
    }
    const uint32_t seen = ScanLeaf(tree.leaf_records.data() + (ref & ~kLeafRef), k, &best, counts);
    if constexpr (kMeasure) cost->records += seen;
  }
  FinishCounts(counts, best);
  return best == kRuleMask ? kNoMatch : best;
}

// Builds the trees of one family: one tree over every record, or (partition) up to three.
template <typename A>
void BuildTrees(const std::vector<MatchRecord>& recs, L3Type family, const ClassifierOptions& o, bool partition,
                Tables<A>* out, ClassifierStats* stats) {
  // Group by address specificity: 0 = specific source, 1 = specific destination, 2 = neither.
  const uint32_t width = DimWidth(kDimSrc, family);
  const U128 specific = static_cast<U128>(1) << (width - (family == L3Type::kIpv6 ? 32 : 16));
  std::array<std::vector<uint32_t>, 3> groups;
  for (uint32_t i = 0; i < recs.size(); ++i) {
    int g = 2;
    if (partition) {
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
    stats->bytes += tree.nodes.size() * sizeof(Node<A>) + tree.leaf_records.size() * sizeof(typename Family<A>::RecordT);
  }
  std::sort(out->trees.begin(), out->trees.end(),
            [](const Tree<A>& a, const Tree<A>& b) { return a.min_rule < b.min_rule; });
}

// A point inside each of up to 1024 records spread over the list: the traffic the layouts are
// compared on. Deterministic: the same rules always compile to the same trees.
inline std::vector<PacketFields> SamplePoints(const std::vector<MatchRecord>& recs, L3Type family) {
  std::vector<PacketFields> pts;
  const std::size_t step = std::max<std::size_t>(1, recs.size() / 1024);
  for (std::size_t i = 0; i < recs.size(); i += step) {
    const MatchRecord& r = recs[i];
    auto mid = [&](Dim d) { return r.lo[d] + (r.hi[d] - r.lo[d]) / 2; };
    PacketFields f;
    f.family = family;
    f.src = mid(kDimSrc);
    f.dst = mid(kDimDst);
    f.has_ports = mid(kDimSport) >= kPortPresent && mid(kDimDport) >= kPortPresent;
    f.sport = static_cast<uint16_t>(mid(kDimSport));
    f.dport = static_cast<uint16_t>(mid(kDimDport));
    f.proto = static_cast<uint8_t>(mid(kDimProto));
    f.direction = static_cast<Direction>(static_cast<uint8_t>(std::min<U128>(mid(kDimDir), 2)));
    f.in_if = static_cast<uint32_t>(mid(kDimInIf));
    f.out_if = static_cast<uint32_t>(mid(kDimOutIf));
    f.dscp = static_cast<uint8_t>(mid(kDimDscp));
    f.length = static_cast<uint32_t>(mid(kDimLen));
    f.tcp_flags = r.flags_value;
    pts.push_back(f);
  }
  return pts;
}

template <typename A>
uint64_t EstimateCost(const Tables<A>& t, const std::vector<PacketFields>& pts) {
  LookupCost cost;
  for (const PacketFields& f : pts) {
    typename Family<A>::KeyT k;
    MakeKey(f, &k);
    LookupIn(t, k, nullptr, &cost);
  }
  return cost.Total();
}

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
  if (o.partition != ClassifierOptions::Partition::kAuto) {
    BuildTrees(recs, family, o, o.partition == ClassifierOptions::Partition::kAlways, out, stats);
    return;
  }
  ClassifierStats single_stats, split_stats;
  Tables<A> single, split;
  BuildTrees(recs, family, o, false, &single, &single_stats);
  BuildTrees(recs, family, o, true, &split, &split_stats);
  const std::vector<PacketFields> pts = SamplePoints(recs, family);
  const bool use_split = split_stats.trees < single_stats.trees + 1 ? false : EstimateCost(split, pts) < EstimateCost(single, pts);
  *out = std::move(use_split ? split : single);
  const ClassifierStats& s = use_split ? split_stats : single_stats;
  stats->trees += s.trees;
  stats->nodes += s.nodes;
  stats->leaves += s.leaves;
  stats->leaf_records += s.leaf_records;
  stats->max_leaf = std::max(stats->max_leaf, s.max_leaf);
  stats->max_depth = std::max(stats->max_depth, s.max_depth);
  stats->bytes += s.bytes;
}

}  // namespace classifier_detail

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
    classifier_detail::Key4 k;
    classifier_detail::MakeKey(f, &k);
    return classifier_detail::LookupIn(*v4_, k, counts);
  }
  if (f.family == L3Type::kIpv6) {
    classifier_detail::Key6 k;
    classifier_detail::MakeKey(f, &k);
    return classifier_detail::LookupIn(*v6_, k, counts);
  }
  return kNoMatch;
}

void Classifier::LookupMany(const PacketFields* const* f, uint32_t n, uint32_t* out, CountMatches* counts) const noexcept {
  using classifier_detail::kGroup;
  classifier_detail::Key4 k4[kGroup];
  classifier_detail::Key6 k6[kGroup];
  uint32_t i4[kGroup], i6[kGroup];
  uint32_t r4[kGroup], r6[kGroup];
  CountMatches c4[kGroup], c6[kGroup];
  for (uint32_t base = 0; base < n; base += kGroup) {
    const uint32_t m = std::min(kGroup, n - base);
    uint32_t n4 = 0, n6 = 0;
    for (uint32_t j = 0; j < m; ++j) {
      const PacketFields& p = *f[base + j];
      if (p.family == L3Type::kIpv4) {
        classifier_detail::MakeKey(p, &k4[n4]);
        i4[n4++] = base + j;
      } else if (p.family == L3Type::kIpv6) {
        classifier_detail::MakeKey(p, &k6[n6]);
        i6[n6++] = base + j;
      } else {
        out[base + j] = kNoMatch;
        if (counts != nullptr) counts[base + j].n = 0, counts[base + j].overflow = false;
      }
    }
    if (n4 != 0) classifier_detail::LookupGroup(*v4_, k4, n4, r4, counts != nullptr ? c4 : nullptr);
    if (n6 != 0) classifier_detail::LookupGroup(*v6_, k6, n6, r6, counts != nullptr ? c6 : nullptr);
    for (uint32_t j = 0; j < n4; ++j) {
      out[i4[j]] = r4[j];
      if (counts != nullptr) counts[i4[j]] = c4[j];
    }
    for (uint32_t j = 0; j < n6; ++j) {
      out[i6[j]] = r6[j];
      if (counts != nullptr) counts[i6[j]] = c6[j];
    }
  }
}

bool Classifier::RecordMatches(const MatchRecord& r, const PacketFields& f) noexcept {
  for (int d = 0; d < kNumDims; ++d) {
    const U128 v = DimValue(f, static_cast<Dim>(d));
    if (v < r.lo[d] || v > r.hi[d]) return false;
  }
  return (f.tcp_flags & r.flags_mask) == r.flags_value;
}

}  // namespace sluice
