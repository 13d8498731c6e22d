// IP protocol numbers and the version nibble shared by the IPv4 and IPv6 views.
#pragma once

#include <cstdint>

namespace sluice::ipproto {

inline constexpr uint8_t kHopByHop = 0;  // IPv6 hop-by-hop options
inline constexpr uint8_t kIcmp = 1;
inline constexpr uint8_t kTcp = 6;
inline constexpr uint8_t kUdp = 17;
inline constexpr uint8_t kRouting = 43;   // IPv6 routing header
inline constexpr uint8_t kFragment = 44;  // IPv6 fragment header
inline constexpr uint8_t kEsp = 50;
inline constexpr uint8_t kAh = 51;
inline constexpr uint8_t kIcmpv6 = 58;
inline constexpr uint8_t kNoNext = 59;    // IPv6: nothing follows
inline constexpr uint8_t kDestOpts = 60;  // IPv6 destination options

}  // namespace sluice::ipproto

namespace sluice {

// The version nibble of the first byte of an IP header.
inline uint8_t IpVersion(const uint8_t* ip) noexcept { return ip[0] >> 4; }

}  // namespace sluice
