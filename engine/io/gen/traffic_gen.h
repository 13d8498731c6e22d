// TrafficGenerator: deterministic synthetic traffic for benchmarks, tests and the demo.
//
// Ethernet frames carrying IPv4 or IPv6, TCP or UDP, between clients in 198.18.0.0/16 and
// servers in 198.19.0.0/16 (IPv6: 2001:2::/48, RFC 5180's benchmarking range), all with valid
// checksums. A fixed set of flows; each packet picks one at random and goes client → server,
// or server → client with probability reply_share, so both directions of a flow appear. The
// first packet of a TCP flow is a SYN with an MSS option. The same seed gives the same bytes.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace sluice {

enum class SizeMix : uint8_t {
  k64,    // 60-byte frames (64 B on the wire with FCS); IPv6 gets its smallest possible frame
  kImix,  // 7:4:1 of 60 / 590 / 1514-byte frames
  k1500,  // 1514-byte frames
};

struct TrafficSpec {
  uint64_t seed = 1;
  uint32_t flows = 1024;
  SizeMix sizes = SizeMix::k64;
  double ipv6_share = 0.0;   // fraction of flows that are IPv6
  double udp_share = 0.25;   // fraction of flows that are UDP (the rest TCP)
  double reply_share = 0.3;  // fraction of packets going server → client
};

bool ParseSizeMix(const std::string& text, SizeMix* out);
const char* SizeMixName(SizeMix m);

class TrafficGenerator {
 public:
  explicit TrafficGenerator(const TrafficSpec& spec);

  // The next frame (Ethernet header first) into `frame`, replacing its contents.
  void Next(std::vector<uint8_t>& frame);

  // `count` frames in memory (for benchmarks and tests).
  std::vector<std::vector<uint8_t>> Generate(uint64_t count);

 private:
  struct Flow {
    bool ipv6;
    uint8_t proto;  // 6 or 17
    uint8_t client[16];
    uint8_t server[16];
    uint16_t client_port;
    uint16_t server_port;
    uint32_t client_seq;
    uint32_t server_seq;
    bool syn_sent;
  };
  uint32_t NextFrameSize();

  TrafficSpec spec_;
  std::mt19937_64 rng_;
  std::vector<Flow> flows_;
  uint64_t imix_step_ = 0;
};

// Writes `count` frames of `spec` to a pcap file (DLT_EN10MB, 1 µs apart from a fixed epoch).
Status WritePcap(const TrafficSpec& spec, uint64_t count, const std::string& path);

}  // namespace sluice
