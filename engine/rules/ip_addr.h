// IpAddr and Cidr: addresses as the rules see them, and their text forms.
//
// Both families live in one 128-bit unsigned value so that a range check is one code path:
// an IPv6 address is its 128 bits, most significant first; an IPv4 address is its 32 bits in
// the low end of the value (not v4-mapped: the family travels beside it and is always
// compared first). Parsing is written here rather than taken from <arpa/inet.h> because
// nothing under engine/rules includes a socket header (ARCHITECTURE.md, contract 7).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engine/packet/packet_buffer.h"

namespace sluice {

__extension__ typedef unsigned __int128 U128;  // NOLINT(modernize-use-using): __extension__ needs typedef

constexpr U128 MakeU128(uint64_t hi, uint64_t lo) noexcept { return (static_cast<U128>(hi) << 64) | lo; }
constexpr uint64_t High64(U128 v) noexcept { return static_cast<uint64_t>(v >> 64); }
constexpr uint64_t Low64(U128 v) noexcept { return static_cast<uint64_t>(v); }

struct IpAddr {
  L3Type family = L3Type::kNone;
  U128 value = 0;  // IPv4: low 32 bits

  static IpAddr V4(uint32_t v) noexcept { return {L3Type::kIpv4, v}; }
  static IpAddr V6(U128 v) noexcept { return {L3Type::kIpv6, v}; }
  uint32_t v4() const noexcept { return static_cast<uint32_t>(value); }
  // Bits in the family's address: 32 or 128 (0 for kNone).
  uint32_t bits() const noexcept { return family == L3Type::kIpv4 ? 32 : family == L3Type::kIpv6 ? 128 : 0; }

  // Network byte order: 4 or 16 bytes at out.
  void ToBytes(uint8_t* out) const noexcept;
  static IpAddr FromV4Bytes(const uint8_t* p) noexcept;
  static IpAddr FromV6Bytes(const uint8_t* p) noexcept;

  friend bool operator==(const IpAddr&, const IpAddr&) = default;
};

// Mask with the top `len` bits of a `width`-bit value set (width 32 or 128, len <= width).
constexpr U128 AllOnes(uint32_t width) noexcept {
  return width == 128 ? ~static_cast<U128>(0) : ((static_cast<U128>(1) << width) - 1);
}
constexpr U128 PrefixMask(uint32_t len, uint32_t width) noexcept {
  if (len == 0) return 0;
  return AllOnes(width) & ~((static_cast<U128>(1) << (width - len)) - 1);
}

struct Cidr {
  IpAddr addr;     // network address: host bits are zero
  uint8_t len = 0; // prefix length, 0..addr.bits()

  U128 first() const noexcept { return addr.value; }
  U128 last() const noexcept {
    return addr.value | (AllOnes(addr.bits()) & ~PrefixMask(len, addr.bits()));
  }
  bool Contains(const IpAddr& a) const noexcept {
    return a.family == addr.family && a.value >= first() && a.value <= last();
  }
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

// Strict text forms: dotted quad (four decimal octets, no leading zeros beyond "0"), and RFC
// 4291 IPv6 text (hex groups, one "::", an optional dotted-quad tail; no zone index).
std::optional<IpAddr> ParseIpAddr(std::string_view text);

// "addr/len" or a bare address (a host prefix). On failure returns nullopt and, when `why` is
// given, a sentence saying what was wrong (a prefix longer than the family allows, host bits
// set below the prefix, …). Host bits set are an error, never silently cleared: "10.1.2.3/8"
// is almost always a typo for a host or for 10.0.0.0/8.
std::optional<Cidr> ParseCidr(std::string_view text, std::string* why = nullptr);

std::string ToString(const IpAddr& a);
std::string ToString(const Cidr& c);

}  // namespace sluice
