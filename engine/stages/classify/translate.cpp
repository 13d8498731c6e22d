#include "engine/stages/classify/translate.h"

#include "engine/proto/icmp.h"
#include "engine/stages/rewrite/rewrite_ops.h"

namespace sluice {
namespace {

bool SetAddress(PacketBuffer& pkt, Side side, L3Type family, U128 value) noexcept {
  if (family == L3Type::kIpv4) return SetIpv4Address(pkt, side, static_cast<uint32_t>(value));
  uint8_t bytes[16];
  IpAddr::V6(value).ToBytes(bytes);
  return SetIpv6Address(pkt, side, bytes);
}

bool IsIcmpEcho(uint8_t proto) noexcept { return proto == ip_proto::kIcmp || proto == ip_proto::kIcmp6; }

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
  return KeyKind::kNone;
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

}  // namespace sluice
