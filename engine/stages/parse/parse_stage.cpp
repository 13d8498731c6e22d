#include "engine/stages/parse/parse_stage.h"

#include <string>

#include "engine/core/assert.h"
#include "engine/proto/flow_hash.h"
#include "engine/proto/icmp.h"
#include "engine/proto/ipv4.h"
#include "engine/proto/ipv6.h"
#include "engine/proto/link.h"
#include "engine/proto/tcp.h"
#include "engine/proto/udp.h"

namespace sluice {
namespace {

constexpr uint16_t kParseFlags =
    pkt_flag::kFragment | pkt_flag::kFragmentLater | pkt_flag::kL4Valid;

// What the IP layer found, for the transport layer and the meta writes.
struct L3Result {
  uint32_t ip_len;  // IP length field: bytes from the IP header to the end of the payload
  uint32_t l4_rel;  // from the IP header to the upper-layer header; 0 when none
  uint8_t proto;    // upper-layer protocol
  uint8_t ext_headers;
  uint16_t flags;  // kFragment, kFragmentLater
};

DropReason ParseIpv4(const uint8_t* ip, uint32_t avail, L3Result* out) noexcept {
  ipv4::Info info;
  const DropReason r = ipv4::Validate(ip, avail, &info);
  if (r != DropReason::kNone) return r;
  out->ip_len = info.total_len;
  out->proto = info.proto;
  out->ext_headers = 0;
  out->flags = 0;
  out->l4_rel = info.header_len;
  if (info.frag_offset != 0 || info.more_fragments) {
    out->flags = pkt_flag::kFragment;
    if (info.frag_offset != 0) {
      out->flags |= pkt_flag::kFragmentLater;
      out->l4_rel = 0;
    }
  }
  return DropReason::kNone;
}

DropReason ParseIpv6(const uint8_t* ip, uint32_t avail, const ipv6::Limits& limits,
                     L3Result* out) noexcept {
  if (avail < ipv6::kHeaderLen) return DropReason::kIpv6HeaderTruncated;
  if (IpVersion(ip) != 6) return DropReason::kBadIpVersion;
  const uint32_t plen = ipv6::PayloadLen(ip);
  const uint8_t nh = ipv6::NextHeader(ip);
  if (plen == 0 && nh != ipproto::kNoNext && avail > ipv6::kHeaderLen) {
    // Bytes behind a header that claims none: a jumbogram if a jumbo option says so (the
    // chain is walked over the captured bytes to find out), else a GSO super-packet.
    ipv6::Chain probe;
    return ipv6::WalkChain(ip, avail, limits, &probe) == DropReason::kIpv6Jumbogram
               ? DropReason::kIpv6Jumbogram
               : DropReason::kGsoLengthZero;
  }
  const uint32_t ip_len = ipv6::kHeaderLen + plen;
  if (ip_len > avail) return DropReason::kIpv6LengthExceedsCapture;
  out->ip_len = ip_len;
  out->flags = 0;
  if (!ipv6::IsExtHeader(nh)) {  // the common case: the upper layer follows directly
    out->proto = nh;
    out->l4_rel = nh == ipproto::kNoNext ? 0 : ipv6::kHeaderLen;
    out->ext_headers = 0;
    return DropReason::kNone;
  }
  ipv6::Chain chain;
  const DropReason r = ipv6::WalkChain(ip, ip_len, limits, &chain);
  if (r != DropReason::kNone) return r;
  out->proto = chain.l4_proto;
  out->l4_rel = chain.l4_off;
  out->ext_headers = chain.headers;
  if (chain.fragment) {
    out->flags = pkt_flag::kFragment;
    if (chain.later_fragment) out->flags |= pkt_flag::kFragmentLater;
  }
  return DropReason::kNone;
}

// An ICMP error (l4: its header, avail bytes of it and what follows) is about the packet it
// quotes: it takes that packet's shard key (the same key as ParseOne's, symmetric), so that the
// offline graph dispatches it to the shard holding the quoted packet's flow, where a NAT
// translation of it lives. A quote too short for its IP header keeps the error's own key.
// Kernel queues steer by the error's own addresses (docs/config.md, Translations and shards).
[[gnu::cold, gnu::noinline]] uint32_t SteerIcmpErrorByQuote(uint32_t seed, bool v6, const uint8_t* l4, uint32_t avail,
                                                          uint32_t own) noexcept {
  if (!icmp::IsError(v6, icmp::Type(l4))) return own;
  const uint8_t* q = icmp::QuotedIpHeader(v6, l4, avail);
  if (q == nullptr) return own;
  return v6 ? FlowHashIpv6(seed, q + ipv6::kOffSrc, q + ipv6::kOffDst, 0, 0, 0)
            : FlowHashIpv4(seed, q + ipv4::kOffSrc, q + ipv4::kOffDst, 0, 0, q[9]);
}

// Validates the transport header at l4 (l4_avail bytes of IP payload behind it). Sets
// *valid when it is one of the protocols checked here. In a first fragment a header that
// does not fit is short_first_fragment rather than a truncation.
DropReason ParseL4(const uint8_t* l4, uint32_t l4_avail, uint8_t proto, L3Type l3,
                   bool first_fragment, bool* valid) noexcept {
  *valid = false;
  const DropReason short_header = DropReason::kShortFirstFragment;
  switch (proto) {
    case ipproto::kTcp: {
      if (l4_avail < tcp::kMinHeaderLen) {
        return first_fragment ? short_header : DropReason::kTcpTruncated;
      }
      const uint32_t hl = tcp::HeaderLen(l4);
      if (hl < tcp::kMinHeaderLen) return DropReason::kTcpBadDataOffset;
      if (hl > l4_avail) return first_fragment ? short_header : DropReason::kTcpBadDataOffset;
      if (hl > tcp::kMinHeaderLen &&
          !ValidKlvOptions(l4 + tcp::kMinHeaderLen, hl - tcp::kMinHeaderLen)) {
        return DropReason::kTcpBadOption;
      }
      break;
    }
    case ipproto::kUdp: {
      if (l4_avail < udp::kHeaderLen) {
        return first_fragment ? short_header : DropReason::kUdpTruncated;
      }
      const uint32_t ulen = udp::Length(l4);
      // A first fragment carries part of the datagram the length describes.
      if (ulen < udp::kHeaderLen || (!first_fragment && ulen > l4_avail)) {
        return DropReason::kUdpBadLength;
      }
      break;
    }
    case ipproto::kIcmp:
    case ipproto::kIcmpv6:
      if ((proto == ipproto::kIcmp) != (l3 == L3Type::kIpv4)) return DropReason::kNone;
      if (l4_avail < icmp::kHeaderLen) {
        return first_fragment ? short_header : DropReason::kIcmpTruncated;
      }
      break;
    default:
      return DropReason::kNone;
  }
  *valid = true;
  return DropReason::kNone;
}

ParseCounter L4Counter(uint8_t proto, bool valid) noexcept {
  if (!valid) return ParseCounter::kOtherL4;
  switch (proto) {
    case ipproto::kTcp:
      return ParseCounter::kTcp;
    case ipproto::kUdp:
      return ParseCounter::kUdp;
    case ipproto::kIcmp:
      return ParseCounter::kIcmp;
    default:
      return ParseCounter::kIcmpv6;
  }
}

}  // namespace

Status Validate(const ParseConfig& config) {
  if (config.ipv6.max_bytes > kMaxIpv6ExtBytesCap) {
    return InvalidArgument("parse: ipv6 extension header byte cap " +
                           std::to_string(config.ipv6.max_bytes) + " is above the limit " +
                           std::to_string(kMaxIpv6ExtBytesCap));
  }
  return Status::Ok();
}

namespace {

// ParsePacket without the outcome counters of failures (parsed ones are bumped here).
DropReason ParseOne(PacketBuffer& buf, const ParseConfig& config, ParseCounts& counts) noexcept {
  PacketMeta& m = buf.meta();
  m.flags &= static_cast<uint16_t>(~kParseFlags);
  m.l3 = L3Type::kNone;
  m.l3_off = 0;
  m.l4_off = 0;
  m.l4_proto = 0;
  m.flow_hash = 0;

  const uint8_t* data = buf.data();
  const uint32_t len = buf.len();
  link::Decoded l2;
  DropReason r = link::Decode(m.link_type, data, len, &l2);
  if (r != DropReason::kNone) return r;

  const uint8_t* ip = data + l2.l3_off;
  const uint32_t avail = len - l2.l3_off;
  L3Result l3{};  // every path that returns kNone fills it; GCC at -O1 under TSan cannot see that
  r = l2.l3 == L3Type::kIpv4 ? ParseIpv4(ip, avail, &l3) : ParseIpv6(ip, avail, config.ipv6, &l3);
  if (r != DropReason::kNone) return r;

  bool l4_valid = false;
  if (l3.l4_rel != 0) {
    r = ParseL4(ip + l3.l4_rel, l3.ip_len - l3.l4_rel, l3.proto, l2.l3,
                (l3.flags & pkt_flag::kFragment) != 0, &l4_valid);
    if (r != DropReason::kNone) return r;
    // Another protocol with no byte of payload has no header to point at.
    if (!l4_valid && l3.ip_len == l3.l4_rel) l3.l4_rel = 0;
  }

  // Everything checked out: from here on the packet is parsed.
  if (avail > l3.ip_len) {
    buf.Trim(avail - l3.ip_len);
    counts.Bump(ParseCounter::kPaddingTrimmed);
  }
  // The shard key: addresses, and IPv4's protocol, no ports (see the header: the kernel's
  // --queue-balance key, and what keeps a port translation's replies on its shard).
  if (l2.l3 == L3Type::kIpv4) {
    m.flow_hash = FlowHashIpv4(config.flow_hash_seed, ip + ipv4::kOffSrc, ip + ipv4::kOffDst, 0, 0, l3.proto);
    counts.Bump(ParseCounter::kIpv4);
  } else {
    m.flow_hash = FlowHashIpv6(config.flow_hash_seed, ip + ipv6::kOffSrc, ip + ipv6::kOffDst, 0, 0, 0);
    counts.Bump(ParseCounter::kIpv6);
    counts.Bump(ParseCounter::kIpv6ExtHeaders, l3.ext_headers);
  }
  m.l3 = l2.l3;
  m.l3_off = static_cast<uint16_t>(l2.l3_off);
  m.l4_off = l3.l4_rel == 0 ? 0 : static_cast<uint16_t>(l2.l3_off + l3.l4_rel);
  m.l4_proto = l3.proto;
  m.flags |= static_cast<uint16_t>(l3.flags | (l4_valid ? pkt_flag::kL4Valid : 0));

  if (l3.flags & pkt_flag::kFragment) counts.Bump(ParseCounter::kFragments);
  if ((l3.flags & pkt_flag::kFragmentLater) != 0) {
    counts.Bump(ParseCounter::kLaterFragments);
  } else {
    counts.Bump(L4Counter(l3.proto, l4_valid));
  }
  if (l2.vlan_tags != 0) counts.Bump(ParseCounter::kVlanTagged);
  counts.Bump(ParseCounter::kParsed);
  return DropReason::kNone;
}

}  // namespace

DropReason ParsePacket(PacketBuffer& buf, const ParseConfig& config, ParseCounts& counts) noexcept {
  const DropReason r = ParseOne(buf, config, counts);
  PacketMeta& m = buf.meta();
  if (SLUICE_UNLIKELY((m.l4_proto == ipproto::kIcmp || m.l4_proto == ipproto::kIcmpv6) && r == DropReason::kNone &&
                      (m.flags & pkt_flag::kL4Valid) != 0)) {
    m.flow_hash = SteerIcmpErrorByQuote(config.flow_hash_seed, m.l3 == L3Type::kIpv6, buf.data() + m.l4_off,
                                        buf.len() - m.l4_off, m.flow_hash);
  }
  if (SLUICE_UNLIKELY(r != DropReason::kNone)) {
    const bool not_ip = r == DropReason::kNotIp || r == DropReason::kUnsupportedLinkType;
    counts.Bump(not_ip ? ParseCounter::kNotIp : ParseCounter::kMalformed);
  }
  return r;
}

ParseStage::ParseStage(const ParseConfig& config, uint32_t workers) : config_(config), counters_(workers) {
  SLUICE_CHECK(Validate(config).ok());
}

void ParseStage::Process(Batch& batch) noexcept {
  ParseCounts counts{};
  const uint32_t n = batch.size();
  for (uint32_t i = 0; i < n; ++i) {
    batch.Prefetch<true>(i + kPrefetchAhead);
    if (batch.next(i) != Next::kParse) continue;
    const DropReason r = ParsePacket(batch.packet(i), config_, counts);
    if (SLUICE_LIKELY(r == DropReason::kNone)) {
      batch.set_next(i, Next::kClassify);
    } else if (r == DropReason::kNotIp || r == DropReason::kUnsupportedLinkType ||
               config_.malformed == MalformedPolicy::kPass) {
      batch.Skip(i, r);
    } else {
      batch.Drop(i, r);
    }
  }
  counts.AddTo(counters_[batch.worker()]);
}

}  // namespace sluice
