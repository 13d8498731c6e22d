// Seeded random rules and packets for the classifier's differential test and benchmarks.
//
// Rules draw addresses from a few base prefixes (so prefixes nest and overlap), ports from a
// small set of well-known values and ranges, and leave most fields wild, as real rule sets do.
// PacketInside(rule) draws a packet the rule matches; RandomPacket() one from the same pools.
// NearMiss(packet) draws a rule that matches the packet in every field but one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/rules/match_records.h"

namespace sluice::testing {

class RuleGen {
 public:
  explicit RuleGen(uint64_t seed) : rng_(seed) {}

  // A random match; `v6_share` of address-bearing rules are IPv6.
  MatchSpec RandomMatch(double v6_share = 0.25) {
    MatchSpec m;
    const L3Type fam = Chance(v6_share) ? L3Type::kIpv6 : L3Type::kIpv4;
    if (Chance(0.1)) m.family = fam;
    if (Chance(0.7)) m.protos.push_back(Pick<uint8_t>({6, 6, 6, 17, 17, 1, 58, 132, 47}));
    if (Chance(0.1)) m.protos.push_back(Pick<uint8_t>({6, 17}));
    std::sort(m.protos.begin(), m.protos.end());
    m.protos.erase(std::unique(m.protos.begin(), m.protos.end()), m.protos.end());
    if (Chance(0.6)) m.src.push_back(RandomCidr(fam));
    if (Chance(0.05)) m.src.push_back(RandomCidr(fam));
    if (Chance(0.7)) m.dst.push_back(RandomCidr(fam));
    if (Chance(0.05)) m.dst.push_back(RandomCidr(Chance(0.5) ? fam : Other(fam)));
    if (!m.src.empty() && !m.dst.empty() && m.src[0].addr.family != m.dst[0].addr.family) m.dst.clear();
    if (m.family != L3Type::kNone) {
      std::erase_if(m.src, [&](const Cidr& c) { return c.addr.family != m.family; });
      std::erase_if(m.dst, [&](const Cidr& c) { return c.addr.family != m.family; });
    }
    const bool ports_ok = std::all_of(m.protos.begin(), m.protos.end(), CarriesPorts);
    if (ports_ok && Chance(0.6)) m.dst_ports.push_back(RandomPortRange());
    if (ports_ok && Chance(0.1)) m.dst_ports.push_back(RandomPortRange());
    if (ports_ok && Chance(0.2)) m.src_ports.push_back(RandomPortRange());
    if (Chance(0.15)) m.direction = Chance(0.5) ? Direction::kIn : Direction::kOut;
    if (m.protos == std::vector<uint8_t>{6} && Chance(0.15)) {
      m.tcp_flags.mask = static_cast<uint8_t>(Pick<int>({0x02, 0x12, 0x04, 0x01}));
      m.tcp_flags.value = static_cast<uint8_t>(m.tcp_flags.mask & Pick<int>({0x02, 0x10, 0x00, 0xff}));
    }
    if (Chance(0.1)) {
      m.dscp = uint64_t{1} << Pick<int>({0, 10, 18, 46, 46});
      if (Chance(0.3)) m.dscp |= uint64_t{1} << Uniform(0, 63);
    }
    if (Chance(0.08)) {
      const uint32_t lo = static_cast<uint32_t>(Uniform(20, 1500));
      m.length = LengthRange{lo, lo + static_cast<uint32_t>(Uniform(0, 1500))};
    }
    return m;
  }

