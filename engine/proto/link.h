// Link-layer front ends: from meta.link_type and the captured bytes to the offset and family
// of the IP header. One switch, no object per layer.
//
//   kEthernet    dst(6) src(6) type(2), then up to kMaxVlanTags 802.1Q (0x8100) / 802.1ad
//                (0x88a8, 0x9100) tags of 4 bytes, each ending in the next type
//   kLinuxSll    pkttype(2) arphrd(2) addrlen(2) addr(8) protocol(2)          16 bytes
//   kLinuxSll2   protocol(2) reserved(2) ifindex(4) arphrd(2) pkttype(1)
//                addrlen(1) addr(8)                                           20 bytes
//   kBsdLoopback address family, 4 bytes: DLT_LOOP writes it in network order, DLT_NULL in
//                the capturing host's order; a value above 0xffff is read byte-swapped, so
//                one front end takes both. AF_INET = 2; AF_INET6 is 24 (NetBSD, OpenBSD),
//                28 (FreeBSD), 30 (macOS) or 10 (Linux).
//   kIpv4/kIpv6  the IP header first; the family is fixed by the link type
//   kRaw         the IP header first; the version nibble decides (NFQUEUE, divert, DLT_RAW)
// The SLL front ends also walk VLAN tags (a capture on a device that keeps them).
// Everything else (ARP, PPPoE, MPLS, LLC, 802.3 lengths) is kNotIp: passed, not parsed.
#pragma once

#include <cstdint>

#include "engine/core/byte_order.h"
#include "engine/packet/drop_reason.h"
#include "engine/packet/packet_buffer.h"
#include "engine/proto/ip.h"

namespace sluice::link {

inline constexpr uint32_t kEthernetHeaderLen = 14;
inline constexpr uint32_t kVlanTagLen = 4;
inline constexpr uint32_t kSllHeaderLen = 16;
inline constexpr uint32_t kSll2HeaderLen = 20;
inline constexpr uint32_t kLoopbackHeaderLen = 4;
inline constexpr uint32_t kMaxVlanTags = 4;

inline constexpr uint16_t kEtherIpv4 = 0x0800;
inline constexpr uint16_t kEtherIpv6 = 0x86dd;
inline constexpr uint16_t kEtherVlan = 0x8100;
inline constexpr uint16_t kEtherQinQ = 0x88a8;
inline constexpr uint16_t kEtherQinQLegacy = 0x9100;

inline constexpr uint32_t kAfInet = 2;
inline constexpr uint32_t kAfInet6Linux = 10;
inline constexpr uint32_t kAfInet6Bsd = 24;
inline constexpr uint32_t kAfInet6FreeBsd = 28;
inline constexpr uint32_t kAfInet6Darwin = 30;

struct Decoded {
  uint32_t l3_off;
  L3Type l3;  // the family the link layer announced (kRaw: the version nibble's)
  uint8_t vlan_tags;
};

namespace detail {

constexpr bool IsVlanTpid(uint16_t type) noexcept {
  return type == kEtherVlan || type == kEtherQinQ || type == kEtherQinQLegacy;
}

// From a type field at p + off - 2 through any VLAN tags to the family.
inline DropReason EtherTypeChain(const uint8_t* p, uint32_t len, uint32_t off, uint16_t type,
                                 Decoded* out) noexcept {
  uint8_t tags = 0;
  while (IsVlanTpid(type)) {
    if (tags == kMaxVlanTags) return DropReason::kTooManyVlanTags;
    if (len - off < kVlanTagLen) return DropReason::kLinkTruncated;
    type = LoadBe16(p + off + 2);
    off += kVlanTagLen;
    ++tags;
  }
  out->l3_off = off;
  out->vlan_tags = tags;
  if (type == kEtherIpv4) {
    out->l3 = L3Type::kIpv4;
  } else if (type == kEtherIpv6) {
    out->l3 = L3Type::kIpv6;
  } else {
    return DropReason::kNotIp;
  }
  return DropReason::kNone;
}

}  // namespace detail

// Decodes the link layer of a `len`-byte capture at p. Returns kNone and fills out, or the
// reason: kLinkTruncated, kTooManyVlanTags, kNotIp, kBadIpVersion (kRaw with a version other
// than 4 and 6), kUnsupportedLinkType. Reads nothing at or past p + len.
inline DropReason Decode(LinkType type, const uint8_t* p, uint32_t len, Decoded* out) noexcept {
  out->vlan_tags = 0;
  out->l3_off = 0;
  switch (type) {
    case LinkType::kRaw:
      if (len == 0) return DropReason::kLinkTruncated;
      if (IpVersion(p) == 4) {
        out->l3 = L3Type::kIpv4;
      } else if (IpVersion(p) == 6) {
        out->l3 = L3Type::kIpv6;
      } else {
        return DropReason::kBadIpVersion;
      }
      return DropReason::kNone;
    case LinkType::kEthernet:
      if (len < kEthernetHeaderLen) return DropReason::kLinkTruncated;
      return detail::EtherTypeChain(p, len, kEthernetHeaderLen, LoadBe16(p + 12), out);
    case LinkType::kLinuxSll:
      if (len < kSllHeaderLen) return DropReason::kLinkTruncated;
      return detail::EtherTypeChain(p, len, kSllHeaderLen, LoadBe16(p + 14), out);
    case LinkType::kLinuxSll2:
      if (len < kSll2HeaderLen) return DropReason::kLinkTruncated;
      return detail::EtherTypeChain(p, len, kSll2HeaderLen, LoadBe16(p), out);
    case LinkType::kBsdLoopback: {
      if (len < kLoopbackHeaderLen) return DropReason::kLinkTruncated;
      uint32_t af = LoadBe32(p);
      if (af > 0xffff) af = __builtin_bswap32(af);
      out->l3_off = kLoopbackHeaderLen;
      if (af == kAfInet) {
        out->l3 = L3Type::kIpv4;
      } else if (af == kAfInet6Bsd || af == kAfInet6FreeBsd || af == kAfInet6Darwin ||
                 af == kAfInet6Linux) {
        out->l3 = L3Type::kIpv6;
      } else {
        return DropReason::kNotIp;
      }
      return DropReason::kNone;
    }
    case LinkType::kIpv4:
      out->l3 = L3Type::kIpv4;
      return DropReason::kNone;
    case LinkType::kIpv6:
      out->l3 = L3Type::kIpv6;
      return DropReason::kNone;
    case LinkType::kUnsupported:
      break;
  }
  return DropReason::kUnsupportedLinkType;
}

}  // namespace sluice::link
