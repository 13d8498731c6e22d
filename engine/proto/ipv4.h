// IPv4 header view: offsets and accessors over the bytes at `ip` (RFC 791), plus the one
// validation the parse stage runs. No object per header: every function takes the pointer.
//
//    0               1               2               3
//   +-------+-------+---------------+-------------------------------+
//   |Version|  IHL  |    TOS/DSCP   |          Total Length         |  0
//   +-------+-------+---------------+-----+-------------------------+
//   |         Identification        |Flags|     Fragment Offset     |  4
//   +---------------+---------------+-----+-------------------------+
//   |      TTL      |   Protocol    |        Header Checksum        |  8
//   +---------------+---------------+-------------------------------+
//   |                        Source Address                         | 12
//   |                     Destination Address                       | 16
//   |                     Options (IHL > 5) ...                     | 20
//
// Contract: accessors read fixed offsets below 20; the caller has checked that 20 bytes (and
// HeaderLen() bytes for options) are captured. Validate is the function that checks.
#pragma once

#include <cstdint>

#include "engine/core/byte_order.h"
#include "engine/packet/drop_reason.h"
#include "engine/proto/ip.h"
#include "engine/proto/options.h"

namespace sluice::ipv4 {

inline constexpr uint32_t kMinHeaderLen = 20;
inline constexpr uint32_t kMaxDatagram = 65535;

inline constexpr uint32_t kOffTos = 1;
inline constexpr uint32_t kOffTotalLen = 2;
inline constexpr uint32_t kOffId = 4;
inline constexpr uint32_t kOffFrag = 6;
inline constexpr uint32_t kOffTtl = 8;
inline constexpr uint32_t kOffProto = 9;
inline constexpr uint32_t kOffChecksum = 10;
inline constexpr uint32_t kOffSrc = 12;
inline constexpr uint32_t kOffDst = 16;

inline constexpr uint16_t kFlagReserved = 0x8000;
inline constexpr uint16_t kFlagDf = 0x4000;
inline constexpr uint16_t kFlagMf = 0x2000;
inline constexpr uint16_t kFragOffsetMask = 0x1fff;

inline uint32_t HeaderLen(const uint8_t* ip) noexcept { return (ip[0] & 0x0fu) * 4u; }
inline uint8_t Tos(const uint8_t* ip) noexcept { return ip[kOffTos]; }
inline uint16_t TotalLen(const uint8_t* ip) noexcept { return LoadBe16(ip + kOffTotalLen); }
inline uint16_t FragField(const uint8_t* ip) noexcept { return LoadBe16(ip + kOffFrag); }
// Fragment offset in bytes.
inline uint32_t FragOffset(const uint8_t* ip) noexcept {
  return (FragField(ip) & kFragOffsetMask) * 8u;
}
inline bool MoreFragments(const uint8_t* ip) noexcept { return (FragField(ip) & kFlagMf) != 0; }
inline uint8_t Ttl(const uint8_t* ip) noexcept { return ip[kOffTtl]; }
inline uint8_t Protocol(const uint8_t* ip) noexcept { return ip[kOffProto]; }
inline uint32_t Src(const uint8_t* ip) noexcept { return LoadBe32(ip + kOffSrc); }
inline uint32_t Dst(const uint8_t* ip) noexcept { return LoadBe32(ip + kOffDst); }

// What Validate learned; meaningful only when it returned kNone.
struct Info {
  uint32_t header_len;   // IHL * 4
  uint32_t total_len;    // total length field
  uint32_t frag_offset;  // bytes
  bool more_fragments;
  uint8_t proto;
};

// Validates the IPv4 header at ip against the `captured` bytes from ip to the end of the
// capture. Checks, in order: 20 bytes present, version 4, IHL >= 5, IHL*4 captured, total
// length >= IHL*4 (0 with bytes behind the header is a TSO/GSO capture: kGsoLengthZero) and
// captured, options well formed, and fragment fields sane. Reads nothing at or past
// ip + captured.
inline DropReason Validate(const uint8_t* ip, uint32_t captured, Info* out) noexcept {
  if (captured < kMinHeaderLen) return DropReason::kIpv4HeaderTruncated;
  if (IpVersion(ip) != 4) return DropReason::kBadIpVersion;
  const uint32_t hl = HeaderLen(ip);
  if (hl < kMinHeaderLen) return DropReason::kIpv4BadIhl;
  if (hl > captured) return DropReason::kIpv4HeaderTruncated;
  const uint32_t total = TotalLen(ip);
  if (total < hl) {
    // 0 with bytes behind the header is how TSO/GSO captures show a super-packet.
    return total == 0 && captured > hl ? DropReason::kGsoLengthZero
                                       : DropReason::kIpv4BadTotalLength;
  }
  if (total > captured) return DropReason::kIpv4LengthExceedsCapture;
  if (hl > kMinHeaderLen && !ValidKlvOptions(ip + kMinHeaderLen, hl - kMinHeaderLen)) {
    return DropReason::kIpv4BadOption;
  }
  const uint16_t frag = FragField(ip);
  const uint32_t offset = (frag & kFragOffsetMask) * 8u;
  const bool mf = (frag & kFlagMf) != 0;
  const uint32_t payload = total - hl;
  const uint8_t proto = Protocol(ip);
  if (offset != 0 || mf) {
    // A fragment that would end past the largest datagram (the "ping of death"), a middle
    // fragment whose length is not a multiple of 8, or a TCP fragment at offset 8 that could
    // overwrite the TCP flags of the first (RFC 1858 §3.2).
    if (offset + payload > kMaxDatagram - hl || (mf && payload % 8 != 0) ||
        (offset == 8 && proto == ipproto::kTcp)) {
      return DropReason::kIpv4BadFragment;
    }
  }
  out->header_len = hl;
  out->total_len = total;
  out->frag_offset = offset;
  out->more_fragments = mf;
  out->proto = proto;
  return DropReason::kNone;
}

}  // namespace sluice::ipv4
