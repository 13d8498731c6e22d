// Good configs: every section's values land in the typed Config, defaults fill the rest, and
// the three TOML spellings of a rule (inline, dotted, sub-table) mean the same thing.
#include <gtest/gtest.h>

#include "engine/rules/config_loader.h"

namespace sluice {
namespace {

Config Load(std::string_view text) {
  ConfigLoad load = LoadConfigText(text, "good.toml");
  EXPECT_TRUE(load.ok()) << load.ToStatus().message();
  return load.ok() ? *load.config : Config{};
}

TEST(ConfigTest, EmptyFileIsAllDefaults) {
  const Config c = Load("");
  EXPECT_EQ(c.io.backend, Backend::kPcap);
  EXPECT_EQ(c.io.nfqueue.queue_maxlen, 8192u);
  EXPECT_EQ(c.io.nfqueue.verdict_mark, 0x40000000u);
  EXPECT_EQ(c.pipeline.batch_size, 64u);
  EXPECT_EQ(c.pipeline.shards, 1u);
  EXPECT_EQ(c.parse.malformed, MalformedPolicy::kPass);
  EXPECT_EQ(c.nat.max_flows, 65536u);
  EXPECT_EQ(c.nat.tcp_established_s, 7440u);
  EXPECT_EQ(c.classify.default_action, DefaultAction::kAccept);
  EXPECT_TRUE(c.rules.empty());
  EXPECT_EQ(c.source, "good.toml");
}

TEST(ConfigTest, EverySectionIsRead) {
  const Config c = Load(R"(
[io]
backend = "nfqueue"
[io.nfqueue]
queue_first = 4
queue_count = 2
queue_maxlen = 4096
rcvbuf_bytes = 0x100000
fail_open = false
gso = false
verdict_mark = 0x100
verdict_mask = 0xf00
outside_interfaces = ["wan0", "ppp0"]
watch_links = false
[io.pcap]
input = "a.pcap"
output = "b.pcap"
[io.divert]
ports = [9000, 9001]
rcvbuf_bytes = 131072
[pipeline]
batch_size = 128
batch_timeout_us = 50
threads = 3
shards = 2
batches_per_shard = 4
cpus = [0]
[pipeline.pool]
small_buffers = 5000
large_buffers = 8
[parse]
malformed = "drop"
ipv6_max_ext_headers = 4
ipv6_max_ext_bytes = 256
[nat]
max_flows = 1000
seed = 42
on_full = "drop-new"
tcp_established_s = 100
tcp_transitory_s = 20
tcp_closed_s = 3
udp_s = 40
icmp_s = 5
[classify]
default_action = "drop"
)");
  EXPECT_EQ(c.io.backend, Backend::kNfqueue);
  EXPECT_EQ(c.io.nfqueue.queue_first, 4);
  EXPECT_EQ(c.io.nfqueue.queue_count, 2);
  EXPECT_EQ(c.io.nfqueue.queue_maxlen, 4096u);
  EXPECT_EQ(c.io.nfqueue.rcvbuf_bytes, 0x100000u);
  EXPECT_FALSE(c.io.nfqueue.fail_open);
  EXPECT_FALSE(c.io.nfqueue.gso);
  EXPECT_EQ(c.io.nfqueue.verdict_mark, 0x100u);
  EXPECT_EQ(c.io.nfqueue.verdict_mask, 0xf00u);
  EXPECT_EQ(c.io.nfqueue.outside_interfaces, (std::vector<std::string>{"wan0", "ppp0"}));
  EXPECT_FALSE(c.io.nfqueue.watch_links);
  EXPECT_EQ(c.io.pcap.input, "a.pcap");
  EXPECT_EQ(c.io.pcap.output, "b.pcap");
  EXPECT_EQ(c.io.divert.ports, (std::vector<uint16_t>{9000, 9001}));
  EXPECT_EQ(c.io.divert.rcvbuf_bytes, 131072u);
  EXPECT_EQ(c.pipeline.batch_size, 128u);
  EXPECT_EQ(c.pipeline.batch_timeout_us, 50u);
  EXPECT_EQ(c.pipeline.threads, 3u);
  EXPECT_EQ(c.pipeline.shards, 2u);
  EXPECT_EQ(c.pipeline.batches_per_shard, 4u);
  EXPECT_EQ(c.pipeline.cpus, std::vector<uint32_t>{0});
  EXPECT_EQ(c.pipeline.pool.small_buffers, 5000u);
  EXPECT_EQ(c.pipeline.pool.large_buffers, 8u);
  EXPECT_EQ(c.parse.malformed, MalformedPolicy::kDrop);
  EXPECT_EQ(c.parse.ipv6.max_headers, 4);
  EXPECT_EQ(c.parse.ipv6.max_bytes, 256);
  EXPECT_EQ(c.nat.max_flows, 1000u);
  EXPECT_EQ(c.nat.seed, 42u);
  EXPECT_EQ(c.nat.on_full, NatFullPolicy::kDropNew);
  EXPECT_EQ(c.nat.tcp_established_s, 100u);
  EXPECT_EQ(c.nat.tcp_transitory_s, 20u);
  EXPECT_EQ(c.nat.tcp_closed_s, 3u);
  EXPECT_EQ(c.nat.udp_s, 40u);
  EXPECT_EQ(c.nat.icmp_s, 5u);
  EXPECT_EQ(c.classify.default_action, DefaultAction::kDrop);
}

// Whether pipeline.cpus exist is the running host's question, not the file's: the load takes
// any CPU number (`sluice check` on a smaller machine passes), and sluice run asks
// CheckCpusForThisHost, which names each missing CPU where it stands.
TEST(ConfigTest, CpusAreCheckedAgainstTheHostThatRunsThem) {
  const ConfigLoad load = LoadConfigText("[pipeline]\ncpus = [1,\n        3000, 0]\n", "x.toml");
  ASSERT_TRUE(load.ok()) << load.ToStatus().message();
  EXPECT_EQ(load.config->pipeline.cpus, (std::vector<uint32_t>{1, 3000, 0}));
  const std::vector<uint32_t> host = {0, 1};
  const std::vector<ConfigError> errors = CheckCpusForThisHost(*load.config, host);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].ToString(),
            "x.toml:3:9: pipeline.cpus: CPU 3000 is not one this process may run on here (0 1)");
  EXPECT_TRUE(CheckCpusForThisHost(*load.config, std::vector<uint32_t>{0, 1, 3000}).empty());
  // Where a CPU stands is no part of the config: the same list elsewhere in the file is equal.
  const ConfigLoad moved = LoadConfigText("\n[pipeline]\ncpus = [1, 3000, 0]\n", "x.toml");
  ASSERT_TRUE(moved.ok());
  EXPECT_TRUE(moved.config->pipeline == load.config->pipeline);
}

