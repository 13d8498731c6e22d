// `sluice rules --firewall ipfw`: ipfw rules that spread diverted traffic over N divert ports
// (N sluice shards) by flow, so that both directions of a host pair meet the same shard.
//
// Scheme: address bit masks, keyed on the INSIDE host: the source address of packets going
// out and the destination address of packets coming in. Packets are bucketed by the low
// `bits` bits of that address with ipfw's `addr:mask` (IPv4) and `addr/mask` (IPv6) selectors;
// each bucket belongs to one port.
//
//   add 10000 set 20 divert 8000 ip from 0.0.0.0:0.0.0.1 to any out xmit em0 not diverted
//   add 10000 set 20 divert 8000 ip from any to 0.0.0.0:0.0.0.1 in recv em0 not diverted
//   add 10010 set 20 divert 8001 ip from 0.0.0.1:0.0.0.1 to any out xmit em0 not diverted
//   …  (the same for IPv6 with ::0/::1, ::1/::1; and count twins in set 21, see below)
//
// Why masks and not a table with `divert tablearg`: an ipfw address table is a radix tree or
// a hash of masked PREFIXES, so it can only shard by high address bits, and needs the inside
// address space listed up front; hosts numbered in one /24 would all land on one port. Low
// bits spread any numbering plan (and SLAAC or random IPv6 interface ids) without knowing it.
// The price is linear evaluation: a packet meets up to one rule per port and direction.
//
// N not a power of two: 2^bits buckets with 2^bits ≥ 8·N, dealt round-robin (bucket b goes
// to port b mod N), so no port has more than ⌈2^bits/N⌉ / ⌊2^bits/N⌋ ≤ 9/8 of another's
// share of uniformly spread addresses. A power of two uses exactly log2 N bits, one bucket
// per port. A port's buckets form one comma-separated address list, split into several rules
// of the same number where ipfw's instruction size limits a list (31 IPv4 or 7 IPv6 pairs).
//
// Interfaces: with none given, every interface but lo0 is diverted (a host filtering its own
// traffic). On a gateway, give the outside interface(s): only `out xmit IF` and `in recv IF`
// are diverted, where the inside host is the source going out and the destination coming in.
// (Diverting both sides of a gateway with this key would split a flow: its packet entering
// from the inside is keyed on the outside destination.)
//
// Loop guard: every divert rule says `not diverted`, so a packet sluice writes back (which
// resumes after its rule anyway) can never be diverted again, whatever its rule number. It
// also lets packets reinjected by other divert daemons (natd) pass: put sluice's rules before
// theirs.
//
// Fail-open: divert has none (with no socket bound, diverted packets are dropped). The divert
// rules live in `divert_set`; each has a `count` twin with the same match in `bypass_set`,
// normally disabled. tools/divert-supervisor runs `ipfw set disable DIVERT enable BYPASS`
// when sluice dies — packets then continue after the rule as if sluice had returned them
// unchanged, and the twins count how many passed uninspected — and the reverse when it is
// back. Loading the file deletes both sets first and leaves the bypass set disabled; which of
// the two is enabled is the supervisor's to decide.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace sluice {

struct IpfwRulesOptions {
  std::vector<uint16_t> ports;          // one divert port per shard, in shard order (1..64)
  uint32_t rule_base = 10000;           // shard i's rules are numbered rule_base + i·rule_step
  uint32_t rule_step = 10;
  uint32_t divert_set = 20;             // ipfw sets 0..30, distinct
  uint32_t bypass_set = 21;
  std::vector<std::string> interfaces;  // divert only through these; empty: all but lo0
  bool ipv4 = true;
  bool ipv6 = true;
  bool remove = false;                  // the commands that delete both sets instead
};

// Which low address bits select the port, and which port (shard index) each bucket goes to.
struct IpfwShardPlan {
  uint32_t bits = 0;
  std::vector<uint32_t> shard_of_bucket;  // 2^bits entries
};
IpfwShardPlan PlanIpfwShards(uint32_t shards);

// The rules as a file for `ipfw -q FILE` (one ipfw command per line, '#' comments).
Result<std::string> GenerateIpfwRules(const IpfwRulesOptions& options);

}  // namespace sluice
