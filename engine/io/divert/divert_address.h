// The divert(4) socket address: what the kernel says about each diverted packet, and what it
// needs back, byte for byte, to reinject it.
//
//            kernel → sluice (recvfrom)              sluice → kernel (sendto, same bytes)
//   sin_port  ipfw rule number that diverted it,      resume ipfw after this rule number
//             in HOST byte order (not the bind port)
//   sin_addr  inbound: first IPv4 address of the      != INADDR_ANY: ip_input on the named
//             receiving interface; outbound: ANY      interface; INADDR_ANY: ip_output
//   sin_zero  receiving interface name, at most       a name here picks the input interface
//             7 chars + NUL (empty when none)         (the address is then only "not ANY")
//
// IPv6 packets travel on the same socket with the same AF_INET address (ip_divert.c).
// Sources: FreeBSD sys/netinet/ip_divert.c (divert_packet, div_output) and divert(4).
//
// The address is carried with its packet in IoContext::token (DivertToken) and handed back
// unchanged: never one "last address" per socket, which reinjects interleaved packets on the
// wrong path or interface.
#pragma once

#include <netinet/in.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "engine/packet/packet_buffer.h"

namespace sluice {

// What a divert address says, decoded.
struct DivertInfo {
  Direction direction = Direction::kUnknown;  // kIn when sin_addr != INADDR_ANY, else kOut
  uint16_t rule = 0;                          // ipfw rule number (host order)
  uint32_t if_addr = 0;                       // sin_addr, host order (0 = outbound)
  uint64_t if_key = 0;                        // interface name as an 8-byte key (IfNameKey)
};

// The 8 bytes of sin_zero as one integer, with every byte after the first NUL cleared, so a
// name compares as one 64-bit value. 0 means no name. A name filling all 8 bytes without a
// NUL (never written by the kernel, which uses strlcpy) keeps all 8.
uint64_t IfNameKey(const sockaddr_in& addr) noexcept;
// The name a key holds (at most 8 chars), written to out; returns its length.
std::size_t IfNameOfKey(uint64_t key, char (&out)[8]) noexcept;

DivertInfo DecodeDivertAddress(const sockaddr_in& addr) noexcept;

// Builds the address the kernel would hand over for a packet diverted by `rule`: outbound
// (kOut, sin_addr ANY) or inbound on an interface with IPv4 address if_addr (host order) and
// name if_name (truncated to 7 chars, as strlcpy into sin_zero does). For tests, tools, and
// reasoning; the data path never builds addresses, it returns the ones it read.
sockaddr_in MakeDivertAddress(Direction direction, uint16_t rule, uint32_t if_addr,
                              std::string_view if_name) noexcept;

// What travels with a packet in IoContext::token: the address bytes exactly as recvfrom wrote
// them, and the length it reported.
struct DivertToken {
  static constexpr std::size_t kAddrOffset = 0;
  static constexpr std::size_t kLenOffset = sizeof(sockaddr_in);
  static constexpr std::size_t kSize = kLenOffset + sizeof(uint32_t);

  static uint8_t* AddrBytes(IoContext& io) noexcept { return io.token + kAddrOffset; }
  static const uint8_t* AddrBytes(const IoContext& io) noexcept { return io.token + kAddrOffset; }
  static sockaddr_in Addr(const IoContext& io) noexcept {
    sockaddr_in a;
    std::memcpy(&a, io.token + kAddrOffset, sizeof a);
    return a;
  }
  static uint32_t Len(const IoContext& io) noexcept {
    uint32_t n;
    std::memcpy(&n, io.token + kLenOffset, sizeof n);
    return n;
  }
  static void Store(IoContext& io, const sockaddr_in& a, uint32_t len) noexcept {
    std::memcpy(io.token + kAddrOffset, &a, sizeof a);
    std::memcpy(io.token + kLenOffset, &len, sizeof len);
  }
  static void SetLen(IoContext& io, uint32_t len) noexcept {
    std::memcpy(io.token + kLenOffset, &len, sizeof len);
  }
};
static_assert(DivertToken::kSize <= sizeof(IoContext::token), "a divert address must fit the token");

// Interface names interned to small ids for PacketMeta::in_if: id 0 is "no name", ids
// 1..kCapacity name an interface, kOverflowId stands for every name seen after the table
// filled. Fixed storage: no allocation, ever.
//
// Threads: Intern() is called by one thread (the endpoint's I/O thread); Name() may be called
// from any thread. An entry is written before the size that publishes it (release/acquire),
// and is never changed afterwards.
// Cost: one compare against the last name seen, else a scan of at most kCapacity 64-bit keys
// (a host has a handful of interfaces).
class InterfaceTable {
 public:
  static constexpr uint32_t kCapacity = 64;
  static constexpr uint32_t kOverflowId = kCapacity + 1;

  // The id of the name `key` (IfNameKey); 0 for key 0. Adds the name on first sight.
  uint32_t Intern(uint64_t key) noexcept {
    if (key == 0) return 0;
    if (key == last_key_) return last_id_;
    return InternSlow(key);
  }
  // The name of an id ("" for 0, unknown ids and kOverflowId).
  std::string_view Name(uint32_t id) const noexcept;
  // The id of a name already interned, or 0.
  uint32_t Find(std::string_view name) const noexcept;
  uint32_t size() const noexcept { return size_.load(std::memory_order_acquire); }
  uint64_t overflowed() const noexcept { return overflowed_.load(std::memory_order_relaxed); }

 private:
  uint32_t InternSlow(uint64_t key) noexcept;

  std::array<uint64_t, kCapacity> keys_{};
  std::atomic<uint32_t> size_{0};
  std::atomic<uint64_t> overflowed_{0};  // Intern() calls answered with kOverflowId
  uint64_t last_key_ = 0;                // Intern()'s thread only
  uint32_t last_id_ = 0;
};

}  // namespace sluice