TEST(ConfigTest, MatchValuesInAllTheirForms) {
  const Config c = Load(R"(
[[rule]]
number = 7
name = "everything"
action = "count"
[rule.match]
family = "ipv4"
proto = ["udp", 6, "tcp"]
src = ["198.18.0.0/15", "10.0.0.1"]
dst = "192.0.2.0/24"
src_port = [53, "1024-2047"]
dst_port = "80"
direction = "out"
in_interface = "eth0"
out_interface = "wg0"
dscp = ["ef", 10, "cs1"]
length = "64-1500"
)");
  ASSERT_EQ(c.rules.size(), 1u);
  const RuleConfig& r = c.rules[0];
  EXPECT_EQ(r.number, 7u);
  EXPECT_EQ(r.name, "everything");
  EXPECT_EQ(r.action, RuleAction::kCount);
  EXPECT_EQ(r.where.line, 2u);
  const MatchSpec& m = r.match;
  EXPECT_EQ(m.family, L3Type::kIpv4);
  EXPECT_EQ(m.protos, (std::vector<uint8_t>{6, 17})) << "sorted, duplicates merged";
  ASSERT_EQ(m.src.size(), 2u);
  EXPECT_EQ(ToString(m.src[0]), "198.18.0.0/15");
  EXPECT_EQ(ToString(m.src[1]), "10.0.0.1/32");
  EXPECT_EQ(ToString(m.dst.at(0)), "192.0.2.0/24");
  EXPECT_EQ(m.src_ports, (std::vector<PortRange>{{53, 53}, {1024, 2047}}));
  EXPECT_EQ(m.dst_ports, (std::vector<PortRange>{{80, 80}}));
  EXPECT_EQ(m.direction, Direction::kOut);
  EXPECT_EQ(m.in_interface, "eth0");
  EXPECT_EQ(m.out_interface, "wg0");
  EXPECT_EQ(m.dscp, (uint64_t{1} << 46) | (uint64_t{1} << 10) | (uint64_t{1} << 8));
  ASSERT_TRUE(m.length);
  EXPECT_EQ(*m.length, (LengthRange{64, 1500}));
}

