// The symmetric, seeded flow hash: both directions of a flow hash alike, so sharding by it
// sends a flow's two directions to one shard (per-flow state without a lock).
//
// Symmetry: the two endpoints (address, port) are put in a canonical order before hashing,
// so Hash(a:pa → b:pb) == Hash(b:pb → a:pa). Addresses are compared as loaded from memory:
// any fixed order works, it only has to be the same for both directions.
// Seed: every word is absorbed into a state that starts from the seed through a bijective
// multiply-xorshift step, so which keys collide depends on the seed (not cryptographic:
// it makes collisions unpredictable to a sender who does not know the seed, nothing more).
// Cost: IPv4 three multiply steps, IPv6 five.
#pragma once

#include <cstdint>
#include <cstring>

namespace sluice {

namespace flow_hash_detail {
inline uint64_t Absorb(uint64_t h, uint64_t w) noexcept {
  h = (h ^ w) * 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 32);
}
inline uint32_t Finish(uint64_t h) noexcept {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return static_cast<uint32_t>(h);
}
}  // namespace flow_hash_detail

// a, b: the two IPv4 addresses as 4 wire bytes; pa, pb: their ports (0 when none).
inline uint32_t FlowHashIpv4(uint64_t seed, const uint8_t* a, const uint8_t* b, uint16_t pa,
                             uint16_t pb, uint8_t proto) noexcept {
  using namespace flow_hash_detail;
  uint32_t x, y;
  std::memcpy(&x, a, 4);
  std::memcpy(&y, b, 4);
  uint64_t ea = (uint64_t{x} << 16) | pa;
  uint64_t eb = (uint64_t{y} << 16) | pb;
  if (ea > eb) {
    const uint64_t t = ea;
    ea = eb;
    eb = t;
  }
  return Finish(Absorb(Absorb(seed, ea | (uint64_t{proto} << 48)), eb));
}

// a, b: the two IPv6 addresses as 16 wire bytes each.
inline uint32_t FlowHashIpv6(uint64_t seed, const uint8_t* a, const uint8_t* b, uint16_t pa,
                             uint16_t pb, uint8_t proto) noexcept {
  using namespace flow_hash_detail;
  uint64_t a0, a1, b0, b1;
  std::memcpy(&a0, a, 8);
  std::memcpy(&a1, a + 8, 8);
  std::memcpy(&b0, b, 8);
  std::memcpy(&b1, b + 8, 8);
  const bool swap = a0 != b0 ? a0 > b0 : (a1 != b1 ? a1 > b1 : pa > pb);
  if (swap) {
    uint64_t t = a0;
    a0 = b0;
    b0 = t;
    t = a1;
    a1 = b1;
    b1 = t;
    const uint16_t p = pa;
    pa = pb;
    pb = p;
  }
  uint64_t h = Absorb(seed, a0);
  h = Absorb(h, a1);
  h = Absorb(h, b0);
  h = Absorb(h, b1);
  return Finish(Absorb(h, (uint64_t{proto} << 32) | (uint64_t{pa} << 16) | pb));
}

}  // namespace sluice
