// Rewritten packets, written with libpcap, checked by tshark (Wireshark's dissectors, an
// implementation independent of sluice's): every IPv4 header, TCP, UDP, ICMP and ICMPv6
// checksum must verify, fragmented UDP datagrams included (tshark reassembles them and
// checks the datagram). A second capture with deliberately broken checksums proves the
// check itself can fail. Needs tshark (tools/bootstrap installs it): missing is a failure.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/byte_order.h"
#include "engine/stages/parse/parse_stage.h"
#include "engine/stages/rewrite/rewrite_stage.h"
#include "tests/testing/external_tool.h"
#include "tests/testing/guarded_packet.h"
#include "tests/testing/pcap_file.h"
#include "tests/testing/random_traffic.h"

namespace sluice {
namespace {

using testing::TestPacket;

constexpr int kDltEthernet = 1;
const char* const kFields[] = {"ip", "tcp", "udp", "icmp", "icmpv6"};

// Puts a raw-link packet behind an Ethernet header.
TestPacket OverEthernet(const TestPacket& raw) {
  TestPacket p = raw;
  const bool v6 = (raw.bytes[0] >> 4) == 6;
  const uint8_t eth[14] = {0x02,
                           0,
                           0,
                           0,
                           0,
                           2,
                           0x02,
                           0,
                           0,
                           0,
                           0,
                           1,
                           static_cast<uint8_t>(v6 ? 0x86 : 0x08),
                           static_cast<uint8_t>(v6 ? 0xdd : 0x00)};
  p.bytes.insert(p.bytes.begin(), eth, eth + 14);
  p.link = LinkType::kEthernet;
  return p;
}

// Good (1) and bad (0) checksum statuses per protocol, over every occurrence in every frame.
struct Verdicts {
  std::map<std::string, int> good, bad;
  int frames = 0;
};

// A Wireshark configuration directory in which every protocol except the ones checked here
// (and their option sub-dissectors) is disabled: random payloads must not be dissected as
// some port's protocol with an inner IP header of its own, whose checksum would be garbage.
void WriteTsharkConfig(const std::string& dir) {
  const testing::ToolRun all = testing::RunTool("tshark -G protocols");
  ASSERT_EQ(all.exit_code, 0) << all.errors;
  std::ofstream out(dir + "/disabled_protos");
  const auto keep = [](const std::string& name) {
    for (const char* p : {"frame", "eth", "ethertype", "vlan", "ip", "ipv6", "tcp", "udp", "icmp",
                          "icmpv6", "ah", "data"}) {
      const std::string_view base(p);
      if (name == base || (name.rfind(base, 0) == 0 && name.size() > base.size() &&
                           name[base.size()] == '.')) {
        return true;
      }
    }
    return false;
  };
  std::istringstream lines(all.output);
  std::string line;
  int disabled = 0;
  while (std::getline(lines, line)) {
    std::vector<std::string> cols;
    std::istringstream cells(line);
    std::string col;
    while (std::getline(cells, col, '\t')) cols.push_back(col);
    if (cols.size() >= 3 && !keep(cols[2])) {
      out << cols[2] << "\n";
      ++disabled;
    }
  }
  ASSERT_GT(disabled, 1000);
}

Verdicts TsharkChecksums(const std::string& config_dir, const std::string& pcap) {
  std::string cmd =
      "WIRESHARK_CONFIG_DIR=" + config_dir + " tshark -n -r " + pcap +
      " -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
      " -T fields -e frame.number";
  for (const char* f : kFields) cmd += std::string(" -e ") + f + ".checksum.status";
  const testing::ToolRun run = testing::RunTool(cmd);
  EXPECT_EQ(run.exit_code, 0) << cmd << "\n" << run.errors;
  Verdicts v;
  std::istringstream lines(run.output);
  std::string line;
  while (std::getline(lines, line)) {
    ++v.frames;
    std::vector<std::string> cols;
    std::string col;
    std::istringstream cells(line);
    while (std::getline(cells, col, '\t')) cols.push_back(col);
    for (std::size_t k = 1; k < cols.size() && k <= std::size(kFields); ++k) {
      std::istringstream values(cols[k]);
      std::string value;
      while (std::getline(values, value, ',')) {
        if (value == "1") ++v.good[kFields[k - 1]];
        if (value == "0") ++v.bad[kFields[k - 1]];
      }
    }
  }
  return v;
}

// What a checker must find in one rewritten frame (per protocol, 0 or 1).
void Expect(const PacketBuffer& b, std::map<std::string, int>& want) {
  const PacketMeta& m = b.meta();
  if (m.l3 == L3Type::kIpv4) ++want["ip"];
  if (!(m.flags & pkt_flag::kL4Valid) || (m.flags & pkt_flag::kFragment)) return;
  const uint8_t* l4 = b.data() + m.l4_off;
  switch (m.l4_proto) {
    case 6:
      ++want["tcp"];
      break;
    case 17:
      want["udp"] += LoadBe16(l4 + 6) != 0;
      break;  // IPv4 UDP 0: no checksum
    case 1:
      ++want["icmp"];
      break;
    case 58:
      ++want["icmpv6"];
      break;
    default:
      break;
  }
}

TEST(RewriteTshark, EveryRewrittenChecksumVerifies) {
  ASSERT_TRUE(testing::HaveTool("tshark")) << "tshark is missing: run tools/bootstrap";
  const uint64_t seed = testing::SeedFromEnv();
  std::printf("tshark check: seed %lu\n", seed);
  testing::RandomTraffic gen(seed);
  testing::TrafficOptions traffic;
  traffic.icmp_echo_only = true;  // error types carry inner packets tshark would check too
  traffic.other_protocols = false;
  traffic.link_variety = false;  // one pcap, one link type
  traffic.min_ttl = 4;           // a decrement of at most 3 never expires
  testing::PlanOptions plan_opts;

  // Whole packets, then fragmented UDP datagrams (every fragment of one datagram shares
  // its plan, as a rule matching the flow would).
  std::vector<TestPacket> input;
  std::vector<int> plan_of;
  std::vector<RewritePlan> plans;
  for (int i = 0; i < 3000; ++i) {
    input.push_back(gen.Packet(traffic));
    const bool v6 = (input.back().bytes[14] >> 4) == 6;
    plans.push_back(gen.Plan(v6, plan_opts));
    plan_of.push_back(static_cast<int>(plans.size()) - 1);
  }
  int datagrams = 0;
  for (int i = 0; i < 200; ++i) {
    const bool v6 = gen.Coin();
    const TestPacket whole = gen.Datagram(v6, 1000 + gen.U(3000));
    plans.push_back(gen.Plan(v6, plan_opts));
    const auto frags = testing::FragmentPacket(whole, 8 * (64 + gen.U(120)), 1000 + i);
    for (const TestPacket& f : frags) {
      input.push_back(OverEthernet(f));
      plan_of.push_back(static_cast<int>(plans.size()) - 1);
    }
    datagrams += frags.size() > 1;  // one piece is a whole packet, counted as such
  }

  ParseStage parse({});
  RewriteStage rewrite;
  testing::GuardedPacket slot(4096);
  std::vector<std::vector<uint8_t>> output;
  std::map<std::string, int> want;
  for (std::size_t i = 0; i < input.size(); ++i) {
    Batch batch;
    batch.Push(PacketRef(&slot.Load(input[i].bytes, input[i].link)));
    parse.Process(batch);
    ASSERT_EQ(batch.next(0), Next::kClassify) << Name(batch.reason(0));
    batch.set_next(0, Next::kRewrite);
    batch.set_plan(0, &plans[plan_of[i]]);
    rewrite.Process(batch);
    ASSERT_EQ(batch.next(0), Next::kAccept);
    const PacketBuffer& b = batch.packet(0);
    output.emplace_back(b.data(), b.data() + b.len());
    Expect(b, want);
    testing::ReleaseAll(batch);
  }
  want["udp"] += datagrams;  // each reassembled datagram is checked once
  EXPECT_GT(rewrite.counters().Load(RewriteCounter::kRewritten), input.size() / 2);

  testing::TempDir dir;
  WriteTsharkConfig(dir.path());
  ASSERT_TRUE(testing::WritePcap(dir.File("rewritten.pcap"), kDltEthernet, output));
  const Verdicts v = TsharkChecksums(dir.path(), dir.File("rewritten.pcap"));
  EXPECT_EQ(v.frames, static_cast<int>(output.size()));
  for (const char* f : kFields) {
    std::printf("  %-7s good %5d  bad %d  (expected %d good)\n", f,
                v.good.count(f) ? v.good.at(f) : 0, v.bad.count(f) ? v.bad.at(f) : 0, want[f]);
    EXPECT_EQ(v.bad.count(f) ? v.bad.at(f) : 0, 0) << f << " checksums tshark calls bad";
    EXPECT_EQ(v.good.count(f) ? v.good.at(f) : 0, want[f]) << f << " checksums tshark verified";
  }

  // The control: one broken checksum of each kind must be seen as bad.
  std::vector<std::vector<uint8_t>> broken;
  std::map<std::string, int> broken_want;
  for (std::size_t i = 0; i < output.size() && broken_want.size() < 5; ++i) {
    TestPacket p{LinkType::kEthernet, output[i], 0, 0, 0};
    testing::GuardedPacket g(4096);
    PacketBuffer& b = g.Load(p.bytes, p.link);
    ParseCounts c{};
    ASSERT_EQ(ParsePacket(b, ParseConfig{}, c), DropReason::kNone);
    const PacketMeta& m = b.meta();
    if (!(m.flags & pkt_flag::kL4Valid) || (m.flags & pkt_flag::kFragment)) continue;
    std::string kind;
    std::size_t at = 0;
    switch (m.l4_proto) {
      case 6:
        kind = "tcp";
        at = m.l4_off + 16;
        break;
      case 17:
        kind = "udp";
        at = m.l4_off + 6;
        break;
      case 1:
        kind = "icmp";
        at = m.l4_off + 2;
        break;
      case 58:
        kind = "icmpv6";
        at = m.l4_off + 2;
        break;
      default:
        continue;
    }
    if (m.l3 == L3Type::kIpv4 && !broken_want.count("ip")) {
      kind = "ip";
      at = m.l3_off + 10;
    }
    if (broken_want.count(kind) || (kind == "udp" && LoadBe16(&p.bytes[at]) == 0)) continue;
    p.bytes[at] ^= 0x5a;
    broken.push_back(p.bytes);
    broken_want[kind] = 1;
  }
  ASSERT_EQ(broken_want.size(), 5u);
  ASSERT_TRUE(testing::WritePcap(dir.File("broken.pcap"), kDltEthernet, broken));
  const Verdicts bv = TsharkChecksums(dir.path(), dir.File("broken.pcap"));
  for (const char* f : kFields) {
    EXPECT_EQ(bv.bad.count(f) ? bv.bad.at(f) : 0, 1) << "tshark did not catch a broken " << f;
  }
}

}  // namespace
}  // namespace sluice