// NFQUEUE rules on direction with no outside interface match nothing forwarded: said, not an error.
TEST(ConfigTest, DirectionRulesWithoutOutsideInterfacesGetANote) {
  const std::string rules = R"(
[[rule]]
number = 7
name = "no-telnet-in"
action = "drop"
match = { direction = "in", proto = "tcp", dst_port = 23 }
[[rule]]
number = 8
name = "no-discard"
action = "drop"
match = { proto = "udp", dst_port = 9 }
)";
  const Config without = Load("[io]\nbackend = \"nfqueue\"\n" + rules);
  EXPECT_NE(DirectionNote(without).find("1 rule matches on direction (rule 7)"), std::string::npos) << DirectionNote(without);
  const Config with = Load("[io]\nbackend = \"nfqueue\"\n[io.nfqueue]\noutside_interfaces = \"wan0\"\n" + rules);
  EXPECT_EQ(with.io.nfqueue.outside_interfaces, std::vector<std::string>{"wan0"});
  EXPECT_EQ(DirectionNote(with), "");
  EXPECT_EQ(DirectionNote(Load("[io]\nbackend = \"divert\"\n" + rules)), "");  // divert knows its direction
}

// SIGHUP applies rules only: what else changed is named, and a new loop guard is flagged.
TEST(ConfigTest, ReloadNamesTheStartOnlySectionsThatChangedAndFlagsANewLoopGuard) {
  const std::string rule = "[[rule]]\nnumber = 1\nname = \"r\"\naction = \"drop\"\nmatch = { proto = \"tcp\" }\n";
  const Config base = Load("[io]\nbackend = \"nfqueue\"\n" + rule);
  const Config more_rules = Load("[io]\nbackend = \"nfqueue\"\n" + rule +
                                 "[[rule]]\nnumber = 2\nname = \"s\"\naction = \"drop\"\nmatch = { proto = \"udp\" }\n");
  ReloadCheck r = CompareForReload(base, more_rules);
  EXPECT_TRUE(r.start_only.empty());
  EXPECT_FALSE(r.guard_changed);

  const Config other = Load("[io]\nbackend = \"nfqueue\"\n[io.nfqueue]\nqueue_maxlen = 100\n[pipeline]\nbatch_size = 32\n"
                            "[nat]\nudp_s = 60\n[parse]\nmalformed = \"drop\"\n" + rule);
  r = CompareForReload(base, other);
  EXPECT_EQ(r.start_only, (std::vector<std::string>{"io", "pipeline", "parse", "nat"}));
  EXPECT_FALSE(r.guard_changed);

  const Config guard = Load("[io]\nbackend = \"nfqueue\"\n[io.nfqueue]\nverdict_mark = 0x2\nverdict_mask = 0x2\n" + rule);
  r = CompareForReload(base, guard);
  EXPECT_TRUE(r.guard_changed);
  EXPECT_EQ(r.start_only, std::vector<std::string>{"io"});
}

TEST(ConfigTest, TcpFlagsBecomeMaskAndValue) {
  const Config c = Load(R"(
[[rule]]
number = 1
name = "syn-only"
action = "drop"
match = { proto = "tcp", tcp_flags = "syn, !ack, !rst" }
)");
  EXPECT_EQ(c.rules[0].match.tcp_flags, (TcpFlagsMatch{0x16, 0x02}));
}

