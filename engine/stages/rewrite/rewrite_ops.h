// Rewrite primitives: one field change each, with every checksum that covers the field fixed
// incrementally (RFC 1624, engine/proto/checksum.h). RewriteStage is built from them, and the
// stateful translation (engine/rules, NAPT) reuses them for what a static plan cannot say.
//
// Contract for every function here: buf went through ParseStage (meta.l3, l3_off, l4_off,
// l4_proto and the parse flags describe its bytes) and no byte has moved since. Each returns
// true when it changed at least one byte, false when the value was already there or the
// operation does not apply to this packet (named per function); nothing is changed then.
// None of them sets pkt_flag::kModified: the caller does, once, when any returned true.
//
// Checksums after a change:
//   IPv4 header          updated with every IPv4 header field.
//   TCP, UDP, ICMPv6     updated when a field they cover changes, pseudo-header included
//                        (an address on a first fragment too: the checksum in its L4 header
//                        covers the whole datagram). Non-first fragments carry no L4 header,
//                        so only the IP header checksum moves.
//   UDP over IPv4        a 0 ("no checksum") stays 0; a computed 0 is written as 0xFFFF.
//   UDP over IPv6        never 0: a computed 0 is written as 0xFFFF.
//   ICMPv4               covers no pseudo-header: an address change leaves it alone.
// A checksum that was wrong on input stays wrong by the same amount (and so detectably).
// Two flags make an incremental update meaningless; FinishChecksums handles them, and a
// caller that uses the primitives directly must call it when done:
//   pkt_flag::kL4CsumNotReady   the L4 field holds a partial sum: recompute in full;
//   pkt_flag::kIpCsumUntrusted  the IPv4 header checksum was not valid on read: recompute.
// Not handled: the embedded header inside ICMP errors (NAPT's job); the transport checksums
// of other protocols with a pseudo-header (UDP-Lite, DCCP): their bytes are never touched, so
// an address rewrite leaves those checksums stale; AH, which any address rewrite breaks.
#pragma once

#include <cstdint>

#include "engine/core/byte_order.h"
#include "engine/packet/packet_buffer.h"
#include "engine/proto/checksum.h"
#include "engine/proto/icmp.h"
#include "engine/proto/ipv4.h"
#include "engine/proto/ipv6.h"
#include "engine/proto/tcp.h"
#include "engine/proto/udp.h"