  // A firewall-ACL-like rule (the shape of ClassBench's acl seeds): a destination prefix
  // (mostly /24-/32), usually a source prefix, TCP or UDP, a destination port or range;
  // source ports, flags and other fields rarely. Never a catch-all.
  MatchSpec AclMatch(double v6_share = 0.2) {
    MatchSpec m;
    const L3Type fam = Chance(v6_share) ? L3Type::kIpv6 : L3Type::kIpv4;
    const uint32_t w = fam == L3Type::kIpv6 ? 128 : 32;
    auto prefix = [&](std::initializer_list<int> lens) {
      Cidr c = RandomCidr(fam);
      const auto len = static_cast<uint8_t>(fam == L3Type::kIpv6 ? std::min(128, Pick<int>(lens) * 4) : Pick<int>(lens));
      c.addr.value = RandomAddrIn(RandomCidr(fam)) & PrefixMask(len, w);
      c.len = len;
      return c;
    };
    m.dst = {prefix({32, 32, 32, 28, 24, 24, 24, 16})};
    if (Chance(0.75)) m.src = {prefix({32, 24, 24, 16, 16, 8})};
    if (Chance(0.9)) m.protos = {Pick<uint8_t>({6, 6, 6, 17, 17})};
    if (!m.protos.empty() && Chance(0.8)) m.dst_ports = {RandomPortRange()};
    if (!m.protos.empty() && Chance(0.1)) m.src_ports = {RandomPortRange()};
    if (m.protos == std::vector<uint8_t>{6} && Chance(0.05)) m.tcp_flags = {0x12, 0x02};
    if (Chance(0.05)) m.direction = Chance(0.5) ? Direction::kIn : Direction::kOut;
    return m;
  }

  RuleMatchInput Input(const MatchSpec* m, bool allow_count = true) {
    RuleMatchInput in;
    in.match = m;
    if (Chance(0.05)) in.in_if = static_cast<uint32_t>(Uniform(1, 4));
    if (Chance(0.05)) in.out_if = static_cast<uint32_t>(Uniform(1, 4));
    in.terminal = !(allow_count && Chance(0.1));
    return in;
  }

  PacketFields RandomPacket() {
    PacketFields f;
    f.family = Chance(0.25) ? L3Type::kIpv6 : L3Type::kIpv4;
    f.src = RandomAddrIn(RandomCidr(f.family));
    f.dst = RandomAddrIn(RandomCidr(f.family));
    f.proto = Pick<uint8_t>({6, 6, 17, 17, 1, 58, 132, 47, 50});
    f.has_ports = CarriesPorts(f.proto) && !Chance(0.05);
    if (f.has_ports) {
      f.sport = RandomPort();
      f.dport = RandomPort();
    }
    if (f.proto == 6 && f.has_ports) f.tcp_flags = kTcpFlagsValid | static_cast<uint8_t>(Uniform(0, 255));
    f.direction = static_cast<Direction>(Uniform(0, 2));
    f.in_if = static_cast<uint32_t>(Uniform(0, 4));
    f.out_if = static_cast<uint32_t>(Uniform(0, 4));
    f.dscp = static_cast<uint8_t>(Chance(0.5) ? Pick<int>({0, 10, 18, 46}) : Uniform(0, 63));
    f.length = static_cast<uint32_t>(Uniform(20, 3000));
    return f;
  }

  // A packet `rule` matches (for a satisfiable rule), other fields random.
  PacketFields PacketInside(const RuleMatchInput& rule) {
    const MatchSpec& m = *rule.match;
    PacketFields f = RandomPacket();
    if (m.family != L3Type::kNone) f.family = m.family;
    if (!m.src.empty()) f.family = m.src[0].addr.family;
    else if (!m.dst.empty()) f.family = m.dst[0].addr.family;
    f.src = m.src.empty() ? RandomAddrIn(RandomCidr(f.family)) : RandomAddrIn(m.src[Uniform(0, m.src.size() - 1)]);
    std::vector<Cidr> dsts;
    for (const Cidr& c : m.dst) {
      if (c.addr.family == f.family) dsts.push_back(c);
    }
    f.dst = dsts.empty() ? RandomAddrIn(RandomCidr(f.family)) : RandomAddrIn(dsts[Uniform(0, dsts.size() - 1)]);
    if (!m.protos.empty()) f.proto = m.protos[Uniform(0, m.protos.size() - 1)];
    if (!m.src_ports.empty() || !m.dst_ports.empty()) f.has_ports = true;
    else f.has_ports = CarriesPorts(f.proto);
    f.sport = m.src_ports.empty() ? RandomPort() : InRange(m.src_ports[Uniform(0, m.src_ports.size() - 1)]);
    f.dport = m.dst_ports.empty() ? RandomPort() : InRange(m.dst_ports[Uniform(0, m.dst_ports.size() - 1)]);
    if (!f.has_ports) f.sport = f.dport = 0;
    f.tcp_flags = f.proto == 6 && f.has_ports ? kTcpFlagsValid | static_cast<uint8_t>(Uniform(0, 255)) : 0;
    if (m.tcp_flags.mask != 0) {
      f.tcp_flags = static_cast<uint16_t>(kTcpFlagsValid | (f.tcp_flags & ~m.tcp_flags.mask & 0xff) | m.tcp_flags.value);
    }
    if (m.direction != Direction::kUnknown) f.direction = m.direction;
    if (rule.in_if != 0) f.in_if = rule.in_if;
    if (rule.out_if != 0) f.out_if = rule.out_if;
    if (m.dscp != 0) {
      do f.dscp = static_cast<uint8_t>(Uniform(0, 63));
      while (((m.dscp >> f.dscp) & 1) == 0);
    }
    if (m.length) f.length = static_cast<uint32_t>(Uniform(m.length->lo, m.length->hi));
    return f;
  }

