// ClassifyStage on real packets: built by the tests' PacketBuilder, parsed by ParseStage, with
// every checksum after a translation verified by the builder's independent implementation.
#include "engine/stages/classify/classify_stage.h"

#include <gtest/gtest.h>

#include "engine/core/byte_order.h"
#include "engine/graph/stage.h"
#include "engine/proto/tcp.h"
#include "engine/stages/parse/parse_stage.h"
#include "engine/stages/rewrite/rewrite_plan.h"
#include "engine/stages/rewrite/rewrite_stage.h"
#include "tests/testing/alloc_counter.h"
#include "tests/testing/packet_builder.h"
#include "tests/testing/test_batch.h"

namespace sluice {
namespace {

using testing::PacketBuilder;
using testing::TestPacket;

constexpr uint64_t kSec = 1000000000ull;

// What a packet looks like after the stage, read back from its bytes.
struct Seen {
  Next next;
  DropReason reason;
  uint16_t rule;
  uint32_t mark;
  bool modified;
  std::string src, dst;
  uint16_t sport = 0, dport = 0;  // TCP/UDP ports, or the ICMP echo id in both
  bool ip_ok, l4_ok;
  std::vector<uint8_t> after_ip;  // the bytes behind the IP header (for a later fragment: payload)
};

// Addresses for the fragment tests: an inside host and its network, a peer, and the address
// a translation gives the inside host.
struct FragmentCase {
  const char* family;
  const char* inside_net;
  const char* inside;
  const char* peer;
  const char* xaddr;
  bool dest_opts = false;  // IPv6: a destination options header in the fragmentable part
};

// The masquerading rule (number 1) the NAT tests share: `src` translated to `address` (empty:
// port-only), ports from `ports`, for `protos` (a TOML value); `then`: lines after it (its
// [rule.rewrite], more rules).
struct Masquerade {
  std::string protos = R"(["tcp", "udp"])";
  std::string ports = "1024-65535";
  std::string family = "ipv4";
  std::string src = "10.0.0.0/8";
  std::string address = "198.18.0.1";
  std::string then = "";
  std::string Toml() const {
    return "[[rule]]\nnumber = 1\nname = \"masquerade\"\naction = \"translate-source-port\"\n"
           "match = { family = \"" + family + "\", src = \"" + src + "\", proto = " + protos + " }\n"
           "translate = { ports = \"" + ports + "\"" + (address.empty() ? "" : ", address = \"" + address + "\"") + " }\n" +
           then;
  }
};

std::string AddrText(const uint8_t* p, bool v6) {
  return ToString(v6 ? IpAddr::FromV6Bytes(p) : IpAddr::FromV4Bytes(p));
}

class ClassifyStageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = BufferPool::Create({.small_buffers = 1024, .large_buffers = 0});
    ASSERT_TRUE(p.ok());
    pool_ = std::move(p).value();
  }

  void Load(std::string_view toml, uint64_t seed = 7) {
    ConfigLoad load = LoadConfigText(toml, "test.toml");
    ASSERT_TRUE(load.ok()) << load.ToStatus().message();
    config_ = *load.config;
    RuleSetOptions o;
    o.shards = config_.pipeline.shards;
    auto h = RuleSetHandle::Create(config_, o);
    ASSERT_TRUE(h.ok()) << h.status().message();
    handle_ = std::move(h).value();
    stage_ = std::make_unique<ClassifyStage>(*handle_, 0, FlowTableOptions::From(config_.nat, seed, 0, o.shards));
  }

  // Fills b with the packets, parsed: slots ready for classify.
  void Fill(Batch& b, const std::vector<TestPacket>& packets) {
    b.set_limit(kMaxBatch);
    testing::PushPackets(*pool_, b, packets);
    parse_.Process(b);
  }

  // Parses and classifies the packets at time `now`; returns each packet as it left.
  std::vector<Seen> Run(const std::vector<TestPacket>& packets, uint64_t now = 0) { return RunOn(*stage_, packets, now); }
  std::vector<Seen> RunOn(ClassifyStage& stage, const std::vector<TestPacket>& packets, uint64_t now) {
    Batch b;
    Fill(b, packets);
    stage.Process(b, now);
    std::vector<Seen> out;
    for (uint32_t i = 0; i < b.size(); ++i) {
      const PacketBuffer& pkt = b.packet(i);
      const PacketMeta& m = pkt.meta();
      Seen s{b.next(i), b.reason(i), m.rule, m.mark, (m.flags & pkt_flag::kModified) != 0, "", "", 0, 0, false, false, {}};
      const uint8_t* ip = pkt.data() + m.l3_off;
      const bool v6 = m.l3 == L3Type::kIpv6;
      s.src = AddrText(ip + (v6 ? 8 : 12), v6);
      s.dst = AddrText(ip + (v6 ? 24 : 16), v6);
      if (m.l4_off != 0 && (m.l4_proto == 6 || m.l4_proto == 17)) {
        s.sport = LoadBe16(pkt.data() + m.l4_off);
        s.dport = LoadBe16(pkt.data() + m.l4_off + 2);
      } else if (m.l4_off != 0 && (m.l4_proto == 1 || m.l4_proto == 58)) {
        s.sport = s.dport = LoadBe16(pkt.data() + m.l4_off + 4);
      }
      s.ip_ok = testing::RefIpHeaderChecksumOk(ip, pkt.len() - m.l3_off);
      s.l4_ok = testing::RefL4ChecksumOk(ip, pkt.len() - m.l3_off);
      const uint32_t ip_header = v6 ? 40 : (ip[0] & 0x0fu) * 4u;
      if (m.l3_off + ip_header <= pkt.len()) s.after_ip.assign(ip + ip_header, pkt.data() + pkt.len());
      if (b.next(i) == Next::kRewrite) plans_.push_back(b.plan(i));
      out.push_back(s);
    }
    b.RecordVerdicts();
    b.Clear();
    return out;
  }

  // One packet through parse and classify: where it went and its bytes as it left.
  std::pair<Next, std::vector<uint8_t>> RunBytes(const TestPacket& packet, uint64_t now) {
    return RunBytesOn(*stage_, packet, now);
  }
  std::pair<Next, std::vector<uint8_t>> RunBytesOn(ClassifyStage& stage, const TestPacket& packet, uint64_t now) {
    Batch b;
    Fill(b, {packet});
    stage.Process(b, now);
    const PacketBuffer& pkt = b.packet(0);
    std::pair<Next, std::vector<uint8_t>> out{b.next(0), {pkt.data(), pkt.data() + pkt.len()}};
    b.RecordVerdicts();
    b.Clear();
    return out;
  }

  // Packets through parse, classify and rewrite at `now`: each must be accepted; their IP
  // packets as they left.
  std::vector<std::vector<uint8_t>> RunWithRewrite(const std::vector<TestPacket>& packets, uint64_t now) {
    Batch b;
    Fill(b, packets);
    stage_->Process(b, now);
    rewrite_.Process(b);
    std::vector<std::vector<uint8_t>> out;
    for (uint32_t i = 0; i < b.size(); ++i) {
      EXPECT_EQ(b.next(i), Next::kAccept) << i;
      const PacketBuffer& p = b.packet(i);
      out.emplace_back(p.data() + p.meta().l3_off, p.data() + p.len());
    }
    b.RecordVerdicts();
    b.Clear();
    return out;
  }

  uint64_t Count(ClassifyCounter c) const { return stage_->counters().Load(c); }
  void ExpectLaterFragmentsFollowTheTranslation(const FragmentCase& c);
  void ExpectIpv6AndEchoErrorsTranslated(ClassifyStage& flows, ClassifyStage& errors);
  RuleTotals Totals(std::string_view name) const {
    auto rs = handle_->Load();
    for (uint32_t i = 0; i < rs->size(); ++i) {
      if (rs->info(i).name == name) return rs->Totals(i);
    }
    ADD_FAILURE() << "no rule " << name;
    return {};
  }

  std::unique_ptr<BufferPool> pool_;
  ParseStage parse_{ParseConfig{}};
  Config config_;
  std::unique_ptr<RuleSetHandle> handle_;
  std::unique_ptr<ClassifyStage> stage_;
  RewriteStage rewrite_;
  std::vector<const RewritePlan*> plans_;
};

TestPacket Tcp4(const char* src, uint16_t sport, const char* dst, uint16_t dport, uint8_t flags = tcp::kAck) {
  return PacketBuilder().Ipv4(src, dst).Tcp(sport, dport).TcpFlags(flags).Payload(20).Build();
}
TestPacket Udp4(const char* src, uint16_t sport, const char* dst, uint16_t dport) {
  return PacketBuilder().Ipv4(src, dst).Udp(sport, dport).Payload(30).Build();
}

constexpr char kActions[] = R"(
[[rule]]
number = 10
name = "count-web"
action = "count"
match = { proto = "tcp", dst_port = [80, 443] }

[[rule]]
number = 20
name = "drop-telnet"
action = "drop"
match = { proto = "tcp", dst_port = 23 }

[[rule]]
number = 30
name = "web-to-8080"
action = "rewrite"
match = { proto = "tcp", dst_port = 80 }
rewrite = { dst_port = 8080 }

