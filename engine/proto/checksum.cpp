#include "engine/proto/checksum.h"

#include "engine/core/byte_order.h"

namespace sluice {
namespace {

// s + w with the carry out of bit 63 added back in (end-around carry): a 64-bit one's
// complement add. 2^64 ≡ 1 (mod 2^16 - 1), so folding the result later is exact.
inline uint64_t AddCarry(uint64_t s, uint64_t w) noexcept {
  s += w;
  return s + (s < w);
}

}  // namespace

uint64_t ChecksumAccumulate(const uint8_t* p, std::size_t n, uint64_t acc) noexcept {
  // Four independent lanes so the adds do not wait on each other's carries.
  uint64_t s0 = acc, s1 = 0, s2 = 0, s3 = 0;
  while (n >= 32) {
    s0 = AddCarry(s0, LoadHost64(p));
    s1 = AddCarry(s1, LoadHost64(p + 8));
    s2 = AddCarry(s2, LoadHost64(p + 16));
    s3 = AddCarry(s3, LoadHost64(p + 24));
    p += 32;
    n -= 32;
  }
  uint64_t s = AddCarry(AddCarry(s0, s1), AddCarry(s2, s3));
  while (n >= 8) {
    s = AddCarry(s, LoadHost64(p));
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    s = AddCarry(s, LoadHost32(p));
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    s = AddCarry(s, LoadHost16(p));
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    // The odd byte is the high-order byte of a big-endian word padded with zero.
    uint16_t last = 0;
    std::memcpy(&last, p, 1);
    s = AddCarry(s, last);
  }
  return s;
}

uint16_t InternetChecksumPlain16(const uint8_t* p, std::size_t n) noexcept {
  uint32_t sum = 0;
  std::size_t i = 0;
  for (; i + 1 < n; i += 2) sum += LoadBe16(p + i);
  if (i < n) sum += static_cast<uint32_t>(p[i]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  // Back to memory order, the domain of every other function here.
  return MemBe16(static_cast<uint16_t>(~sum));
}

}  // namespace sluice
