// The symmetric, seeded flow hash: both directions of a flow hash alike, so sharding by it
// sends a flow's two directions to one shard (per-flow state without a lock).
//
// Symmetry: the two endpoints (address, port) are put in a canonical order before hashing,
// so Hash(a:pa → b:pb) == Hash(b:pb → a:pa). Addresses are compared as loaded from memory:
// any fixed order works, it only has to be the same for both directions.
// Seed: every 64-bit word is XORed with its own rotation of the seed and multiplied by an
// odd constant (a bijection, not linear in the seed); the products are combined and mixed
// once more, so which keys collide depends on the seed. Not cryptographic: it makes
// collisions unpredictable to a sender who does not know the seed, nothing more.
// Cost: the per-word multiplies are independent and overlap in the pipeline; the latency is
// two multiplies plus shifts (bench/stages/parse_bench.cpp runs it for every packet).
#pragma once

#include <cstdint>
#include <cstring>

namespace sluice {

namespace flow_hash_detail {

inline constexpr uint64_t kMul[5] = {0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full,
                                     0x165667b19e3779f9ull, 0xd6e8feb86659fd93ull,
                                     0xa0761d6478bd642full};

inline uint64_t Rotl(uint64_t x, int r) noexcept { return (x << r) | (x >> (64 - r)); }

// Word `lane` of a key: keyed by a rotation of the seed, spread by a multiply.
inline uint64_t Word(uint64_t w, uint64_t seed, int lane) noexcept {
  return (w ^ Rotl(seed, 1 + lane * 13)) * kMul[lane];
}

inline uint32_t Finish(uint64_t h) noexcept {
  h ^= h >> 32;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 29;
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
  return Finish(Word(ea | (uint64_t{proto} << 48), seed, 0) ^ Rotl(Word(eb, seed, 1), 31));
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
  const uint64_t h = Word(a0, seed, 0) ^ Rotl(Word(a1, seed, 1), 17) ^ Rotl(Word(b0, seed, 2), 31) ^
                     Rotl(Word(b1, seed, 3), 47) ^
                     Word((uint64_t{proto} << 32) | (uint64_t{pa} << 16) | pb, seed, 4);
  return Finish(h);
}

}  // namespace sluice
