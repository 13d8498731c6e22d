// Traffic mixes for the stage benchmarks, built once with the tests' PacketBuilder (fixed
// seed: every run measures the same packets). Addresses from 198.18.0.0/15 and 2001:2::/48.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/pool/buffer_pool.h"
#include "tests/testing/packet_builder.h"

namespace sluice::bench {

// The pool every stage benchmark takes its buffers from (2048 small buffers).
BufferPool& Pool();

enum Mix : int {
  kIpv4Tcp64 = 0,    // 60-byte Ethernet frames (64 B on the wire): IPv4 TCP ACKs, many flows
  kIpv6Ext = 1,      // IPv6 TCP behind hop-by-hop, destination options, routing (4 headers)
  kImix = 2,         // 7:4:1 of 60/590/1514-byte frames, 80 % IPv4, TCP and UDP
  kAdversarial = 3,  // IPv6 chains at the 8-header cap, every kind of malformation, QinQ
};

const char* MixName(int mix);

// n packets of a mix (the mix's pattern repeated, flows varied).
std::vector<testing::TestPacket> MixPackets(int mix, std::size_t n);

}  // namespace sluice::bench