[[rule]]
number = 40
name = "mark-dns"
action = "mark"
match = { proto = "udp", dst_port = 53 }
mark = 0x20
mark_mask = 0xff

[[rule]]
number = 50
name = "accept-v4-tls"
action = "accept"
match = { family = "ipv4", dst_port = 443, proto = "tcp" }
)";

TEST_F(ClassifyStageTest, FirstMatchDecidesAndCountRulesCountOnTheWay) {
  Load(kActions);
  const auto seen = Run({
      Tcp4("198.18.0.1", 40000, "198.19.0.5", 23),   // drop
      Tcp4("198.18.0.1", 40001, "198.19.0.5", 80),   // count, then rewrite
      Udp4("198.18.0.1", 40002, "198.19.0.5", 53),   // mark
      Tcp4("198.18.0.1", 40003, "198.19.0.5", 443),  // count, then accept
      Udp4("198.18.0.1", 40004, "198.19.0.5", 123),  // no rule: default accept
  });
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[0].next, Next::kDrop);
  EXPECT_EQ(seen[0].reason, DropReason::kRuleDrop);
  EXPECT_EQ(seen[0].rule, 1);
  EXPECT_EQ(seen[1].next, Next::kRewrite);
  EXPECT_EQ(seen[1].rule, 2);
  ASSERT_EQ(plans_.size(), 1u);
  ASSERT_NE(plans_[0], nullptr);
  EXPECT_EQ(plans_[0]->dst_port.kind, PortRewrite::Kind::kSet);
  EXPECT_EQ(plans_[0]->dst_port.value, 8080);
  EXPECT_EQ(seen[2].next, Next::kAccept);
  EXPECT_EQ(seen[2].mark, 0x20u);
  EXPECT_EQ(seen[3].next, Next::kAccept);
  EXPECT_EQ(seen[3].rule, 4);
  EXPECT_EQ(seen[4].next, Next::kAccept);
  EXPECT_EQ(seen[4].rule, kNoRule);
  for (const Seen& s : seen) EXPECT_FALSE(s.modified) << "classify changes no byte outside translations";

  EXPECT_EQ(Totals("count-web").packets, 2u);
  EXPECT_EQ(Totals("drop-telnet").packets, 1u);
  EXPECT_EQ(Totals("web-to-8080").packets, 1u);
  EXPECT_EQ(Totals("mark-dns").packets, 1u);
  EXPECT_EQ(Totals("accept-v4-tls").packets, 1u);
  EXPECT_EQ(Totals("mark-dns").bytes, 20u + 8u + 30u) << "IP length";
  EXPECT_EQ(Count(ClassifyCounter::kClassified), 5u);
  EXPECT_EQ(Count(ClassifyCounter::kRuleMatched), 4u);
  EXPECT_EQ(Count(ClassifyCounter::kCountMatches), 2u);
  EXPECT_EQ(Count(ClassifyCounter::kDefaultAction), 1u);
  EXPECT_EQ(Count(ClassifyCounter::kRewritePlanned), 1u);
  EXPECT_EQ(Count(ClassifyCounter::kMarked), 1u);
}

TEST_F(ClassifyStageTest, DefaultDropUsesItsOwnReason) {
  Load("[classify]\ndefault_action = \"drop\"\n");
  const auto seen = Run({Udp4("198.18.0.1", 1, "198.19.0.5", 2)});
  EXPECT_EQ(seen[0].next, Next::kDrop);
  EXPECT_EQ(seen[0].reason, DropReason::kNoRuleMatch);
}

// SCTP and UDP-Lite carry ports where TCP and UDP do: a port rule matches them when their
// common header is captured (docs/config.md), so an SCTP allow-list does not drop everything.
TEST_F(ClassifyStageTest, PortRulesMatchSctpAndUdpLite) {
  Load(R"(
[classify]
default_action = "drop"

[[rule]]
number = 10
name = "sip-sctp"
action = "accept"
match = { proto = "sctp", dst_port = 5060 }

[[rule]]
number = 20
name = "lite"
action = "accept"
match = { proto = "udplite", src_port = 7000 }
)");
  auto sctp = [](uint16_t sport, uint16_t dport, std::size_t rest) {
    std::vector<uint8_t> h = {static_cast<uint8_t>(sport >> 8), static_cast<uint8_t>(sport),
                              static_cast<uint8_t>(dport >> 8), static_cast<uint8_t>(dport)};
    h.resize(4 + rest, 0);
    return PacketBuilder().Ipv4("198.18.0.1", "198.19.0.5").L4Proto(132).Payload(h).Build();
  };
  auto lite = [](uint16_t sport, uint16_t dport) {
    std::vector<uint8_t> h = {static_cast<uint8_t>(sport >> 8), static_cast<uint8_t>(sport),
                              static_cast<uint8_t>(dport >> 8), static_cast<uint8_t>(dport), 0, 8, 0, 0};
    return PacketBuilder().Ipv6("2001:db8::1", "2001:db8::2").L4Proto(136).Payload(h).Build();
  };
  const auto seen = Run({sctp(40000, 5060, 28), sctp(40000, 5061, 28), sctp(40000, 5060, 4),
                         lite(7000, 1), lite(7001, 1)});
  EXPECT_EQ(seen[0].next, Next::kAccept);
  EXPECT_EQ(seen[0].rule, 0);  // the rule's index: sip-sctp
  EXPECT_EQ(seen[1].reason, DropReason::kNoRuleMatch);
  EXPECT_EQ(seen[2].reason, DropReason::kNoRuleMatch) << "8 bytes: no complete SCTP common header";
  EXPECT_EQ(seen[3].next, Next::kAccept);
  EXPECT_EQ(seen[3].rule, 1);  // lite
  EXPECT_EQ(seen[4].reason, DropReason::kNoRuleMatch);
}

TEST_F(ClassifyStageTest, OnlyClassifySlotsAreTouched) {
  Load(kActions);
  Batch b;
  Fill(b, {Tcp4("198.18.0.1", 1, "198.19.0.5", 23), Tcp4("198.18.0.1", 1, "198.19.0.5", 23)});
  b.Skip(1, DropReason::kNotIp);
  stage_->Process(b, 0);
  EXPECT_EQ(b.next(0), Next::kDrop);
  EXPECT_EQ(b.next(1), Next::kSkip);
  EXPECT_EQ(b.reason(1), DropReason::kNotIp);
  b.RecordVerdicts();
  b.Clear();
}

constexpr char kNapt[] = R"(
[nat]
max_flows = 64
udp_s = 30

[[rule]]
number = 100
name = "napt"
action = "translate-source-port"
match = { src = ["198.18.0.0/16", "2001:2:0:c::/64"], proto = ["tcp", "udp", "icmp", "icmp6"] }
translate = { ports = "20000-29999" }

[[rule]]
number = 200
name = "drop-replies-by-rule"   # replies of live translations never reach the rules
action = "drop"
match = { src = ["198.19.0.0/16", "2001:2:0:5::/64"] }
)";

TEST_F(ClassifyStageTest, NaptRoundTripRestoresTheTupleWithValidChecksums) {
  Load(kNapt);
  const auto out = Run({Tcp4("198.18.0.1", 40000, "198.19.0.5", 443, tcp::kSyn)}, 1 * kSec);
  ASSERT_EQ(out[0].next, Next::kAccept);
  EXPECT_TRUE(out[0].modified);
  EXPECT_EQ(out[0].src, "198.18.0.1");
  EXPECT_EQ(out[0].dst, "198.19.0.5");
  EXPECT_GE(out[0].sport, 20000);
  EXPECT_LE(out[0].sport, 29999);
  EXPECT_EQ(out[0].dport, 443);
  EXPECT_TRUE(out[0].ip_ok);
  EXPECT_TRUE(out[0].l4_ok);
  const uint16_t xport = out[0].sport;

  const auto back = Run({Tcp4("198.19.0.5", 443, "198.18.0.1", xport, tcp::kSyn | tcp::kAck)}, 2 * kSec);
  ASSERT_EQ(back[0].next, Next::kAccept) << "a reply is translated, not dropped by rule 200";
  EXPECT_TRUE(back[0].modified);
  EXPECT_EQ(back[0].src, "198.19.0.5");
  EXPECT_EQ(back[0].dst, "198.18.0.1");
  EXPECT_EQ(back[0].sport, 443);
  EXPECT_EQ(back[0].dport, 40000);
  EXPECT_TRUE(back[0].ip_ok);
  EXPECT_TRUE(back[0].l4_ok);

  // Later packets of the flow reuse the translation.
  const auto again = Run({Tcp4("198.18.0.1", 40000, "198.19.0.5", 443)}, 3 * kSec);
  EXPECT_EQ(again[0].sport, xport);
  EXPECT_EQ(Count(ClassifyCounter::kNatCreated), 1u);
  EXPECT_EQ(Count(ClassifyCounter::kNatOut), 1u);
  EXPECT_EQ(Count(ClassifyCounter::kNatIn), 1u);
  EXPECT_EQ(Totals("napt").packets, 1u) << "only the packet that created the flow went through the rules";
  EXPECT_EQ(Totals("drop-replies-by-rule").packets, 0u);
  EXPECT_EQ(stage_->nat_flows(), 1u);
}

