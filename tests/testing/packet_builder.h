// PacketBuilder: well-formed packets in memory, with valid checksums, for tests.
//
//   TestPacket p = PacketBuilder().Ethernet().Vlan(10)
//                      .Ipv4("198.18.0.1", "198.19.0.2").Ttl(9)
//                      .Tcp(40000, 80).TcpFlags(tcp::kSyn).Mss(1460).Payload(32).Build();
//
// Layers are chosen by calling one method per layer (link, IP, transport) in any order;
// IPv6 extension headers are emitted in the order their methods were called. Checksums are
// computed by this file's own plain 16-bit sum (not engine/proto), so tests that compare the
// engine against them compare two independent implementations. Malformed packets are made
// by building a good one and editing bytes at the offsets TestPacket reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/packet/packet_buffer.h"

namespace sluice::testing {

struct TestPacket {
  LinkType link = LinkType::kRaw;
  std::vector<uint8_t> bytes;
  uint32_t l3_off = 0;  // where the IP header starts
  uint32_t l4_off = 0;  // where the transport header starts; 0 when there is none
  uint32_t ip_len = 0;  // bytes of the IP packet (header + payload), without L2 trailer
};

class PacketBuilder {
 public:
  // Link layer (default: raw IP, LinkType::kRaw).
  PacketBuilder& Ethernet();
  PacketBuilder& Vlan(uint16_t vid, uint16_t tpid = 0x8100);  // after Ethernet/Sll/Sll2
  PacketBuilder& LinuxSll();
  PacketBuilder& LinuxSll2();
  // BSD loopback: DLT_LOOP writes the family in network order, DLT_NULL in host order.
  PacketBuilder& Loopback(uint32_t af, bool network_order);
  PacketBuilder& LinkIpv4();                    // DLT_IPV4
  PacketBuilder& LinkIpv6();                    // DLT_IPV6
  PacketBuilder& PadTo(std::size_t frame_len);  // zero bytes after the IP packet up to this
  PacketBuilder& Trailer(std::size_t n);        // n bytes (0xee) after the IP packet

  // IP.
  PacketBuilder& Ipv4(std::string_view src, std::string_view dst);
  PacketBuilder& Ipv6(std::string_view src, std::string_view dst);
  PacketBuilder& Ttl(uint8_t ttl);  // or hop limit
  PacketBuilder& Tos(uint8_t tos);  // or traffic class
  PacketBuilder& FlowLabel(uint32_t label);
  PacketBuilder& Id(uint16_t id);
  PacketBuilder& Df();
  PacketBuilder& Ipv4Options(std::vector<uint8_t> options);  // padded with End to 4n
  // IPv4: sets offset and MF. IPv6: appends a fragment extension header here in the chain.
  PacketBuilder& Fragment(uint32_t offset_bytes, bool more, uint32_t id = 0x1234);
  PacketBuilder& HopByHop(std::vector<uint8_t> options = {});  // padded with PadN to 8n
  PacketBuilder& DestOpts(std::vector<uint8_t> options = {});
  // Type 0 lists addresses, the last being the final destination; type 4 (SRH) lists
  // segment list[0] (the final destination) first.
  PacketBuilder& Routing(uint8_t type, uint8_t segments_left, std::vector<std::string> addresses);
  PacketBuilder& Ah(uint32_t icv_len = 12);

  // Transport.
  PacketBuilder& Tcp(uint16_t sport, uint16_t dport);
  PacketBuilder& TcpFlags(uint8_t flags);
  PacketBuilder& TcpOptions(std::vector<uint8_t> options);  // appended; padded with End to 4n
  PacketBuilder& Mss(uint16_t mss);                         // appends kind 2, length 4
  PacketBuilder& Udp(uint16_t sport, uint16_t dport);
  PacketBuilder& UdpNoChecksum();  // checksum field 0 (IPv4; IPv6 tunnels, RFC 6935)
  PacketBuilder& Icmp(uint8_t type, uint8_t code, uint16_t id = 0, uint16_t seq = 0);
  PacketBuilder& L4Proto(uint8_t proto);  // a protocol the builder knows nothing about
  PacketBuilder& Payload(std::size_t n);  // n pattern bytes
  PacketBuilder& Payload(std::vector<uint8_t> bytes);

  TestPacket Build() const;

 private:
  enum class L4 : uint8_t { kNone, kTcp, kUdp, kIcmp, kRaw };
  struct Ext {
    uint8_t type;
    std::vector<uint8_t> body;  // the header without its first (next header) byte
  };

  LinkType link_ = LinkType::kRaw;
  std::vector<uint8_t> l2_;
  std::vector<std::size_t> type_pos_;  // link type fields: the base one, then one per tag
  std::vector<uint16_t> tpids_;        // the TPID announcing each VLAN tag
  std::size_t pad_to_ = 0;
  std::size_t trailer_ = 0;
  bool v6_ = false;
  uint8_t src_[16] = {};
  uint8_t dst_[16] = {};
  uint8_t ttl_ = 64;
  uint8_t tos_ = 0;
  uint32_t flow_label_ = 0;
  uint16_t id_ = 1;
  uint16_t frag_field_ = 0;  // IPv4 flags + offset
  std::vector<uint8_t> ip_options_;
  std::vector<Ext> ext_;
  std::vector<uint8_t> final_dst_;  // routing header's final destination, when segments left
  L4 l4_ = L4::kNone;
  uint8_t raw_proto_ = 0;
  uint16_t sport_ = 0, dport_ = 0;
  uint8_t tcp_flags_ = 0x10;  // ACK
  std::vector<uint8_t> tcp_options_;
  bool udp_no_checksum_ = false;
  uint8_t icmp_type_ = 0, icmp_code_ = 0;
  uint16_t icmp_id_ = 0, icmp_seq_ = 0;
  std::vector<uint8_t> payload_;
};

// Splits an unfragmented raw-link IP packet into fragments carrying at most `chunk` bytes
// of the fragmentable part each (chunk a multiple of 8). IPv6 fragments get a fragment
// header right after the fixed header (after hop-by-hop options, if any).
std::vector<TestPacket> FragmentPacket(const TestPacket& whole, uint32_t chunk,
                                       uint32_t id = 0x4242);

// Independent checksum checks over an IP packet at ip (ip_len bytes, whole datagram):
// true when the IPv4 header checksum verifies (always true for IPv6), and when the TCP, UDP
// (0 over IPv4 accepted), ICMP or ICMPv6 checksum verifies (true for other protocols).
bool RefIpHeaderChecksumOk(const uint8_t* ip, std::size_t ip_len);
bool RefL4ChecksumOk(const uint8_t* ip, std::size_t ip_len);
// RFC 1071 reference sum over bytes, big-endian numeric result (~sum), plain 16-bit loop.
uint16_t RefChecksum(const uint8_t* p, std::size_t n, uint32_t initial = 0);

// Parses an IPv4 or IPv6 address in text form; aborts the test binary on a typo.
std::vector<uint8_t> Addr(std::string_view text);

}  // namespace sluice::testing