namespace sluice {

enum class Side : uint8_t { kSrc = 0, kDst = 1 };

// True when the packet has a TCP or UDP header whose ports may be rewritten: validated by
// parse (kL4Valid), which excludes non-first fragments.
inline bool HasPorts(const PacketMeta& m) noexcept;

// IPv4 address, host order (0xc6120001 is 198.18.0.1). Does not apply unless l3 is IPv4.
inline bool SetIpv4Address(PacketBuffer& buf, Side side, uint32_t addr) noexcept;
// IPv6 address, 16 bytes in wire order. Does not apply unless l3 is IPv6. The destination
// enters the L4 pseudo-header only when no routing header has segments left (RFC 8200 §8.1).
bool SetIpv6Address(PacketBuffer& buf, Side side, const uint8_t* addr) noexcept;
// TCP or UDP port, host order. Does not apply without HasPorts().
inline bool SetL4Port(PacketBuffer& buf, Side side, uint16_t port) noexcept;
// Any 16-bit big-endian field `offset` bytes into a validated L4 header (kL4Valid), with the
// L4 checksum fixed; the field may sit at an odd offset. For NAPT's ICMP echo identifier:
// SetL4Field16(buf, icmp::kOffEchoId, id). Does not apply when the field is not inside the
// captured L4 bytes or overlaps the checksum field.
bool SetL4Field16(PacketBuffer& buf, uint32_t offset, uint16_t value) noexcept;

// TTL (IPv4) or hop limit (IPv6).
inline uint8_t Ttl(const PacketBuffer& buf) noexcept;
bool SetTtl(PacketBuffer& buf, uint8_t ttl) noexcept;
// DSCP (0..63) into the top six bits of TOS / traffic class; the ECN bits are kept.
bool SetDscp(PacketBuffer& buf, uint8_t dscp) noexcept;
// Lowers the MSS option of a TCP SYN to mss. Does not apply to other segments, to a segment
// without the option, or when the MSS is already <= mss. The option may sit at any offset.
bool ClampTcpMss(PacketBuffer& buf, uint16_t mss) noexcept;

// Full recomputes.
bool RecomputeIpv4HeaderChecksum(PacketBuffer& buf) noexcept;  // does not apply unless IPv4
enum class L4Recompute : uint8_t {
  kUnchanged,    // recomputed, same bytes (or an IPv4 UDP 0 kept: no checksum)
  kChanged,      // recomputed, new bytes
  kNotPossible,  // a fragment (the checksum covers bytes not here), no validated L4 header,
                 // or an IPv6 routing header whose final destination is unknown
};
L4Recompute RecomputeL4Checksum(PacketBuffer& buf) noexcept;

// What FinishChecksums did.
struct ChecksumFinish {
  bool changed = false;  // a checksum byte changed
  bool l4_recomputed = false;
  bool l4_not_possible = false;  // a recompute was due but is not possible (see L4Recompute)
  bool ip_recomputed = false;
};
// Call once after the primitives. Recomputes the L4 checksum in full when `full` is asked or
// when `modified` and pkt_flag::kL4CsumNotReady (an unmodified packet goes back without its
// payload, and the kernel finishes its checksum); recomputes the IPv4 header checksum when
// `full` or pkt_flag::kIpCsumUntrusted.
inline ChecksumFinish FinishChecksums(PacketBuffer& buf, bool modified, bool full) noexcept;

// ---- Inline definitions: the primitives a port or IPv4 rewrite calls per packet, kept in
// ---- the header so RewriteStage (and NAPT) pay no call for them.

namespace rewrite_detail {

// The L4 checksum field of a parsed packet, and what covers it.
struct L4Csum {
  uint8_t* field = nullptr;  // nullptr: no L4 checksum maintained here
  CsumZero zero = CsumZero::kPlain;
  bool pseudo = false;  // covers the IP pseudo-header
};

inline L4Csum FindL4Csum(PacketBuffer& buf) noexcept {
  const PacketMeta& m = buf.meta();
  if ((m.flags & pkt_flag::kL4Valid) == 0) return {};
  uint8_t* l4 = buf.data() + m.l4_off;
  switch (m.l4_proto) {
    case ipproto::kTcp:
      return {l4 + tcp::kOffChecksum, CsumZero::kPlain, true};
    case ipproto::kUdp:
      return {l4 + udp::kOffChecksum,
              m.l3 == L3Type::kIpv4 ? CsumZero::kUdpIpv4 : CsumZero::kUdpIpv6, true};
    case ipproto::kIcmp:
      return {l4 + icmp::kOffChecksum, CsumZero::kPlain, false};
    case ipproto::kIcmpv6:
      return {l4 + icmp::kOffChecksum, CsumZero::kPlain, true};
    default:
      return {};
  }
}

ChecksumFinish FinishChecksumsSlow(PacketBuffer& buf, bool modified, bool full) noexcept;

}  // namespace rewrite_detail

inline bool HasPorts(const PacketMeta& m) noexcept {
  return (m.flags & pkt_flag::kL4Valid) != 0 &&
         (m.l4_proto == ipproto::kTcp || m.l4_proto == ipproto::kUdp);
}

inline uint8_t Ttl(const PacketBuffer& buf) noexcept {
  const uint8_t* ip = buf.data() + buf.meta().l3_off;
  return buf.meta().l3 == L3Type::kIpv4 ? ipv4::Ttl(ip) : ipv6::HopLimit(ip);
}

inline bool SetIpv4Address(PacketBuffer& buf, Side side, uint32_t addr) noexcept {
  if (buf.meta().l3 != L3Type::kIpv4) return false;
  uint8_t* ip = buf.data() + buf.meta().l3_off;
  CsumDelta d;
  if (!d.Write32(ip + (side == Side::kSrc ? ipv4::kOffSrc : ipv4::kOffDst), MemBe32(addr))) {
    return false;
  }
  d.ApplyTo(ip + ipv4::kOffChecksum);
  const rewrite_detail::L4Csum c = rewrite_detail::FindL4Csum(buf);
  if (c.field != nullptr && c.pseudo) d.ApplyTo(c.field, c.zero);  // ICMPv4 has none
  return true;
}

inline bool SetL4Port(PacketBuffer& buf, Side side, uint16_t port) noexcept {
  if (!HasPorts(buf.meta())) return false;
  // TCP and UDP put the ports at the same offsets.
  uint8_t* l4 = buf.data() + buf.meta().l4_off;
  CsumDelta d;
  if (!d.Write16(l4 + (side == Side::kSrc ? tcp::kOffSrcPort : tcp::kOffDstPort), MemBe16(port))) {
    return false;
  }
  if (buf.meta().l4_proto == ipproto::kTcp) {
    d.ApplyTo(l4 + tcp::kOffChecksum);
  } else {
    d.ApplyTo(l4 + udp::kOffChecksum,
              buf.meta().l3 == L3Type::kIpv4 ? CsumZero::kUdpIpv4 : CsumZero::kUdpIpv6);
  }
  return true;
}

inline ChecksumFinish FinishChecksums(PacketBuffer& buf, bool modified, bool full) noexcept {
  constexpr uint16_t kFlags = pkt_flag::kL4CsumNotReady | pkt_flag::kIpCsumUntrusted;
  if (!full && (buf.meta().flags & kFlags) == 0) return {};
  return rewrite_detail::FinishChecksumsSlow(buf, modified, full);
}

}  // namespace sluice
