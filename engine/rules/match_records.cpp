#include "engine/rules/match_records.h"

#include <algorithm>

namespace sluice {
namespace {

struct Interval {
  U128 lo;
  U128 hi;
};

// The DSCP set as maximal runs of consecutive values.
std::vector<Interval> DscpRuns(uint64_t set) {
  std::vector<Interval> runs;
  for (uint32_t d = 0; d < 64;) {
    if (((set >> d) & 1) == 0) {
      ++d;
      continue;
    }
    uint32_t e = d;
    while (e + 1 < 64 && ((set >> (e + 1)) & 1) != 0) ++e;
    runs.push_back({d, e});
    d = e + 1;
  }
  return runs;
}

std::vector<Interval> AddressIntervals(const std::vector<Cidr>& list, L3Type family) {
  std::vector<Interval> out;
  if (list.empty()) {
    out.push_back({0, AllOnes(family == L3Type::kIpv6 ? 128 : 32)});
    return out;
  }
  for (const Cidr& c : list) {
    if (c.addr.family == family) out.push_back({c.first(), c.last()});
  }
  return out;  // empty: the rule cannot match this family
}

std::vector<Interval> PortIntervals(const std::vector<PortRange>& list) {
  if (list.empty()) return {{0, kPortPresent | 0xffff}};
  std::vector<Interval> out;
  for (const PortRange& r : list) out.push_back({kPortPresent | r.lo, kPortPresent | r.hi});
  return out;
}

bool AnyContains(const std::vector<Cidr>& list, L3Type family, U128 v) {
  for (const Cidr& c : list) {
    if (c.addr.family == family && v >= c.first() && v <= c.last()) return true;
  }
  return false;
}

bool AnyContains(const std::vector<PortRange>& list, uint16_t p) {
  for (const PortRange& r : list) {
    if (p >= r.lo && p <= r.hi) return true;
  }
  return false;
}

}  // namespace

bool RuleMatches(const RuleMatchInput& rule, const PacketFields& f) noexcept {
  const MatchSpec& m = *rule.match;
  if (m.family != L3Type::kNone && m.family != f.family) return false;
  if (!m.protos.empty() && std::find(m.protos.begin(), m.protos.end(), f.proto) == m.protos.end()) return false;
  if (!m.src.empty() && !AnyContains(m.src, f.family, f.src)) return false;
  if (!m.dst.empty() && !AnyContains(m.dst, f.family, f.dst)) return false;
  if (!m.src_ports.empty() && (!f.has_ports || !AnyContains(m.src_ports, f.sport))) return false;
  if (!m.dst_ports.empty() && (!f.has_ports || !AnyContains(m.dst_ports, f.dport))) return false;
  if (m.direction != Direction::kUnknown && f.direction != m.direction) return false;
  if (rule.in_if != 0 && f.in_if != rule.in_if) return false;
  if (rule.out_if != 0 && f.out_if != rule.out_if) return false;
  if (m.tcp_flags.mask != 0 &&
      ((f.tcp_flags & kTcpFlagsValid) == 0 || (f.tcp_flags & m.tcp_flags.mask) != m.tcp_flags.value)) {
    return false;
  }
  if (m.dscp != 0 && ((m.dscp >> f.dscp) & 1) == 0) return false;
  if (m.length && (f.length < m.length->lo || f.length > m.length->hi)) return false;
  return true;
}

uint64_t MatchRecordCount(const MatchSpec& m) noexcept {
  auto n = [](std::size_t k) -> uint64_t { return k == 0 ? 1 : k; };
  const uint64_t per_box = n(m.protos.size()) * n(m.src_ports.size()) * n(m.dst_ports.size()) * n(DscpRuns(m.dscp).size());
  uint64_t total = 0;
  for (L3Type f : {L3Type::kIpv4, L3Type::kIpv6}) {
    if (m.family != L3Type::kNone && m.family != f) continue;
    auto in_family = [&](const std::vector<Cidr>& list) -> uint64_t {
      if (list.empty()) return 1;
      return static_cast<uint64_t>(std::count_if(list.begin(), list.end(), [&](const Cidr& c) { return c.addr.family == f; }));
    };
    total += in_family(m.src) * in_family(m.dst) * per_box;
  }
  return total;
}

void ExpandRecords(const RuleMatchInput& rule, uint32_t index, L3Type family, std::vector<MatchRecord>* out) {
  const MatchSpec& m = *rule.match;
  if (m.family != L3Type::kNone && m.family != family) return;
  const std::vector<Interval> src = AddressIntervals(m.src, family);
  const std::vector<Interval> dst = AddressIntervals(m.dst, family);
  std::vector<Interval> protos;
  for (uint8_t p : m.protos) protos.push_back({p, p});
  if (protos.empty()) protos.push_back({0, 255});
  const std::vector<Interval> sports = PortIntervals(m.src_ports);
  const std::vector<Interval> dports = PortIntervals(m.dst_ports);
  std::vector<Interval> dscps = DscpRuns(m.dscp);
  if (dscps.empty()) dscps.push_back({0, 63});

  MatchRecord base;
  base.rule = index;
  base.terminal = rule.terminal;
  if (m.tcp_flags.mask != 0) {
    base.flags_mask = kTcpFlagsValid | m.tcp_flags.mask;
    base.flags_value = kTcpFlagsValid | m.tcp_flags.value;
  }
  const uint8_t dir = static_cast<uint8_t>(m.direction);
  base.lo[kDimDir] = dir;
  base.hi[kDimDir] = m.direction == Direction::kUnknown ? 3 : dir;
  base.lo[kDimInIf] = rule.in_if;
  base.hi[kDimInIf] = rule.in_if == 0 ? 0xffffffffu : rule.in_if;
  base.lo[kDimOutIf] = rule.out_if;
  base.hi[kDimOutIf] = rule.out_if == 0 ? 0xffffffffu : rule.out_if;
  base.lo[kDimLen] = m.length ? std::min(m.length->lo, kMaxLengthKey) : 0;
  base.hi[kDimLen] = m.length ? std::min(m.length->hi, kMaxLengthKey) : kMaxLengthKey;

  for (const Interval& s : src) {
    for (const Interval& d : dst) {
      for (const Interval& p : protos) {
        for (const Interval& sp : sports) {
          for (const Interval& dp : dports) {
            for (const Interval& ds : dscps) {
              MatchRecord r = base;
              r.lo[kDimSrc] = s.lo, r.hi[kDimSrc] = s.hi;
              r.lo[kDimDst] = d.lo, r.hi[kDimDst] = d.hi;
              r.lo[kDimProto] = p.lo, r.hi[kDimProto] = p.hi;
              r.lo[kDimSport] = sp.lo, r.hi[kDimSport] = sp.hi;
              r.lo[kDimDport] = dp.lo, r.hi[kDimDport] = dp.hi;
              r.lo[kDimDscp] = ds.lo, r.hi[kDimDscp] = ds.hi;
              out->push_back(r);
            }
          }
        }
      }
    }
  }
}

}  // namespace sluice
