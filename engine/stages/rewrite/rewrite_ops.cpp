#include "engine/stages/rewrite/rewrite_ops.h"

#include <cstring>

namespace sluice {
namespace {

using rewrite_detail::FindL4Csum;
using rewrite_detail::L4Csum;

uint8_t* Ip(PacketBuffer& buf) noexcept { return buf.data() + buf.meta().l3_off; }

// Bytes from the IP header to the end of its payload, from the length field (parse checked it
// against the capture).
uint32_t IpLen(const PacketBuffer& buf) noexcept {
  const uint8_t* ip = buf.data() + buf.meta().l3_off;
  return buf.meta().l3 == L3Type::kIpv4 ? ipv4::TotalLen(ip)
                                        : ipv6::kHeaderLen + ipv6::PayloadLen(ip);
}

// The IPv6 pseudo-header destination; only walks the chain when extension headers precede
// the L4 header (a routing header can only be among them).
const uint8_t* Ipv6PseudoDst(PacketBuffer& buf) noexcept {
  const PacketMeta& m = buf.meta();
  uint8_t* ip = Ip(buf);
  if (m.l4_off == m.l3_off + ipv6::kHeaderLen) return ip + ipv6::kOffDst;
  return ipv6::PseudoHeaderDst(ip, IpLen(buf));
}

}  // namespace

bool SetIpv6Address(PacketBuffer& buf, Side side, const uint8_t* addr) noexcept {
  if (buf.meta().l3 != L3Type::kIpv6) return false;
  uint8_t* ip = Ip(buf);
  uint8_t* field = ip + (side == Side::kSrc ? ipv6::kOffSrc : ipv6::kOffDst);
  if (std::memcmp(field, addr, ipv6::kAddrLen) == 0) return false;
  // A destination still to be routed through a routing header is not the pseudo-header's.
  const L4Csum c = FindL4Csum(buf);
  const bool covered =
      c.field != nullptr && c.pseudo && (side == Side::kSrc || Ipv6PseudoDst(buf) == field);
  CsumDelta d;
  d.Replace128(field, addr);
  std::memcpy(field, addr, ipv6::kAddrLen);
  if (covered) d.ApplyTo(c.field, c.zero);
  return true;
}

bool SetL4Field16(PacketBuffer& buf, uint32_t offset, uint16_t value) noexcept {
  const PacketMeta& m = buf.meta();
  if ((m.flags & pkt_flag::kL4Valid) == 0) return false;
  const L4Csum c = FindL4Csum(buf);
  uint8_t* l4 = buf.data() + m.l4_off;
  const uint32_t avail = buf.len() - m.l4_off;  // >= 8: parse validated the header
  if (avail < 2 || offset > avail - 2) return false;
  if (c.field != nullptr && offset < static_cast<uint32_t>(c.field - l4) + 2 &&
      offset + 2 > static_cast<uint32_t>(c.field - l4)) {
    return false;
  }
  CsumDelta d;
  if (!d.Write16(l4 + offset, MemBe16(value), (offset & 1) != 0)) return false;
  if (c.field != nullptr) d.ApplyTo(c.field, c.zero);
  return true;
}

bool SetTtl(PacketBuffer& buf, uint8_t ttl) noexcept {
  uint8_t* ip = Ip(buf);
  if (buf.meta().l3 == L3Type::kIpv6) {
    if (ip[ipv6::kOffHopLimit] == ttl) return false;
    ip[ipv6::kOffHopLimit] = ttl;  // no header checksum, not in the pseudo-header
    return true;
  }
  if (buf.meta().l3 != L3Type::kIpv4 || ip[ipv4::kOffTtl] == ttl) return false;
  // TTL and protocol share a 16-bit word.
  const uint16_t old_word = LoadHost16(ip + ipv4::kOffTtl);
  ip[ipv4::kOffTtl] = ttl;
  CsumDelta d;
  d.Replace16(old_word, LoadHost16(ip + ipv4::kOffTtl));
  d.ApplyTo(ip + ipv4::kOffChecksum);
  return true;
}

bool SetDscp(PacketBuffer& buf, uint8_t dscp) noexcept {
  uint8_t* ip = Ip(buf);
  if (buf.meta().l3 == L3Type::kIpv6) {
    // Traffic class straddles bytes 0 and 1: its DSCP is the low nibble of byte 0 and the top
    // two bits of byte 1; ECN is the next two bits of byte 1.
    const uint8_t b0 = static_cast<uint8_t>((ip[0] & 0xf0) | (dscp >> 2));
    const uint8_t b1 = static_cast<uint8_t>((ip[1] & 0x3f) | ((dscp & 3) << 6));
    if (b0 == ip[0] && b1 == ip[1]) return false;
    ip[0] = b0;
    ip[1] = b1;
    return true;
  }
  if (buf.meta().l3 != L3Type::kIpv4) return false;
  const uint8_t tos = static_cast<uint8_t>((dscp << 2) | (ip[ipv4::kOffTos] & 3));
  if (tos == ip[ipv4::kOffTos]) return false;
  // Version/IHL and TOS share the first 16-bit word.
  const uint16_t old_word = LoadHost16(ip);
  ip[ipv4::kOffTos] = tos;
  CsumDelta d;
  d.Replace16(old_word, LoadHost16(ip));
  d.ApplyTo(ip + ipv4::kOffChecksum);
  return true;
}

bool ClampTcpMss(PacketBuffer& buf, uint16_t mss) noexcept {
  const PacketMeta& m = buf.meta();
  if ((m.flags & pkt_flag::kL4Valid) == 0 || m.l4_proto != ipproto::kTcp) return false;
  uint8_t* t = buf.data() + m.l4_off;
  if ((tcp::Flags(t) & tcp::kSyn) == 0) return false;
  // Every MSS option, not only the first: Linux's tcp_parse_options keeps the last one, so a
  // second option left alone would carry the unclamped value through.
  const uint32_t hl = tcp::HeaderLen(t);  // parse checked it is captured
  CsumDelta d;
  bool clamped = false;
  for (int at = tcp::FindMss(t, hl); at >= 0; at = tcp::FindMss(t, hl, static_cast<uint32_t>(at) + tcp::kOptMssLen)) {
    const auto value_off = static_cast<uint32_t>(at) + 2;
    if (LoadBe16(t + value_off) <= mss) continue;
    d.Write16(t + value_off, MemBe16(mss), (value_off & 1) != 0);
    clamped = true;
  }
  if (clamped) d.ApplyTo(t + tcp::kOffChecksum);
  return clamped;
}

bool RecomputeIpv4HeaderChecksum(PacketBuffer& buf) noexcept {
  if (buf.meta().l3 != L3Type::kIpv4) return false;
  uint8_t* ip = Ip(buf);
  uint8_t* field = ip + ipv4::kOffChecksum;
  const uint16_t old_v = LoadHost16(field);
  StoreHost16(field, 0);
  const uint16_t c = InternetChecksum(ip, ipv4::HeaderLen(ip));
  StoreHost16(field, c);
  return c != old_v;
}

L4Recompute RecomputeL4Checksum(PacketBuffer& buf) noexcept {
  const PacketMeta& m = buf.meta();
  const L4Csum c = FindL4Csum(buf);
  if (c.field == nullptr || (m.flags & pkt_flag::kFragment) != 0) {
    return L4Recompute::kNotPossible;
  }
  uint8_t* ip = Ip(buf);
  const uint8_t* l4 = buf.data() + m.l4_off;
  uint32_t l4_len = m.l3_off + IpLen(buf) - m.l4_off;
  const uint16_t old_v = LoadHost16(c.field);
  if (m.l4_proto == ipproto::kUdp) {
    // IPv4 UDP sent without a checksum keeps going without one, unless the field holds a
    // partial sum the kernel expected to finish. An IPv6 tunnel's zero checksum (RFC 6935)
    // gets a real one: every receiver takes that, and only some take a zero.
    if (old_v == 0 && c.zero == CsumZero::kUdpIpv4 && (m.flags & pkt_flag::kL4CsumNotReady) == 0) {
      return L4Recompute::kUnchanged;
    }
    l4_len = udp::Length(l4);  // parse checked it is within the payload
  }
  uint64_t seed = 0;
  if (c.pseudo) {
    if (m.l3 == L3Type::kIpv4) {
      seed = Ipv4PseudoHeaderSum(ip + ipv4::kOffSrc, ip + ipv4::kOffDst, m.l4_proto, l4_len);
    } else {
      const uint8_t* dst = Ipv6PseudoDst(buf);
      if (dst == nullptr) return L4Recompute::kNotPossible;
      seed = Ipv6PseudoHeaderSum(ip + ipv6::kOffSrc, dst, m.l4_proto, l4_len);
    }
  }
  StoreHost16(c.field, 0);
  const uint16_t v = FinishL4Checksum(ChecksumFold(ChecksumAccumulate(l4, l4_len, seed)), c.zero);
  StoreHost16(c.field, v);
  return v == old_v ? L4Recompute::kUnchanged : L4Recompute::kChanged;
}

ChecksumFinish rewrite_detail::FinishChecksumsSlow(PacketBuffer& buf, bool modified,
                                                   bool full) noexcept {
  ChecksumFinish f;
  const uint16_t flags = buf.meta().flags;
  if (full || (modified && (flags & pkt_flag::kL4CsumNotReady) != 0)) {
    const L4Recompute r = RecomputeL4Checksum(buf);
    f.l4_recomputed = r != L4Recompute::kNotPossible;
    f.l4_not_possible =
        r == L4Recompute::kNotPossible && (buf.meta().flags & pkt_flag::kL4Valid) != 0;
    f.changed |= r == L4Recompute::kChanged;
  }
  if (buf.meta().l3 == L3Type::kIpv4 && (full || (flags & pkt_flag::kIpCsumUntrusted) != 0)) {
    f.ip_recomputed = true;
    f.changed |= RecomputeIpv4HeaderChecksum(buf);
  }
  return f;
}

}  // namespace sluice
