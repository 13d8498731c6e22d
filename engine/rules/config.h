// Config: the typed, validated form of a sluice TOML file (docs/config.md is the user's guide).
//
// Everything the process reads from its config file is here, as plain structs with defaults:
// the I/O backends and the graph consume IoConfig / PipelineConfig / ParseConfig; the rule
// compiler consumes NatConfig, ClassifyConfig and the ordered `rules`. Nothing here is parsed
// or looked up on the data path: LoadConfigText / LoadConfigFile (config_loader.h) build a
// Config once, check every value and every cross-field constraint, and either return a
// complete Config or a list of errors with file:line:column — never a half-filled one.
//
// Units are in the names (`_us`, `_s`, `_bytes`). Ranges quoted in comments are enforced by the
// loader.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/packet/packet_buffer.h"
#include "engine/pool/buffer_pool.h"
#include "engine/rules/ip_addr.h"
#include "engine/stages/parse/parse_stage.h"

namespace sluice {

// ---- [io] ---------------------------------------------------------------------------------

enum class Backend : uint8_t { kPcap = 0, kNfqueue, kDivert };

struct PcapIoConfig {
  std::string input;   // pcap/pcapng to read; "" = named on the command line
  std::string output;  // pcap to write the packets sluice accepts to; "" = none
  bool operator==(const PcapIoConfig&) const = default;
};

// Linux NFQUEUE. One queue per shard: queues queue_first .. queue_first + queue_count - 1
// (iptables `--queue-balance first:last`), so pipeline.shards == queue_count.
struct NfqueueIoConfig {
  uint16_t queue_first = 0;               // 0..65535
  uint16_t queue_count = 1;               // 1..1024, queue_first + queue_count <= 65536
  uint32_t queue_maxlen = 8192;           // NFQA_CFG_QUEUE_MAXLEN, 1..1048576 (kernel default 1024)
  uint32_t rcvbuf_bytes = 8u << 20;       // SO_RCVBUFFORCE, 65536..1 GiB
  bool fail_open = true;                  // NFQA_CFG_F_FAIL_OPEN: accept, not drop, when the queue is full
  bool gso = true;                        // NFQA_CFG_F_GSO: take GSO super-packets unsegmented
  // The loop guard: every verdict sets (mark & ~verdict_mask) | verdict_mark, and the iptables
  // rule queues only packets whose mark & verdict_mask != verdict_mark. Rule marks may not
  // touch these bits. verdict_mark must be non-zero and inside verdict_mask.
  uint32_t verdict_mark = 0x40000000;
  uint32_t verdict_mask = 0x40000000;
  // natd's -interface, for the FORWARD hook: a forwarded packet leaving through one of these
  // is "out", one that came in through one is "in". Empty: forwarded packets have no direction
  // (PREROUTING and INPUT are always "in", OUTPUT and POSTROUTING "out"). At most
  // kMaxOutsideInterfaces.
  std::vector<std::string> outside_interfaces;
  static constexpr std::size_t kMaxOutsideInterfaces = 16;
  // sluice run follows interfaces created again under new indexes by watching rtnetlink's
  // link notifications. False: it does not (a host whose containers add and delete links all
  // day, or where rtnetlink is closed to it), and a SIGHUP looks the names up again.
  bool watch_links = true;
  bool operator==(const NfqueueIoConfig&) const = default;
};

// FreeBSD divert(4): one socket per shard, bound to ports[shard]; pipeline.shards == ports.size().
struct DivertIoConfig {
  std::vector<uint16_t> ports = {8668};   // each 1..65535, distinct
  uint32_t rcvbuf_bytes = 4u << 20;       // SO_RCVBUF, 65536..1 GiB (the default 64 KiB overflows)
  bool operator==(const DivertIoConfig&) const = default;
};

struct IoConfig {
  Backend backend = Backend::kPcap;
  PcapIoConfig pcap;
  NfqueueIoConfig nfqueue;
  DivertIoConfig divert;
  bool operator==(const IoConfig&) const = default;
};

// Where a value stood in the file, for messages. Never part of what a config means: two
// configs that differ only in where things stand compare equal (a reload that moved lines
// changes nothing).
struct SourceLocation {
  uint32_t line = 0;
  uint32_t column = 0;
  friend bool operator==(const SourceLocation&, const SourceLocation&) { return true; }
};

// ---- [pipeline] ---------------------------------------------------------------------------

struct PipelineConfig {
  uint32_t batch_size = 64;            // packets per batch, 1..256 (kMaxBatch)
  uint32_t batch_timeout_us = 0;       // inline: how long a partly filled batch waits for more
                                       // packets, 0..1000000; 0 = it leaves once the queue is drained
  bool run_to_completion = true;       // inline: each queue's I/O thread runs its shard's stages
  uint32_t threads = 0;                // oneTBB worker threads, 0 = one per CPU, else 1..1024
  uint32_t shards = 1;                 // independent serial pipelines, 1..1024
  uint32_t batches_per_shard = 8;      // batches in flight per shard (the graph's tokens), 1..4096
  std::vector<uint32_t> cpus;          // inline: CPUs the I/O threads are pinned to, queue i on
                                       // cpus[i % n]; 0..kMaxCpu, each listed once; empty = not
                                       // pinned. Whether this host has them: CheckCpusForThisHost
  std::vector<SourceLocation> cpus_where;  // each entry's place in the file
  PoolConfig pool;                     // [pipeline.pool] small_buffers >= shards * batches_per_shard * batch_size
  bool operator==(const PipelineConfig&) const = default;
};

// ---- [parse]: the parse stage's own ParseConfig (engine/stages/parse/parse_stage.h) ------
// malformed (pass | drop), ipv6.max_headers (0..255), ipv6.max_bytes (8..kMaxIpv6ExtBytesCap).
// flow_hash_seed is not in the file: the process picks it at start.

// ---- [nat]: the per-shard flow table of translate-source-port --------------------------------

enum class NatFullPolicy : uint8_t { kEvictOldest = 0, kDropNew };

struct NatConfig {
  uint32_t max_flows = 65536;          // hard cap per shard, 16..16777216
  uint64_t seed = 0;                   // hash and port-choice seed; 0 = random at start (tests set it)
  NatFullPolicy on_full = NatFullPolicy::kEvictOldest;
  // Idle timeouts in seconds, each 1..604800.
  uint32_t tcp_established_s = 7440;   // RFC 5382 REQ-5: at least 2 h 4 min
  uint32_t tcp_transitory_s = 240;     // SYN seen, no reply yet (RFC 5382: 4 min)
  uint32_t tcp_closed_s = 10;          // FIN seen both ways, or an RST
  uint32_t udp_s = 300;                // RFC 4787 REQ-5: at least 2 min, 5 min recommended
  uint32_t icmp_s = 60;                // RFC 5508 REQ-1: 60 s
  bool operator==(const NatConfig&) const = default;
};

// ---- [classify] ---------------------------------------------------------------------------

enum class DefaultAction : uint8_t { kAccept = 0, kDrop };

struct ClassifyConfig {
  DefaultAction default_action = DefaultAction::kAccept;  // packets no rule matches
};

// ---- [[rule]] -----------------------------------------------------------------------------

struct PortRange {
  uint16_t lo = 0;
  uint16_t hi = 0;
  uint32_t size() const noexcept { return uint32_t{hi} - lo + 1; }
  friend bool operator==(const PortRange&, const PortRange&) = default;
};

struct LengthRange {
  uint32_t lo = 0;
  uint32_t hi = 0;
  friend bool operator==(const LengthRange&, const LengthRange&) = default;
};

// TCP flags as in the TCP header's 13th byte: FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10
// URG 0x20 ECE 0x40 CWR 0x80. A packet matches when (flags & mask) == value.
struct TcpFlagsMatch {
  uint8_t mask = 0;
  uint8_t value = 0;
  friend bool operator==(const TcpFlagsMatch&, const TcpFlagsMatch&) = default;
};

// A packet matches when every constraint that is set holds; an empty list means "any".
// Lists are alternatives: src = [a, b] matches a source in a or in b.
struct MatchSpec {
  L3Type family = L3Type::kNone;       // kNone: either family (CIDRs still restrict it)
  std::vector<uint8_t> protos;         // IP protocol numbers (after IPv6 extension headers)
  std::vector<Cidr> src;
  std::vector<Cidr> dst;
  // Port lists match only packets whose L4 header carries ports (TCP, UDP, UDP-Lite, SCTP,
  // complete and not a non-first fragment), as ipfw's port matches do.
  std::vector<PortRange> src_ports;
  std::vector<PortRange> dst_ports;
  Direction direction = Direction::kUnknown;  // kUnknown: either direction
  std::string in_interface;            // "" = any; resolved to an id when rules are compiled
  std::string out_interface;
  TcpFlagsMatch tcp_flags;             // mask 0 = any; requires protos == {tcp}
  uint64_t dscp = 0;                   // bit d set: DSCP d matches; 0 = any
  std::optional<LengthRange> length;   // IP length: IPv4 total length, IPv6 40 + payload length
};

enum class RuleAction : uint8_t {
  kAccept = 0,            // terminal: pass unmodified
  kDrop,                  // terminal: drop (reason rule_drop)
  kRewrite,               // terminal: apply `rewrite`, then accept
  kMark,                  // terminal: set `mark` on the verdict, then accept
  kCount,                 // count and continue with the next rule (ipfw `count`)
  kTranslateSourcePort,   // terminal: stateful source-port translation (NAPT), then accept
};

struct MarkSpec {
  uint32_t value = 0;
  uint32_t mask = 0xffffffff;  // bits the rule owns: new = (old & ~mask) | value
  friend bool operator==(const MarkSpec&, const MarkSpec&) = default;
};

struct AddressEdit {
  enum class Kind : uint8_t { kNone = 0, kSet, kPrefixMap } kind = Kind::kNone;
  IpAddr addr;  // kSet: the new address
  Cidr from;    // kPrefixMap: addresses in `from` keep their host bits under `to`
  Cidr to;      //   (same family and length as `from`)
};

struct PortEdit {
  enum class Kind : uint8_t { kNone = 0, kSet, kMap, kShift } kind = Kind::kNone;
  uint16_t port = 0;                                 // kSet: the new port
  std::vector<std::pair<uint16_t, uint16_t>> map;    // kMap: from -> to, sorted by from; others kept
  PortRange from;                                    // kShift: p in from -> to + (p - from.lo)
  uint16_t to = 0;
};

// The edits of a `rewrite` rule. It maps one to one onto the rewrite stage's RewritePlan
// (engine/stages/rewrite/rewrite_plan.h); see BuildRewritePlan in engine/rules/rewrite_plans.h.
struct RewriteSpec {
  AddressEdit src_addr;
  AddressEdit dst_addr;
  PortEdit src_port;
  PortEdit dst_port;
  std::optional<uint8_t> ttl;          // lower TTL / hop limit to this, 1..255 (never raised)
  bool ttl_decrement = false;          // subtract one; a packet at TTL 1 is dropped (ttl_expired)
  std::optional<uint8_t> dscp;         // set, 0..63 (ECN bits kept)
  std::optional<uint16_t> mss_clamp;   // lower a SYN's MSS option to this, 88..65495 (RewritePlan's minimum)
  std::optional<MarkSpec> mark;
  bool full_checksum = false;          // recompute checksums in full instead of incrementally
};

// translate-source-port: outbound flows get a source port from `ports` (and, when set, the
// source address `address`); replies are translated back. See engine/rules/flow_table.h.
struct TranslateSpec {
  PortRange ports;                     // 1..65535, at least pipeline.shards ports
  std::optional<IpAddr> address;       // the translated source address; unset = keep the source address
};

struct RuleConfig {
  uint32_t number = 0;                 // 1..65535, strictly increasing in file order
  std::string name;                    // unique, non-empty; used in stats
  RuleAction action = RuleAction::kAccept;
  MatchSpec match;
  RewriteSpec rewrite;                 // action == kRewrite
  MarkSpec mark;                       // action == kMark
  TranslateSpec translate;             // action == kTranslateSourcePort
  SourceLocation where;                // the [[rule]] header, for messages
};

// ---- the whole file -------------------------------------------------------------------------

struct Config {
  std::string source;                  // file name (or "<text>") the config was read from
  IoConfig io;
  PipelineConfig pipeline;
  ParseConfig parse;                   // [parse]
  NatConfig nat;
  ClassifyConfig classify;
  std::vector<RuleConfig> rules;       // in file order: the first match wins
};

std::string_view Name(Backend b) noexcept;
std::string_view Name(RuleAction a) noexcept;

}  // namespace sluice
