// IPv6 header view and extension-header chain walk (RFC 8200).
//
//    0               1               2               3
//   +-------+-------+-------+-------+-------------------------------+
//   |Version| Traffic Class |              Flow Label               |  0
//   +-------+-------+-------+-------+---------------+---------------+
//   |        Payload Length         |  Next Header  |   Hop Limit   |  4
//   +-------------------------------+---------------+---------------+
//   |                  Source Address (16 bytes)                    |  8
//   |               Destination Address (16 bytes)                  | 24
//   +---------------------------------------------------------------+ 40
//   extension headers: hop-by-hop (0), routing (43), fragment (44), destination options (60),
//   authentication (51), each naming the next; then the upper-layer header.
//
// Contract: accessors read fixed offsets below 40; the caller has checked 40 bytes are
// captured. WalkChain is the function that checks everything after the fixed header.
#pragma once

#include <cstdint>

#include "engine/core/byte_order.h"
#include "engine/packet/drop_reason.h"
#include "engine/proto/ip.h"

namespace sluice::ipv6 {

inline constexpr uint32_t kHeaderLen = 40;
inline constexpr uint32_t kMaxDatagram = 65535;  // reassembled payload limit (no jumbograms)

inline constexpr uint32_t kOffPayloadLen = 4;
inline constexpr uint32_t kOffNextHeader = 6;
inline constexpr uint32_t kOffHopLimit = 7;
inline constexpr uint32_t kOffSrc = 8;
inline constexpr uint32_t kOffDst = 24;
inline constexpr uint32_t kAddrLen = 16;

inline constexpr uint8_t kOptPad1 = 0;
inline constexpr uint8_t kOptJumbo = 0xc2;

inline uint16_t PayloadLen(const uint8_t* ip) noexcept { return LoadBe16(ip + kOffPayloadLen); }
inline uint8_t NextHeader(const uint8_t* ip) noexcept { return ip[kOffNextHeader]; }
inline uint8_t HopLimit(const uint8_t* ip) noexcept { return ip[kOffHopLimit]; }
// Traffic class: the 8 bits after the version nibble.
inline uint8_t TrafficClass(const uint8_t* ip) noexcept {
  return static_cast<uint8_t>(((ip[0] & 0x0f) << 4) | (ip[1] >> 4));
}

// True for the next-header values WalkChain walks through as extension headers.
constexpr bool IsExtHeader(uint8_t nh) noexcept {
  return nh == ipproto::kHopByHop || nh == ipproto::kRouting || nh == ipproto::kFragment ||
         nh == ipproto::kDestOpts || nh == ipproto::kAh;
}

// Caps on the chain (ParseConfig sets them). A legitimate chain is short; a long one costs
// every middlebox a walk and can push the transport header out of the first fragment.
struct Limits {
  uint8_t max_headers = 8;
  uint16_t max_bytes = 512;
  bool operator==(const Limits&) const = default;
};

// What WalkChain learned; meaningful only when it returned kNone.
struct Chain {
  uint32_t l4_off;      // from the IPv6 header to the upper-layer header; 0 when none follows
                        // (next header 59, or a non-first fragment)
  uint8_t l4_proto;     // upper-layer protocol (for a non-first fragment: the fragment
                        // header's next header; 59 when nothing follows)
  uint8_t headers;      // extension headers walked
  bool fragment;        // a fragment header with offset != 0 or M = 1 (not an atomic one)
  bool later_fragment;  // offset != 0: no upper-layer header in this packet
  bool more_fragments;
  uint32_t frag_offset;  // bytes
  uint32_t frag_id;      // the fragment header's identification (when fragment)
  uint32_t routing_off;  // offset of a routing header with segments left > 0; 0 when none
};

// Walks the extension headers of the IPv6 packet at ip, whose length (40 + payload length,
// all captured) is ip_len. Checks: hop-by-hop only first, at most one fragment header, every
// header inside ip_len, option TLVs inside their header, the caps, and the fragment fields.
// A jumbo payload option returns kIpv6Jumbogram. Reads nothing at or past ip + ip_len.
DropReason WalkChain(const uint8_t* ip, uint32_t ip_len, const Limits& limits, Chain* out) noexcept;

// The address the upper-layer pseudo-header uses as destination (RFC 8200 §8.1): the
// destination address, or, while a routing header still has segments left, the final one it
// lists (type 0: the last address; type 2: its home address; type 4, SRH: segment list[0]).
// nullptr when a routing header of another type has segments left (the final destination is
// unknown) or the chain does not walk. ip_len as for WalkChain.
const uint8_t* PseudoHeaderDst(const uint8_t* ip, uint32_t ip_len) noexcept;

}  // namespace sluice::ipv6
