// Network byte order loads and stores on unaligned bytes.
//
// Contract: p points at >= N readable (or writable) bytes; no alignment is assumed. Each
// compiles to one mov plus bswap (memcpy is the portable unaligned access).
#pragma once

#include <cstdint>
#include <cstring>

namespace sluice {

inline uint16_t LoadBe16(const uint8_t* p) noexcept {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_bswap16(v);
}

inline uint32_t LoadBe32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_bswap32(v);
}

inline void StoreBe16(uint8_t* p, uint16_t v) noexcept {
  v = __builtin_bswap16(v);
  std::memcpy(p, &v, sizeof v);
}

inline void StoreBe32(uint8_t* p, uint32_t v) noexcept {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, sizeof v);
}

// Host-order loads of unaligned bytes (for hashing and checksums, where the order is chosen
// by the caller).
inline uint16_t LoadHost16(const uint8_t* p) noexcept {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint32_t LoadHost32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint64_t LoadHost64(const uint8_t* p) noexcept {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace sluice