TEST_F(ClassifyStageTest, NaptRoundTripUdpIpv6AndIcmpEcho) {
  Load(kNapt);
  const TestPacket udp = Udp4("198.18.0.7", 5353, "198.19.0.9", 53);
  const TestPacket v6 = PacketBuilder().Ipv6("2001:2:0:c::7", "2001:2:0:5::9").Tcp(50000, 80).TcpFlags(tcp::kSyn).Build();
  const TestPacket ping = PacketBuilder().Ipv4("198.18.0.7", "198.19.0.9").Icmp(8, 0, /*id=*/0x1234, /*seq=*/1).Payload(16).Build();
  const TestPacket ping6 = PacketBuilder().Ipv6("2001:2:0:c::7", "2001:2:0:5::9").Icmp(128, 0, 0x4321, 1).Payload(16).Build();
  const auto out = Run({udp, v6, ping, ping6}, kSec);
  for (const Seen& s : out) {
    ASSERT_EQ(s.next, Next::kAccept);
    EXPECT_TRUE(s.modified);
    EXPECT_TRUE(s.ip_ok);
    EXPECT_TRUE(s.l4_ok);
    EXPECT_GE(s.sport, 20000);
    EXPECT_LE(s.sport, 29999);
  }
  const auto back = Run({Udp4("198.19.0.9", 53, "198.18.0.7", out[0].sport),
                         PacketBuilder().Ipv6("2001:2:0:5::9", "2001:2:0:c::7").Tcp(80, out[1].sport).TcpFlags(tcp::kSyn | tcp::kAck).Build(),
                         PacketBuilder().Ipv4("198.19.0.9", "198.18.0.7").Icmp(0, 0, out[2].sport, 1).Payload(16).Build(),
                         PacketBuilder().Ipv6("2001:2:0:5::9", "2001:2:0:c::7").Icmp(129, 0, out[3].sport, 1).Payload(16).Build()},
                        2 * kSec);
  ASSERT_EQ(back.size(), 4u);
  EXPECT_EQ(back[0].dport, 5353);
  EXPECT_EQ(back[1].dport, 50000);
  EXPECT_EQ(back[1].dst, "2001:2:0:c::7");
  EXPECT_EQ(back[2].dport, 0x1234);
  EXPECT_EQ(back[3].dport, 0x4321);
  for (const Seen& s : back) {
    EXPECT_EQ(s.next, Next::kAccept);
    EXPECT_TRUE(s.ip_ok);
    EXPECT_TRUE(s.l4_ok);
  }
  EXPECT_EQ(Count(ClassifyCounter::kNatIn), 4u);
}

TEST_F(ClassifyStageTest, ATranslationMadeInABatchTakesItsLaterPackets) {
  // Learn the port seed 7 gives the flow, then replay: first packet, a second one and the
  // reply all in one batch, as if they had come one batch each.
  Load(kNapt, 7);
  const uint16_t xport = Run({Udp4("198.18.0.1", 6000, "198.19.0.9", 53)}, kSec)[0].sport;
  Load(kNapt, 7);
  const auto out = Run({Udp4("198.18.0.1", 6000, "198.19.0.9", 53), Udp4("198.18.0.1", 6000, "198.19.0.9", 53),
                        Udp4("198.19.0.9", 53, "198.18.0.1", xport)},
                       kSec);
  EXPECT_EQ(out[0].sport, xport);
  EXPECT_EQ(out[1].sport, xport);
  EXPECT_EQ(out[2].next, Next::kAccept) << "the reply is translated, not dropped by rule 200";
  EXPECT_EQ(out[2].dport, 6000);
  EXPECT_EQ(Count(ClassifyCounter::kNatCreated), 1u);
  EXPECT_EQ(Count(ClassifyCounter::kNatOut), 1u);
  EXPECT_EQ(Count(ClassifyCounter::kNatIn), 1u);
}

TEST_F(ClassifyStageTest, EchoIdentifierZeroIsARequestLikeAnyOther) {
  Load(kNapt);
  const auto out = Run({PacketBuilder().Ipv4("198.18.0.3", "198.19.0.9").Icmp(8, 0, /*id=*/0, 1).Payload(8).Build()}, kSec);
  ASSERT_EQ(out[0].next, Next::kAccept);
  EXPECT_GE(out[0].sport, 20000);
  const auto back = Run({PacketBuilder().Ipv4("198.19.0.9", "198.18.0.3").Icmp(0, 0, out[0].sport, 1).Payload(8).Build()}, kSec);
  EXPECT_EQ(back[0].next, Next::kAccept);
  EXPECT_EQ(back[0].dport, 0);
  EXPECT_TRUE(back[0].l4_ok);
}

TEST_F(ClassifyStageTest, NaptWithAnAddressRewritesAddressAndPortBothWays) {
  Load(Masquerade{}.Toml());
  const auto out = Run({Udp4("10.1.2.3", 4000, "198.19.0.9", 53)}, kSec);
  EXPECT_EQ(out[0].src, "198.18.0.1");
  EXPECT_TRUE(out[0].ip_ok);
  EXPECT_TRUE(out[0].l4_ok);
  const auto back = Run({Udp4("198.19.0.9", 53, "198.18.0.1", out[0].sport)}, 2 * kSec);
  EXPECT_EQ(back[0].dst, "10.1.2.3");
  EXPECT_EQ(back[0].dport, 4000);
  EXPECT_TRUE(back[0].ip_ok);
  EXPECT_TRUE(back[0].l4_ok);
}

TEST_F(ClassifyStageTest, ExhaustedRangeAndUntranslatablePacketsAreDropped) {
  Load(R"(
[[rule]]
number = 1
name = "napt"
action = "translate-source-port"
match = { src = "198.18.0.0/16", proto = ["udp", "icmp"] }
translate = { ports = "20000-20001" }
)");
  const auto out = Run({Udp4("198.18.0.1", 1, "198.19.0.9", 53), Udp4("198.18.0.1", 2, "198.19.0.9", 53),
                        Udp4("198.18.0.1", 3, "198.19.0.9", 53),
                        PacketBuilder().Ipv4("198.18.0.1", "198.19.0.9").Icmp(3, 3).Payload(28).Build(),
                        PacketBuilder().Ipv4("198.18.0.1", "198.19.0.9").Icmp(0, 0, 9, 1).Payload(8).Build()});
  EXPECT_EQ(out[0].next, Next::kAccept);
  EXPECT_EQ(out[1].next, Next::kAccept);
  EXPECT_NE(out[0].sport, out[1].sport);
  EXPECT_EQ(out[2].reason, DropReason::kNatExhausted);
  EXPECT_EQ(out[3].reason, DropReason::kNatUntranslatable) << "an ICMP error is no echo";
  EXPECT_EQ(out[4].reason, DropReason::kNatUntranslatable) << "an echo reply nothing asked for";
  EXPECT_EQ(Count(ClassifyCounter::kNatExhausted), 1u);
  EXPECT_EQ(Count(ClassifyCounter::kNatUntranslatable), 2u);
}

