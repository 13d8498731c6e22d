#include "tests/testing/random_traffic.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

namespace sluice::testing {

uint64_t SeedFromEnv() {
  const char* v = std::getenv("SLUICE_TEST_SEED");
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : std::random_device{}();
}

std::string RandomTraffic::Ipv4Text() {
  return "198." + std::to_string(18 + U(2)) + "." + std::to_string(U(256)) + "." +
         std::to_string(U(256));
}

std::string RandomTraffic::Ipv6Text() {
  char b[64];
  std::snprintf(b, sizeof b, "2001:2:0:%x::%x:%x", U(65536), U(65536), U(65536));  // 2001:2::/48
  return b;
}

void RandomTraffic::Fill(std::vector<uint8_t>& bytes) {
  for (std::size_t i = 0; i < bytes.size(); i += 8) {
    const uint64_t r = rng_();
    std::memcpy(&bytes[i], &r, std::min<std::size_t>(8, bytes.size() - i));
  }
}

TestPacket RandomTraffic::Packet(const TrafficOptions& o) {
  PacketBuilder b;
  switch (o.link_variety ? U(4) : 1) {
    case 0:
      break;
    case 1:
      b.Ethernet();
      break;
    case 2:
      b.Ethernet().Vlan(static_cast<uint16_t>(U(4096)));
      break;
    default:
      b.LinuxSll();
      break;
  }
  const bool v6 = Coin();
  if (v6) {
    b.Ipv6(Ipv6Text(), Ipv6Text()).FlowLabel(U(1 << 20));
    if (Coin(4)) b.HopByHop(Coin() ? std::vector<uint8_t>{5, 2, 0, 0} : std::vector<uint8_t>{});
    if (Coin(6)) b.DestOpts();
    if (Coin(6)) b.Routing(Coin() ? 0 : 4, static_cast<uint8_t>(U(3)), {Ipv6Text(), Ipv6Text()});
    if (Coin(8)) b.Ah();
  } else {
    b.Ipv4(Ipv4Text(), Ipv4Text()).Id(static_cast<uint16_t>(U(65536)));
    if (Coin(5)) {
      b.Ipv4Options(Coin() ? std::vector<uint8_t>{1, 0x94, 4, 0, 0}
                           : std::vector<uint8_t>{1, 1, 1, 1});
    }
    if (Coin(3)) b.Df();
  }
  b.Ttl(static_cast<uint8_t>(o.min_ttl + U(256 - o.min_ttl))).Tos(static_cast<uint8_t>(U(256)));
  const auto sport = static_cast<uint16_t>(U(65536)), dport = static_cast<uint16_t>(U(65536));
  switch (U(o.other_protocols ? 6 : 5)) {
    case 0:
    case 1:
      b.Tcp(sport, dport).TcpFlags(static_cast<uint8_t>(U(256)));
      if (Coin()) b.TcpOptions(std::vector<uint8_t>(U(4), 1));  // NOPs: MSS at odd offsets
      if (Coin()) b.Mss(static_cast<uint16_t>(U(65536)));
      if (Coin(3)) b.TcpOptions({4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8});
      break;
    case 2:
    case 3:
      b.Udp(sport, dport);
      if (o.udp_no_checksum && !v6 && Coin(6)) b.UdpNoChecksum();
      break;
    case 4:
      if (o.icmp_echo_only) {
        const bool request = Coin();
        b.Icmp(v6 ? (request ? 128 : 129) : (request ? 8 : 0), 0, static_cast<uint16_t>(U(65536)),
               static_cast<uint16_t>(U(65536)));
      } else {
        b.Icmp(static_cast<uint8_t>(U(256)), static_cast<uint8_t>(U(256)),
               static_cast<uint16_t>(U(65536)), static_cast<uint16_t>(U(65536)));
      }
      break;
    default:
      b.L4Proto(Coin() ? 47 : 132);  // GRE, SCTP: never touched
      break;
  }
  std::vector<uint8_t> payload(U(4) == 0 ? U(1400) : U(64));
  Fill(payload);
  return b.Payload(std::move(payload)).Build();
}

TestPacket RandomTraffic::Datagram(bool v6, std::size_t payload) {
  PacketBuilder b;
  if (v6) {
    b.Ipv6(Ipv6Text(), Ipv6Text());
  } else {
    b.Ipv4(Ipv4Text(), Ipv4Text());
  }
  std::vector<uint8_t> bytes(payload);
  Fill(bytes);
  return b.Ttl(64)
      .Udp(static_cast<uint16_t>(U(65536)), static_cast<uint16_t>(U(65536)))
      .Payload(std::move(bytes))
      .Build();
}

AddrRewrite RandomTraffic::Addr(bool v6, const PlanOptions& o) {
  if (Coin(3)) return {};
  const bool family6 = o.wrong_family && Coin(10) ? !v6 : v6;
  std::array<uint8_t, 16> from{}, to{};
  for (unsigned i = 0; i < (family6 ? 16u : 4u); ++i) {
    from[i] = static_cast<uint8_t>(rng_());
    to[i] = static_cast<uint8_t>(rng_());
  }
  // Prefixes that the generated traffic falls into, so some maps match.
  if (family6) {
    from[0] = 0x20;
    from[1] = 0x01;
  } else {
    from[0] = 198;
    from[1] = 18;
  }
  AddrRewrite a;
  a.family = family6 ? L3Type::kIpv6 : L3Type::kIpv4;
  a.to = to;
  if (Coin()) {
    a.kind = AddrRewrite::Kind::kSet;
    a.prefix_len = family6 ? 128 : 32;
  } else {
    a.kind = AddrRewrite::Kind::kMap;
    a.from = from;
    a.prefix_len = static_cast<uint8_t>(1 + U(family6 ? 24 : 15));
  }
  return a;
}

PortRewrite RandomTraffic::Port() {
  switch (U(3)) {
    case 0:
      return {};
    case 1:
      return PortRewrite::Set(static_cast<uint16_t>(U(65536)));
    default:
      break;
  }
  std::vector<PortMapEntry> m;
  uint32_t next = U(2000);
  while (next < 65536 && m.size() < 8) {
    const uint32_t last = std::min<uint32_t>(65535, next + U(8000));
    PortMapEntry e;
    e.first = static_cast<uint16_t>(next);
    e.last = static_cast<uint16_t>(last);
    e.mode = Coin() ? PortMapEntry::Mode::kShift : PortMapEntry::Mode::kCollapse;
    const uint32_t span = last - next;
    e.to = static_cast<uint16_t>(e.mode == PortMapEntry::Mode::kShift ? U(65536 - span) : U(65536));
    m.push_back(e);
    next = last + 1 + U(5000);
  }
  return PortRewrite::Map(std::move(m));
}

RewritePlan RandomTraffic::Plan(bool v6, const PlanOptions& o) {
  RewritePlan p;
  p.src_addr = Addr(v6, o);
  p.dst_addr = Addr(v6, o);
  p.src_port = Port();
  p.dst_port = Port();
  switch (U(o.ttl_decrement ? 3 : 2)) {
    case 0:
      break;
    case 1:
      p.ttl = {.kind = TtlRewrite::Kind::kSet, .value = static_cast<uint8_t>(1 + U(255))};
      break;
    default:
      p.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = static_cast<uint8_t>(1 + U(3))};
      break;
  }
  if (Coin()) p.dscp = static_cast<uint8_t>(U(64));
  if (Coin()) p.mss_clamp = static_cast<uint16_t>(kMinMssClamp + U(2000));
  if (Coin(4)) p.mark = static_cast<uint32_t>(rng_());
  return p;
}

}  // namespace sluice::testing
