// ICMP (RFC 792) and ICMPv6 (RFC 4443) header view: 0: type, 1: code, 2: checksum, then four
// bytes whose meaning depends on the type (echo: 4: identifier, 6: sequence number).
// The ICMPv4 checksum covers the message only; the ICMPv6 one also an IPv6 pseudo-header.
// Contract: 8 bytes captured (the parse stage checked them when it set pkt_flag::kL4Valid).
#pragma once

#include <cstdint>

#include "engine/core/byte_order.h"

namespace sluice::icmp {

inline constexpr uint32_t kHeaderLen = 8;
inline constexpr uint32_t kOffType = 0;
inline constexpr uint32_t kOffCode = 1;
inline constexpr uint32_t kOffChecksum = 2;
inline constexpr uint32_t kOffEchoId = 4;
inline constexpr uint32_t kOffEchoSeq = 6;

inline constexpr uint8_t kEchoReply = 0;
inline constexpr uint8_t kEchoRequest = 8;
inline constexpr uint8_t kV6EchoRequest = 128;
inline constexpr uint8_t kV6EchoReply = 129;

inline uint8_t Type(const uint8_t* h) noexcept { return h[kOffType]; }

// The messages that quote the packet they are about (RFC 792, RFC 4443): destination
// unreachable (fragmentation needed, packet too big), time exceeded, parameter problem, and
// ICMPv4's source quench. `v6`: an ICMPv6 type.
inline bool IsError(bool v6, uint8_t type) noexcept {
  if (!v6) return type == 3 || type == 4 || type == 11 || type == 12;
  return type >= 1 && type <= 4;
}
inline uint8_t Code(const uint8_t* h) noexcept { return h[kOffCode]; }

// The IP header an ICMP error quotes (h: the error's ICMP header, avail bytes from h on):
// nullptr unless the quote holds a whole fixed IP header (20 bytes, 40 for IPv6) of the
// error's own family. Callers check the rest they need (IHL, fragment offset, ports).
inline const uint8_t* QuotedIpHeader(bool v6, const uint8_t* h, uint32_t avail) noexcept {
  const uint32_t fixed = v6 ? 40 : 20;
  if (avail < kHeaderLen + fixed) return nullptr;
  const uint8_t* q = h + kHeaderLen;
  return (q[0] >> 4) == (v6 ? 6 : 4) ? q : nullptr;
}
inline uint16_t EchoId(const uint8_t* h) noexcept { return LoadBe16(h + kOffEchoId); }

}  // namespace sluice::icmp