// ICMP errors about translated packets are translated with them (natd's IcmpAliasIn/Out,
// Linux's nf_nat_icmp_reply_translation), or path-MTU discovery and traceroute break: a
// "fragmentation needed" coming back quotes the translated address and port, which the inside
// host does not know. Every checksum involved must come out right.
TEST_F(ClassifyStageTest, IcmpErrorsAboutATranslatedFlowAreTranslatedBothWays) {
  Load(Masquerade{.protos = R"(["tcp", "udp", "icmp"])"}.Toml());
  const auto out = Run({Tcp4("10.1.2.3", 4000, "198.19.0.9", 443, tcp::kSyn)}, kSec);
  ASSERT_EQ(out[0].src, "198.18.0.1");
  const uint16_t xport = out[0].sport;

  // In: a router's "fragmentation needed" about the translated SYN, quoted whole.
  const TestPacket sent = Tcp4("198.18.0.1", xport, "198.19.0.9", 443, tcp::kSyn);
  const auto [next, in] = RunBytes(
      PacketBuilder().Ipv4("198.19.0.254", "198.18.0.1").Icmp(3, 4, 0, 1400).Payload(sent.bytes).Build(), 2 * kSec);
  ASSERT_EQ(next, Next::kAccept);
  EXPECT_EQ(AddrText(in.data() + 16, false), "10.1.2.3") << "the outer destination: the inside host";
  EXPECT_EQ(AddrText(in.data() + 12, false), "198.19.0.254");
  const uint8_t* quoted = in.data() + 28;
  EXPECT_EQ(AddrText(quoted + 12, false), "10.1.2.3");
  EXPECT_EQ(AddrText(quoted + 16, false), "198.19.0.9");
  EXPECT_EQ(LoadBe16(quoted + 20), 4000);
  EXPECT_EQ(LoadBe16(quoted + 22), 443);
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(in.data(), in.size()));
  EXPECT_TRUE(testing::RefL4ChecksumOk(in.data(), in.size())) << "the ICMP checksum";
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(quoted, sent.bytes.size())) << "the quoted IP header";
  EXPECT_TRUE(testing::RefL4ChecksumOk(quoted, sent.bytes.size())) << "the quoted TCP checksum";
  EXPECT_EQ(Count(ClassifyCounter::kNatIcmpErrors), 1u);

  // The shortest quote RFC 792 allows: the IP header and 8 bytes (the TCP checksum is not in
  // it, so only what is there changes).
  const std::vector<uint8_t> short_quote(sent.bytes.begin(), sent.bytes.begin() + 28);
  const auto [next_short, in_short] = RunBytes(
      PacketBuilder().Ipv4("198.19.0.254", "198.18.0.1").Icmp(3, 4, 0, 1400).Payload(short_quote).Build(), 2 * kSec);
  ASSERT_EQ(next_short, Next::kAccept);
  EXPECT_EQ(AddrText(in_short.data() + 28 + 12, false), "10.1.2.3");
  EXPECT_EQ(LoadBe16(in_short.data() + 48), 4000);
  EXPECT_TRUE(testing::RefL4ChecksumOk(in_short.data(), in_short.size()));
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(in_short.data() + 28, 20));
  EXPECT_EQ(Count(ClassifyCounter::kNatIcmpErrors), 2u);

  // Out: the inside host's "port unreachable" about a reply it got translated back.
  const auto udp = Run({Udp4("10.1.2.3", 5000, "198.19.0.9", 53)}, 3 * kSec);
  const uint16_t udp_xport = udp[0].sport;
  const auto reply = Run({Udp4("198.19.0.9", 53, "198.18.0.1", udp_xport)}, 4 * kSec);
  ASSERT_EQ(reply[0].dport, 5000);
  const TestPacket received = Udp4("198.19.0.9", 53, "10.1.2.3", 5000);
  const auto [next_out, err] = RunBytes(
      PacketBuilder().Ipv4("10.1.2.3", "198.19.0.9").Icmp(3, 3, 0, 0).Payload(received.bytes).Build(), 5 * kSec);
  ASSERT_EQ(next_out, Next::kAccept);
  EXPECT_EQ(AddrText(err.data() + 12, false), "198.18.0.1") << "the outer source: the translated address";
  const uint8_t* q2 = err.data() + 28;
  EXPECT_EQ(AddrText(q2 + 16, false), "198.18.0.1");
  EXPECT_EQ(LoadBe16(q2 + 22), udp_xport);
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(err.data(), err.size()));
  EXPECT_TRUE(testing::RefL4ChecksumOk(err.data(), err.size()));
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(q2, received.bytes.size()));
  EXPECT_TRUE(testing::RefL4ChecksumOk(q2, received.bytes.size())) << "the quoted UDP checksum";
  EXPECT_EQ(Count(ClassifyCounter::kNatIcmpErrors), 3u);

  // An error about no live flow, or addressed to someone the quoted packet was not from, is
  // not translated: it goes to the rules (here: no rule matches, the default accepts it).
  const TestPacket stranger = Tcp4("198.18.0.1", 9, "198.19.0.9", 443);
  const TestPacket other_src = Tcp4("198.18.0.2", xport, "198.19.0.9", 443);
  const TestPacket errors[] = {
      PacketBuilder().Ipv4("198.19.0.254", "198.18.0.1").Icmp(3, 4, 0, 1400).Payload(stranger.bytes).Build(),
      PacketBuilder().Ipv4("198.19.0.254", "198.18.0.1").Icmp(3, 4, 0, 1400).Payload(other_src.bytes).Build(),
      // It quotes the flow's packet, but is addressed to another host: not about this flow.
      PacketBuilder().Ipv4("198.19.0.254", "198.18.0.2").Icmp(3, 4, 0, 1400).Payload(sent.bytes).Build()};
  for (const TestPacket& e : errors) {
    const auto [n, bytes] = RunBytes(e, 6 * kSec);
    EXPECT_EQ(n, Next::kAccept);
    EXPECT_EQ(bytes, e.bytes) << "unchanged";
  }
  EXPECT_EQ(Count(ClassifyCounter::kNatIcmpErrors), 3u);
}

// Kernel queues steer a packet by its own addresses and protocol, so an ICMP error about a
// translated flow reaches whichever shard its own header hashes to. That shard finds the flow
// in its peers' tables (NatPeers) and translates the error as the flow's own shard would.
TEST_F(ClassifyStageTest, IcmpErrorsQueuedToAnotherShardAreTranslatedWithTheirPeersFlow) {
  Load("[pipeline]\nshards = 2\n" + Masquerade{.protos = R"(["tcp", "udp", "icmp"])", .address = ""}.Toml());
  NatPeers peers(2);
  std::vector<std::unique_ptr<ClassifyStage>> shard;
  for (uint32_t s = 0; s < 2; ++s) {
    shard.push_back(std::make_unique<ClassifyStage>(*handle_, s, FlowTableOptions::From(config_.nat, 7, s, 2),
                                                    StageClock{}, &peers));
  }
  const auto errors_on = [&](uint32_t s) { return shard[s]->counters().Load(ClassifyCounter::kNatIcmpErrors); };

  // The flow lives on shard 0.
  const auto out = RunOn(*shard[0], {Tcp4("10.1.2.3", 4000, "198.19.0.9", 443, tcp::kSyn)}, kSec);
  ASSERT_EQ(out[0].next, Next::kAccept);
  const uint16_t xport = out[0].sport;
  ASSERT_NE(xport, 4000);
  ASSERT_EQ(xport % 2, 0);

  // In, on shard 1: a router's "fragmentation needed" about the translated SYN.
  const TestPacket sent = Tcp4("10.1.2.3", xport, "198.19.0.9", 443, tcp::kSyn);
  const TestPacket too_big = PacketBuilder().Ipv4("198.19.0.254", "10.1.2.3").Icmp(3, 4, 0, 1400).Payload(sent.bytes).Build();
  const auto [next, in] = RunBytesOn(*shard[1], too_big, 2 * kSec);
  ASSERT_EQ(next, Next::kAccept);
  const uint8_t* quoted = in.data() + 28;
  EXPECT_EQ(LoadBe16(quoted + 20), 4000) << "the quoted source port: the inside host's";
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(in.data(), in.size()));
  EXPECT_TRUE(testing::RefL4ChecksumOk(in.data(), in.size())) << "the ICMP checksum";
  EXPECT_TRUE(testing::RefL4ChecksumOk(quoted, sent.bytes.size())) << "the quoted TCP checksum";
  EXPECT_EQ(errors_on(1), 1u);

  // Out, on shard 1: the inside host's "port unreachable" about a reply of a shard 0 flow.
  const auto udp = RunOn(*shard[0], {Udp4("10.1.2.3", 5000, "198.19.0.9", 53)}, 3 * kSec);
  const uint16_t udp_xport = udp[0].sport;
  const TestPacket received = Udp4("198.19.0.9", 53, "10.1.2.3", 5000);
  const auto [next_out, err] = RunBytesOn(
      *shard[1], PacketBuilder().Ipv4("10.1.2.3", "198.19.0.9").Icmp(3, 3, 0, 0).Payload(received.bytes).Build(), 4 * kSec);
  ASSERT_EQ(next_out, Next::kAccept);
  EXPECT_EQ(LoadBe16(err.data() + 28 + 22), udp_xport) << "the quoted destination port: as it went on the wire";
  EXPECT_TRUE(testing::RefL4ChecksumOk(err.data(), err.size()));
  EXPECT_TRUE(testing::RefL4ChecksumOk(err.data() + 28, received.bytes.size())) << "the quoted UDP checksum";
  EXPECT_EQ(errors_on(1), 2u);

  // The same error on the flow's own shard comes out the same; one about no flow anywhere
  // goes to the rules untouched.
  EXPECT_EQ(RunBytesOn(*shard[0], too_big, 5 * kSec).second, in);
  const TestPacket stranger = Tcp4("10.1.2.3", static_cast<uint16_t>(xport + 2), "198.19.0.9", 443);
  const TestPacket unknown = PacketBuilder().Ipv4("198.19.0.254", "10.1.2.3").Icmp(3, 4, 0, 1400).Payload(stranger.bytes).Build();
  const auto [next_unknown, unknown_bytes] = RunBytesOn(*shard[1], unknown, 6 * kSec);
  EXPECT_EQ(next_unknown, Next::kAccept) << "no rule matches it: the default accepts it";
  EXPECT_EQ(unknown_bytes, unknown.bytes);
  EXPECT_EQ(errors_on(0) + errors_on(1), 3u);
  EXPECT_EQ(shard[1]->counters().Load(ClassifyCounter::kNatIcmpErrorsPeer), 2u);
  EXPECT_EQ(shard[0]->counters().Load(ClassifyCounter::kNatIcmpErrorsPeer), 0u);

  // Asking every shard is for errors an inside host may send: not for one the backend saw
  // come in (it is dropped here as the rule's untranslatable, as on one shard)...
  const TestPacket port_unreachable =
      PacketBuilder().Ipv4("10.1.2.3", "198.19.0.9").Icmp(3, 3, 0, 0).Payload(received.bytes).Build();
  {
    Batch b;
    Fill(b, {port_unreachable});
    b.packet(0).meta().direction = Direction::kIn;
    shard[1]->Process(b, 7 * kSec);
    EXPECT_EQ(b.next(0), Next::kDrop);
    EXPECT_EQ(b.reason(0), DropReason::kNatUntranslatable);
    b.RecordVerdicts();
    b.Clear();
  }
  EXPECT_EQ(shard[1]->counters().Load(ClassifyCounter::kNatIcmpErrorsPeer), 2u);
  // ... and at most 8 a batch: the ninth and tenth here are not asked about.
  std::vector<TestPacket> unknown_replies;
  for (uint16_t p = 0; p < 10; ++p) {
    const TestPacket reply = Udp4("198.19.0.9", 53, "10.1.2.3", static_cast<uint16_t>(6000 + p));
    unknown_replies.push_back(PacketBuilder().Ipv4("10.1.2.3", "198.19.0.9").Icmp(3, 3, 0, 0).Payload(reply.bytes).Build());
  }
  RunOn(*shard[1], unknown_replies, 8 * kSec);
  EXPECT_EQ(shard[1]->counters().Load(ClassifyCounter::kNatPeerScansSkipped), 2u);
  EXPECT_EQ(RunOn(*shard[1], {port_unreachable}, 9 * kSec)[0].next, Next::kAccept) << "a new batch, a new budget";
  EXPECT_EQ(shard[0]->flows().size(), 2u);
  EXPECT_EQ(shard[1]->flows().size(), 0u);
}

