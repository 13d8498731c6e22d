#include "engine/stages/classify/translate.h"

#include <cstring>

#include "engine/proto/checksum.h"
#include "engine/proto/icmp.h"
#include "engine/stages/rewrite/rewrite_ops.h"

namespace sluice {

bool SetAddress(PacketBuffer& pkt, Side side, L3Type family, U128 value) noexcept {
  if (family == L3Type::kIpv4) return SetIpv4Address(pkt, side, static_cast<uint32_t>(value));
  uint8_t bytes[16];
  IpAddr::V6(value).ToBytes(bytes);
  return SetIpv6Address(pkt, side, bytes);
}

bool ApplyFragmentAddress(PacketBuffer& pkt, Side side, U128 value) noexcept {
  const bool changed = SetAddress(pkt, side, pkt.meta().l3, value);
  FinishChecksums(pkt, changed, /*full=*/false);
  if (changed) pkt.meta().flags |= pkt_flag::kModified;
  return changed;
}

namespace {

bool IsIcmpEcho(uint8_t proto) noexcept { return proto == ip_proto::kIcmp || proto == ip_proto::kIcmp6; }

// The packet an ICMP error quotes, as offsets into the buffer: its IP header and the 8 bytes
// of transport header behind it (what RFC 792 guarantees; enough for ports and an echo id).
struct Quoted {
  uint32_t ip = 0;
  uint32_t l4 = 0;
  uint8_t proto = 0;
  bool echo_request = false;  // a quoted ICMP echo (else TCP or UDP ports)
};

// Finds the quoted packet of an ICMP error of `family` at l4_off. Only what NAPT translates:
// the same family, TCP, UDP or an ICMP echo, the transport header's first 8 bytes captured,
// not a later fragment, IPv6 without extension headers.
bool FindQuoted(const PacketBuffer& pkt, L3Type family, Quoted* q) noexcept {
  const uint32_t l4_off = pkt.meta().l4_off;
  const uint32_t len = pkt.len();
  const uint8_t* d = pkt.data();
  if (l4_off > len) return false;
  const bool v6 = family == L3Type::kIpv6;
  const uint8_t* ip = icmp::QuotedIpHeader(v6, d + l4_off, len - l4_off);
  if (ip == nullptr) return false;
  q->ip = static_cast<uint32_t>(ip - d);
  const uint32_t avail = len - q->ip;
  if (!v6) {
    const uint32_t ihl = (ip[0] & 0x0fu) * 4;
    if (ihl < 20 || avail < ihl + 8 || (LoadBe16(ip + 6) & 0x1fff) != 0) return false;
    q->l4 = q->ip + ihl;
    q->proto = ip[9];
  } else {
    if (avail < 48) return false;
    q->l4 = q->ip + 40;
    q->proto = ip[6];
  }
  const uint8_t echo_proto = family == L3Type::kIpv4 ? ip_proto::kIcmp : ip_proto::kIcmp6;
  if (q->proto == ip_proto::kTcp || q->proto == ip_proto::kUdp) return true;
  if (q->proto != echo_proto) return false;
  const uint8_t type = d[q->l4];
  q->echo_request = type == icmp::kEchoRequest || type == icmp::kV6EchoRequest;
  return q->echo_request || type == icmp::kEchoReply || type == icmp::kV6EchoReply;
}

// Writes a new value into a 16-bit field of the quoted packet: the ICMP message's checksum
// (`msg`) and the quoted transport checksum (`l4`) collect the change. True when it changed.
bool QuotedWrite16(uint8_t* field, uint16_t value, CsumDelta& msg, CsumDelta& l4) noexcept {
  const uint16_t old_v = LoadHost16(field);
  if (!msg.Write16(field, MemBe16(value))) return false;
  l4.Replace16(old_v, MemBe16(value));
  return true;
}

// Replaces an address of the quoted IP header (v4: 4 bytes, v6: 16); the quoted IPv4
// header checksum (`ip`) and a pseudo-header-covering transport checksum (`pseudo`) collect
// the change with the message's. True when it changed.
bool QuotedAddress(uint8_t* field, L3Type family, U128 value, CsumDelta& msg, CsumDelta& ip,
                   CsumDelta& pseudo) noexcept {
  if (family == L3Type::kIpv4) {
    const uint32_t old_v = LoadHost32(field);
    const uint32_t new_v = MemBe32(static_cast<uint32_t>(value));
    if (!msg.Write32(field, new_v)) return false;
    ip.Replace32(old_v, new_v);
    pseudo.Replace32(old_v, new_v);
    return true;
  }
  uint8_t bytes[16];
  IpAddr::V6(value).ToBytes(bytes);
  if (std::memcmp(field, bytes, 16) == 0) return false;
  msg.Replace128(field, bytes);
  pseudo.Replace128(field, bytes);
  std::memcpy(field, bytes, 16);
  return true;
}

// Applies the collected `changes` to a checksum field of the quoted packet; the message's
// checksum collects that change too.
void QuotedChecksum(uint8_t* field, const CsumDelta& changes, CsumZero zero, CsumDelta& msg) noexcept {
  if (changes.empty()) return;
  const uint16_t old_v = LoadHost16(field);
  if (old_v == 0 && zero != CsumZero::kPlain) return;  // UDP sent without a checksum
  msg.Write16(field, changes.Apply(old_v, zero));
}

// An ICMP error's key (TranslationKey): out of line, as errors are rare and the common
// path (TCP, UDP) should stay short.
[[gnu::cold, gnu::noinline]] KeyKind IcmpErrorKey(const PacketBuffer& pkt, const PacketFields& f, uint8_t type,
                                                 FlowKey* key) noexcept {
  Quoted q;
  if (!icmp::IsError(f.family == L3Type::kIpv6, type) || !FindQuoted(pkt, f.family, &q)) return KeyKind::kNone;
  // The quoted packet went the other way: its tuple reversed is the key its flow has for
  // this direction (a reply's key for an error coming in, the original for one going out).
  const uint8_t* d = pkt.data();
  const uint32_t addr_len = f.family == L3Type::kIpv4 ? 4 : 16;
  const uint32_t src_at = f.family == L3Type::kIpv4 ? 12 : 8;
  const IpAddr qsrc = f.family == L3Type::kIpv4 ? IpAddr::V4(LoadBe32(d + q.ip + src_at))
                                                 : IpAddr::FromV6Bytes(d + q.ip + src_at);
  const IpAddr qdst = f.family == L3Type::kIpv4 ? IpAddr::V4(LoadBe32(d + q.ip + src_at + addr_len))
                                                 : IpAddr::FromV6Bytes(d + q.ip + src_at + addr_len);
  key->set_src(qdst.value);
  key->set_dst(qsrc.value);
  key->proto = q.proto;
  if (q.proto == ip_proto::kTcp || q.proto == ip_proto::kUdp) {
    key->sport = LoadBe16(d + q.l4 + 2);
    key->dport = LoadBe16(d + q.l4);
  } else {
    const uint16_t qid = icmp::EchoId(d + q.l4);  // a request's reverse is keyed as a reply
    key->sport = q.echo_request ? 0 : qid;
    key->dport = q.echo_request ? qid : 0;
  }
  return KeyKind::kIcmpError;
}

}  // namespace

KeyKind TranslationKey(const PacketBuffer& pkt, const PacketFields& f, FlowKey* key) noexcept {
  const PacketMeta& m = pkt.meta();
  key->set_src(f.src);
  key->set_dst(f.dst);
  key->proto = f.proto;
  key->family = f.family;
  key->zero = 0;
  if (f.has_ports && (f.proto == ip_proto::kTcp || f.proto == ip_proto::kUdp)) {
    key->sport = f.sport;
    key->dport = f.dport;
    return KeyKind::kAny;
  }
  const bool icmp = (f.family == L3Type::kIpv4 && f.proto == ip_proto::kIcmp) ||
                    (f.family == L3Type::kIpv6 && f.proto == ip_proto::kIcmp6);
  if (!icmp || (m.flags & pkt_flag::kL4Valid) == 0 || m.l4_off == 0 || (m.flags & pkt_flag::kFragmentLater) != 0) {
    return KeyKind::kNone;
  }
  const uint8_t* h = pkt.data() + m.l4_off;  // kL4Valid: the 8-byte ICMP header is captured
  const uint8_t type = icmp::Type(h);
  const uint16_t id = icmp::EchoId(h);
  if (type == icmp::kEchoRequest || type == icmp::kV6EchoRequest) {
    key->sport = id;
    key->dport = 0;
    return KeyKind::kEchoRequest;
  }
  if (type == icmp::kEchoReply || type == icmp::kV6EchoReply) {
    key->sport = 0;
    key->dport = id;
    return KeyKind::kEchoReply;
  }
  return IcmpErrorKey(pkt, f, type, key);
}

bool ApplyTranslation(PacketBuffer& pkt, const FlowTable::Flow& flow, FlowTable::Dir dir) noexcept {
  const FlowKey& o = flow.orig;
  const bool moves_address = flow.xaddr != o.src();
  const bool echo = IsIcmpEcho(o.proto);
  bool changed = false;
  if (dir == FlowTable::Dir::kOriginal) {
    if (moves_address) changed |= SetAddress(pkt, Side::kSrc, o.family, flow.xaddr);
    changed |= echo ? SetL4Field16(pkt, icmp::kOffEchoId, flow.xport) : SetL4Port(pkt, Side::kSrc, flow.xport);
  } else {
    if (moves_address) changed |= SetAddress(pkt, Side::kDst, o.family, o.src());
    changed |= echo ? SetL4Field16(pkt, icmp::kOffEchoId, o.sport) : SetL4Port(pkt, Side::kDst, o.sport);
  }
  FinishChecksums(pkt, changed, /*full=*/false);
  if (changed) pkt.meta().flags |= pkt_flag::kModified;
  return changed;
}

bool ApplyIcmpErrorTranslation(PacketBuffer& pkt, const FlowTable::Flow& flow, FlowTable::Dir dir) noexcept {
  const FlowKey& o = flow.orig;
  const L3Type family = pkt.meta().l3;
  Quoted q;
  if (family != o.family || !FindQuoted(pkt, family, &q)) return false;
  uint8_t* d = pkt.data();
  uint8_t* qip = d + q.ip;
  uint8_t* ql4 = d + q.l4;
  const bool v4 = family == L3Type::kIpv4;
  uint8_t* qsrc = qip + (v4 ? 12 : 8);
  uint8_t* qdst = qsrc + (v4 ? 4 : 16);
  // The outer address that is ours must be the quoted packet's: the translated address on an
  // error coming in, the inside host on one going out. Anything else is not about this flow.
  const bool in = dir == FlowTable::Dir::kReply;
  const uint8_t* outer = d + pkt.meta().l3_off + (v4 ? (in ? 16 : 12) : (in ? 24 : 8));
  if (std::memcmp(outer, in ? qsrc : qdst, v4 ? 4 : 16) != 0) return false;

  const bool moves_address = flow.xaddr != o.src();
  const bool echo = q.proto == ip_proto::kIcmp || q.proto == ip_proto::kIcmp6;
  CsumDelta msg, quoted_ip, quoted_l4;  // the ICMP message's, the quoted IPv4 header's, the quoted transport's
  CsumDelta unused;                     // what no checksum covers (an IPv6 header has none)
  CsumDelta& pseudo = q.proto == ip_proto::kIcmp ? unused : quoted_l4;  // ICMPv4 has no pseudo-header
  bool changed = false;
  if (in) {
    // About a packet that went out translated: back to the inside host's address and port.
    if (moves_address) {
      changed |= SetAddress(pkt, Side::kDst, family, o.src());
      changed |= QuotedAddress(qsrc, family, o.src(), msg, v4 ? quoted_ip : unused, pseudo);
    }
    changed |= QuotedWrite16(echo ? ql4 + icmp::kOffEchoId : ql4, o.sport, msg, quoted_l4);
  } else {
    // About a reply the inside host received translated back: as it went on the wire.
    if (moves_address) {
      changed |= SetAddress(pkt, Side::kSrc, family, flow.xaddr);
      changed |= QuotedAddress(qdst, family, flow.xaddr, msg, v4 ? quoted_ip : unused, pseudo);
    }
    changed |= QuotedWrite16(echo ? ql4 + icmp::kOffEchoId : ql4 + 2, flow.xport, msg, quoted_l4);
  }
  if (v4) QuotedChecksum(qip + 10, quoted_ip, CsumZero::kPlain, msg);
  // The quoted transport checksum, when the quote reaches it (UDP's and ICMP's are in the
  // first 8 bytes; TCP's at byte 16 only in a longer quote), as Linux's NAT updates it.
  const uint32_t end = pkt.len();
  if (q.proto == ip_proto::kUdp) {
    QuotedChecksum(ql4 + 6, quoted_l4, v4 ? CsumZero::kUdpIpv4 : CsumZero::kUdpIpv6, msg);
  } else if (q.proto == ip_proto::kTcp) {
    if (q.l4 + 18 <= end) QuotedChecksum(ql4 + 16, quoted_l4, CsumZero::kPlain, msg);
  } else {
    QuotedChecksum(ql4 + icmp::kOffChecksum, quoted_l4, CsumZero::kPlain, msg);
  }
  msg.ApplyTo(d + pkt.meta().l4_off + icmp::kOffChecksum);
  FinishChecksums(pkt, changed, /*full=*/false);
  if (changed) pkt.meta().flags |= pkt_flag::kModified;
  return true;
}

}  // namespace sluice
