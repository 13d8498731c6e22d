#include "engine/proto/ipv6.h"

namespace sluice::ipv6 {
namespace {

// Type-length-value options of a hop-by-hop or destination options header, [p, p + n).
DropReason CheckOptions(const uint8_t* p, uint32_t n, bool hop_by_hop) noexcept {
  uint32_t i = 0;
  while (i < n) {
    const uint8_t type = p[i];
    if (type == kOptPad1) {
      ++i;
      continue;
    }
    if (n - i < 2) return DropReason::kIpv6BadOption;
    const uint32_t len = p[i + 1];
    if (len > n - i - 2) return DropReason::kIpv6BadOption;
    if (hop_by_hop && type == kOptJumbo) return DropReason::kIpv6Jumbogram;
    i += 2 + len;
  }
  return DropReason::kNone;
}

constexpr uint8_t kRoutingType0 = 0;
constexpr uint8_t kRoutingType2 = 2;
constexpr uint8_t kRoutingSrh = 4;

}  // namespace

DropReason WalkChain(const uint8_t* ip, uint32_t ip_len, const Limits& limits,
                     Chain* out) noexcept {
  Chain c{};
  uint8_t nh = NextHeader(ip);
  uint32_t off = kHeaderLen;  // invariant: off <= ip_len
  uint32_t ext_bytes = 0;
  bool seen_fragment = false;
  while (IsExtHeader(nh)) {
    if (c.headers >= limits.max_headers) return DropReason::kIpv6TooManyExtHeaders;
    ++c.headers;
    // Every extension header is at least 8 bytes.
    if (ip_len - off < 8) return DropReason::kIpv6ExtHeaderTruncated;
    const uint8_t* h = ip + off;
    uint32_t len = 8;
    switch (nh) {
      case ipproto::kHopByHop:
      case ipproto::kDestOpts: {
        if (nh == ipproto::kHopByHop && off != kHeaderLen) return DropReason::kIpv6BadExtHeader;
        len = (h[1] + 1u) * 8u;
        if (len > ip_len - off) return DropReason::kIpv6ExtHeaderTruncated;
        const DropReason r = CheckOptions(h + 2, len - 2, nh == ipproto::kHopByHop);
        if (r != DropReason::kNone) return r;
        break;
      }
      case ipproto::kRouting:
        len = (h[1] + 1u) * 8u;
        if (len > ip_len - off) return DropReason::kIpv6ExtHeaderTruncated;
        if (h[3] != 0) c.routing_off = off;  // segments left: the destination is not final
        break;
      case ipproto::kAh:
        len = (h[1] + 2u) * 4u;
        if (len > ip_len - off) return DropReason::kIpv6ExtHeaderTruncated;
        break;
      default:  // ipproto::kFragment: fixed 8 bytes
        if (seen_fragment) return DropReason::kIpv6BadExtHeader;
        seen_fragment = true;
        break;
    }
    ext_bytes += len;
    if (ext_bytes > limits.max_bytes) return DropReason::kIpv6ExtHeadersTooLong;
    if (nh == ipproto::kFragment) {
      const uint16_t field = LoadBe16(h + 2);
      const uint32_t frag_offset = field & 0xfff8u;
      const bool more = (field & 1u) != 0;
      if (frag_offset != 0 || more) {  // offset 0 and M = 0 is an atomic fragment: whole
        const uint32_t data = ip_len - off - 8;
        if (frag_offset + data > kMaxDatagram || (more && data % 8 != 0)) {
          return DropReason::kIpv6BadFragment;
        }
        c.fragment = true;
        c.more_fragments = more;
        c.frag_offset = frag_offset;
        c.frag_id = LoadBe32(h + 4);
        if (frag_offset != 0) {
          // What follows is the middle of a datagram: no header to walk.
          c.later_fragment = true;
          c.l4_proto = h[0];
          c.l4_off = 0;
          *out = c;
          return DropReason::kNone;
        }
      }
    }
    nh = h[0];
    off += len;
  }
  c.l4_proto = nh;
  c.l4_off = nh == ipproto::kNoNext ? 0 : off;
  *out = c;
  return DropReason::kNone;
}

const uint8_t* PseudoHeaderDst(const uint8_t* ip, uint32_t ip_len) noexcept {
  Chain c;
  const Limits any{.max_headers = 255, .max_bytes = 65535};
  if (WalkChain(ip, ip_len, any, &c) != DropReason::kNone) return nullptr;
  if (c.routing_off == 0) return ip + kOffDst;
  const uint8_t* rh = ip + c.routing_off;
  const uint32_t rh_len = (rh[1] + 1u) * 8u;
  switch (rh[2]) {
    case kRoutingType0: {
      const uint32_t n = rh[1] / 2u;  // addresses listed
      if (n == 0 || 8 + n * kAddrLen > rh_len) return nullptr;
      return rh + 8 + (n - 1) * kAddrLen;
    }
    case kRoutingType2:
      return 8 + kAddrLen <= rh_len ? rh + 8 : nullptr;
    case kRoutingSrh:
      return 8 + kAddrLen <= rh_len ? rh + 8 : nullptr;
    default:
      return nullptr;
  }
}

}  // namespace sluice::ipv6