TEST_F(ClassifyStageTest, IcmpErrorsAboutIpv6AndEchoTranslationsAreTranslated) {
  Load(kNapt);
  ExpectIpv6AndEchoErrorsTranslated(*stage_, *stage_);
}

// The same with two shards: the flows on one, the errors queued to the other (NatPeers).
TEST_F(ClassifyStageTest, IcmpErrorsAboutIpv6AndEchoTranslationsAreTranslatedOnAPeerShard) {
  Load(std::string("[pipeline]\nshards = 2\n") + kNapt);
  NatPeers peers(2);
  ClassifyStage shard0(*handle_, 0, FlowTableOptions::From(config_.nat, 7, 0, 2), StageClock{}, &peers);
  ClassifyStage shard1(*handle_, 1, FlowTableOptions::From(config_.nat, 7, 1, 2), StageClock{}, &peers);
  ExpectIpv6AndEchoErrorsTranslated(shard0, shard1);
  EXPECT_EQ(shard1.counters().Load(ClassifyCounter::kNatIcmpErrorsPeer), 2u);
}

// A reload that drops every translate rule keeps the live flows; an error about one of them
// still finds it from a shard whose own table is empty.
TEST_F(ClassifyStageTest, AfterAReloadWithoutTranslationsErrorsStillFindAPeersFlow) {
  Load("[pipeline]\nshards = 2\n" + Masquerade{.protos = R"(["udp", "icmp"])", .address = ""}.Toml());
  NatPeers peers(2);
  ClassifyStage shard0(*handle_, 0, FlowTableOptions::From(config_.nat, 7, 0, 2), StageClock{}, &peers);
  ClassifyStage shard1(*handle_, 1, FlowTableOptions::From(config_.nat, 7, 1, 2), StageClock{}, &peers);
  const uint16_t xport = RunOn(shard0, {Udp4("10.1.2.3", 5000, "198.19.0.9", 53)}, kSec)[0].sport;
  RunOn(shard1, {Udp4("198.19.0.1", 7, "198.19.0.9", 7)}, kSec);  // shard 1 has no flow
  ASSERT_TRUE(handle_->ReloadText("[pipeline]\nshards = 2\n[[rule]]\nnumber = 1\nname = \"count\"\naction = \"count\"\n").ok());

  const TestPacket sent = Udp4("10.1.2.3", xport, "198.19.0.9", 53);
  const auto [next, in] = RunBytesOn(
      shard1, PacketBuilder().Ipv4("198.19.0.254", "10.1.2.3").Icmp(3, 4, 0, 1400).Payload(sent.bytes).Build(), 2 * kSec);
  EXPECT_EQ(next, Next::kAccept);
  EXPECT_EQ(LoadBe16(in.data() + 28 + 20), 5000) << "the quoted source port: the inside host's";
  EXPECT_EQ(shard1.counters().Load(ClassifyCounter::kNatIcmpErrorsPeer), 1u);
  EXPECT_EQ(shard1.flows().size(), 0u);
}

// Port-only translations of an IPv6 TCP flow and an IPv4 echo made on `flows`; a packet too
// big (the ICMPv6 checksum covers a pseudo-header) and a time exceeded (traceroute by ping)
// about them, classified on `errors`, come back with the inside host's port and echo id.
void ClassifyStageTest::ExpectIpv6AndEchoErrorsTranslated(ClassifyStage& flows, ClassifyStage& errors) {
  const TestPacket v6 = PacketBuilder().Ipv6("2001:2:0:c::7", "2001:2:0:5::9").Tcp(50000, 80).TcpFlags(tcp::kSyn).Build();
  const TestPacket ping = PacketBuilder().Ipv4("198.18.0.7", "198.19.0.9").Icmp(8, 0, 0x1234, 1).Payload(16).Build();
  const auto out = RunOn(flows, {v6, ping}, kSec);
  const uint16_t xport = out[0].sport, xid = out[1].sport;
  ASSERT_NE(xport, 50000);
  ASSERT_NE(xid, 0x1234);

  const TestPacket sent6 = PacketBuilder().Ipv6("2001:2:0:c::7", "2001:2:0:5::9").Tcp(xport, 80).TcpFlags(tcp::kSyn).Build();
  const auto [n6, in6] = RunBytesOn(
      errors, PacketBuilder().Ipv6("2001:2:0:5::fe", "2001:2:0:c::7").Icmp(2, 0, 0, 1280).Payload(sent6.bytes).Build(),
      2 * kSec);
  ASSERT_EQ(n6, Next::kAccept);
  const uint8_t* q6 = in6.data() + 48;
  EXPECT_EQ(LoadBe16(q6 + 40), 50000);
  EXPECT_TRUE(testing::RefL4ChecksumOk(in6.data(), in6.size())) << "the ICMPv6 checksum";
  EXPECT_TRUE(testing::RefL4ChecksumOk(q6, sent6.bytes.size())) << "the quoted TCP checksum";

  const TestPacket sent_ping = PacketBuilder().Ipv4("198.18.0.7", "198.19.0.9").Icmp(8, 0, xid, 1).Payload(16).Build();
  const auto [n4, in4] = RunBytesOn(
      errors, PacketBuilder().Ipv4("198.19.0.254", "198.18.0.7").Icmp(11, 0, 0, 0).Payload(sent_ping.bytes).Build(),
      3 * kSec);
  ASSERT_EQ(n4, Next::kAccept);
  const uint8_t* q4 = in4.data() + 28;
  EXPECT_EQ(LoadBe16(q4 + 24), 0x1234) << "the quoted echo id, back to the inside host's";
  EXPECT_TRUE(testing::RefL4ChecksumOk(in4.data(), in4.size()));
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(q4, sent_ping.bytes.size()));
  EXPECT_TRUE(testing::RefL4ChecksumOk(q4, sent_ping.bytes.size())) << "the quoted ICMP checksum";
  EXPECT_EQ(errors.counters().Load(ClassifyCounter::kNatIcmpErrors), 2u);
}

TEST_F(ClassifyStageTest, NonFirstFragmentsPassAPortOnlyTranslation) {
  Load(R"(
[[rule]]
number = 1
name = "napt"
action = "translate-source-port"
match = { src = "198.18.0.0/16", proto = "udp" }
translate = { ports = "20000-29999" }
)");
  const TestPacket whole = PacketBuilder().Ipv4("198.18.0.1", "198.19.0.9").Udp(5000, 53).Payload(200).Build();
  const auto frags = testing::FragmentPacket(whole, 96);
  ASSERT_GE(frags.size(), 2u);
  const auto out = Run(frags, kSec);
  EXPECT_EQ(out[0].next, Next::kAccept);
  EXPECT_TRUE(out[0].modified) << "the first fragment carries the ports";
  for (std::size_t i = 1; i < out.size(); ++i) {
    EXPECT_EQ(out[i].next, Next::kAccept);
    EXPECT_FALSE(out[i].modified);
  }
  EXPECT_EQ(Count(ClassifyCounter::kNatFragmentPassed), frags.size() - 1);
}

TestPacket UdpDatagram(const FragmentCase& c, bool out, uint16_t inside_port, uint32_t payload) {
  PacketBuilder b;
  const char* src = out ? c.inside : c.peer;
  const char* dst = out ? c.peer : c.xaddr;
  if (std::string_view(c.family) == "ipv6") b.Ipv6(src, dst);
  else b.Ipv4(src, dst);
  if (c.dest_opts) b.DestOpts();
  return (out ? b.Udp(inside_port, 53) : b.Udp(53, inside_port)).Payload(payload).Build();
}