  // A rule matching p in every field but one (so it does not match p).
  MatchSpec NearMiss(const PacketFields& p) {
    MatchSpec m;
    m.protos = {p.proto};
    m.src = {HostPrefix(p.family, p.src, static_cast<uint8_t>(Uniform(8, p.family == L3Type::kIpv6 ? 64 : 24)))};
    m.dst = {HostPrefix(p.family, p.dst, static_cast<uint8_t>(Uniform(8, p.family == L3Type::kIpv6 ? 64 : 24)))};
    if (p.has_ports) m.dst_ports = {{p.dport, p.dport}};
    const uint8_t host = p.family == L3Type::kIpv6 ? 128 : 32;
    switch (Uniform(0, p.has_ports ? 4 : 2)) {
      case 0: m.protos = {static_cast<uint8_t>(p.proto ^ 1)}; break;
      case 1: m.src = {HostPrefix(p.family, p.src ^ 1, host)}; break;
      case 2: m.dst = {HostPrefix(p.family, p.dst ^ 1, host)}; break;
      case 3:
        m.dst_ports = {p.dport > 1 ? PortRange{1, static_cast<uint16_t>(p.dport - 1)} : PortRange{2, 65535}};
        break;
      default:
        m.src_ports = {p.sport < 65535 ? PortRange{static_cast<uint16_t>(p.sport + 1), 65535} : PortRange{1, 65534}};
        break;
    }
    return m;
  }

  // `n` near-miss rules, none of which matches any of `packets`, so that with a final rule
  // matching them all every packet's answer is that last rule — the linear scan's worst case.
  // Specs go to `specs` (stable addresses); inputs are appended to `rules`.
  template <typename SpecStore>
  void NearMissRules(const std::vector<PacketFields>& packets, int n, SpecStore& specs,
                     std::vector<RuleMatchInput>& rules) {
    while (n > 0) {
      MatchSpec m = NearMiss(packets[Uniform(0, packets.size() - 1)]);
      const RuleMatchInput probe{&m, 0, 0, true};
      if (std::any_of(packets.begin(), packets.end(), [&](const PacketFields& p) { return RuleMatches(probe, p); })) {
        continue;
      }
      rules.push_back({&specs.emplace_back(std::move(m)), 0, 0, true});
      --n;
    }
  }

  // The benchmarks' two workloads. Acl: n AclMatch rules (terminal), traffic half inside a
  // random rule, half from the pools. LastRule: n - 1 near misses and a final TCP/443 rule
  // that every packet of the traffic (64 probes, repeated) matches.
  template <typename SpecStore>
  void AclWorkload(int n, std::size_t packets, SpecStore& specs, std::vector<RuleMatchInput>& rules,
                   std::vector<PacketFields>& traffic) {
    for (int i = 0; i < n; ++i) rules.push_back(Input(&specs.emplace_back(AclMatch()), false));
    for (std::size_t i = 0; i < packets; ++i) {
      traffic.push_back(i % 2 ? RandomPacket() : PacketInside(rules[Uniform(0, rules.size() - 1)]));
    }
  }
  template <typename SpecStore>
  void LastRuleWorkload(int n, std::size_t packets, SpecStore& specs, std::vector<RuleMatchInput>& rules,
                        std::vector<PacketFields>& traffic) {
    const std::vector<PacketFields> probes = WebPackets(64);
    NearMissRules(probes, n - 1, specs, rules);
    MatchSpec& last = specs.emplace_back();
    last.protos = {6};
    last.dst_ports = {{443, 443}};
    rules.push_back({&last, 0, 0, true});
    for (std::size_t i = 0; i < packets; ++i) traffic.push_back(probes[i % probes.size()]);
  }

