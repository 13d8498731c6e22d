// RewritePlan: what the rewrite stage changes in a packet. A plain struct, built off the data
// path (by the rules compiler, from config) and owned by whoever built it; the batch carries
// a `const RewritePlan*` per slot, which must stay valid until the batch leaves rewrite.
// Validate() it once after building: the stage trusts a plan and checks nothing per packet.
//
// Every operation is optional (kNone / nullopt / false means "leave alone") and they are
// applied in a fixed order, each one seeing the result of the previous ones:
//   1. TTL decrement check: a packet whose TTL would reach 0 is dropped (ttl_expired) before
//      any byte changes;
//   2. source and destination address;   3. source and destination port;
//   4. TTL / hop limit;   5. DSCP;   6. TCP MSS clamp;   7. checksums;   8. mark.
// Checksums are updated incrementally (RFC 1624) by each operation; full_checksum asks for a
// full recompute at the end instead (see RewriteStage for when the stage does that itself).
//
// Building one:
//   RewritePlan p;
//   p.dst_addr = AddrRewrite::MapIpv4(0xc6120000, 0xc6130000, 16);  // 198.18/16 → 198.19/16
//   p.dst_port = PortRewrite::Map({{.first = 80, .last = 80, .to = 8080}});
//   p.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = 1};
//   if (Status s = Validate(p); !s.ok()) ...
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "engine/core/status.h"
#include "engine/packet/packet_buffer.h"

namespace sluice {

// Rewrites one address (source or destination) of one family.
struct AddrRewrite {
  enum class Kind : uint8_t {
    kNone,  // leave the address alone
    kSet,   // replace it with `to`
    kMap,   // if its first prefix_len bits equal from's, replace them with to's; keep the rest
  };
  Kind kind = Kind::kNone;
  // kIpv4 or kIpv6. A packet of the other family is left alone (and counted by the stage):
  // a rule that rewrites IPv4 addresses should only match IPv4 packets.
  L3Type family = L3Type::kNone;
  uint8_t prefix_len = 0;          // kMap: 1..32 (IPv4) or 1..128 (IPv6)
  std::array<uint8_t, 16> from{};  // kMap: the prefix to match; bits past prefix_len ignored
  std::array<uint8_t, 16> to{};    // kSet: the address; kMap: the new prefix. Wire order (big
                                   // endian); IPv4 uses the first 4 bytes, the rest stay zero

  // Host-order IPv4 addresses, e.g. 0xc6120001 for 198.18.0.1.
  static AddrRewrite SetIpv4(uint32_t addr);
  static AddrRewrite MapIpv4(uint32_t from, uint32_t to, uint8_t prefix_len);
  static AddrRewrite SetIpv6(const std::array<uint8_t, 16>& addr);
  static AddrRewrite MapIpv6(const std::array<uint8_t, 16>& from, const std::array<uint8_t, 16>& to,
                             uint8_t prefix_len);
};

// One entry of a port map: the ports first..last (inclusive) become `to` (kCollapse, as in
// tcprewrite --portmap=8000-8999:80) or `to + (port - first)` (kShift: a range moved as a
// block, so to + (last - first) must stay <= 65535).
struct PortMapEntry {
  enum class Mode : uint8_t { kCollapse, kShift };
  uint16_t first = 0;
  uint16_t last = 0;
  uint16_t to = 0;
  Mode mode = Mode::kCollapse;
};

// Rewrites one port (source or destination) of TCP and UDP packets that have one: never a
// non-first fragment, never another protocol (ICMP echo ids are NAPT's, engine/rules).
struct PortRewrite {
  enum class Kind : uint8_t {
    kNone,  // leave the port alone
    kSet,   // replace it with `value`
    kMap,   // look it up in `map`; a port no entry covers is left alone
  };
  Kind kind = Kind::kNone;
  uint16_t value = 0;             // kSet
  std::vector<PortMapEntry> map;  // kMap: sorted by `first`, ranges disjoint (Validate checks)

  static PortRewrite Set(uint16_t port);
  static PortRewrite Map(std::vector<PortMapEntry> entries);
};

// TTL (IPv4) or hop limit (IPv6). sluice never raises one, so no rewrite can keep a looping
// packet alive longer than it would have lived.
struct TtlRewrite {
  enum class Kind : uint8_t {
    kNone,
    kSet,        // lower to `value` (1..255); a TTL already at or below it is left alone
    kDecrement,  // subtract `value` (1..255); a TTL <= value is dropped with ttl_expired
  };
  Kind kind = Kind::kNone;
  uint8_t value = 0;
};

struct RewritePlan {
  AddrRewrite src_addr;
  AddrRewrite dst_addr;
  PortRewrite src_port;
  PortRewrite dst_port;
  TtlRewrite ttl;
  // DSCP (0..63), the top six bits of the IPv4 TOS / IPv6 traffic class; the two ECN bits are
  // kept.
  std::optional<uint8_t> dscp;
  // Lowers the MSS option of TCP SYN segments to this value (>= 88, Linux's minimum); a
  // smaller MSS, or a segment without the option, is left alone.
  std::optional<uint16_t> mss_clamp;
  // meta.mark = (meta.mark & ~mark_mask) | (*mark & mark_mask); sets pkt_flag::kMarkSet.
  std::optional<uint32_t> mark;
  uint32_t mark_mask = 0xffffffff;
  // Recompute the IPv4 header and L4 checksums in full after the other operations, instead
  // of (on top of) the incremental updates: repairs checksums that were wrong on input.
  // Not possible for fragments (the L4 checksum covers the whole datagram): those keep the
  // incremental update, and the stage counts them.
  bool full_checksum = false;
};

inline constexpr uint16_t kMinMssClamp = 88;

// Checks a plan once after building it: families and prefix lengths, the port map sorted,
// disjoint and in range, TTL values, DSCP, MSS. The message names the field at fault.
Status Validate(const RewritePlan& plan);

// The address at addr (4 or 16 wire bytes, by r.family) becomes under r, written to out (as
// many bytes); false, and out untouched, when r leaves it alone (kNone, or kMap with addr
// outside from/prefix_len). r must be valid.
bool MapAddress(const AddrRewrite& r, const uint8_t* addr, uint8_t* out) noexcept;

// The port `port` becomes under r, or `port` when r leaves it alone. r must be valid.
// Cost: a linear scan up to kPortMapLinear entries, a binary search above.
inline uint16_t MapPort(const PortRewrite& r, uint16_t port) noexcept;

inline constexpr std::size_t kPortMapLinear = 8;

namespace rewrite_detail {
uint16_t MapPortSearch(const PortRewrite& r, uint16_t port) noexcept;
inline uint16_t Apply(const PortMapEntry& e, uint16_t port) noexcept {
  return e.mode == PortMapEntry::Mode::kShift ? static_cast<uint16_t>(e.to + (port - e.first))
                                              : e.to;
}
}  // namespace rewrite_detail

inline uint16_t MapPort(const PortRewrite& r, uint16_t port) noexcept {
  if (r.kind == PortRewrite::Kind::kSet) return r.value;
  if (r.kind == PortRewrite::Kind::kNone) return port;
  if (r.map.size() > kPortMapLinear) return rewrite_detail::MapPortSearch(r, port);
  for (const PortMapEntry& e : r.map) {
    if (port < e.first) break;  // sorted: no later entry covers it
    if (port <= e.last) return rewrite_detail::Apply(e, port);
  }
  return port;
}

}  // namespace sluice