// A translation that moves the address moves it in every fragment, both ways, as libalias's
// fragment links do: the first fragment carries the ports, and its later fragments are known
// by (protocol, source, destination, identification: IPv4's IP id, IPv6's fragment header id,
// found through the extension chain). Once, an outbound datagram's later fragments were
// dropped and an inbound one's went on to the translated address; IPv6's were never
// remembered.
void ClassifyStageTest::ExpectLaterFragmentsFollowTheTranslation(const FragmentCase& c) {
  Load(Masquerade{.protos = R"("udp")", .family = c.family, .src = c.inside_net, .address = c.xaddr}.Toml());
  const auto frags_out = testing::FragmentPacket(UdpDatagram(c, /*out=*/true, 5000, 300), 96);
  ASSERT_GE(frags_out.size(), 3u);
  const auto out = Run(frags_out, kSec);  // one batch: the first fragment creates the flow
  for (const Seen& s : out) {
    EXPECT_EQ(s.next, Next::kAccept);
    EXPECT_EQ(s.src, c.xaddr);
    EXPECT_TRUE(s.ip_ok);
  }
  const uint16_t xport = out[0].sport;

  const auto frags_in = testing::FragmentPacket(UdpDatagram(c, /*out=*/false, xport, 1000), 400);
  std::vector<TestPacket> later(frags_in.begin() + 1, frags_in.end());
  const auto in_first = Run({frags_in[0]}, 2 * kSec);  // the later ones in a batch of their own
  const auto in_later = Run(later, 2 * kSec);
  EXPECT_EQ(in_first[0].dst, c.inside);
  EXPECT_EQ(in_first[0].dport, 5000);
  for (const Seen& s : in_later) {
    EXPECT_EQ(s.next, Next::kAccept);
    EXPECT_EQ(s.dst, c.inside);
    EXPECT_TRUE(s.ip_ok);
  }
  EXPECT_EQ(Count(ClassifyCounter::kNatFragments), frags_out.size() - 1 + later.size());

  // A later fragment whose first fragment was never seen (another datagram, from another
  // port) goes out with the rule's address all the same, as libalias's FragmentOut sends it:
  // the address needs no port. Its first fragment, coming after it, creates the flow with
  // the same address, so the datagram reassembles from one source; what follows the IP
  // header is left as it was. Behind options its protocol is theirs, so the rule does not
  // match it, and it goes on as it is.
  const auto stray = testing::FragmentPacket(UdpDatagram(c, /*out=*/true, 5001, 300), 96, /*id=*/0x4321);
  const bool v6 = std::string_view(c.family) == "ipv6";
  const std::size_t stray_ip = v6 ? 48 : 20;  // IPv6: the fragment header is behind it
  const TestPacket& ahead = stray.back();
  const std::vector<uint8_t> stray_payload(ahead.bytes.begin() + ahead.l3_off + stray_ip,
                                           ahead.bytes.begin() + ahead.l3_off + ahead.ip_len);
  const auto s = Run({stray.back()}, 3 * kSec);
  const auto s_first = Run({stray.front()}, 3 * kSec);
  if (c.dest_opts) {
    EXPECT_EQ(s[0].src, c.inside);
    EXPECT_FALSE(s[0].modified);
  } else {
    EXPECT_EQ(s[0].next, Next::kAccept);
    EXPECT_EQ(s[0].src, c.xaddr);
    EXPECT_TRUE(s[0].modified);
    EXPECT_TRUE(s[0].ip_ok);
    EXPECT_EQ(std::vector<uint8_t>(s[0].after_ip.begin() + (v6 ? 8 : 0), s[0].after_ip.end()), stray_payload);
    EXPECT_EQ(Count(ClassifyCounter::kNatFragmentAhead), 1u);
    EXPECT_EQ(s_first[0].next, Next::kAccept);
    EXPECT_EQ(s_first[0].src, c.xaddr);
    EXPECT_EQ(Count(ClassifyCounter::kNatCreated), 2u) << "the first fragment made its own flow";
  }
  // None is remembered past the reassembly time: a later fragment coming in then is not
  // translated (nothing says which inside host it is for).
  const auto late = Run({later.back()}, 2 * kSec + NatFragments::kTimeoutNs);
  EXPECT_EQ(late[0].dst, c.xaddr) << "expired: not translated";
}

// A rule that matches both ways (no source network) sees replies too: a later fragment
// coming in ahead of its first, addressed to the translated address already, names no
// inside host. It must not leave with the rule's address as its source as well.
TEST_F(ClassifyStageTest, ALaterFragmentComingInWithNothingRememberedIsUntranslatable) {
  Load(Masquerade{.protos = R"("udp")", .src = "0.0.0.0/0", .address = "198.18.0.1"}.Toml());
  const TestPacket reply = PacketBuilder().Ipv4("198.19.0.9", "198.18.0.1").Udp(53, 20000).Payload(300).Build();
  const auto frags = testing::FragmentPacket(reply, 96);
  ASSERT_GE(frags.size(), 2u);
  const auto s = Run({frags.back()}, kSec);
  EXPECT_EQ(s[0].src, "198.19.0.9");
  EXPECT_EQ(s[0].dst, "198.18.0.1");
  EXPECT_FALSE(s[0].modified);
  EXPECT_EQ(s[0].reason, DropReason::kNatUntranslatable);
  EXPECT_EQ(Count(ClassifyCounter::kNatFragmentAhead), 0u);
}

TEST_F(ClassifyStageTest, LaterFragmentsOfAnAddressTranslationGetTheAddressToo) {
  ExpectLaterFragmentsFollowTheTranslation({"ipv4", "10.0.0.0/8", "10.1.2.3", "198.19.0.9", "198.18.0.1"});
}

TEST_F(ClassifyStageTest, LaterIpv6FragmentsOfAnAddressTranslationGetTheAddressToo) {
  ExpectLaterFragmentsFollowTheTranslation(
      {"ipv6", "2001:2:0:c::/64", "2001:2:0:c::7", "2001:2:0:5::9", "2001:2:0:1::1"});
}

// The first fragment's walk ends at UDP; a later one's at the fragment header's next header
// (destination options here): the datagram's identity must not depend on either.
TEST_F(ClassifyStageTest, LaterIpv6FragmentsFollowPastOptionsInTheFragmentablePart) {
  ExpectLaterFragmentsFollowTheTranslation(
      {"ipv6", "2001:2:0:c::/64", "2001:2:0:c::7", "2001:2:0:5::9", "2001:2:0:1::1", /*dest_opts=*/true});
}

TEST_F(ClassifyStageTest, IdleFlowsExpireOnTheBatchClock) {
  Load(kNapt);
  const auto out = Run({Udp4("198.18.0.1", 7000, "198.19.0.9", 53)}, 0);
  const uint16_t xport = out[0].sport;
  EXPECT_EQ(Run({Udp4("198.19.0.9", 53, "198.18.0.1", xport)}, 29 * kSec)[0].dport, 7000);
  // 30 s after the last packet the flow is gone: the reply is no longer translated (and rule
  // 200 now sees it).
  const auto late = Run({Udp4("198.19.0.9", 53, "198.18.0.1", xport)}, 59 * kSec);
  EXPECT_EQ(late[0].next, Next::kDrop);
  EXPECT_EQ(late[0].reason, DropReason::kRuleDrop);
  EXPECT_EQ(Count(ClassifyCounter::kNatExpired), 1u);
  EXPECT_EQ(stage_->nat_flows(), 0u);
}

TEST_F(ClassifyStageTest, FullTableEvictsAndCounts) {
  Load(kNapt);  // max_flows = 64
  std::vector<TestPacket> packets;
  for (uint16_t i = 0; i < 80; ++i) packets.push_back(Udp4("198.18.0.1", static_cast<uint16_t>(1000 + i), "198.19.0.9", 53));
  const auto out = Run(packets, kSec);
  for (const Seen& s : out) EXPECT_EQ(s.next, Next::kAccept);
  EXPECT_EQ(Count(ClassifyCounter::kNatCreated), 80u);
  EXPECT_EQ(Count(ClassifyCounter::kNatEvicted), 16u);
  EXPECT_EQ(stage_->nat_flows(), 64u);
}

TEST_F(ClassifyStageTest, ReloadKeepsTranslationsAndABadReloadChangesNothing) {
  Load(kNapt);
  const auto out = Run({Tcp4("198.18.0.1", 40000, "198.19.0.5", 443, tcp::kSyn)}, kSec);
  const uint16_t xport = out[0].sport;
  const uint64_t gen = handle_->generation();

  // A config with errors: rejected whole, nothing changes.
  const Status bad = handle_->ReloadText("[[rule]]\nnumber = 1\nname = \"x\"\naction = \"dorp\"\n", "bad.toml");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("bad.toml:4:10: rule[0].action"), std::string::npos) << bad.message();
  EXPECT_EQ(handle_->generation(), gen);

  // New rules without any translation rule, and a catch-all drop.
  ASSERT_TRUE(handle_->ReloadText("[[rule]]\nnumber = 1\nname = \"drop-all\"\naction = \"drop\"\n").ok());
  EXPECT_EQ(handle_->generation(), gen + 1);
  const auto back = Run({Tcp4("198.19.0.5", 443, "198.18.0.1", xport, tcp::kSyn | tcp::kAck),
                         Tcp4("198.18.0.1", 40000, "198.19.0.5", 443),
                         Tcp4("198.18.0.1", 40001, "198.19.0.5", 443)},
                        2 * kSec);
  EXPECT_EQ(back[0].next, Next::kAccept) << "the established flow survives the reload";
  EXPECT_EQ(back[0].dport, 40000);
  EXPECT_EQ(back[1].next, Next::kAccept);
  EXPECT_EQ(back[1].sport, xport);
  EXPECT_EQ(back[2].next, Next::kDrop) << "a new flow meets the new rules";
  EXPECT_EQ(Count(ClassifyCounter::kRuleSetSwaps), 1u);
  EXPECT_EQ(Totals("drop-all").packets, 1u);
}

