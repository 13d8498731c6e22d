// TCP header view (RFC 9293): offsets and accessors over the bytes at `t`.
//
//   0: src port   2: dst port   4: sequence   8: acknowledgement
//  12: data offset (high nibble)   13: flags   14: window   16: checksum   18: urgent
//  20: options, up to data offset * 4
//
// Contract: accessors read offsets below 20; the parse stage has checked that the whole
// header (HeaderLen bytes) is inside the captured IP payload when it set pkt_flag::kL4Valid.
#pragma once

#include <cstdint>

#include "engine/core/byte_order.h"
#include "engine/proto/options.h"

namespace sluice::tcp {

inline constexpr uint32_t kMinHeaderLen = 20;
inline constexpr uint32_t kOffSrcPort = 0;
inline constexpr uint32_t kOffDstPort = 2;
inline constexpr uint32_t kOffDataOffset = 12;
inline constexpr uint32_t kOffFlags = 13;
inline constexpr uint32_t kOffChecksum = 16;

inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;

inline constexpr uint8_t kOptMss = 2;
inline constexpr uint8_t kOptMssLen = 4;

inline uint16_t SrcPort(const uint8_t* t) noexcept { return LoadBe16(t + kOffSrcPort); }
inline uint16_t DstPort(const uint8_t* t) noexcept { return LoadBe16(t + kOffDstPort); }
inline uint32_t HeaderLen(const uint8_t* t) noexcept { return (t[kOffDataOffset] >> 4) * 4u; }
inline uint8_t Flags(const uint8_t* t) noexcept { return t[kOffFlags]; }

// Offset from t of an MSS option's kind byte, or -1 when the header has no more. Walks the
// options of a header of hl (>= 20) captured bytes from `from` (20, or where an earlier
// option ends: a SYN may carry two, and Linux uses the last); stops at End or a malformed
// option.
inline int FindMss(const uint8_t* t, uint32_t hl, uint32_t from = kMinHeaderLen) noexcept {
  const int at = FindKlvOption(t + kMinHeaderLen, hl - kMinHeaderLen, kOptMss, kOptMssLen, from - kMinHeaderLen);
  return at < 0 ? -1 : at + static_cast<int>(kMinHeaderLen);
}

}  // namespace sluice::tcp
