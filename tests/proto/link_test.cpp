#include "engine/proto/link.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/testing/packet_builder.h"

namespace sluice {
namespace {

using testing::PacketBuilder;
using testing::TestPacket;

link::Decoded MustDecode(const TestPacket& p) {
  link::Decoded d{};
  EXPECT_EQ(link::Decode(p.link, p.bytes.data(), static_cast<uint32_t>(p.bytes.size()), &d),
            DropReason::kNone);
  return d;
}

TEST(Link, EveryFrontEndFindsTheIpHeader) {
  struct Case {
    const char* name;
    PacketBuilder b;
    uint32_t l3_off;
    L3Type l3;
    uint8_t tags;
  };
  std::vector<Case> cases = {
      {"raw v4", PacketBuilder().Ipv4("198.18.0.1", "198.18.0.2"), 0, L3Type::kIpv4, 0},
      {"raw v6", PacketBuilder().Ipv6("2001:2::1", "2001:2::2"), 0, L3Type::kIpv6, 0},
      {"ethernet", PacketBuilder().Ethernet().Ipv4("198.18.0.1", "198.18.0.2"), 14, L3Type::kIpv4,
       0},
      {"802.1q", PacketBuilder().Ethernet().Vlan(7).Ipv6("2001:2::1", "2001:2::2"), 18,
       L3Type::kIpv6, 1},
      {"qinq",
       PacketBuilder().Ethernet().Vlan(100, 0x88a8).Vlan(7).Ipv4("198.18.0.1", "198.18.0.2"), 22,
       L3Type::kIpv4, 2},
      {"qinq 9100",
       PacketBuilder().Ethernet().Vlan(100, 0x9100).Vlan(7).Ipv4("198.18.0.1", "198.18.0.2"), 22,
       L3Type::kIpv4, 2},
      {"sll", PacketBuilder().LinuxSll().Ipv4("198.18.0.1", "198.18.0.2"), 16, L3Type::kIpv4, 0},
      {"sll vlan", PacketBuilder().LinuxSll().Vlan(3).Ipv6("2001:2::1", "2001:2::2"), 20,
       L3Type::kIpv6, 1},
      {"sll2", PacketBuilder().LinuxSll2().Ipv6("2001:2::1", "2001:2::2"), 20, L3Type::kIpv6, 0},
      {"loop v4", PacketBuilder().Loopback(2, true).Ipv4("198.18.0.1", "198.18.0.2"), 4,
       L3Type::kIpv4, 0},
      {"null v4 host order", PacketBuilder().Loopback(2, false).Ipv4("198.18.0.1", "198.18.0.2"), 4,
       L3Type::kIpv4, 0},
      {"null v6 bsd", PacketBuilder().Loopback(24, false).Ipv6("2001:2::1", "2001:2::2"), 4,
       L3Type::kIpv6, 0},
      {"null v6 freebsd", PacketBuilder().Loopback(28, false).Ipv6("2001:2::1", "2001:2::2"), 4,
       L3Type::kIpv6, 0},
      {"loop v6 darwin", PacketBuilder().Loopback(30, true).Ipv6("2001:2::1", "2001:2::2"), 4,
       L3Type::kIpv6, 0},
      {"dlt ipv4", PacketBuilder().LinkIpv4().Ipv4("198.18.0.1", "198.18.0.2"), 0, L3Type::kIpv4,
       0},
      {"dlt ipv6", PacketBuilder().LinkIpv6().Ipv6("2001:2::1", "2001:2::2"), 0, L3Type::kIpv6, 0},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    const TestPacket p = c.b.Tcp(1, 2).Build();
    const link::Decoded d = MustDecode(p);
    EXPECT_EQ(d.l3_off, c.l3_off);
    EXPECT_EQ(d.l3_off, p.l3_off);
    EXPECT_EQ(d.l3, c.l3);
    EXPECT_EQ(d.vlan_tags, c.tags);
  }
}

TEST(Link, RejectsWhatItCannotDecode) {
  link::Decoded d;
  const uint8_t arp[60] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x06};
  EXPECT_EQ(link::Decode(LinkType::kEthernet, arp, sizeof arp, &d), DropReason::kNotIp);
  const uint8_t llc[60] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x2e};  // 802.3 length
  EXPECT_EQ(link::Decode(LinkType::kEthernet, llc, sizeof llc, &d), DropReason::kNotIp);
  EXPECT_EQ(link::Decode(LinkType::kEthernet, arp, 13, &d), DropReason::kLinkTruncated);
  EXPECT_EQ(link::Decode(LinkType::kRaw, arp, 0, &d), DropReason::kLinkTruncated);
  const uint8_t v5[20] = {0x55};
  EXPECT_EQ(link::Decode(LinkType::kRaw, v5, sizeof v5, &d), DropReason::kBadIpVersion);
  const uint8_t af_ipx[8] = {23, 0, 0, 0};
  EXPECT_EQ(link::Decode(LinkType::kBsdLoopback, af_ipx, sizeof af_ipx, &d), DropReason::kNotIp);
  EXPECT_EQ(link::Decode(LinkType::kBsdLoopback, af_ipx, 3, &d), DropReason::kLinkTruncated);
  EXPECT_EQ(link::Decode(LinkType::kLinuxSll, arp, 15, &d), DropReason::kLinkTruncated);
  EXPECT_EQ(link::Decode(LinkType::kLinuxSll2, arp, 19, &d), DropReason::kLinkTruncated);
  EXPECT_EQ(link::Decode(LinkType::kUnsupported, arp, sizeof arp, &d),
            DropReason::kUnsupportedLinkType);
}

TEST(Link, VlanTagsAreCappedAndBounded) {
  PacketBuilder b;
  b.Ethernet();
  for (uint32_t i = 0; i < link::kMaxVlanTags; ++i) b.Vlan(static_cast<uint16_t>(i));
  TestPacket ok = b.Ipv4("198.18.0.1", "198.18.0.2").Build();
  EXPECT_EQ(MustDecode(ok).vlan_tags, link::kMaxVlanTags);
  TestPacket too_many = b.Vlan(99).Build();
  link::Decoded d;
  EXPECT_EQ(link::Decode(too_many.link, too_many.bytes.data(),
                         static_cast<uint32_t>(too_many.bytes.size()), &d),
            DropReason::kTooManyVlanTags);
  // A tag announced but cut: 14 + 3 bytes.
  EXPECT_EQ(link::Decode(ok.link, ok.bytes.data(), 17, &d), DropReason::kLinkTruncated);
}

}  // namespace
}  // namespace sluice
