#include "engine/proto/ipv6.h"

#include <gtest/gtest.h>

#include "tests/testing/packet_builder.h"

namespace sluice {
namespace {

using testing::PacketBuilder;
using testing::TestPacket;

ipv6::Chain Walk(const TestPacket& p, DropReason want = DropReason::kNone,
                 ipv6::Limits limits = {}) {
  ipv6::Chain c{};
  EXPECT_EQ(ipv6::WalkChain(p.bytes.data() + p.l3_off, p.ip_len, limits, &c), want);
  return c;
}

TEST(Ipv6Chain, WalksEveryKindOfExtensionHeader) {
  const TestPacket p = PacketBuilder()
                           .Ipv6("2001:2::1", "2001:2::2")
                           .HopByHop({5, 2, 0, 0})  // router alert
                           .DestOpts()
                           .Routing(0, 0, {"2001:2::9"})
                           .Ah()
                           .DestOpts({0x1e, 3, 1, 2, 3})
                           .Tcp(1, 2)
                           .Build();
  const ipv6::Chain c = Walk(p);
  EXPECT_EQ(c.headers, 5);
  EXPECT_EQ(c.l4_proto, 6);
  EXPECT_EQ(c.l4_off, p.l4_off - p.l3_off);
  EXPECT_FALSE(c.fragment);
  EXPECT_EQ(c.routing_off, 0u);  // segments left 0: the destination is final
}

TEST(Ipv6Chain, FragmentHeaderFirstLaterAndAtomic) {
  const TestPacket first =
      PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Fragment(0, true).Udp(1, 2).Payload(8).Build();
  ipv6::Chain c = Walk(first);
  EXPECT_TRUE(c.fragment);
  EXPECT_FALSE(c.later_fragment);
  EXPECT_EQ(c.l4_proto, 17);
  EXPECT_EQ(c.l4_off, 48u);

  const TestPacket later = PacketBuilder()
                               .Ipv6("2001:2::1", "2001:2::2")
                               .Fragment(1480, false)
                               .L4Proto(6)
                               .Payload(100)
                               .Build();
  c = Walk(later);
  EXPECT_TRUE(c.fragment);
  EXPECT_TRUE(c.later_fragment);
  EXPECT_EQ(c.l4_off, 0u);
  EXPECT_EQ(c.l4_proto, 6);
  EXPECT_EQ(c.frag_offset, 1480u);

  const TestPacket atomic =
      PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Fragment(0, false).Tcp(1, 2).Build();
  c = Walk(atomic);
  EXPECT_FALSE(c.fragment);
  EXPECT_EQ(c.l4_off, 48u);
}

TEST(Ipv6Chain, NoNextHeaderHasNoUpperLayer) {
  const TestPacket p = PacketBuilder().Ipv6("2001:2::1", "2001:2::2").DestOpts().Build();
  const ipv6::Chain c = Walk(p);
  EXPECT_EQ(c.l4_proto, 59);
  EXPECT_EQ(c.l4_off, 0u);
}

TEST(Ipv6Chain, CapsOnCountAndBytes) {
  PacketBuilder b;
  b.Ipv6("2001:2::1", "2001:2::2");
  for (int i = 0; i < 8; ++i) b.DestOpts();
  EXPECT_EQ(Walk(b.Tcp(1, 2).Build()).headers, 8);
  b.DestOpts();
  Walk(b.Build(), DropReason::kIpv6TooManyExtHeaders);
  Walk(b.Build(), DropReason::kNone, {.max_headers = 9, .max_bytes = 512});
  std::vector<uint8_t> experimental(252, 0xab);  // type 0x1e, 250 bytes of value
  experimental[0] = 0x1e;
  experimental[1] = 250;
  const TestPacket big = PacketBuilder()
                             .Ipv6("2001:2::1", "2001:2::2")
                             .DestOpts(experimental)
                             .DestOpts(std::vector<uint8_t>(254, 0))
                             .DestOpts(std::vector<uint8_t>(100, 0))
                             .Tcp(1, 2)
                             .Build();
  Walk(big, DropReason::kIpv6ExtHeadersTooLong);
  Walk(big, DropReason::kNone, {.max_headers = 8, .max_bytes = 1024});
}

TEST(Ipv6Chain, PseudoHeaderDestinationFollowsTheRoutingHeader) {
  const TestPacket plain = PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Tcp(1, 2).Build();
  const uint8_t* ip = plain.bytes.data();
  EXPECT_EQ(ipv6::PseudoHeaderDst(ip, plain.ip_len), ip + 24);

  const TestPacket rh0 = PacketBuilder()
                             .Ipv6("2001:2::1", "2001:2::2")
                             .Routing(0, 2, {"2001:2::3", "2001:2::4"})
                             .Tcp(1, 2)
                             .Build();
  const uint8_t* d = ipv6::PseudoHeaderDst(rh0.bytes.data(), rh0.ip_len);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(std::vector<uint8_t>(d, d + 16), testing::Addr("2001:2::4"));

  const TestPacket srh = PacketBuilder()
                             .Ipv6("2001:2::1", "2001:2::2")
                             .Routing(4, 1, {"2001:2::7", "2001:2::2"})
                             .Udp(1, 2)
                             .Build();
  d = ipv6::PseudoHeaderDst(srh.bytes.data(), srh.ip_len);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(std::vector<uint8_t>(d, d + 16), testing::Addr("2001:2::7"));

  const TestPacket rpl =
      PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Routing(3, 1, {"2001:2::7"}).Udp(1, 2).Build();
  EXPECT_EQ(ipv6::PseudoHeaderDst(rpl.bytes.data(), rpl.ip_len), nullptr);
}

}  // namespace
}  // namespace sluice
