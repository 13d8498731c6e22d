// Every way a config can be wrong that `sluice check` must catch: one case per mistake, each
// asserting the exact line:column, the dotted key and what the message says is expected.
#include <gtest/gtest.h>
#include <unistd.h>

#include "engine/rules/config_loader.h"

#include <algorithm>
#include <set>

namespace sluice {
namespace {

struct BadCase {
  const char* name;
  const char* toml;
  uint32_t line;
  uint32_t column;
  const char* key;
  const char* message;  // a substring of the message
};

// Cases use `R"(` raw strings; line 1 is the line right after `R"(`.
const BadCase kCases[] = {
    // ---- TOML itself ----
    {"syntax error", R"(a = "unterminated
)", 1, 18, "", "TOML syntax"},
    {"duplicate key", R"([io]
backend = "pcap"
backend = "nfqueue"
)", 3, 11, "backend", "cannot redefine"},
    {"duplicate table", R"([io]
[pipeline]
[io]
)", 3, 1, "io", "cannot redefine existing table"},
    {"rule not an array of tables", R"(rule = 5
)", 1, 8, "rule", "expected [[rule]] tables"},
    // ---- unknown keys ----
    {"unknown section", R"([pipelin]
shards = 1
)", 1, 2, "pipelin", "unknown key (did you mean \"pipeline\"?)"},
    {"unknown key in io", R"([io]
bakend = "pcap"
)", 2, 1, "io.bakend", "did you mean \"backend\"?"},
    {"unknown key in a rule", R"([[rule]]
number = 1
name = "a"
action = "accept"
acton = "drop"
)", 5, 1, "rule[0].acton", "unknown key"},
    {"unknown key in a match", R"([[rule]]
number = 1
name = "a"
action = "accept"
match = { dst_prt = 80 }
)", 5, 11, "rule[0].match.dst_prt", "did you mean \"dst_port\"?"},
    // ---- [io] ----
    {"backend value", R"([io]
backend = "dpdk"
)", 2, 11, "io.backend", "expected one of \"pcap\", \"nfqueue\", \"divert\", got \"dpdk\""},
    {"backend type", R"([io]
backend = 3
)", 2, 11, "io.backend", "got an integer"},
    {"queue count zero", R"([io.nfqueue]
queue_count = 0
)", 2, 15, "io.nfqueue.queue_count", "expected an integer in 1..64, got 0"},
    {"queues past 65535", R"([io.nfqueue]
queue_first = 65535
queue_count = 2
)", 3, 15, "io.nfqueue.queue_count", "run past 65535"},
    {"verdict mark outside its mask", R"([io.nfqueue]
verdict_mark = 0x10
verdict_mask = 0x20
)", 2, 16, "io.nfqueue.verdict_mark", "inside verdict_mask 0x20"},
    {"outside interface name too long", R"([io.nfqueue]
outside_interfaces = ["wan0", "an-interface-name-too-long"]
)", 2, 31, "io.nfqueue.outside_interfaces", "expected interface names of 1..15 characters, got \"an-interface-name-too-long\""},
    {"too many outside interfaces", R"([io.nfqueue]
outside_interfaces = ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9", "i10", "i11", "i12", "i13", "i14", "i15", "i16"]
)", 2, 22, "io.nfqueue.outside_interfaces", "at most 16 interfaces, got 17"},
    {"outside interface not a string", R"([io.nfqueue]
outside_interfaces = [3]
)", 2, 23, "io.nfqueue.outside_interfaces", "got an integer"},
    {"verdict mask zero", R"([io.nfqueue]
verdict_mask = 0
)", 2, 16, "io.nfqueue.verdict_mask", "non-zero mask"},
    {"rcvbuf too small", R"([io.nfqueue]
rcvbuf_bytes = 1024
)", 2, 16, "io.nfqueue.rcvbuf_bytes", "expected an integer in 65536..1073741824, got 1024"},
    {"divert port zero", R"([io.divert]
ports = [8668, 0]
)", 2, 16, "io.divert.ports", "expected divert ports in 1..65535, got 0"},
    {"divert port twice", R"([io.divert]
ports = [8668, 8668]
)", 2, 16, "io.divert.ports", "listed twice"},
    // ---- [pipeline], [parse], [nat], [classify] ----
    {"batch size", R"([pipeline]
batch_size = 300
)", 2, 14, "pipeline.batch_size", "expected an integer in 1..256, got 300"},
    {"cpu out of range", R"([pipeline]
cpus = [0, 70000]
)", 2, 12, "pipeline.cpus", "expected CPU numbers in 0..65535, got 70000"},
    {"cpu not a number", R"([pipeline]
cpus = ["0"]
)", 2, 9, "pipeline.cpus", "got a string"},
    {"cpu listed twice", R"([pipeline]
cpus = [0, 0]
)", 2, 12, "pipeline.cpus", "CPU 0 is listed twice"},
    // The graphs' own limits (engine/core/limits.h): past them, `sluice run` once bound its
    // queues and then aborted.
    {"threads past the graph's limit", R"([pipeline]
threads = 300
)", 2, 11, "pipeline.threads", "expected an integer in 0..256, got 300"},
    {"shards past the graph's limit", R"([pipeline]
shards = 65
)", 2, 10, "pipeline.shards", "expected an integer in 1..64, got 65"},
    {"queues past the graph's limit", R"([io.nfqueue]
queue_count = 80
)", 2, 15, "io.nfqueue.queue_count", "expected an integer in 1..64, got 80"},
    {"shards not one per queue", R"([io]
backend = "nfqueue"
[io.nfqueue]
queue_count = 2
[pipeline]
shards = 3
)", 6, 10, "pipeline.shards", "expected pipeline.shards = io.nfqueue.queue_count (2)"},
    {"shards not one per divert port", R"([io]
backend = "divert"
[io.divert]
ports = [8668, 8669]
)", 4, 9, "pipeline.shards", "one divert socket per shard"},
    {"pool too small", R"([pipeline]
batch_size = 256
batches_per_shard = 100
[pipeline.pool]
small_buffers = 1000
)", 5, 17, "pipeline.pool.small_buffers", "expected at least shards * batches_per_shard * batch_size = 25600"},
    {"malformed policy", R"([parse]
malformed = "ignore"
)", 2, 13, "parse.malformed", "expected one of \"pass\", \"drop\""},
    {"ipv6 extension header cap", R"([parse]
ipv6_max_ext_bytes = 5000
)", 2, 22, "parse.ipv6_max_ext_bytes", "expected an integer in 8..4096, got 5000"},
    {"flow table cap", R"([nat]
max_flows = 0
)", 2, 13, "nat.max_flows", "expected an integer in 16..16777216, got 0"},
    {"timeout zero", R"([nat]
udp_s = 0
)", 2, 9, "nat.udp_s", "expected an integer in 1..604800, got 0"},
    {"on_full value", R"([nat]
on_full = "panic"
)", 2, 11, "nat.on_full", "expected one of \"evict-oldest\", \"drop-new\""},
    {"default action", R"([classify]
default_action = "reject"
)", 2, 18, "classify.default_action", "expected one of \"accept\", \"drop\""},
    // ---- [[rule]]: identity ----
    {"rule without number", R"([[rule]]
name = "a"
action = "accept"
)", 1, 1, "rule[0].number", "missing; every rule needs number"},
    {"rule number out of range", R"([[rule]]
number = 70000
name = "a"
action = "accept"
)", 2, 10, "rule[0].number", "expected an integer in 1..65535, got 70000"},
    {"rule number used twice", R"([[rule]]
number = 10
name = "a"
action = "accept"
[[rule]]
number = 10
name = "b"
action = "accept"
)", 6, 10, "rule[1].number", "already used by rule[0]"},
    {"rule numbers out of order", R"([[rule]]
number = 20
name = "a"
action = "accept"
[[rule]]
number = 10
name = "b"
action = "accept"
)", 6, 10, "rule[1].number", "expected numbers increasing in file order"},
    {"rule name used twice", R"([[rule]]
number = 1
name = "a"
action = "accept"
[[rule]]
number = 2
name = "a"
action = "accept"
)", 7, 8, "rule[1].name", "already used by rule[0]"},
    {"empty rule name", R"([[rule]]
number = 1
name = ""
action = "accept"
)", 3, 8, "rule[0].name", "non-empty"},
    {"unknown action", R"([[rule]]
number = 1
name = "a"
action = "reject"
)", 4, 10, "rule[0].action", "expected one of \"accept\", \"drop\", \"rewrite\", \"mark\", \"count\", \"translate-source-port\""},
    // ---- [[rule]]: match ----
    {"unknown protocol", R"([[rule]]
number = 1
name = "a"
action = "drop"
match.proto = "tcpp"
)", 5, 15, "rule[0].match.proto", "got \"tcpp\""},
    {"prefix too long", R"([[rule]]
number = 1
name = "a"
action = "drop"
match.src = "10.0.0.0/33"
)", 5, 13, "rule[0].match.src", "prefix length 33 is longer than 32 bits"},
    {"host bits set", R"([[rule]]
number = 1
name = "a"
action = "drop"
match.dst = ["198.18.0.0/15", "10.1.2.3/8"]
)", 5, 31, "rule[0].match.dst", "host bits are set below the /8 prefix (did you mean 10.0.0.0/8?)"},
    {"ipv6 prefix too long", R"([[rule]]
number = 1
name = "a"
action = "drop"
match.src = "2001:db8::/129"
)", 5, 13, "rule[0].match.src", "longer than 128 bits"},
    {"address type", R"([[rule]]
number = 1
name = "a"
action = "drop"
match.src = 5
)", 5, 13, "rule[0].match.src", "expected an address or CIDR string"},
    {"port zero", R"([[rule]]
number = 1
name = "a"
action = "drop"
match = { proto = "tcp", dst_port = 0 }
)", 5, 37, "rule[0].match.dst_port", "expected a value in 1..65535, got 0"},
    {"port range reversed", R"([[rule]]
number = 1
name = "a"
action = "drop"
match = { proto = "udp", src_port = [53, "90-80"] }
)", 5, 42, "rule[0].match.src_port", "range \"90-80\" is reversed"},
    {"port above 65535", R"([[rule]]
number = 1
name = "a"
action = "drop"
match = { proto = "udp", dst_port = "1000-70000" }
)", 5, 37, "rule[0].match.dst_port", "expected values in 1..65535"},
    {"ports on icmp", R"([[rule]]
number = 1
name = "a"
action = "drop"
match = { proto = "icmp", dst_port = 80 }
)", 5, 38, "rule[0].match.dst_port", "ports need every proto to carry ports"},
    {"dscp out of range", R"([[rule]]
number = 1
name = "a"
action = "drop"
match.dscp = 64
)", 5, 14, "rule[0].match.dscp", "expected a DSCP value in 0..63"},
    {"unknown tcp flag", R"([[rule]]
number = 1
name = "a"
action = "drop"
match = { proto = "tcp", tcp_flags = "syn,urgent" }
)", 5, 38, "rule[0].match.tcp_flags", "comma-separated list of fin, syn"},
    {"tcp flags without tcp", R"([[rule]]
number = 1
name = "a"
action = "drop"
match = { tcp_flags = "syn" }
)", 5, 23, "rule[0].match.tcp_flags", "needs proto = \"tcp\""},
    {"direction value", R"([[rule]]
number = 1
name = "a"
action = "drop"
match.direction = "inbound"
)", 5, 19, "rule[0].match.direction", "expected one of \"in\", \"out\", \"any\""},
    {"length reversed", R"([[rule]]
number = 1
name = "a"
action = "drop"
match.length = "1500-64"
)", 5, 16, "rule[0].match.length", "reversed"},
    {"families never overlap", R"([[rule]]
number = 1
name = "a"
action = "drop"
match = { src = "10.0.0.0/8", dst = "2001:db8::/32" }
)", 5, 37, "rule[0].match.dst", "no address family in common"},
    {"family contradicts a prefix", R"([[rule]]
number = 1
name = "a"
action = "drop"
match = { family = "ipv6", src = "10.0.0.0/8" }
)", 5, 34, "rule[0].match.src", "is IPv4 but family = \"ipv6\""},
    {"interface name too long", R"([[rule]]
number = 1
name = "a"
action = "drop"
match.in_interface = "a-very-long-interface-name"
)", 5, 22, "rule[0].match.in_interface", "1..15 characters"},
    {"lists expand too far", R"([[rule]]
number = 1
name = "a"
action = "drop"
[rule.match]
src = ["10.0.0.0/8","10.1.0.0/16","10.2.0.0/16","10.3.0.0/16","10.4.0.0/16","10.5.0.0/16","10.6.0.0/16","10.7.0.0/16"]
dst = ["198.18.0.0/24","198.18.1.0/24","198.18.2.0/24","198.18.3.0/24","198.18.4.0/24","198.18.5.0/24","198.18.6.0/24","198.18.7.0/24"]
proto = ["tcp", "udp"]
dst_port = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33]
)", 5, 1, "rule[0].match.", "expand into 4224 match records"},
    // ---- [[rule]]: actions ----
    {"rewrite without edits table", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
)", 1, 1, "rule[0].rewrite", "missing; action \"rewrite\" needs a [rule.rewrite] table"},
    {"rewrite table on a drop rule", R"([[rule]]
number = 1
name = "a"
action = "drop"
rewrite = { ttl = 9 }
)", 5, 11, "rule[0].rewrite", "only valid with action = \"rewrite\""},
    {"a translation's rewrite with a port edit", R"([[rule]]
number = 1
name = "a"
action = "translate-source-port"
match = { proto = "tcp" }
translate = { ports = "2000-2999" }
rewrite = { mss_clamp = 1400, dst_port = 80 }
)", 7, 42, "rule[0].rewrite.dst_port", "a translation sets addresses and ports itself"},
    {"a translation's mss_clamp without tcp", R"([[rule]]
number = 1
name = "a"
action = "translate-source-port"
match = { proto = "udp" }
translate = { ports = "2000-2999" }
rewrite = { mss_clamp = 1400 }
)", 7, 25, "rule[0].rewrite.mss_clamp", "mss_clamp needs match.proto to include \"tcp\""},
    {"empty rewrite", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
[rule.rewrite]
)", 5, 1, "rule[0].rewrite.", "needs at least one edit"},
    {"ttl zero", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
rewrite.ttl = 0
)", 5, 15, "rule[0].rewrite.ttl", "expected an integer in 1..255, got 0"},
    {"ttl set and decrement", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
rewrite = { ttl = 5, ttl_decrement = true }
)", 5, 38, "rule[0].rewrite.ttl_decrement", "give only one of ttl and ttl_decrement"},
    {"dscp rewrite out of range", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
rewrite.dscp = "af44"
)", 5, 16, "rule[0].rewrite.dscp", "got \"af44\""},
    {"mss clamp too small", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
match.proto = "tcp"
rewrite.mss_clamp = 40
)", 6, 21, "rule[0].rewrite.mss_clamp", "expected an integer in 88..65495, got 40"},
    {"mss clamp without tcp", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
rewrite.mss_clamp = 1400
)", 5, 21, "rule[0].rewrite.mss_clamp", "needs match.proto = \"tcp\""},
    {"port rewrite without tcp or udp", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
rewrite.dst_port = 8080
)", 5, 20, "rule[0].rewrite.dst_port", "port rewrites need match.proto limited to tcp and udp"},
    {"two port rewrites of one side", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
match.proto = "tcp"
[rule.rewrite]
dst_port = 8080
dst_port_map = { 80 = 8080 }
)", 6, 1, "rule[0].rewrite.dst_port", "give only one of dst_port, dst_port_map and dst_port_shift"},
    {"port map key", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
match.proto = "tcp"
rewrite.dst_port_map = { http = 8080 }
)", 6, 26, "rule[0].rewrite.dst_port_map.http", "expected a port number 1..65535 as the key"},
    {"shifted range past 65535", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
match.proto = "udp"
rewrite.src_port_shift = { from = "60000-60999", to = 65000 }
)", 6, 55, "rule[0].rewrite.src_port_shift.to", "runs past 65535"},
    {"address rewrite on a dual-family rule", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
rewrite.dst_addr = "198.18.0.1"
)", 5, 20, "rule[0].rewrite.dst_addr", "IPv4 rewrite needs a rule that matches only IPv4"},
    {"prefix map lengths differ", R"([[rule]]
number = 1
name = "a"
action = "rewrite"
match.family = "ipv4"
rewrite.src_prefix_map = { from = "10.0.0.0/8", to = "198.18.0.0/15" }
)", 6, 54, "rule[0].rewrite.src_prefix_map.to", "must have the family and prefix length of from = 10.0.0.0/8"},
    // ---- marks and the loop guard ----
    {"mark collides with the loop guard", R"([[rule]]
number = 1
name = "a"
action = "mark"
mark = 0x40000000
)", 5, 8, "rule[0].mark", "collides with the loop-guard bits 0x40000000 (io.nfqueue.verdict_mask)"},
    {"mark mask overlaps the loop guard", R"([[rule]]
number = 1
name = "a"
action = "mark"
mark = 0x10
mark_mask = 0xff0000ff
)", 6, 13, "rule[0].mark_mask", "overlaps the loop-guard bits"},
    {"mark outside its mask", R"([[rule]]
number = 1
name = "a"
action = "mark"
mark = 0x100
mark_mask = 0xff
)", 5, 8, "rule[0].mark", "has bits outside mark_mask 0xff"},
    {"mark rule without a mark", R"([[rule]]
number = 1
name = "a"
action = "mark"
)", 1, 1, "rule[0].mark", "missing; action \"mark\" needs mark"},
    {"rewrite mark collides with the loop guard", R"([io.nfqueue]
verdict_mark = 0x1
verdict_mask = 0x1
[[rule]]
number = 1
name = "a"
action = "rewrite"
rewrite.mark = 0x3
)", 8, 16, "rule[0].rewrite.mark", "collides with the loop-guard bits 0x1"},
    // ---- translate-source-port ----
    {"translate without ports", R"([[rule]]
number = 1
name = "a"
action = "translate-source-port"
match.proto = "tcp"
translate.address = "198.18.0.1"
match.family = "ipv4"
)", 6, 1, "rule[0].translate.ports", "missing; expected ports = \"lo-hi\""},
    {"translate range reversed", R"([[rule]]
number = 1
name = "a"
action = "translate-source-port"
match.proto = "udp"
translate.ports = "30000-20000"
)", 6, 19, "rule[0].translate.ports", "reversed"},
    {"translate range smaller than the shards", R"([pipeline]
shards = 4
[[rule]]
number = 1
name = "a"
action = "translate-source-port"
match.proto = "udp"
translate.ports = "20000-20002"
)", 8, 19, "rule[0].translate.ports", "the range has 3 ports but pipeline.shards = 4"},
    {"translate protocols", R"([[rule]]
number = 1
name = "a"
action = "translate-source-port"
match.proto = ["tcp", "gre"]
translate.ports = "20000-29999"
)", 5, 15, "rule[0].match.proto", "limited to tcp, udp, icmp and icmp6"},
    {"translate without protocols", R"([[rule]]
number = 1
name = "a"
action = "translate-source-port"
translate.ports = "20000-29999"
)", 4, 10, "rule[0].match.proto", "limited to tcp, udp, icmp and icmp6"},
    {"overlapping translation ranges", R"([[rule]]
number = 1
name = "a"
action = "translate-source-port"
match = { proto = "tcp", dst = "198.18.0.0/16" }
translate.ports = "20000-29999"
[[rule]]
number = 2
name = "b"
action = "translate-source-port"
match = { proto = "tcp", dst = "198.19.0.0/16" }
translate.ports = "29000-39999"
)", 12, 19, "rule[1].translate.ports", "overlap rule[0] (number 1)'s 20000-29999"},
    {"translate address with several shards", R"([io]
backend = "nfqueue"
[io.nfqueue]
queue_count = 2
[pipeline]
shards = 2
[[rule]]
number = 1
name = "a"
action = "translate-source-port"
match = { proto = "tcp", family = "ipv4" }
translate = { ports = "20000-29999", address = "198.18.0.1" }
)", 12, 48, "rule[0].translate.address", "use one shard or translate ports only"},
    {"translate table on an accept rule", R"([[rule]]
number = 1
name = "a"
action = "accept"
translate.ports = "20000-29999"
)", 5, 1, "rule[0].translate", "only valid with action = \"translate-source-port\""},
};