TEST_F(ClassifyStageTest, ReloadRefusesAnotherShardCount) {
  Load(kNapt);
  EXPECT_FALSE(handle_->ReloadText("[pipeline]\nshards = 2\n").ok());
}

TEST_F(ClassifyStageTest, InterfacesResolveThroughTheBackendsNumbering) {
  ConfigLoad load = LoadConfigText(R"(
[[rule]]
number = 1
name = "from-eth1"
action = "drop"
match.in_interface = "eth1"
[[rule]]
number = 2
name = "to-unknown"
action = "drop"
match.out_interface = "nosuch0"
)");
  ASSERT_TRUE(load.ok());
  RuleSetOptions o;
  o.interface_id = [](std::string_view name) -> uint32_t { return name == "eth1" ? 7 : 0; };
  auto h = RuleSetHandle::Create(*load.config, o);
  ASSERT_TRUE(h.ok());
  ClassifyStage stage(*h.value(), 0, FlowTableOptions::From(load.config->nat, 1, 0, 1));
  Batch b;
  Fill(b, {Udp4("1.1.1.1", 1, "2.2.2.2", 2), Udp4("1.1.1.1", 1, "2.2.2.2", 2)});
  b.packet(0).meta().in_if = 7;
  b.packet(1).meta().in_if = 3;
  b.packet(1).meta().out_if = 0;
  stage.Process(b, 0);
  EXPECT_EQ(b.next(0), Next::kDrop);
  EXPECT_EQ(b.next(1), Next::kAccept) << "an unknown interface name matches nothing, not everything";
  b.RecordVerdicts();
  b.Clear();
}

// An interface created again under a new index: Recompile asks interface_id afresh, and the
// same rules keep their counters; different rules start from zero, as after any reload.
TEST_F(ClassifyStageTest, RecompileFollowsANewInterfaceIndexAndKeepsTheCounters) {
  const ConfigLoad load = LoadConfigText(R"(
[[rule]]
number = 1
name = "from-wan"
action = "drop"
match.in_interface = "wan"
)");
  ASSERT_TRUE(load.ok());
  uint32_t wan = 7;
  RuleSetOptions o;
  o.interface_id = [&wan](std::string_view name) -> uint32_t { return name == "wan" ? wan : 0; };
  auto h = RuleSetHandle::Create(*load.config, o);
  ASSERT_TRUE(h.ok());
  RuleSetHandle& handle = *h.value();
  ClassifyStage stage(handle, 0, FlowTableOptions::From(load.config->nat, 1, 0, 1));
  auto from = [&](uint32_t ifindex) {
    Batch b;
    Fill(b, {Udp4("1.1.1.1", 1, "2.2.2.2", 2)});
    b.packet(0).meta().in_if = ifindex;
    stage.Process(b, 0);
    const Next next = b.next(0);
    b.RecordVerdicts();
    b.Clear();
    return next;
  };
  auto hits = [&] { return handle.Load()->Totals(0).packets; };

  EXPECT_EQ(from(7), Next::kDrop);
  wan = 9;  // "wan" deleted and created again
  EXPECT_EQ(from(9), Next::kAccept) << "index 9 is not wan until the rules are compiled again";
  ASSERT_TRUE(handle.Recompile(load).ok());
  EXPECT_EQ(from(9), Next::kDrop);
  EXPECT_EQ(from(7), Next::kAccept);
  EXPECT_EQ(hits(), 2u) << "the counters carried on";

  const ConfigLoad other = LoadConfigText(R"(
[[rule]]
number = 1
name = "from-wan-renamed"
action = "drop"
match.in_interface = "wan"
)");
  ASSERT_TRUE(handle.Recompile(other).ok());
  EXPECT_EQ(hits(), 0u) << "other rules: other counters";
  EXPECT_EQ(from(9), Next::kDrop);
  EXPECT_EQ(hits(), 1u);
}

// The offline graph runs a shard's stage on whichever thread brings the batch: each worker
// (Batch::worker) counts into its own set, stage counters and rule counters alike, and every
// reader sums them, across a recompile too.
TEST_F(ClassifyStageTest, EachWorkerCountsInItsOwnSetAndReadersSumThem) {
  const ConfigLoad load = LoadConfigText(R"(
[[rule]]
number = 1
name = "dns"
action = "drop"
match.dst_port = 53
)");
  ASSERT_TRUE(load.ok());
  RuleSetOptions o;
  o.workers = 3;
  auto h = RuleSetHandle::Create(*load.config, o);
  ASSERT_TRUE(h.ok());
  RuleSetHandle& handle = *h.value();
  ClassifyStage stage(handle, 0, FlowTableOptions::From(load.config->nat, 1, 0, 1));
  EXPECT_EQ(stage.workers(), 3u);
  EXPECT_EQ(StageRef::Of(stage).workers(), 3u);
  auto run_on = [&](uint32_t worker, uint32_t packets) {
    Batch b;
    for (uint32_t k = 0; k < packets; ++k) Fill(b, {Udp4("198.18.0.1", 1000, "198.19.0.5", 53)});
    b.set_worker(worker);
    stage.Process(b, 0);
    b.RecordVerdicts();
    b.Clear();
  };
  run_on(0, 1);
  run_on(2, 4);
  EXPECT_EQ(stage.counters().Load(ClassifyCounter::kClassified), 5u);
  EXPECT_EQ(stage.counters().Load(ClassifyCounter::kRuleMatched), 5u);
  EXPECT_EQ(handle.Load()->Totals(0).packets, 5u);
  ASSERT_TRUE(handle.Recompile(load).ok());
  run_on(1, 2);
  EXPECT_EQ(handle.Load()->Totals(0).packets, 7u) << "the same rules keep every worker's counters";
  EXPECT_EQ(stage.counters().Load(ClassifyCounter::kClassified), 7u);
}

TEST_F(ClassifyStageTest, RewritePlansReachTheRewriteStage) {
  Load(kActions);
  RewriteStage rewrite;
  Batch b;
  Fill(b, {Tcp4("198.18.0.1", 40001, "198.19.0.5", 80)});
  stage_->Process(b, 0);
  rewrite.Process(b);
  ASSERT_EQ(b.next(0), Next::kAccept);
  const PacketBuffer& p = b.packet(0);
  EXPECT_EQ(LoadBe16(p.data() + p.meta().l4_off + 2), 8080);
  EXPECT_TRUE(testing::RefL4ChecksumOk(p.data() + p.meta().l3_off, p.len() - p.meta().l3_off));
  b.RecordVerdicts();
  b.Clear();
}

// A NAT gateway clamps the MSS of the connections it translates (PPPoE): the translate rule
// carries the edit, and every packet of its flows gets it after the translation, both ways.
// Before, a translate rule was terminal and live flows skipped the rules, so no MSS clamp,
// DSCP or TTL edit could reach translated traffic; a clamp rule placed first left the SYN
// untranslated and the connection broke.
TEST_F(ClassifyStageTest, ATranslationsEditsApplyToEveryPacketOfItsFlowsBothWays) {
  Load(Masquerade{.then = "rewrite = { mss_clamp = 1200, dscp = 10 }\n"}.Toml());
  const auto syn =
      RunWithRewrite({PacketBuilder().Ipv4("10.1.2.3", "198.19.0.9").Tcp(40000, 443).TcpFlags(tcp::kSyn).Mss(1460).Build()},
                     kSec)[0];
  EXPECT_EQ(AddrText(syn.data() + 12, false), "198.18.0.1");
  const uint16_t xport = LoadBe16(syn.data() + 20);
  EXPECT_EQ(LoadBe16(syn.data() + 20 + 22), 1200) << "the SYN's MSS, clamped";
  EXPECT_EQ(syn[1] >> 2, 10) << "the DSCP";
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(syn.data(), syn.size()));
  EXPECT_TRUE(testing::RefL4ChecksumOk(syn.data(), syn.size()));

  const auto syn_ack = RunWithRewrite(
      {PacketBuilder().Ipv4("198.19.0.9", "198.18.0.1").Tcp(443, xport).TcpFlags(tcp::kSyn | tcp::kAck).Mss(1460).Build()},
      2 * kSec)[0];
  EXPECT_EQ(AddrText(syn_ack.data() + 16, false), "10.1.2.3");
  EXPECT_EQ(LoadBe16(syn_ack.data() + 22), 40000);
  EXPECT_EQ(LoadBe16(syn_ack.data() + 20 + 22), 1200) << "the SYN-ACK's MSS, clamped";
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(syn_ack.data(), syn_ack.size()));
  EXPECT_TRUE(testing::RefL4ChecksumOk(syn_ack.data(), syn_ack.size()));
  EXPECT_EQ(Count(ClassifyCounter::kRewritePlanned), 2u);
}

