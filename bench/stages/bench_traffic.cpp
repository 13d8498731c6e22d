#include "bench/stages/bench_traffic.h"

#include <random>
#include <string>

namespace sluice::bench {
namespace {

using testing::PacketBuilder;
using testing::TestPacket;

std::string V4(std::mt19937& rng) {
  return "198." + std::to_string(18 + rng() % 2) + "." + std::to_string(rng() % 256) + "." +
         std::to_string(rng() % 256);
}
std::string V6(std::mt19937& rng) {
  return "2001:2::" + std::to_string(rng() % 9000 + 1) + ":" + std::to_string(rng() % 9000 + 1);
}
uint16_t Port(std::mt19937& rng) { return static_cast<uint16_t>(1024 + rng() % 60000); }

TestPacket Tcp64(std::mt19937& rng) {
  return PacketBuilder().Ethernet().Ipv4(V4(rng), V4(rng)).Tcp(Port(rng), 80).PadTo(60).Build();
}

TestPacket Ipv6Ext(std::mt19937& rng) {
  return PacketBuilder()
      .Ethernet()
      .Ipv6(V6(rng), V6(rng))
      .HopByHop({5, 2, 0, 0})
      .DestOpts()
      .Routing(4, 0, {V6(rng)})
      .DestOpts()
      .Tcp(Port(rng), 443)
      .Payload(20)
      .Build();
}

TestPacket Imix(std::mt19937& rng, std::size_t frame) {
  PacketBuilder b;
  b.Ethernet();
  const bool v6 = rng() % 5 == 0;
  if (v6) {
    b.Ipv6(V6(rng), V6(rng));
  } else {
    b.Ipv4(V4(rng), V4(rng));
  }
  const std::size_t hdr = 14 + (v6 ? 40 : 20);
  if (rng() % 3 == 0) {
    b.Udp(Port(rng), 53);
    if (frame > hdr + 8) b.Payload(frame - hdr - 8);
  } else {
    b.Tcp(Port(rng), 443);
    if (frame > hdr + 20) b.Payload(frame - hdr - 20);
  }
  return b.PadTo(60).Build();
}

// A packet the parser has to work hard on or reject.
TestPacket Adversarial(std::mt19937& rng, int kind) {
  switch (kind % 8) {
    case 0: {  // the longest chain the default caps allow
      PacketBuilder b;
      b.Ethernet().Ipv6(V6(rng), V6(rng)).HopByHop(std::vector<uint8_t>(54, 0));
      for (int i = 0; i < 7; ++i) b.DestOpts(std::vector<uint8_t>(54, 0));
      return b.Tcp(Port(rng), 80).Build();
    }
    case 1: {  // one header over the cap
      PacketBuilder b;
      b.Ethernet().Ipv6(V6(rng), V6(rng));
      for (int i = 0; i < 9; ++i) b.DestOpts();
      return b.Tcp(Port(rng), 80).Build();
    }
    case 2: {  // total length past the capture
      TestPacket p =
          PacketBuilder().Ethernet().Ipv4(V4(rng), V4(rng)).Tcp(1, 2).Payload(40).Build();
      p.bytes.resize(p.bytes.size() - 10);
      return p;
    }
    case 3: {  // bad TCP option deep in a full option space
      TestPacket p = PacketBuilder()
                         .Ethernet()
                         .Ipv4(V4(rng), V4(rng))
                         .Tcp(1, 2)
                         .TcpOptions(std::vector<uint8_t>(36, 1))
                         .TcpOptions({8, 0, 0, 0})
                         .Build();
      return p;
    }
    case 4:  // tiny first fragment
      return PacketBuilder()
          .Ethernet()
          .Ipv4(V4(rng), V4(rng))
          .Fragment(0, true)
          .L4Proto(6)
          .Payload(8)
          .PadTo(60)
          .Build();
    case 5: {  // GSO super-packet header
      TestPacket p =
          PacketBuilder().Ethernet().Ipv4(V4(rng), V4(rng)).Tcp(1, 2).Payload(200).Build();
      p.bytes[16] = p.bytes[17] = 0;
      return p;
    }
    case 6:  // four VLAN tags, then IPv4 options
      return PacketBuilder()
          .Ethernet()
          .Vlan(1, 0x88a8)
          .Vlan(2)
          .Vlan(3)
          .Vlan(4)
          .Ipv4(V4(rng), V4(rng))
          .Ipv4Options(std::vector<uint8_t>(40, 1))
          .Udp(1, 2)
          .Build();
    default: {  // IPv6 option TLVs running past their header
      TestPacket p =
          PacketBuilder().Ethernet().Ipv6(V6(rng), V6(rng)).HopByHop({0x1e, 200}).Tcp(1, 2).Build();
      return p;
    }
  }
}

}  // namespace

BufferPool& Pool() {
  static auto pool =
      std::move(BufferPool::Create({.small_buffers = 2048, .large_buffers = 0})).value();
  return *pool;
}

const char* MixName(int mix) {
  switch (mix) {
    case kIpv4Tcp64:
      return "ipv4_tcp_64B";
    case kIpv6Ext:
      return "ipv6_ext_headers";
    case kImix:
      return "imix";
    default:
      return "adversarial";
  }
}

std::vector<TestPacket> MixPackets(int mix, std::size_t n) {
  std::mt19937 rng(1);
  std::vector<TestPacket> out;
  const std::size_t imix[12] = {60, 60, 590, 60, 60, 1514, 60, 590, 60, 590, 60, 590};
  for (std::size_t i = 0; i < n; ++i) {
    switch (mix) {
      case kIpv4Tcp64:
        out.push_back(Tcp64(rng));
        break;
      case kIpv6Ext:
        out.push_back(Ipv6Ext(rng));
        break;
      case kImix:
        out.push_back(Imix(rng, imix[i % 12]));
        break;
      default:
        out.push_back(Adversarial(rng, static_cast<int>(i)));
        break;
    }
  }
  return out;
}

}  // namespace sluice::bench
