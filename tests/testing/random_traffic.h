// Random traffic and random rewrite plans for property tests, reproducible from a seed.
// Addresses come from the benchmarking ranges 198.18.0.0/15 and 2001:2::/48.
#pragma once

#include <cstdint>
#include <string>

#include "engine/stages/rewrite/rewrite_plan.h"
#include "tests/testing/packet_builder.h"

namespace sluice::testing {

// SLUICE_TEST_SEED when set (to replay a run), else a fresh random seed. Print it.
uint64_t SeedFromEnv();

// splitmix64: fast, and plenty for test data.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t operator()() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t s_;
};

struct TrafficOptions {
  bool icmp_echo_only = false;  // ICMP types that carry no embedded packet
  bool udp_no_checksum = true;  // sometimes IPv4 UDP with checksum 0
  bool other_protocols = true;  // sometimes GRE or SCTP (never touched by rewrite)
  bool link_variety = true;     // raw, Ethernet, 802.1Q, Linux SLL; else Ethernet only
  uint8_t min_ttl = 1;
};

struct PlanOptions {
  bool ttl_decrement = true;  // may expire packets
  bool wrong_family = true;   // sometimes an address op of the other family
};

class RandomTraffic {
 public:
  explicit RandomTraffic(uint64_t seed) : rng_(seed) {}

  uint32_t U(uint32_t n) { return static_cast<uint32_t>(rng_() % n); }
  bool Coin(uint32_t one_in = 2) { return U(one_in) == 0; }
  std::string Ipv4Text();
  std::string Ipv6Text();

  // A well-formed packet of random shape with valid checksums.
  TestPacket Packet(const TrafficOptions& o = {});
  // An unfragmented UDP datagram with `payload` bytes, in raw link framing.
  TestPacket Datagram(bool v6, std::size_t payload);
  RewritePlan Plan(bool v6, const PlanOptions& o = {});
  void Fill(std::vector<uint8_t>& bytes);

 private:
  AddrRewrite Addr(bool v6, const PlanOptions& o);
  PortRewrite Port();

  Rng rng_;
};

}  // namespace sluice::testing
