// PacketFields: the values rules match on, read once per packet from a parsed buffer.
//
// Reads only what parse established (PacketMeta l3/l3_off/l4_off/l4_proto/flags) and the
// source's direction and interfaces; never re-parses and never reads past the offsets parse
// validated. Cost: a handful of loads from the first cache lines of the packet.
#pragma once

#include <cstdint>

#include "engine/core/assert.h"
#include "engine/core/byte_order.h"
#include "engine/packet/packet_buffer.h"
#include "engine/rules/ip_addr.h"

namespace sluice {

namespace ip_proto {
inline constexpr uint8_t kIcmp = 1;
inline constexpr uint8_t kTcp = 6;
inline constexpr uint8_t kUdp = 17;
inline constexpr uint8_t kIcmp6 = 58;
inline constexpr uint8_t kSctp = 132;
inline constexpr uint8_t kUdpLite = 136;
}  // namespace ip_proto

constexpr bool CarriesPorts(uint8_t proto) noexcept {
  return proto == ip_proto::kTcp || proto == ip_proto::kUdp || proto == ip_proto::kSctp ||
         proto == ip_proto::kUdpLite;
}

// Whether `avail` bytes hold the common header of SCTP (12 bytes: ports, verification tag,
// checksum) or UDP-Lite (8).
constexpr bool CommonHeaderCaptured(uint8_t proto, uint32_t avail) noexcept {
  return (proto == ip_proto::kSctp && avail >= 12) || (proto == ip_proto::kUdpLite && avail >= 8);
}

// PacketFields::tcp_flags bit 8: the packet has a complete TCP header (so "!syn" never matches
// a TCP packet whose header parse could not validate).
inline constexpr uint16_t kTcpFlagsValid = 0x100;

struct PacketFields {
  L3Type family = L3Type::kNone;
  uint8_t proto = 0;        // meta.l4_proto
  uint8_t dscp = 0;         // top six bits of the IPv4 TOS / IPv6 traffic class
  uint16_t tcp_flags = 0;   // kTcpFlagsValid | byte 13 of a valid TCP header; 0 without one
  bool has_ports = false;   // a complete port-carrying L4 header (never a non-first fragment)
  Direction direction = Direction::kUnknown;
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint32_t length = 0;      // IPv4 total length; IPv6 40 + payload length
  uint32_t in_if = 0;
  uint32_t out_if = 0;
  U128 src = 0;             // IPv4 in the low 32 bits (IpAddr's convention)
  U128 dst = 0;
};

// Precondition: parse ran (meta.l3 is kIpv4 or kIpv6 and its header lies within the data).
inline void ExtractFields(const PacketBuffer& pkt, PacketFields* f) noexcept {
  const PacketMeta& m = pkt.meta();
  const uint8_t* l3 = pkt.data() + m.l3_off;
  f->family = m.l3;
  f->proto = m.l4_proto;
  f->direction = m.direction;
  f->in_if = m.in_if;
  f->out_if = m.out_if;
  if (m.l3 == L3Type::kIpv4) {
    f->dscp = static_cast<uint8_t>(l3[1] >> 2);
    f->length = LoadBe16(l3 + 2);
    f->src = LoadBe32(l3 + 12);
    f->dst = LoadBe32(l3 + 16);
  } else {
    f->dscp = static_cast<uint8_t>(((l3[0] & 0x0f) << 2) | (l3[1] >> 6));
    f->length = 40u + LoadBe16(l3 + 4);
    f->src = MakeU128((uint64_t{LoadBe32(l3 + 8)} << 32) | LoadBe32(l3 + 12),
                      (uint64_t{LoadBe32(l3 + 16)} << 32) | LoadBe32(l3 + 20));
    f->dst = MakeU128((uint64_t{LoadBe32(l3 + 24)} << 32) | LoadBe32(l3 + 28),
                      (uint64_t{LoadBe32(l3 + 32)} << 32) | LoadBe32(l3 + 36));
  }
  const bool l4 = (m.flags & pkt_flag::kL4Valid) != 0 && m.l4_off != 0 &&
                  (m.flags & pkt_flag::kFragmentLater) == 0;
  f->has_ports = l4 && CarriesPorts(m.l4_proto);
  // TCP and UDP: parse validated the header. SCTP and UDP-Lite: parse does not look into them
  // (sluice keeps neither checksum, so they are never rewritten), but their ports sit where
  // TCP's and UDP's do, and rules match them when the common header is captured.
  if (SLUICE_UNLIKELY(!l4) && CommonHeaderCaptured(m.l4_proto, pkt.len() - m.l4_off) && m.l4_off != 0 &&
      (m.flags & pkt_flag::kFragmentLater) == 0) {
    f->has_ports = true;
  }
  f->sport = f->has_ports ? LoadBe16(pkt.data() + m.l4_off) : 0;
  f->dport = f->has_ports ? LoadBe16(pkt.data() + m.l4_off + 2) : 0;
  f->tcp_flags = l4 && m.l4_proto == ip_proto::kTcp ? kTcpFlagsValid | pkt.data()[m.l4_off + 13] : 0;
}

}  // namespace sluice