// IPv6 with a translated address: the outer ICMPv6 pseudo-header, the quoted address inside
// the ICMPv6 checksum and the quoted transport checksum's pseudo-header all change.
TEST_F(ClassifyStageTest, IcmpErrorsAboutAnIpv6AddressTranslationAreTranslated) {
  Load(Masquerade{.family = "ipv6", .src = "2001:2:0:c::/64", .address = "2001:2::1"}.Toml());
  const auto out = Run({PacketBuilder().Ipv6("2001:2:0:c::7", "2001:2:0:5::9").Udp(5000, 53).Payload(20).Build()}, kSec);
  ASSERT_EQ(out[0].src, "2001:2::1");
  const uint16_t xport = out[0].sport;
  const TestPacket sent = PacketBuilder().Ipv6("2001:2::1", "2001:2:0:5::9").Udp(xport, 53).Payload(20).Build();
  const auto [n_in, in] = RunBytes(
      PacketBuilder().Ipv6("2001:2:0:5::fe", "2001:2::1").Icmp(2, 0, 0, 1280).Payload(sent.bytes).Build(), 2 * kSec);
  ASSERT_EQ(n_in, Next::kAccept);
  EXPECT_EQ(AddrText(in.data() + 24, true), "2001:2:0:c::7");
  EXPECT_EQ(AddrText(in.data() + 48 + 8, true), "2001:2:0:c::7");
  EXPECT_EQ(LoadBe16(in.data() + 48 + 40), 5000);
  EXPECT_TRUE(testing::RefL4ChecksumOk(in.data(), in.size())) << "the ICMPv6 checksum";
  EXPECT_TRUE(testing::RefL4ChecksumOk(in.data() + 48, sent.bytes.size())) << "the quoted UDP checksum";

  const auto reply = Run({PacketBuilder().Ipv6("2001:2:0:5::9", "2001:2::1").Udp(53, xport).Payload(20).Build()}, 3 * kSec);
  ASSERT_EQ(reply[0].dst, "2001:2:0:c::7");
  const TestPacket received = PacketBuilder().Ipv6("2001:2:0:5::9", "2001:2:0:c::7").Udp(53, 5000).Payload(20).Build();
  const auto [n_out, err] = RunBytes(
      PacketBuilder().Ipv6("2001:2:0:c::7", "2001:2:0:5::9").Icmp(1, 4, 0, 0).Payload(received.bytes).Build(), 4 * kSec);
  ASSERT_EQ(n_out, Next::kAccept);
  EXPECT_EQ(AddrText(err.data() + 8, true), "2001:2::1");
  EXPECT_EQ(AddrText(err.data() + 48 + 24, true), "2001:2::1");
  EXPECT_EQ(LoadBe16(err.data() + 48 + 42), xport);
  EXPECT_TRUE(testing::RefL4ChecksumOk(err.data(), err.size()));
  EXPECT_TRUE(testing::RefL4ChecksumOk(err.data() + 48, received.bytes.size()));
  EXPECT_EQ(Count(ClassifyCounter::kNatIcmpErrors), 2u);
}

// A translation's edits reach every packet of its flows: later fragments (an address or a
// port-only translation) and ICMP errors about the flow too, not only what carries the ports.
TEST_F(ClassifyStageTest, ATranslationsEditsReachLaterFragmentsAndIcmpErrors) {
  Load(Masquerade{.protos = R"(["udp"])", .ports = "1024-19999", .then = R"(rewrite = { dscp = 10 }

[[rule]]
number = 2
name = "port-only"
action = "translate-source-port"
match = { family = "ipv4", src = "198.18.0.0/16", proto = ["udp"] }
translate = { ports = "20000-29999" }
rewrite = { dscp = 12 }
)"}.Toml());
  const auto masq = RunWithRewrite(testing::FragmentPacket(
      PacketBuilder().Ipv4("10.1.2.3", "198.19.0.9").Udp(5000, 53).Payload(200).Build(), 96), kSec);
  const auto port_only = RunWithRewrite(testing::FragmentPacket(
      PacketBuilder().Ipv4("198.18.0.7", "198.19.0.9").Udp(6000, 53).Payload(200).Build(), 96, 0x5151), kSec);
  ASSERT_GE(masq.size(), 3u);
  for (const auto& f : masq) {
    EXPECT_EQ(f[1] >> 2, 10);
    EXPECT_EQ(AddrText(f.data() + 12, false), "198.18.0.1");
    EXPECT_TRUE(testing::RefIpHeaderChecksumOk(f.data(), f.size()));
  }
  for (const auto& f : port_only) {
    EXPECT_EQ(f[1] >> 2, 12);
    EXPECT_TRUE(testing::RefIpHeaderChecksumOk(f.data(), f.size()));
  }
  // Later fragments ahead of their first (nothing remembered for them) get their rule's
  // edits too, under either rule.
  auto ahead = [](const char* src, uint16_t sport, uint16_t id) {
    return testing::FragmentPacket(PacketBuilder().Ipv4(src, "198.19.0.9").Udp(sport, 53).Payload(200).Build(), 96, id)
        .back();
  };
  const auto masq_ahead = RunWithRewrite({ahead("10.1.2.3", 5002, 0x6161)}, kSec);
  const auto port_only_ahead = RunWithRewrite({ahead("198.18.0.7", 6002, 0x7171)}, kSec);
  EXPECT_EQ(masq_ahead[0][1] >> 2, 10);
  EXPECT_EQ(AddrText(masq_ahead[0].data() + 12, false), "198.18.0.1");
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(masq_ahead[0].data(), masq_ahead[0].size()));
  EXPECT_EQ(port_only_ahead[0][1] >> 2, 12);
  EXPECT_EQ(AddrText(port_only_ahead[0].data() + 12, false), "198.18.0.7");
  EXPECT_TRUE(testing::RefIpHeaderChecksumOk(port_only_ahead[0].data(), port_only_ahead[0].size()));
  // A router's error about the masqueraded datagram: translated, and given the rule's DSCP.
  const uint16_t xport = LoadBe16(masq[0].data() + 20);
  const TestPacket sent = PacketBuilder().Ipv4("198.18.0.1", "198.19.0.9").Udp(xport, 53).Payload(20).Build();
  const auto err = RunWithRewrite({PacketBuilder().Ipv4("198.19.0.254", "198.18.0.1").Icmp(11, 0, 0, 0).Payload(sent.bytes).Build()},
                           2 * kSec);
  EXPECT_EQ(AddrText(err[0].data() + 16, false), "10.1.2.3");
  EXPECT_EQ(err[0][1] >> 2, 10);
  EXPECT_TRUE(testing::RefL4ChecksumOk(err[0].data(), err[0].size()));
}

// A reload that changes a translate rule's edits changes them for its live flows (they find
// the edits by rule number); one that removes the edits stops them; the flows survive both.
TEST_F(ClassifyStageTest, AReloadChangesATranslationsEditsForItsLiveFlows) {
  auto rules = [](const char* rewrite) {
    return Masquerade{.protos = R"(["udp"])", .then = rewrite}.Toml();
  };
  Load(rules("rewrite = { dscp = 10 }\n"));
  const TestPacket out = PacketBuilder().Ipv4("10.1.2.3", "198.19.0.9").Udp(5000, 53).Payload(20).Build();
  const auto first = RunWithRewrite({out}, kSec)[0];
  EXPECT_EQ(first[1] >> 2, 10);
  const uint16_t xport = LoadBe16(first.data() + 20);
  ASSERT_TRUE(handle_->ReloadText(rules("rewrite = { dscp = 20 }\n")).ok());
  const auto second = RunWithRewrite({out}, 2 * kSec)[0];
  EXPECT_EQ(second[1] >> 2, 20) << "the new edits, on the live flow";
  EXPECT_EQ(LoadBe16(second.data() + 20), xport) << "the same translation";
  ASSERT_TRUE(handle_->ReloadText(rules("")).ok());
  const auto third = RunWithRewrite({out}, 3 * kSec)[0];
  EXPECT_EQ(third[1] >> 2, 0) << "no edits any more";
  EXPECT_EQ(LoadBe16(third.data() + 20), xport);
  EXPECT_EQ(Count(ClassifyCounter::kNatCreated), 1u);
}

TEST_F(ClassifyStageTest, SteadyStateAllocatesNothing) {
  Load(kNapt);
  std::vector<TestPacket> packets;
  for (uint16_t i = 0; i < 64; ++i) packets.push_back(Udp4("198.18.0.1", static_cast<uint16_t>(1000 + i), "198.19.0.9", 53));
  Batch b;
  for (int round = 0; round < 3; ++round) {
    Fill(b, packets);
    testing::AllocationScope scope;
    stage_->Process(b, static_cast<uint64_t>(round) * kSec);
    EXPECT_EQ(scope.count(), 0u) << "round " << round;
    b.RecordVerdicts();
    b.Clear();
  }
}

}  // namespace
}  // namespace sluice
