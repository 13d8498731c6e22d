// UDP header view (RFC 768): 0: src port, 2: dst port, 4: length (header + data), 6: checksum.
// Contract: 8 bytes captured (the parse stage checked them when it set pkt_flag::kL4Valid).
#pragma once

#include <cstdint>

#include "engine/core/byte_order.h"

namespace sluice::udp {

inline constexpr uint32_t kHeaderLen = 8;
inline constexpr uint32_t kOffSrcPort = 0;
inline constexpr uint32_t kOffDstPort = 2;
inline constexpr uint32_t kOffLength = 4;
inline constexpr uint32_t kOffChecksum = 6;

inline uint16_t SrcPort(const uint8_t* u) noexcept { return LoadBe16(u + kOffSrcPort); }
inline uint16_t DstPort(const uint8_t* u) noexcept { return LoadBe16(u + kOffDstPort); }
inline uint16_t Length(const uint8_t* u) noexcept { return LoadBe16(u + kOffLength); }

}  // namespace sluice::udp
