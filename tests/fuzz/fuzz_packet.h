// What the packet fuzz targets share: the input format and a guard-page slot.
//
// Input: byte 0 picks the link type (kLinkTypes order), the rest is the captured packet. The
// seeds (make_seeds.cpp) are tcpdump's corpus packets in that format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "engine/packet/packet_buffer.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/testing/guarded_packet.h"

namespace sluice::fuzz {

inline constexpr LinkType kLinkTypes[] = {LinkType::kRaw,       LinkType::kEthernet,    LinkType::kLinuxSll,
                                          LinkType::kLinuxSll2, LinkType::kBsdLoopback, LinkType::kIpv4,
                                          LinkType::kIpv6,      LinkType::kUnsupported};
inline constexpr std::size_t kNumLinkTypes = sizeof(kLinkTypes) / sizeof(kLinkTypes[0]);
inline constexpr uint32_t kMaxPacket = 65535 + 64;
// fuzz_rewrite's input: the link byte, then this many bytes of rewrite plan, then the packet.
inline constexpr std::size_t kPlanBytes = 32;

inline uint8_t LinkByte(LinkType t) {
  for (std::size_t i = 0; i < kNumLinkTypes; ++i) {
    if (kLinkTypes[i] == t) return static_cast<uint8_t>(i);
  }
  return 0;
}

// A packet slot whose last byte sits before an inaccessible page; mapped once per process.
inline testing::GuardedPacket& Slot(int which) {
  static testing::GuardedPacket slots[2] = {testing::GuardedPacket(kMaxPacket), testing::GuardedPacket(kMaxPacket)};
  return slots[which];
}

}  // namespace sluice::fuzz
