// One case per parse drop reason, each under both policies; a guard-page truncation sweep;
// and random corruption of valid packets. Every packet ends at an inaccessible page, so a
// read past the captured bytes faults in any build.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>

#include "engine/proto/ipv4.h"
#include "engine/stages/rewrite/rewrite_stage.h"
#include "tests/stages/parse/parse_test_util.h"

namespace sluice {
namespace {

using testing::PacketBuilder;
using testing::ParseOnce;
using testing::TestPacket;

void Set16(TestPacket& p, std::size_t at, uint16_t v) {
  p.bytes[at] = static_cast<uint8_t>(v >> 8);
  p.bytes[at + 1] = static_cast<uint8_t>(v);
}

PacketBuilder V4() { return std::move(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.1")); }
PacketBuilder V6() { return std::move(PacketBuilder().Ipv6("2001:2::1", "2001:2::2")); }

struct MalformedCase {
  std::string name;
  DropReason reason;
  std::function<TestPacket()> make;
};

std::vector<MalformedCase> Cases() {
  std::vector<MalformedCase> c;
  c.push_back({"EthernetCutInsideHeader", DropReason::kLinkTruncated, [] {
                 TestPacket p = PacketBuilder().Ethernet().Ipv4("198.18.0.1", "198.18.0.2").Build();
                 p.bytes.resize(13);
                 return p;
               }});
  c.push_back({"RawEmpty", DropReason::kLinkTruncated, [] {
                 TestPacket p;
                 return p;
               }});
  c.push_back({"FiveVlanTags", DropReason::kTooManyVlanTags, [] {
                 PacketBuilder b;
                 b.Ethernet();
                 for (int i = 0; i < 5; ++i) b.Vlan(static_cast<uint16_t>(i + 1));
                 return b.Ipv4("198.18.0.1", "198.18.0.2").Build();
               }});
  c.push_back({"RawVersion5", DropReason::kBadIpVersion, [] {
                 TestPacket p = V4().Tcp(1, 2).Build();
                 p.bytes[0] = 0x55;
                 return p;
               }});
  c.push_back({"EthertypeIpv4CarryingIpv6", DropReason::kBadIpVersion, [] {
                 TestPacket p = PacketBuilder().Ethernet().Ipv6("2001:2::1", "2001:2::2").Build();
                 Set16(p, 12, 0x0800);
                 return p;
               }});
  c.push_back({"DltIpv6CarryingIpv4", DropReason::kBadIpVersion, [] {
                 TestPacket p = V4().Tcp(1, 2).Build();
                 p.link = LinkType::kIpv6;
                 return p;
               }});
  c.push_back({"Ipv4Cut19", DropReason::kIpv4HeaderTruncated, [] {
                 TestPacket p = V4().Build();
                 p.bytes.resize(19);
                 return p;
               }});
  c.push_back({"Ipv4IhlPastCapture", DropReason::kIpv4HeaderTruncated, [] {
                 TestPacket p = V4().Build();
                 p.bytes[0] = 0x46;
                 p.bytes.resize(22);
                 return p;
               }});
  c.push_back({"Ipv4Ihl4", DropReason::kIpv4BadIhl, [] {
                 TestPacket p = V4().Tcp(1, 2).Build();
                 p.bytes[0] = 0x44;
                 return p;
               }});
  c.push_back({"Ipv4TotalLengthBelowHeader", DropReason::kIpv4BadTotalLength, [] {
                 TestPacket p = V4().Tcp(1, 2).Build();
                 Set16(p, 2, 19);
                 return p;
               }});
  c.push_back({"Ipv4TotalLengthPastCapture", DropReason::kIpv4LengthExceedsCapture, [] {
                 TestPacket p = V4().Tcp(1, 2).Payload(40).Build();
                 p.bytes.pop_back();
                 return p;
               }});
  c.push_back({"Ipv4OptionLengthOne", DropReason::kIpv4BadOption, [] {
                 return V4().Ipv4Options({1, 7, 1, 0}).Tcp(1, 2).Build();
               }});
  c.push_back({"Ipv4OptionPastHeader", DropReason::kIpv4BadOption, [] {
                 return V4().Ipv4Options({0x44, 12, 5, 0}).Tcp(1, 2).Build();
               }});
  c.push_back({"Ipv4MoreFragmentsNotMultipleOf8", DropReason::kIpv4BadFragment,
               [] { return V4().Fragment(0, true).L4Proto(17).Payload(15).Build(); }});
  c.push_back({"Ipv4FragmentPast65535", DropReason::kIpv4BadFragment,
               [] { return V4().Fragment(65512, false).L4Proto(17).Payload(16).Build(); }});
  c.push_back({"Ipv4TcpFragmentAtOffset8", DropReason::kIpv4BadFragment,
               [] { return V4().Fragment(8, false).L4Proto(6).Payload(16).Build(); }});
  c.push_back({"Ipv6Cut39", DropReason::kIpv6HeaderTruncated, [] {
                 TestPacket p = V6().Build();
                 p.bytes.resize(39);
                 return p;
               }});
  c.push_back({"Ipv6PayloadPastCapture", DropReason::kIpv6LengthExceedsCapture, [] {
                 TestPacket p = V6().Udp(1, 2).Payload(9).Build();
                 p.bytes.pop_back();
                 return p;
               }});
  c.push_back({"Ipv6ExtHeaderPastPayload", DropReason::kIpv6ExtHeaderTruncated, [] {
                 TestPacket p = V6().DestOpts().Tcp(1, 2).Build();
                 p.bytes[41] = 10;  // 88 bytes claimed, 28 there
                 return p;
               }});
  c.push_back({"Ipv6ChainCutBeforeNextHeader", DropReason::kIpv6ExtHeaderTruncated, [] {
                 TestPacket p = V6().Build();  // next header 59, payload 0
                 p.bytes[6] = 60;              // destination options announced, none there
                 return p;
               }});
  c.push_back({"Ipv6HopByHopNotFirst", DropReason::kIpv6BadExtHeader,
               [] { return V6().DestOpts().HopByHop().Tcp(1, 2).Build(); }});
  c.push_back({"Ipv6TwoFragmentHeaders", DropReason::kIpv6BadExtHeader, [] {
                 return V6().Fragment(0, true).Fragment(0, true).L4Proto(17).Payload(8).Build();
               }});
  c.push_back({"Ipv6OptionPastHeader", DropReason::kIpv6BadOption, [] {
                 return V6().HopByHop({0x1e, 10}).Tcp(1, 2).Build();
               }});
  c.push_back({"Ipv6NineExtHeaders", DropReason::kIpv6TooManyExtHeaders, [] {
                 PacketBuilder b = V6();
                 for (int i = 0; i < 9; ++i) b.DestOpts();
                 return b.Tcp(1, 2).Build();
               }});
  c.push_back({"Ipv6ExtHeadersOver512Bytes", DropReason::kIpv6ExtHeadersTooLong, [] {
                 return V6()
                     .DestOpts(std::vector<uint8_t>(254, 0))
                     .DestOpts(std::vector<uint8_t>(254, 0))
                     .DestOpts(std::vector<uint8_t>(30, 0))
                     .Tcp(1, 2)
                     .Build();
               }});
  c.push_back({"Ipv6MoreFragmentsNotMultipleOf8", DropReason::kIpv6BadFragment,
               [] { return V6().Fragment(0, true).L4Proto(17).Payload(11).Build(); }});
  c.push_back({"Ipv6FragmentPast65535", DropReason::kIpv6BadFragment,
               [] { return V6().Fragment(65528, false).L4Proto(17).Payload(16).Build(); }});
  c.push_back({"Ipv6Jumbogram", DropReason::kIpv6Jumbogram, [] {
                 TestPacket p = V6().HopByHop({0xc2, 4, 0, 1, 0, 0}).Tcp(1, 2).Payload(64).Build();
                 Set16(p, 4, 0);
                 return p;
               }});
  c.push_back({"Ipv4TotalLengthZeroGso", DropReason::kGsoLengthZero, [] {
                 TestPacket p = V4().Tcp(1, 2).Payload(1000).Build();
                 Set16(p, 2, 0);
                 return p;
               }});
  c.push_back({"Ipv6PayloadLengthZeroGso", DropReason::kGsoLengthZero, [] {
                 TestPacket p = V6().Tcp(1, 2).Payload(1000).Build();
                 Set16(p, 4, 0);
                 return p;
               }});
  c.push_back({"Ipv4FirstFragmentHalfATcpHeader", DropReason::kShortFirstFragment,
               [] { return V4().Fragment(0, true).L4Proto(6).Payload(16).Build(); }});
  c.push_back({"Ipv4FirstFragmentTcpOptionsCut", DropReason::kShortFirstFragment, [] {
                 TestPacket p = V4().Fragment(0, true).L4Proto(6).Payload(24).Build();
                 p.bytes[20 + 12] = 0xa0;  // 40-byte TCP header, 24 bytes here
                 return p;
               }});
  c.push_back({"Ipv6FirstFragmentHalfAUdpHeader", DropReason::kShortFirstFragment, [] {
                 // Hop-by-hop (8) + fragment header (8), then 0 bytes of UDP: 8 would be needed.
                 TestPacket p = V6().HopByHop().Fragment(0, true).L4Proto(17).Build();
                 return p;
               }});
  c.push_back({"TcpTwelveBytes", DropReason::kTcpTruncated,
               [] { return V4().L4Proto(6).Payload(12).Build(); }});
  c.push_back({"TcpDataOffset4", DropReason::kTcpBadDataOffset, [] {
                 TestPacket p = V4().Tcp(1, 2).Payload(20).Build();
                 p.bytes[20 + 12] = 0x40;
                 return p;
               }});
  c.push_back({"TcpDataOffsetPastSegment", DropReason::kTcpBadDataOffset, [] {
                 TestPacket p = V6().Tcp(1, 2).Build();
                 p.bytes[40 + 12] = 0xf0;
                 return p;
               }});
  c.push_back({"TcpOptionLengthZero", DropReason::kTcpBadOption, [] {
                 return V4().Tcp(1, 2).TcpOptions({1, 8, 0, 0}).Build();
               }});
  c.push_back({"TcpOptionPastHeader", DropReason::kTcpBadOption, [] {
                 return V6().Tcp(1, 2).TcpOptions({1, 1, 3, 9}).Payload(20).Build();
               }});
  c.push_back({"UdpFourBytes", DropReason::kUdpTruncated,
               [] { return V4().L4Proto(17).Payload(4).Build(); }});
  c.push_back({"UdpLength7", DropReason::kUdpBadLength, [] {
                 TestPacket p = V4().Udp(1, 2).Payload(4).Build();
                 Set16(p, 24, 7);
                 return p;
               }});
  c.push_back({"UdpLengthPastPayload", DropReason::kUdpBadLength, [] {
                 TestPacket p = V6().Udp(1, 2).Payload(4).Build();
                 Set16(p, 44, 13);
                 return p;
               }});
  c.push_back({"IcmpFourBytes", DropReason::kIcmpTruncated,
               [] { return V4().L4Proto(1).Payload(4).Build(); }});
  c.push_back({"Icmpv6SevenBytes", DropReason::kIcmpTruncated,
               [] { return V6().L4Proto(58).Payload(7).Build(); }});
  return c;
}

class Malformed : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(Malformed, GetsItsReasonAndThePolicy) {
  const MalformedCase& mc = GetParam();
  const TestPacket p = mc.make();
  ParseCounts c{};
  testing::ParseOutcome o = ParseOnce(p, testing::WithPolicy(MalformedPolicy::kPass), &c);
  EXPECT_EQ(o.next, Next::kSkip);
  EXPECT_EQ(Name(o.reason), Name(mc.reason));
  EXPECT_EQ(c[ParseCounter::kMalformed], 1u);
  EXPECT_EQ(c[ParseCounter::kParsed], 0u);
  EXPECT_EQ(o.meta.l3, L3Type::kNone);
  EXPECT_EQ(o.meta.l4_off, 0);
  EXPECT_EQ(o.bytes, p.bytes) << "a skipped packet leaves unmodified";

  o = ParseOnce(p, testing::WithPolicy(MalformedPolicy::kDrop));
  EXPECT_EQ(o.next, Next::kDrop);
  EXPECT_EQ(Name(o.reason), Name(mc.reason));
}

INSTANTIATE_TEST_SUITE_P(EveryReason, Malformed, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

TEST(MalformedCoverage, EveryParseReasonHasACase) {
  std::set<std::string_view> covered;
  for (const MalformedCase& mc : Cases()) covered.insert(Name(mc.reason));
  for (auto r = static_cast<uint16_t>(DropReason::kLinkTruncated);
       r <= static_cast<uint16_t>(DropReason::kIcmpTruncated); ++r) {
    EXPECT_TRUE(covered.count(Name(static_cast<DropReason>(r))))
        << Name(static_cast<DropReason>(r)) << " has no malformation case";
  }
}

// Valid packets of every shape, for the sweeps.
std::vector<TestPacket> Shapes() {
  return {
      PacketBuilder()
          .Ethernet()
          .Ipv4("198.18.0.1", "198.18.0.2")
          .Tcp(1, 2)
          .Mss(1460)
          .PadTo(60)
          .Build(),
      PacketBuilder()
          .Ethernet()
          .Vlan(1, 0x88a8)
          .Vlan(2)
          .Ipv6("2001:2::1", "2001:2::2")
          .Udp(1, 2)
          .Payload(5)
          .Build(),
      PacketBuilder()
          .LinuxSll()
          .Ipv4("198.18.0.1", "198.18.0.2")
          .Ipv4Options({1, 0x94, 4, 0, 0})
          .Icmp(8, 0, 1, 1)
          .Build(),
      PacketBuilder()
          .LinuxSll2()
          .Ipv6("2001:2::1", "2001:2::2")
          .HopByHop({5, 2, 0, 0})
          .Routing(0, 1, {"2001:2::5"})
          .Ah()
          .DestOpts()
          .Tcp(1, 2)
          .TcpOptions({1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8})
          .Build(),
      PacketBuilder()
          .Loopback(2, false)
          .Ipv4("198.18.0.1", "198.18.0.2")
          .Fragment(0, true)
          .Udp(1, 2)
          .Payload(16)
          .Build(),
      PacketBuilder()
          .Loopback(30, true)
          .Ipv6("2001:2::1", "2001:2::2")
          .Fragment(0, true)
          .Icmp(128, 0)
          .Payload(8)
          .Build(),
      PacketBuilder()
          .Ipv6("2001:2::1", "2001:2::2")
          .Fragment(8, false)
          .L4Proto(6)
          .Payload(9)
          .Build(),
      PacketBuilder().LinkIpv4().Ipv4("198.18.0.1", "198.18.0.2").L4Proto(47).Payload(4).Build(),
      PacketBuilder().LinkIpv6().Ipv6("2001:2::1", "2001:2::2").Icmp(135, 0).Payload(16).Build(),
  };
}

TEST(MalformedSweep, EveryTruncationIsCaughtWithoutReadingPastTheEnd) {
  testing::GuardedPacket g(4096);
  ParseStage stage({});
  int cuts = 0;
  for (const TestPacket& p : Shapes()) {
    for (std::size_t len = 0; len <= p.bytes.size(); ++len) {
      PacketBuffer& buf = g.Load(p.bytes.data(), static_cast<uint32_t>(len), p.link);
      ParseCounts c{};
      const DropReason r = ParsePacket(buf, stage.config(), c);
      if (len < p.l3_off + p.ip_len) {
        ASSERT_NE(r, DropReason::kNone)
            << "a packet cut to " << len << " of " << p.bytes.size() << " bytes parsed";
        ++cuts;
      } else {
        ASSERT_EQ(r, DropReason::kNone) << "len " << len;
        ASSERT_EQ(buf.len(), p.l3_off + p.ip_len);
      }
    }
  }
  EXPECT_GT(cuts, 500);
}

// Random byte corruption of valid packets: parse either rejects them or produces offsets
// inside the captured bytes; what it accepts, a rewrite of every field (and a full checksum
// recompute on every other packet) handles without touching a byte past the guard.
TEST(MalformedSweep, RandomCorruptionKeepsOffsetsInsideTheCapture) {
  RewritePlan plans[2];
  for (RewritePlan& plan : plans) {
    plan.src_port = PortRewrite::Set(1);
    plan.dst_port = PortRewrite::Map({{.first = 0, .last = 65535, .to = 7}});
    plan.ttl = {.kind = TtlRewrite::Kind::kSet, .value = 9};
    plan.dscp = 10;
    plan.mss_clamp = 100;
  }
  plans[1].full_checksum = true;
  const char* env = std::getenv("SLUICE_TEST_SEED");
  const uint32_t seed = env != nullptr ? static_cast<uint32_t>(std::strtoul(env, nullptr, 10))
                                       : std::random_device{}();
  std::printf("corruption sweep seed %u (SLUICE_TEST_SEED replays it)\n", seed);
  std::mt19937 rng(seed);
  testing::GuardedPacket g(4096);
  const auto shapes = Shapes();
  std::map<std::string_view, int> outcomes;
  for (int iter = 0; iter < 200000; ++iter) {
    TestPacket p = shapes[rng() % shapes.size()];
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Mostly in the headers, where the lengths are.
      const std::size_t span = std::min<std::size_t>(p.bytes.size(), 120);
      p.bytes[rng() % span] = static_cast<uint8_t>(rng());
    }
    if (rng() % 4 == 0) p.bytes.resize(rng() % (p.bytes.size() + 1));
    PacketBuffer& buf = g.Load(p.bytes, p.link);
    ParseCounts c{};
    const DropReason r = ParsePacket(buf, ParseConfig{}, c);
    ++outcomes[Name(r)];
    if (r != DropReason::kNone) continue;
    const PacketMeta& m = buf.meta();
    ASSERT_LT(m.l3_off, m.len);
    if (m.l4_off != 0) {
      ASSERT_LT(m.l4_off, m.len);
    }
    if (m.flags & pkt_flag::kL4Valid) {
      const uint32_t min = m.l4_proto == 6 ? 20 : 8;
      ASSERT_LE(m.l4_off + min, m.len);
    }
    if (m.flags & pkt_flag::kFragmentLater) {
      ASSERT_EQ(m.l4_off, 0);
    }
    RewritePlan& plan = plans[iter % 2];
    const bool v6 = m.l3 == L3Type::kIpv6;
    plan.src_addr = v6 ? AddrRewrite::SetIpv6({0xfd}) : AddrRewrite::SetIpv4(0x0a000001);
    plan.dst_addr = v6 ? AddrRewrite::SetIpv6({0xfd, 1}) : AddrRewrite::SetIpv4(0x0a000002);
    RewriteCounts rc{};
    ASSERT_EQ(ApplyPlan(buf, plan, rc), DropReason::kNone);
  }
  for (const auto& [name, n] : outcomes) std::printf("  %-28s %d\n", std::string(name).c_str(), n);
  EXPECT_GT(outcomes["none"], 1000);
}

}  // namespace
}  // namespace sluice
