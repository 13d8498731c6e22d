#include "engine/stages/parse/parse_stage.h"

#include <gtest/gtest.h>

#include "engine/graph/stage.h"
#include "engine/pool/buffer_pool.h"
#include "engine/proto/tcp.h"
#include "tests/stages/parse/parse_test_util.h"
#include "tests/testing/alloc_counter.h"
#include "tests/testing/test_batch.h"

namespace sluice {
namespace {

static_assert(Stage<ParseStage>, "the graph runs it through StageRef");

using testing::FragmentPacket;
using testing::PacketBuilder;
using testing::ParseOnce;
using testing::ParseOutcome;
using testing::TestPacket;

// A parsed packet: where the builder put things is where parse found them.
void ExpectParsedAsBuilt(const TestPacket& p, const ParseOutcome& o) {
  ASSERT_EQ(o.next, Next::kClassify) << Name(o.reason);
  EXPECT_EQ(o.reason, DropReason::kNone);
  EXPECT_EQ(o.meta.l3_off, p.l3_off);
  EXPECT_EQ(o.meta.l4_off, p.l4_off);
  EXPECT_EQ(o.meta.len, p.l3_off + p.ip_len);
}

TEST(ParseStage, Ipv4TcpOffsetsFlagsAndCounters) {
  const TestPacket p =
      PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Tcp(40000, 80).Payload(10).Build();
  ParseCounts c{};
  const ParseOutcome o = ParseOnce(p, {}, &c);
  ExpectParsedAsBuilt(p, o);
  EXPECT_EQ(o.meta.l3, L3Type::kIpv4);
  EXPECT_EQ(o.meta.l3_off, 0);
  EXPECT_EQ(o.meta.l4_off, 20);
  EXPECT_EQ(o.meta.l4_proto, 6);
  EXPECT_EQ(o.meta.flags, pkt_flag::kL4Valid);
  EXPECT_NE(o.meta.flow_hash, 0u);
  EXPECT_EQ(c[ParseCounter::kParsed], 1u);
  EXPECT_EQ(c[ParseCounter::kIpv4], 1u);
  EXPECT_EQ(c[ParseCounter::kTcp], 1u);
  EXPECT_EQ(c[ParseCounter::kMalformed], 0u);
}

TEST(ParseStage, EveryLinkLayer) {
  const std::vector<PacketBuilder> links = {
      PacketBuilder(),
      PacketBuilder().Ethernet(),
      PacketBuilder().Ethernet().Vlan(5),
      PacketBuilder().Ethernet().Vlan(5, 0x88a8).Vlan(6),
      PacketBuilder().LinuxSll(),
      PacketBuilder().LinuxSll2(),
      PacketBuilder().Loopback(2, true),
      PacketBuilder().Loopback(2, false),
      PacketBuilder().LinkIpv4(),
  };
  for (std::size_t i = 0; i < links.size(); ++i) {
    SCOPED_TRACE(i);
    PacketBuilder b = links[i];
    const TestPacket p = b.Ipv4("198.18.0.1", "198.18.0.2").Udp(53, 5353).Payload(3).Build();
    const ParseOutcome o = ParseOnce(p);
    ExpectParsedAsBuilt(p, o);
    EXPECT_EQ(o.meta.l3, L3Type::kIpv4);
    EXPECT_EQ(o.meta.flags, pkt_flag::kL4Valid);
  }
  const std::vector<PacketBuilder> links6 = {
      PacketBuilder(),
      PacketBuilder().Ethernet().Vlan(5),
      PacketBuilder().LinuxSll2(),
      PacketBuilder().Loopback(24, false),
      PacketBuilder().Loopback(28, false),
      PacketBuilder().Loopback(30, true),
      PacketBuilder().LinkIpv6(),
  };
  for (std::size_t i = 0; i < links6.size(); ++i) {
    SCOPED_TRACE(i);
    PacketBuilder b = links6[i];
    const TestPacket p = b.Ipv6("2001:2::1", "2001:2::2").Icmp(128, 0, 7, 1).Payload(4).Build();
    const ParseOutcome o = ParseOnce(p);
    ExpectParsedAsBuilt(p, o);
    EXPECT_EQ(o.meta.l3, L3Type::kIpv6);
    EXPECT_EQ(o.meta.l4_proto, 58);
  }
}

TEST(ParseStage, TrimsPaddingAndTrailersButNothingElse) {
  // 14 + 20 + 20 = 54 bytes, padded to Ethernet's 60-byte minimum.
  const TestPacket padded =
      PacketBuilder().Ethernet().Ipv4("198.18.0.1", "198.18.0.2").Tcp(1, 2).PadTo(60).Build();
  ASSERT_EQ(padded.bytes.size(), 60u);
  ParseCounts c{};
  ParseOutcome o = ParseOnce(padded, {}, &c);
  ExpectParsedAsBuilt(padded, o);
  EXPECT_EQ(o.meta.len, 54u);
  EXPECT_EQ(c[ParseCounter::kPaddingTrimmed], 1u);

  const TestPacket fcs =
      PacketBuilder().Ethernet().Ipv6("2001:2::1", "2001:2::2").Udp(1, 2).Trailer(4).Build();
  o = ParseOnce(fcs);
  ExpectParsedAsBuilt(fcs, o);
  EXPECT_EQ(o.meta.len, fcs.bytes.size() - 4);

  const TestPacket exact = PacketBuilder().Ipv4("198.18.0.1", "198.18.0.2").Tcp(1, 2).Build();
  o = ParseOnce(exact, {}, &c);
  EXPECT_EQ(o.meta.len, exact.bytes.size());
}

TEST(ParseStage, MalformedPacketsAreNotTrimmed) {
  // Skip means "unmodified": the padding stays when a header fails.
  TestPacket p =
      PacketBuilder().Ethernet().Ipv4("198.18.0.1", "198.18.0.2").Tcp(1, 2).PadTo(60).Build();
  p.bytes[p.l4_off + 12] = 0x40;  // data offset 4
  const ParseOutcome o = ParseOnce(p);
  EXPECT_EQ(o.reason, DropReason::kTcpBadDataOffset);
  EXPECT_EQ(o.meta.len, 60u);
  EXPECT_EQ(o.bytes, p.bytes);
}

TEST(ParseStage, Ipv4OptionsAndIpv6ExtensionChain) {
  const TestPacket v4 = PacketBuilder()
                            .Ethernet()
                            .Ipv4("198.18.0.1", "198.18.0.2")
                            .Ipv4Options({1, 1, 0x94, 4, 0, 0})  // NOP NOP router alert
                            .Tcp(1, 2)
                            .Mss(1460)
                            .Build();
  ParseOutcome o = ParseOnce(v4);
  ExpectParsedAsBuilt(v4, o);
  EXPECT_EQ(o.meta.l4_off, 14 + 28);

  const TestPacket v6 = PacketBuilder()
                            .Ipv6("2001:2::1", "2001:2::2")
                            .HopByHop({5, 2, 0, 0})
                            .DestOpts()
                            .Routing(4, 0, {"2001:2::2"})
                            .Ah()
                            .Tcp(1, 2)
                            .Build();
  ParseCounts c{};
  o = ParseOnce(v6, {}, &c);
  ExpectParsedAsBuilt(v6, o);
  EXPECT_EQ(o.meta.l4_proto, 6);
  EXPECT_EQ(o.meta.flags, pkt_flag::kL4Valid);
  EXPECT_EQ(c[ParseCounter::kIpv6ExtHeaders], 4u);
}

TEST(ParseStage, FragmentsFirstAndLaterIpv4AndIpv6) {
  for (const bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "ipv6" : "ipv4");
    PacketBuilder b;
    if (v6) {
      b.Ipv6("2001:2::1", "2001:2::2");
    } else {
      b.Ipv4("198.18.0.1", "198.18.0.2");
    }
    const TestPacket whole = b.Udp(1000, 2000).Payload(3000).Build();
    const auto frags = FragmentPacket(whole, 1232);
    ASSERT_EQ(frags.size(), 3u);
    const ParseOutcome plain = ParseOnce(whole);
    uint32_t hash = 0;
    for (std::size_t i = 0; i < frags.size(); ++i) {
      ParseCounts c{};
      const ParseOutcome o = ParseOnce(frags[i], {}, &c);
      ExpectParsedAsBuilt(frags[i], o);
      EXPECT_TRUE(o.meta.flags & pkt_flag::kFragment);
      EXPECT_EQ(c[ParseCounter::kFragments], 1u);
      if (i == 0) {
        EXPECT_FALSE(o.meta.flags & pkt_flag::kFragmentLater);
        EXPECT_TRUE(o.meta.flags & pkt_flag::kL4Valid);
        EXPECT_NE(o.meta.l4_off, 0);
        EXPECT_EQ(c[ParseCounter::kUdp], 1u);
        hash = o.meta.flow_hash;
      } else {
        EXPECT_TRUE(o.meta.flags & pkt_flag::kFragmentLater);
        EXPECT_FALSE(o.meta.flags & pkt_flag::kL4Valid);
        EXPECT_EQ(o.meta.l4_off, 0);
        EXPECT_EQ(c[ParseCounter::kLaterFragments], 1u);
        EXPECT_EQ(c[ParseCounter::kUdp], 0u);
        // Every fragment of a datagram hashes alike (addresses and protocol only).
        EXPECT_EQ(o.meta.flow_hash, hash);
      }
      EXPECT_EQ(o.meta.l4_proto, 17);
    }
    EXPECT_EQ(plain.meta.flow_hash, hash);  // ports never enter the shard key
  }
}

TEST(ParseStage, AtomicIpv6FragmentIsWhole) {
  const TestPacket p =
      PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Fragment(0, false).Tcp(1, 2).Build();
  const ParseOutcome o = ParseOnce(p);
  ExpectParsedAsBuilt(p, o);
  EXPECT_EQ(o.meta.flags, pkt_flag::kL4Valid);
}

TEST(ParseStage, UpperLayersItDoesNotValidate) {
  ParseCounts c{};
  // GRE: l4_off points at it, kL4Valid stays clear.
  TestPacket p = PacketBuilder().Ipv4("198.18.0.1", "198.18.0.2").L4Proto(47).Payload(24).Build();
  ParseOutcome o = ParseOnce(p, {}, &c);
  ExpectParsedAsBuilt(p, o);
  EXPECT_EQ(o.meta.l4_proto, 47);
  EXPECT_EQ(o.meta.flags, 0);
  EXPECT_EQ(c[ParseCounter::kOtherL4], 1u);
  // With no payload byte there is no header to point at.
  p = PacketBuilder().Ipv4("198.18.0.1", "198.18.0.2").L4Proto(47).Build();
  o = ParseOnce(p);
  EXPECT_EQ(o.next, Next::kClassify);
  EXPECT_EQ(o.meta.l4_off, 0);
  // No next header.
  p = PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Build();
  o = ParseOnce(p);
  ExpectParsedAsBuilt(p, o);
  EXPECT_EQ(o.meta.l4_proto, 59);
  EXPECT_EQ(o.meta.l4_off, 0);
  // ICMPv4's number inside IPv6 is just another protocol.
  p = PacketBuilder().Ipv6("2001:2::1", "2001:2::2").L4Proto(1).Payload(2).Build();
  o = ParseOnce(p);
  EXPECT_EQ(o.next, Next::kClassify);
  EXPECT_EQ(o.meta.flags & pkt_flag::kL4Valid, 0);
}

TEST(ParseStage, UdpLengthShorterThanThePayloadIsAccepted) {
  TestPacket p = PacketBuilder().Ipv4("198.18.0.1", "198.18.0.2").Udp(1, 2).Payload(20).Build();
  p.bytes[20 + 5] = 8 + 10;  // UDP length 18 of 28 payload bytes
  const ParseOutcome o = ParseOnce(p);
  EXPECT_EQ(o.next, Next::kClassify);
  EXPECT_TRUE(o.meta.flags & pkt_flag::kL4Valid);
}

TEST(ParseStage, FlowHashIsSymmetricAndSeeded) {
  for (const bool v6 : {false, true}) {
    const auto build = [&](bool reverse) {
      PacketBuilder b;
      const char* a = v6 ? "2001:2::1" : "198.18.0.1";
      const char* z = v6 ? "2001:2:ffff::2" : "198.19.7.2";
      if (v6) {
        b.Ipv6(reverse ? z : a, reverse ? a : z);
      } else {
        b.Ipv4(reverse ? z : a, reverse ? a : z);
      }
      return b.Tcp(reverse ? 443 : 51000, reverse ? 51000 : 443).Build();
    };
    const ParseOutcome fwd = ParseOnce(build(false), testing::WithSeed(99));
    const ParseOutcome rev = ParseOnce(build(true), testing::WithSeed(99));
    EXPECT_EQ(fwd.meta.flow_hash, rev.meta.flow_hash);
    const ParseOutcome other = ParseOnce(build(false), testing::WithSeed(100));
    EXPECT_NE(fwd.meta.flow_hash, other.meta.flow_hash);
    // The key is the address pair and protocol, as NFQUEUE's --queue-balance: a port
    // translation's reply (to another port) stays on its flow's shard.
    PacketBuilder b;
    if (v6) {
      b.Ipv6("2001:2:ffff::2", "2001:2::1");
    } else {
      b.Ipv4("198.19.7.2", "198.18.0.1");
    }
    const ParseOutcome reply_to_new_port = ParseOnce(b.Tcp(443, 20001).Build(), testing::WithSeed(99));
    EXPECT_EQ(reply_to_new_port.meta.flow_hash, fwd.meta.flow_hash);
  }
}

// An ICMP error goes with the flow it quotes: a router's "fragmentation needed" or an inside
// host's "port unreachable" carries the quoted packet's shard key, so that the offline graph
// meets it with that flow's NAT translation. A quote too short for an IP header keeps its own.
TEST(ParseStage, AnIcmpErrorTakesTheShardKeyOfThePacketItQuotes) {
  for (const bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
    const char* inside = v6 ? "2001:2:0:c::7" : "198.18.0.7";
    const char* remote = v6 ? "2001:2:0:5::9" : "198.19.0.9";
    const char* router = v6 ? "2001:2:0:5::fe" : "198.19.0.254";
    auto ip = [v6](PacketBuilder& b, const char* s, const char* d) -> PacketBuilder& {
      return v6 ? b.Ipv6(s, d) : b.Ipv4(s, d);
    };
    PacketBuilder fb;
    const TestPacket flow = ip(fb, inside, remote).Udp(5000, 53).Payload(20).Build();
    const ParseOutcome f = ParseOnce(flow, testing::WithSeed(7));
    PacketBuilder eb;
    const TestPacket error = ip(eb, router, inside).Icmp(v6 ? 2 : 3, v6 ? 0 : 4, 0, 1280).Payload(flow.bytes).Build();
    const ParseOutcome e = ParseOnce(error, testing::WithSeed(7));
    EXPECT_EQ(e.meta.flow_hash, f.meta.flow_hash);
    PacketBuilder sb;
    const std::vector<uint8_t> stub(flow.bytes.begin(), flow.bytes.begin() + 12);
    const TestPacket short_quote = ip(sb, router, inside).Icmp(v6 ? 2 : 3, 0, 0, 0).Payload(stub).Build();
    PacketBuilder ob;
    const TestPacket own = ip(ob, router, inside).Icmp(v6 ? 2 : 3, 0, 0, 0).Payload(12).Build();
    EXPECT_EQ(ParseOnce(short_quote, testing::WithSeed(7)).meta.flow_hash,
              ParseOnce(own, testing::WithSeed(7)).meta.flow_hash);
    EXPECT_NE(ParseOnce(own, testing::WithSeed(7)).meta.flow_hash, f.meta.flow_hash);
  }
}

// IPv6's shard key is the address pair alone, as the kernel's queue balancing hashes it:
// the protocol a packet shows is not the same for every fragment of a datagram (behind
// options in the fragmentable part, a later fragment shows the options'), nor for a quote
// that starts with an extension header. Every packet between two hosts meets on one shard.
TEST(ParseStage, EveryIpv6PacketBetweenTwoHostsHasOneShardKey) {
  const char* inside = "2001:2:0:c::7";
  const char* remote = "2001:2:0:5::9";
  const TestPacket plain = PacketBuilder().Ipv6(inside, remote).Udp(5000, 53).Payload(20).Build();
  const uint32_t key = ParseOnce(plain, testing::WithSeed(7)).meta.flow_hash;
  std::vector<TestPacket> same = {
      PacketBuilder().Ipv6(remote, inside).Tcp(443, 40000).Build(),
      PacketBuilder().Ipv6(inside, remote).DestOpts().Udp(5000, 53).Payload(20).Build(),
  };
  const TestPacket big = PacketBuilder().Ipv6(inside, remote).DestOpts().Udp(5000, 53).Payload(600).Build();
  const auto frags = testing::FragmentPacket(big, 200);
  ASSERT_GE(frags.size(), 3u);
  same.insert(same.end(), frags.begin(), frags.end());
  same.push_back(PacketBuilder().Ipv6("2001:2:0:5::fe", inside).Icmp(2, 0, 0, 1280).Payload(same[1].bytes).Build());
  for (std::size_t i = 0; i < same.size(); ++i) {
    const ParseOutcome o = ParseOnce(same[i], testing::WithSeed(7));
    EXPECT_EQ(o.reason, DropReason::kNone) << i;
    EXPECT_EQ(o.meta.flow_hash, key) << "packet " << i;
  }
}

TEST(ParseStage, ClearsStaleParseOutputsAndKeepsSourceFlags) {
  const TestPacket arp = [] {
    TestPacket p = PacketBuilder().Ethernet().Ipv4("198.18.0.1", "198.18.0.2").Build();
    p.bytes[12] = 0x08;
    p.bytes[13] = 0x06;
    return p;
  }();
  testing::GuardedPacket g;
  PacketBuffer& buf = g.Load(arp.bytes, arp.link);
  buf.meta().flags = pkt_flag::kL4Valid | pkt_flag::kFragment | pkt_flag::kL4CsumNotReady;
  buf.meta().l3 = L3Type::kIpv6;
  buf.meta().l4_off = 77;
  ParseCounts c{};
  EXPECT_EQ(ParsePacket(buf, {}, c), DropReason::kNotIp);
  EXPECT_EQ(buf.meta().flags, pkt_flag::kL4CsumNotReady);
  EXPECT_EQ(buf.meta().l3, L3Type::kNone);
  EXPECT_EQ(buf.meta().l4_off, 0);
  EXPECT_EQ(c[ParseCounter::kNotIp], 1u);
}

TEST(ParseStage, NotIpAndUnsupportedLinkAreSkippedUnderEitherPolicy) {
  TestPacket arp = PacketBuilder().Ethernet().Ipv4("198.18.0.1", "198.18.0.2").Build();
  arp.bytes[12] = 0x08;
  arp.bytes[13] = 0x06;
  TestPacket other = PacketBuilder().Ipv4("198.18.0.1", "198.18.0.2").Build();
  other.link = LinkType::kUnsupported;
  for (const auto policy : {MalformedPolicy::kPass, MalformedPolicy::kDrop}) {
    ParseCounts c{};
    ParseOutcome o = ParseOnce(arp, testing::WithPolicy(policy), &c);
    EXPECT_EQ(o.next, Next::kSkip);
    EXPECT_EQ(o.reason, DropReason::kNotIp);
    EXPECT_EQ(c[ParseCounter::kNotIp], 1u);
    EXPECT_EQ(c[ParseCounter::kMalformed], 0u);
    o = ParseOnce(other, testing::WithPolicy(policy));
    EXPECT_EQ(o.next, Next::kSkip);
    EXPECT_EQ(o.reason, DropReason::kUnsupportedLinkType);
  }
}

TEST(ParseStage, OnlyTouchesSlotsBoundForParse) {
  auto pool = std::move(BufferPool::Create({.small_buffers = 8, .large_buffers = 0})).value();
  const TestPacket p = PacketBuilder().Ipv4("198.18.0.1", "198.18.0.2").Tcp(1, 2).Build();
  Batch batch;
  testing::PushPackets(*pool, batch, {p});
  testing::PushPackets(*pool, batch, {p}, Next::kAccept);
  testing::PushPackets(*pool, batch, {p});
  ParseStage stage({});
  stage.Process(batch);
  EXPECT_EQ(batch.next(0), Next::kClassify);
  EXPECT_EQ(batch.next(1), Next::kAccept);
  EXPECT_EQ(batch.packet(1).meta().l3, L3Type::kNone);
  EXPECT_EQ(batch.next(2), Next::kClassify);
  EXPECT_EQ(stage.counters().Load(ParseCounter::kParsed), 2u);
  batch.RecordVerdicts();  // slots 0 and 2 were never finished: no_verdict drops
  batch.Clear();
}

TEST(ParseStage, EachWorkerCountsInItsOwnSetAndReadersSumThem) {
  auto pool = std::move(BufferPool::Create({.small_buffers = 8, .large_buffers = 0})).value();
  const TestPacket p = PacketBuilder().Ipv4("198.18.0.1", "198.18.0.2").Tcp(1, 2).Build();
  ParseStage stage({}, /*workers=*/2);
  EXPECT_EQ(stage.workers(), 2u);
  for (uint32_t worker : {0u, 1u, 1u}) {
    Batch batch;
    testing::PushPackets(*pool, batch, {p, p});
    batch.set_worker(worker);
    stage.Process(batch);
    for (uint32_t i = 0; i < batch.size(); ++i) batch.set_next(i, Next::kAccept);
    batch.RecordVerdicts();
    batch.Clear();
  }
  EXPECT_EQ(stage.counters().Load(ParseCounter::kParsed), 6u);
  EXPECT_EQ(stage.counters().Load(ParseCounter::kTcp), 6u);
}

TEST(ParseStage, AllocatesNothing) {
  auto pool = std::move(BufferPool::Create({.small_buffers = 256, .large_buffers = 0})).value();
  std::vector<TestPacket> mix = {
      PacketBuilder().Ethernet().Ipv4("198.18.0.1", "198.18.0.2").Tcp(1, 2).PadTo(60).Build(),
      PacketBuilder()
          .Ipv6("2001:2::1", "2001:2::2")
          .HopByHop()
          .Fragment(0, true)
          .Udp(1, 2)
          .Payload(8)
          .Build(),
      PacketBuilder().LinuxSll().Ipv4("198.18.0.1", "198.18.0.2").Icmp(8, 0).Build(),
  };
  mix.push_back(mix[0]);
  mix.back().bytes[14] = 0x46;  // malformed: IHL 6 with no options
  Batch batch;
  batch.set_limit(kMaxBatch);
  for (int i = 0; i < 16; ++i) testing::PushPackets(*pool, batch, mix);
  ParseStage stage({});
  testing::AllocationScope scope;
  stage.Process(batch);
  EXPECT_EQ(scope.count(), 0u);
  EXPECT_EQ(stage.counters().Load(ParseCounter::kParsed), 48u);
  EXPECT_EQ(stage.counters().Load(ParseCounter::kMalformed), 16u);
  for (uint32_t i = 0; i < batch.size(); ++i) {
    if (batch.next(i) == Next::kClassify) batch.set_next(i, Next::kAccept);
  }
  batch.RecordVerdicts();
  batch.Clear();
}

TEST(ParseStage, ConfigIsValidated) {
  EXPECT_TRUE(Validate(ParseConfig{}).ok());
  ParseConfig c;
  c.ipv6.max_bytes = kMaxIpv6ExtBytesCap + 1;
  EXPECT_FALSE(Validate(c).ok());
}

TEST(ParseStage, CounterTableIsDocumented) {
  for (const CounterInfo& info : kParseCounterTable) {
    EXPECT_FALSE(info.name.empty());
    EXPECT_FALSE(info.description.empty());
  }
}

}  // namespace
}  // namespace sluice