  // TCP packets to port 443 from the usual pools (the adversarial test's probe traffic).
  std::vector<PacketFields> WebPackets(int n) {
    std::vector<PacketFields> packets;
    for (int i = 0; i < n; ++i) {
      PacketFields p = RandomPacket();
      p.proto = 6;
      p.has_ports = true;
      p.sport = static_cast<uint16_t>(Uniform(1024, 65535));
      p.dport = 443;
      p.tcp_flags = kTcpFlagsValid | 0x10;
      packets.push_back(p);
    }
    return packets;
  }

  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  uint64_t Uniform(uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_); }
  template <typename T>
  T Pick(std::initializer_list<T> xs) {
    return *(xs.begin() + Uniform(0, xs.size() - 1));
  }

  Cidr RandomCidr(L3Type fam) {
    if (fam == L3Type::kIpv6) {
      const U128 base = Pick<U128>({MakeU128(0x20010db800000000ull, 0), MakeU128(0x20010db8ab000000ull, 0),
                                    MakeU128(0xfd00000000000000ull, 0)});
      const uint8_t len = static_cast<uint8_t>(Pick<int>({0, 16, 32, 48, 56, 64, 64, 96, 112, 128}));
      U128 v = base;
      if (len > 32) v |= (static_cast<U128>(Uniform(0, ~0ull)) << 64 | Uniform(0, ~0ull)) & ~PrefixMask(32, 128);
      return {IpAddr::V6(v & PrefixMask(len, 128)), len};
    }
    const uint32_t base = Pick<uint32_t>({0x0a000000u, 0xc6120000u, 0xc6130000u, 0xc0a80000u, 0xac100000u});
    const uint8_t len = static_cast<uint8_t>(Pick<int>({0, 8, 12, 15, 16, 20, 24, 24, 24, 28, 30, 32, 32}));
    const uint32_t v = (base | (static_cast<uint32_t>(Uniform(0, 0xffffffffu)) & 0x0000ffffu));
    return {IpAddr::V4(v & static_cast<uint32_t>(PrefixMask(len, 32))), len};
  }

  U128 RandomAddrIn(const Cidr& c) {
    const U128 r = static_cast<U128>(Uniform(0, ~0ull)) << 64 | Uniform(0, ~0ull);
    return c.first() | (r & (c.last() - c.first()));
  }

  static Cidr HostPrefix(L3Type fam, U128 addr, uint8_t len) {
    const uint32_t w = fam == L3Type::kIpv6 ? 128 : 32;
    if (len > w) len = static_cast<uint8_t>(w);
    return {IpAddr{fam, addr & PrefixMask(len, w)}, len};
  }

 private:
  static L3Type Other(L3Type f) { return f == L3Type::kIpv4 ? L3Type::kIpv6 : L3Type::kIpv4; }
  uint16_t RandomPort() {
    return Chance(0.5) ? Pick<uint16_t>({22, 53, 80, 443, 8080, 1024, 65535, 1}) : static_cast<uint16_t>(Uniform(1, 65535));
  }
  PortRange RandomPortRange() {
    if (Chance(0.6)) {
      const uint16_t p = RandomPort();
      return {p, p};
    }
    const auto lo = static_cast<uint16_t>(Pick<int>({1, 1024, 8000, 32768, 49152}));
    return {lo, static_cast<uint16_t>(std::min<uint64_t>(65535, lo + Uniform(0, 20000)))};
  }
  uint16_t InRange(const PortRange& r) { return static_cast<uint16_t>(Uniform(r.lo, r.hi)); }

  std::mt19937_64 rng_;
};

}  // namespace sluice::testing
