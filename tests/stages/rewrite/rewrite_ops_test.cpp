#include "engine/stages/rewrite/rewrite_ops.h"

#include <gtest/gtest.h>

#include <cstring>

#include "engine/core/byte_order.h"
#include "engine/proto/icmp.h"
#include "engine/proto/tcp.h"
#include "tests/stages/rewrite/rewrite_test_util.h"

namespace sluice {
namespace {

using testing::FragmentPacket;
using testing::PacketBuilder;
using testing::Parsed;
using testing::TestPacket;

const uint8_t* V6(const char* s) {
  static std::vector<std::vector<uint8_t>> keep;
  keep.push_back(testing::Addr(s));
  return keep.back().data();
}

std::vector<TestPacket> Transports() {
  return {
      PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Tcp(40000, 80).Payload(33).Build(),
      PacketBuilder()
          .Ethernet()
          .Ipv4("198.18.0.1", "198.19.0.2")
          .Ipv4Options({1, 1, 1, 0})
          .Udp(5353, 53)
          .Payload(20)
          .Build(),
      PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Tcp(40000, 443).Payload(7).Build(),
      PacketBuilder()
          .LinuxSll()
          .Ipv6("2001:2::1", "2001:2::2")
          .HopByHop()
          .DestOpts()
          .Udp(1111, 2222)
          .Payload(9)
          .Build(),
  };
}

TEST(RewriteOps, AddressesAndPortsKeepEveryChecksumRight) {
  for (const TestPacket& p : Transports()) {
    Parsed x(p);
    ASSERT_TRUE(x.IpOk() && x.L4Ok());
    const bool v4 = x.meta().l3 == L3Type::kIpv4;
    if (v4) {
      EXPECT_TRUE(SetIpv4Address(x.buf(), Side::kSrc, 0x0a000001));
      EXPECT_TRUE(SetIpv4Address(x.buf(), Side::kDst, 0xc0a80101));
      EXPECT_FALSE(SetIpv4Address(x.buf(), Side::kDst, 0xc0a80101));  // already there
      EXPECT_FALSE(SetIpv6Address(x.buf(), Side::kDst, V6("::1")));   // other family
      EXPECT_EQ(LoadBe32(x.ip() + 12), 0x0a000001u);
      EXPECT_EQ(LoadBe32(x.ip() + 16), 0xc0a80101u);
    } else {
      EXPECT_TRUE(SetIpv6Address(x.buf(), Side::kSrc, V6("fd00::5")));
      EXPECT_TRUE(SetIpv6Address(x.buf(), Side::kDst, V6("fd00:ffff::6")));
      EXPECT_FALSE(SetIpv6Address(x.buf(), Side::kDst, V6("fd00:ffff::6")));
      EXPECT_FALSE(SetIpv4Address(x.buf(), Side::kDst, 1));
      EXPECT_EQ(std::memcmp(x.ip() + 8, V6("fd00::5"), 16), 0);
    }
    EXPECT_TRUE(SetL4Port(x.buf(), Side::kSrc, 1));
    EXPECT_TRUE(SetL4Port(x.buf(), Side::kDst, 65535));
    EXPECT_FALSE(SetL4Port(x.buf(), Side::kDst, 65535));
    EXPECT_EQ(LoadBe16(x.l4()), 1);
    EXPECT_EQ(LoadBe16(x.l4() + 2), 65535);
    EXPECT_TRUE(x.IpOk());
    EXPECT_TRUE(x.L4Ok());
  }
}

// a - b in one's complement (mod 0xffff), for checksum values as numbers.
int OnesDiff(uint16_t a, uint16_t b) { return (int{a} - int{b} + 0xffff) % 0xffff; }

TEST(RewriteOps, WrongChecksumsStayWrongBySameAmount) {
  const auto packets = Transports();
  for (std::size_t i = 0; i < packets.size(); ++i) {
    const TestPacket& good = packets[i];
    const std::size_t csum = good.l4_off + (i % 2 == 0 ? 16 : 6);  // TCP, UDP alternate
    TestPacket p = good;
    p.bytes[csum + 1] ^= 0x10;
    Parsed x(p);
    ASSERT_FALSE(x.L4Ok());
    const int error_before = OnesDiff(LoadBe16(&p.bytes[csum]), LoadBe16(&good.bytes[csum]));
    if (x.meta().l3 == L3Type::kIpv4) {
      SetIpv4Address(x.buf(), Side::kSrc, 0x0a000001);
    } else {
      SetIpv6Address(x.buf(), Side::kSrc, V6("fd00::5"));
    }
    SetL4Port(x.buf(), Side::kDst, 9999);
    EXPECT_FALSE(x.L4Ok()) << "a bad checksum turned good";
    // The right value, recomputed on a copy, differs from ours by the same error.
    TestPacket fixed;
    fixed.link = p.link;
    fixed.bytes = x.Bytes();
    Parsed y(fixed);
    ASSERT_EQ(RecomputeL4Checksum(y.buf()), L4Recompute::kChanged);
    EXPECT_TRUE(y.L4Ok());
    EXPECT_EQ(OnesDiff(LoadBe16(x.buf().data() + csum), LoadBe16(y.buf().data() + csum)),
              error_before);
  }
}

TEST(RewriteOps, UdpOverIpv4WithoutChecksumStaysWithout) {
  Parsed x(PacketBuilder()
               .Ipv4("198.18.0.1", "198.19.0.2")
               .Udp(1, 2)
               .UdpNoChecksum()
               .Payload(10)
               .Build());
  EXPECT_TRUE(SetIpv4Address(x.buf(), Side::kDst, 0x0a0a0a0a));
  EXPECT_TRUE(SetL4Port(x.buf(), Side::kSrc, 7));
  EXPECT_EQ(LoadBe16(x.l4() + 6), 0);
  EXPECT_TRUE(x.IpOk());
  EXPECT_EQ(RecomputeL4Checksum(x.buf()), L4Recompute::kUnchanged);
  EXPECT_EQ(LoadBe16(x.l4() + 6), 0);
}

// RFC 6935/6936: IPv6 tunnels (VXLAN, Geneve; Linux's udp6zerocsumtx) may send UDP with a
// zero checksum. An incremental rewrite once turned it into a made-up non-zero one that every
// receiver drops; it stays 0, as Linux's NAT keeps it. A full recompute computes a real one,
// which every receiver takes.
TEST(RewriteOps, UdpOverIpv6WithAZeroChecksumStaysZero) {
  Parsed x(PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Udp(4789, 4789).UdpNoChecksum().Payload(10).Build());
  ASSERT_EQ(LoadBe16(x.l4() + 6), 0);
  EXPECT_TRUE(SetL4Port(x.buf(), Side::kSrc, 7));
  const uint8_t a[16] = {0x20, 0x01, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
  EXPECT_TRUE(SetIpv6Address(x.buf(), Side::kDst, a));
  EXPECT_EQ(LoadBe16(x.l4() + 6), 0);
  EXPECT_EQ(RecomputeL4Checksum(x.buf()), L4Recompute::kChanged);
  EXPECT_TRUE(x.L4Ok());
}

TEST(RewriteOps, UdpComputedZeroIsSentAsFfff) {
  for (const bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "ipv6" : "ipv4");
    const auto build = [&](uint16_t dport) {
      PacketBuilder b;
      if (v6) {
        b.Ipv6("2001:2::1", "2001:2::2");
      } else {
        b.Ipv4("198.18.0.1", "198.19.0.2");
      }
      return b.Udp(1234, dport).Payload(6).Build();
    };
    // The destination port whose packet sums to a checksum of 0 (written 0xffff).
    int zero_port = -1;
    for (int port = 0; port < 65536 && zero_port < 0; ++port) {
      const TestPacket p = build(static_cast<uint16_t>(port));
      if (LoadBe16(p.bytes.data() + p.l4_off + 6) == 0xffff) zero_port = port;
    }
    ASSERT_GE(zero_port, 0);
    Parsed x(build(static_cast<uint16_t>(zero_port == 0 ? 1 : zero_port - 1)));
    ASSERT_TRUE(SetL4Port(x.buf(), Side::kDst, static_cast<uint16_t>(zero_port)));
    EXPECT_EQ(LoadBe16(x.l4() + 6), 0xffff);
    EXPECT_TRUE(x.L4Ok());
    EXPECT_EQ(RecomputeL4Checksum(x.buf()), L4Recompute::kUnchanged);
  }
}

TEST(RewriteOps, IcmpHasNoPseudoHeaderIcmpv6Has) {
  Parsed v4(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Icmp(8, 0, 77, 1).Payload(16).Build());
  const uint16_t icmp_csum = LoadBe16(v4.l4() + 2);
  EXPECT_TRUE(SetIpv4Address(v4.buf(), Side::kSrc, 0x0a000001));
  EXPECT_EQ(LoadBe16(v4.l4() + 2), icmp_csum);
  EXPECT_TRUE(v4.IpOk() && v4.L4Ok());
  EXPECT_FALSE(SetL4Port(v4.buf(), Side::kSrc, 1)) << "ICMP has no ports";
  EXPECT_TRUE(SetL4Field16(v4.buf(), icmp::kOffEchoId, 4242));  // NAPT's echo id
  EXPECT_EQ(icmp::EchoId(v4.l4()), 4242);
  EXPECT_TRUE(v4.L4Ok());

  Parsed v6(PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Icmp(128, 0, 77, 1).Payload(16).Build());
  const uint16_t icmp6_csum = LoadBe16(v6.l4() + 2);
  EXPECT_TRUE(SetIpv6Address(v6.buf(), Side::kDst, V6("2001:2::99")));
  EXPECT_NE(LoadBe16(v6.l4() + 2), icmp6_csum);
  EXPECT_TRUE(v6.L4Ok());
  EXPECT_TRUE(SetL4Field16(v6.buf(), icmp::kOffEchoId, 1));
  EXPECT_TRUE(v6.L4Ok());
}

TEST(RewriteOps, L4FieldAtOddOffsetAndNeverTheChecksumItself) {
  Parsed x(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Tcp(1, 2).Payload(9).Build());
  EXPECT_TRUE(SetL4Field16(x.buf(), 5, 0xbeef));  // straddles sequence-number bytes 5..6
  EXPECT_EQ(LoadBe16(x.l4() + 5), 0xbeef);
  EXPECT_TRUE(x.L4Ok());
  EXPECT_TRUE(SetL4Field16(x.buf(), 27, 0x1234));  // the last two payload bytes, odd offset
  EXPECT_TRUE(x.L4Ok());
  const auto before = x.Bytes();
  EXPECT_FALSE(SetL4Field16(x.buf(), 15, 1));  // overlaps the checksum
  EXPECT_FALSE(SetL4Field16(x.buf(), 16, 1));
  EXPECT_FALSE(SetL4Field16(x.buf(), 17, 1));
  EXPECT_FALSE(SetL4Field16(x.buf(), 28, 1));  // past the end
  EXPECT_EQ(x.Bytes(), before);
}

TEST(RewriteOps, FirstFragmentCarriesTheWholeDatagramsChecksum) {
  for (const bool v6 : {false, true}) {
    for (const bool tcp : {false, true}) {
      SCOPED_TRACE(std::string(v6 ? "ipv6 " : "ipv4 ") + (tcp ? "tcp" : "udp"));
      PacketBuilder b;
      if (v6) {
        b.Ipv6("2001:2::1", "2001:2::2");
      } else {
        b.Ipv4("198.18.0.1", "198.19.0.2");
      }
      if (tcp) {
        b.Tcp(1000, 80);
      } else {
        b.Udp(1000, 53);
      }
      const TestPacket whole = b.Payload(2000).Build();
      const auto frags = FragmentPacket(whole, 1024);
      ASSERT_GE(frags.size(), 2u);
      Parsed w(whole), f0(frags[0]), f1(frags[1]);
      ASSERT_TRUE(f0.meta().flags & pkt_flag::kL4Valid);
      const auto later_before = f1.Bytes();
      for (Parsed* x : {&w, &f0, &f1}) {
        if (v6) {
          SetIpv6Address(x->buf(), Side::kSrc, V6("fd00::77"));
        } else {
          SetIpv4Address(x->buf(), Side::kSrc, 0x0a0b0c0d);
        }
        SetL4Port(x->buf(), Side::kSrc, 33333);
      }
      // The first fragment's L4 checksum is the rewritten whole datagram's.
      const uint32_t off = tcp ? 16 : 6;
      EXPECT_EQ(LoadBe16(f0.l4() + off), LoadBe16(w.l4() + off));
      EXPECT_TRUE(w.L4Ok());
      // A later fragment: address changed, not one byte past the IP header(s).
      const auto later_after = f1.Bytes();
      const std::size_t hdr = v6 ? 48 : 20;
      EXPECT_TRUE(
          std::equal(later_before.begin() + hdr, later_before.end(), later_after.begin() + hdr));
      EXPECT_TRUE(f1.IpOk());
      EXPECT_FALSE(SetL4Port(f1.buf(), Side::kDst, 1));
      EXPECT_EQ(RecomputeL4Checksum(f0.buf()), L4Recompute::kNotPossible);
    }
  }
}

TEST(RewriteOps, RoutingHeaderDestinationIsNotInThePseudoHeader) {
  for (const uint8_t type : {0, 4}) {
    Parsed x(PacketBuilder()
                 .Ipv6("2001:2::1", "2001:2::2")
                 .Routing(type, 1, {"2001:2::8", "2001:2::9"})
                 .Tcp(1, 2)
                 .Build());
    ASSERT_TRUE(x.L4Ok());
    const uint16_t before = LoadBe16(x.l4() + 16);
    EXPECT_TRUE(SetIpv6Address(x.buf(), Side::kDst, V6("2001:2::3")));
    EXPECT_EQ(LoadBe16(x.l4() + 16), before);  // the pseudo-header holds the final destination
    EXPECT_TRUE(x.L4Ok());
    EXPECT_TRUE(SetIpv6Address(x.buf(), Side::kSrc, V6("2001:2::4")));
    EXPECT_TRUE(x.L4Ok());
    x.l4()[16] ^= 0xff;
    EXPECT_EQ(RecomputeL4Checksum(x.buf()), L4Recompute::kChanged);
    EXPECT_TRUE(x.L4Ok());
  }
  // A routing type whose final destination sluice cannot tell: no full recompute.
  Parsed rpl(PacketBuilder()
                 .Ipv6("2001:2::1", "2001:2::2")
                 .Routing(3, 1, {"2001:2::8"})
                 .Udp(1, 2)
                 .Build());
  EXPECT_EQ(RecomputeL4Checksum(rpl.buf()), L4Recompute::kNotPossible);
}

TEST(RewriteOps, TtlAndDscpKeepEcnAndChecksums) {
  for (const bool v6 : {false, true}) {
    PacketBuilder b;
    if (v6) {
      b.Ipv6("2001:2::1", "2001:2::2");
    } else {
      b.Ipv4("198.18.0.1", "198.19.0.2");
    }
    Parsed x(b.Ttl(64).Tos(0x03).Tcp(1, 2).Build());  // ECN CE
    EXPECT_EQ(Ttl(x.buf()), 64);
    EXPECT_TRUE(SetTtl(x.buf(), 63));
    EXPECT_FALSE(SetTtl(x.buf(), 63));
    EXPECT_EQ(Ttl(x.buf()), 63);
    EXPECT_TRUE(SetDscp(x.buf(), 46));
    EXPECT_FALSE(SetDscp(x.buf(), 46));
    const uint8_t tos = v6 ? static_cast<uint8_t>((x.ip()[0] << 4) | (x.ip()[1] >> 4)) : x.ip()[1];
    EXPECT_EQ(tos, (46 << 2) | 3);
    EXPECT_EQ(x.ip()[0] >> 4, v6 ? 6 : 4);  // version untouched
    EXPECT_TRUE(x.IpOk());
    EXPECT_TRUE(x.L4Ok());
  }
}

TEST(RewriteOps, MssClampOnlyLowersOnlySynAndAtAnyOffset) {
  // MSS at offset 20 (even) and 21 (after a NOP: odd).
  for (const bool nop : {false, true}) {
    PacketBuilder b;
    b.Ipv4("198.18.0.1", "198.19.0.2").Tcp(1, 2).TcpFlags(tcp::kSyn);
    if (nop) b.TcpOptions({1});
    Parsed x(b.Mss(1460).TcpOptions({4, 2}).Build());  // + SACK permitted
    const uint32_t at = nop ? 23 : 22;
    EXPECT_FALSE(ClampTcpMss(x.buf(), 1460));
    EXPECT_FALSE(ClampTcpMss(x.buf(), 1500));
    EXPECT_TRUE(ClampTcpMss(x.buf(), 1200));
    EXPECT_EQ(LoadBe16(x.l4() + at), 1200);
    EXPECT_TRUE(x.L4Ok());
  }
  Parsed ack(PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Tcp(1, 2).Mss(1460).Build());
  EXPECT_FALSE(ClampTcpMss(ack.buf(), 500)) << "not a SYN";
  Parsed bare(PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Tcp(1, 2).TcpFlags(tcp::kSyn).Build());
  EXPECT_FALSE(ClampTcpMss(bare.buf(), 500)) << "no option";
  Parsed udp(PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Udp(1, 2).Build());
  EXPECT_FALSE(ClampTcpMss(udp.buf(), 500));
}

// A SYN with two MSS options: Linux's tcp_parse_options keeps the last, so a clamp of the
// first alone once let 8960 through. Every one above the clamp is lowered; one below stays.
TEST(RewriteOps, MssClampLowersEveryMssOption) {
  Parsed x(PacketBuilder()
               .Ipv4("198.18.0.1", "198.19.0.2")
               .Tcp(1, 2)
               .TcpFlags(tcp::kSyn)
               .Mss(1460)
               .TcpOptions({1})
               .Mss(8960)
               .Mss(1000)
               .Build());
  EXPECT_TRUE(ClampTcpMss(x.buf(), 1200));
  EXPECT_EQ(LoadBe16(x.l4() + 22), 1200);
  EXPECT_EQ(LoadBe16(x.l4() + 27), 1200);  // after the NOP: an odd offset
  EXPECT_EQ(LoadBe16(x.l4() + 31), 1000);
  EXPECT_TRUE(x.L4Ok());
  EXPECT_FALSE(ClampTcpMss(x.buf(), 1200)) << "nothing left above the clamp";
}

TEST(RewriteOps, FinishChecksumsHonoursTheSourceFlags) {
  // kL4CsumNotReady: the field holds a partial sum; a modified packet needs it complete.
  Parsed x(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Tcp(1, 2).Payload(100).Build());
  x.meta().flags |= pkt_flag::kL4CsumNotReady;
  x.l4()[16] = 0x12;
  x.l4()[17] = 0x34;
  EXPECT_FALSE(FinishChecksums(x.buf(), /*modified=*/false, false).l4_recomputed);
  EXPECT_FALSE(x.L4Ok());
  SetL4Port(x.buf(), Side::kDst, 99);
  ChecksumFinish f = FinishChecksums(x.buf(), /*modified=*/true, false);
  EXPECT_TRUE(f.l4_recomputed);
  EXPECT_TRUE(x.L4Ok());
  // kIpCsumUntrusted (divert outbound): the IPv4 header checksum is recomputed.
  Parsed y(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Udp(1, 2).Build());
  y.meta().flags |= pkt_flag::kIpCsumUntrusted;
  y.ip()[10] = 0;
  y.ip()[11] = 0;
  f = FinishChecksums(y.buf(), false, false);
  EXPECT_TRUE(f.ip_recomputed);
  EXPECT_TRUE(f.changed);
  EXPECT_TRUE(y.IpOk());
  // A full recompute on a fragment is reported as not possible.
  const auto frags = FragmentPacket(
      PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Udp(1, 2).Payload(100).Build(), 64);
  Parsed z(frags[0]);
  f = FinishChecksums(z.buf(), true, true);
  EXPECT_TRUE(f.l4_not_possible);
  EXPECT_TRUE(f.ip_recomputed);
}

}  // namespace
}  // namespace sluice