TEST(BadConfigTest, EveryCaseIsReportedWhereItIs) {
  ASSERT_GE(std::size(kCases), 30u);
  for (const BadCase& c : kCases) {
    SCOPED_TRACE(c.name);
    const ConfigLoad load = LoadConfigText(c.toml, "bad.toml");
    EXPECT_FALSE(load.ok());
    ASSERT_FALSE(load.errors.empty());
    std::string all;
    for (const ConfigError& e : load.errors) all += "\n  " + e.ToString();
    ASSERT_EQ(load.errors.size(), 1u) << "one mistake, one error:" << all;
    const ConfigError& e = load.errors.front();
    EXPECT_EQ(e.file, "bad.toml");
    EXPECT_EQ(e.line, c.line) << all;
    EXPECT_EQ(e.column, c.column) << all;
    EXPECT_EQ(e.key, c.key) << all;
    EXPECT_NE(e.message.find(c.message), std::string::npos) << "want \"" << c.message << "\" in" << all;
  }
}

TEST(BadConfigTest, NamesAreUnique) {
  std::set<std::string> names;
  for (const BadCase& c : kCases) EXPECT_TRUE(names.insert(c.name).second) << c.name;
}

TEST(BadConfigTest, AllErrorsAreReportedInFileOrder) {
  const ConfigLoad load = LoadConfigText(R"([pipeline]
batch_size = 0
[nat]
udp_s = 0
[[rule]]
number = 1
name = "a"
action = "nope"
)",
                                         "bad.toml");
  ASSERT_EQ(load.errors.size(), 3u);
  EXPECT_EQ(load.errors[0].key, "pipeline.batch_size");
  EXPECT_EQ(load.errors[1].key, "nat.udp_s");
  EXPECT_EQ(load.errors[2].key, "rule[0].action");
  EXPECT_EQ(load.errors[2].ToString().rfind("bad.toml:8:10: rule[0].action: expected one of", 0), 0u);
  const Status s = load.ToStatus();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(std::count(s.message().begin(), s.message().end(), '\n'), 2);
}