TEST(ConfigTest, InlineDottedAndSubTableRulesAreTheSame) {
  const char* forms[] = {
      R"([[rule]]
number = 1
name = "r"
action = "rewrite"
match = { proto = "tcp", dst_port = 80 }
rewrite = { dst_port = 8080, dscp = "af21" }
)",
      R"([[rule]]
number = 1
name = "r"
action = "rewrite"
match.proto = "tcp"
match.dst_port = 80
rewrite.dst_port = 8080
rewrite.dscp = "af21"
)",
      R"([[rule]]
number = 1
name = "r"
action = "rewrite"
[rule.match]
proto = "tcp"
dst_port = 80
[rule.rewrite]
dst_port = 8080
dscp = 18
)"};
  for (const char* f : forms) {
    const Config c = Load(f);
    ASSERT_EQ(c.rules.size(), 1u);
    EXPECT_EQ(c.rules[0].match.dst_ports, (std::vector<PortRange>{{80, 80}}));
    EXPECT_EQ(c.rules[0].rewrite.dst_port.kind, PortEdit::Kind::kSet);
    EXPECT_EQ(c.rules[0].rewrite.dst_port.port, 8080);
    EXPECT_EQ(c.rules[0].rewrite.dscp, 18);
  }
}

TEST(ConfigTest, RewriteEdits) {
  const Config c = Load(R"(
[[rule]]
number = 1
name = "r"
action = "rewrite"
match = { family = "ipv4", proto = "udp" }
[rule.rewrite]
src_prefix_map = { from = "10.1.0.0/16", to = "198.18.0.0/16" }
dst_addr = "198.19.0.1"
src_port_map = { 53 = 5353, 123 = 1123 }
dst_port_shift = { from = "8000-8099", to = 9000 }
ttl = 32
mark = 0x5
mark_mask = 0xf
full_checksum = true
)");
  const RewriteSpec& w = c.rules[0].rewrite;
  EXPECT_EQ(w.src_addr.kind, AddressEdit::Kind::kPrefixMap);
  EXPECT_EQ(ToString(w.src_addr.from), "10.1.0.0/16");
  EXPECT_EQ(ToString(w.src_addr.to), "198.18.0.0/16");
  EXPECT_EQ(w.dst_addr.kind, AddressEdit::Kind::kSet);
  EXPECT_EQ(ToString(w.dst_addr.addr), "198.19.0.1");
  EXPECT_EQ(w.src_port.kind, PortEdit::Kind::kMap);
  EXPECT_EQ(w.src_port.map, (std::vector<std::pair<uint16_t, uint16_t>>{{53, 5353}, {123, 1123}}));
  EXPECT_EQ(w.dst_port.kind, PortEdit::Kind::kShift);
  EXPECT_EQ(w.dst_port.from, (PortRange{8000, 8099}));
  EXPECT_EQ(w.dst_port.to, 9000);
  EXPECT_EQ(w.ttl, 32);
  ASSERT_TRUE(w.mark);
  EXPECT_EQ(*w.mark, (MarkSpec{0x5, 0xf}));
  EXPECT_TRUE(w.full_checksum);
}

TEST(ConfigTest, MarkMaskDefaultsToEveryBitButTheLoopGuard) {
  const Config c = Load(R"(
[io.nfqueue]
verdict_mark = 0x1
verdict_mask = 0x1
[[rule]]
number = 1
name = "m"
action = "mark"
mark = 0x10
)");
  EXPECT_EQ(c.rules[0].mark, (MarkSpec{0x10, 0xfffffffe}));
}

TEST(ConfigTest, TranslationsWithAndWithoutAnAddress) {
  const Config c = Load(R"(
[[rule]]
number = 1
name = "keep"
action = "translate-source-port"
match = { proto = ["tcp", "udp"] }
translate = { ports = "20000-29999" }
[[rule]]
number = 2
name = "alias"
action = "translate-source-port"
match = { family = "ipv6", proto = "icmp6" }
translate = { ports = "40000-40999", address = "2001:db8::1" }
)");
  EXPECT_EQ(c.rules[0].translate.ports, (PortRange{20000, 29999}));
  EXPECT_FALSE(c.rules[0].translate.address);
  ASSERT_TRUE(c.rules[1].translate.address);
  EXPECT_EQ(ToString(*c.rules[1].translate.address), "2001:db8::1");
}

}  // namespace
}  // namespace sluice
