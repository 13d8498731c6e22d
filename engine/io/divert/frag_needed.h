// ICMP "fragmentation needed" (type 3, code 4; RFC 792, RFC 1191) for a datagram the kernel
// refused to send with EMSGSIZE, as natd's SendNeedFragIcmp does (sbin/natd/icmp.c).
//
// The message is built in the refused packet's own pool buffer, in place: its IP header and
// first 8 payload bytes stay where they are and become the quote; the new IPv4 and ICMP
// headers (28 bytes) go into the headroom in front of them; the rest is trimmed. No copy of
// the quote, no second buffer, no allocation.
//
//   before:  [headroom ............][IP hdr | 8 B | rest of the refused datagram ]
//   after:   [headroom ..][IP 20|ICMP 8][IP hdr | 8 B]
//
// Who gets one (RFC 1812 §4.3.2.7, and natd's own limits): an IPv4 datagram with DF set, the
// first fragment (offset 0), not an ICMP error message, from a unicast source to a unicast
// destination, longer than the MTU quoted. Anything else is left untouched.
#pragma once

#include <cstdint>

#include "engine/packet/packet_buffer.h"
#include "engine/proto/checksum.h"

namespace sluice {

enum class FragNeededResult : uint8_t {
  kBuilt = 0,
  kNotIpv4,           // IPv6 (Packet Too Big is not generated) or not an IP header at all
  kMalformed,         // header length or total length inconsistent with the bytes held
  kNoDontFragment,    // DF clear: EMSGSIZE was not about path MTU
  kLaterFragment,     // non-zero offset: only the first fragment is answered
  kIcmpError,         // never an ICMP error about an ICMP error
  kNotUnicast,        // source or destination 0/8, loopback, multicast, class E, broadcast
  kFitsMtu,           // the datagram is not larger than the MTU that would be quoted
  kNoHeadroom,        // fewer than 28 bytes in front of the data (a stage prepended)
};

// Turns `pkt` (an IPv4 datagram as it was handed to sendto) into the ICMP message that
// answers it: from `source` (host order, an address of this host) to the datagram's source,
// quoting its header and first 8 payload bytes, with next-hop MTU `mtu`, IP id `ip_id`.
// Both checksums are valid. When the quoted header's own checksum cannot be trusted
// (pkt_flag::kIpCsumUntrusted: an outbound packet read from divert), it is recomputed first so
// the quote shows the header as it would have left. Returns kBuilt, or why not (pkt unchanged).
FragNeededResult BuildFragNeeded(PacketBuffer& pkt, uint16_t mtu, uint32_t source,
                                 uint16_t ip_id) noexcept;

namespace divert_detail {
// True when an IPv4 header of hlen bytes sums to zero (its checksum field is right).
inline bool Ipv4HeaderChecksumOk(const uint8_t* ip, std::size_t hlen) noexcept {
  return InternetChecksum(ip, hlen) == 0;
}
// Rewrites the checksum field (bytes 10..11) of an IPv4 header of hlen bytes.
void SetIpv4HeaderChecksum(uint8_t* ip, std::size_t hlen) noexcept;
}  // namespace divert_detail

}  // namespace sluice