TEST(BadConfigTest, MissingFileIsAnError) {
  const ConfigLoad load = LoadConfigFile("/nonexistent/sluice.toml");
  ASSERT_EQ(load.errors.size(), 1u);
  EXPECT_NE(load.errors[0].message.find("cannot open"), std::string::npos);
}

// A directory once read as an empty file: a valid config with no rules, which `sluice check`
// called OK and `replay` ran with, accepting everything.
TEST(BadConfigTest, ADirectoryIsAnError) {
  const ConfigLoad load = LoadConfigFile("/tmp");
  ASSERT_EQ(load.errors.size(), 1u);
  EXPECT_FALSE(load.config.has_value());
  EXPECT_EQ(load.errors[0].file, "/tmp");
  EXPECT_NE(load.errors[0].message.find("Is a directory"), std::string::npos) << load.errors[0].message;
}

// `sluice replay -s N` runs the file's rules on N shards, not the file's pipeline.shards: the
// checks that depend on the count run again for N, and say where N came from.
TEST(BadConfigTest, RulesAreCheckedAgainForAnotherShardCount) {
  const ConfigLoad load = LoadConfigText(R"(
[[rule]]
number = 10
name = "two-ports"
action = "translate-source-port"
match = { proto = "udp" }
translate = { ports = "2000-2001" }

[[rule]]
number = 20
name = "masquerade"
action = "translate-source-port"
match = { family = "ipv4", proto = "tcp" }
translate = { ports = "1024-1999", address = "198.18.0.1" }
)",
                                         "x.toml");
  ASSERT_TRUE(load.ok()) << load.errors[0].ToString();
  EXPECT_TRUE(CheckRulesForShards(*load.config, 1, "--shards").empty());
  const std::vector<ConfigError> errors = CheckRulesForShards(*load.config, 4, "--shards");
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].ToString(),
            "x.toml:2:1: rule[0].translate.ports: the range has 2 ports but --shards = 4; each shard needs at least one");
  EXPECT_EQ(errors[1].key, "rule[1].translate.address");
  EXPECT_EQ(errors[1].line, 9u);
  EXPECT_NE(errors[1].message.find("--shards > 1"), std::string::npos) << errors[1].message;
  EXPECT_EQ(CheckRulesForShards(*load.config, 2, "--shards").size(), 1u) << "two ports do for two shards";
}

// A pipe (`sluice check -c <(generate-config)`) is read like a file.
TEST(BadConfigTest, APipeIsReadLikeAFile) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const std::string text = "[[rule]]\nnumber = 1\nname = \"u\"\naction = \"drop\"\nmatch = { proto = \"udp\" }\n";
  ASSERT_EQ(write(fds[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fds[1]);
  const ConfigLoad load = LoadConfigFile("/proc/self/fd/" + std::to_string(fds[0]));
  close(fds[0]);
  ASSERT_TRUE(load.ok()) << (load.errors.empty() ? "" : load.errors[0].message);
  EXPECT_EQ(load.config->rules.size(), 1u);
}

}  // namespace
}  // namespace sluice
