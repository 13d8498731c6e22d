// Match records: a rule's match as boxes in one field space, and the reference semantics.
//
// RuleMatches() *defines* what a match means, one rule at a time, straight from the MatchSpec;
// the linear classifier and the differential test use it as the oracle. The compiled
// classifier works on MatchRecords instead: a rule's lists (several CIDRs, port ranges,
// protocols, DSCP values) are expanded into their cross product, so that every record is a
// plain box — one closed interval per dimension — plus a TCP-flags mask/value test. A packet
// matches a rule exactly when it falls in one of the rule's records (the differential test
// checks this equivalence on random rules and packets).
//
// Dimensions and the packet value in each (widths are for IPv4 / IPv6 packets):
//   kDimSrc, kDimDst   32 / 128  the address (IpAddr convention)
//   kDimSport/Dport    17        0x10000 | port when the packet carries ports, else 0: a rule
//                                with ports then simply excludes portless packets
//   kDimProto           8        meta.l4_proto
//   kDimDir             2        Direction (0 unknown, 1 in, 2 out)
//   kDimInIf/OutIf     32        interface id (0 = none)
//   kDimDscp            6
//   kDimLen            16        IP length, saturated at 0xffff (IPv6 jumbograms)
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "engine/rules/config.h"
#include "engine/rules/packet_fields.h"

namespace sluice {

enum Dim : uint8_t { kDimSrc = 0, kDimDst, kDimSport, kDimDport, kDimProto, kDimDir, kDimInIf, kDimOutIf, kDimDscp, kDimLen, kNumDims };

constexpr uint32_t DimWidth(Dim d, L3Type family) noexcept {
  switch (d) {
    case kDimSrc:
    case kDimDst: return family == L3Type::kIpv6 ? 128 : 32;
    case kDimSport:
    case kDimDport: return 17;
    case kDimLen: return 16;
    case kDimProto: return 8;
    case kDimDir: return 2;
    case kDimInIf:
    case kDimOutIf: return 32;
    case kDimDscp: return 6;
    default: return 0;
  }
}

inline constexpr uint32_t kPortPresent = 0x10000;
inline constexpr uint32_t kMaxLengthKey = 0xffff;
// An interface name the resolver did not know: no packet carries this id.
inline constexpr uint32_t kUnresolvedInterface = 0xffffffff;
// A rule whose lists expand into more records than this is rejected by the loader.
inline constexpr uint64_t kMaxRecordsPerRule = 4096;

// A rule as the matchers take it: its match, its interfaces resolved to ids (0 = any), and
// whether a match ends the scan (every action but count).
struct RuleMatchInput {
  const MatchSpec* match = nullptr;
  uint32_t in_if = 0;
  uint32_t out_if = 0;
  bool terminal = true;
};

// The reference semantics of one rule against one packet.
bool RuleMatches(const RuleMatchInput& rule, const PacketFields& f) noexcept;

struct MatchRecord {
  uint32_t rule = 0;          // index of the rule in file order (its priority)
  bool terminal = true;
  uint16_t flags_mask = 0;    // (PacketFields::tcp_flags & flags_mask) == flags_value
  uint16_t flags_value = 0;
  std::array<U128, kNumDims> lo{};
  std::array<U128, kNumDims> hi{};
};

// Number of records the rule expands into over both families: the product of its list lengths.
uint64_t MatchRecordCount(const MatchSpec& m) noexcept;

// Appends the records of `rule` (index `index`) that can match packets of `family`.
void ExpandRecords(const RuleMatchInput& rule, uint32_t index, L3Type family, std::vector<MatchRecord>* out);

// The packet's value in dimension d.
inline U128 DimValue(const PacketFields& f, Dim d) noexcept {
  switch (d) {
    case kDimSrc: return f.src;
    case kDimDst: return f.dst;
    case kDimSport: return f.has_ports ? kPortPresent | f.sport : 0;
    case kDimDport: return f.has_ports ? kPortPresent | f.dport : 0;
    case kDimProto: return f.proto;
    case kDimDir: return static_cast<uint8_t>(f.direction);
    case kDimInIf: return f.in_if;
    case kDimOutIf: return f.out_if;
    case kDimDscp: return f.dscp;
    case kDimLen: return f.length < kMaxLengthKey ? f.length : kMaxLengthKey;
    default: return 0;
  }
}

}  // namespace sluice
