#include "engine/stages/classify/nat_fragments.h"

#include "engine/core/byte_order.h"
#include "engine/proto/ipv4.h"
#include "engine/proto/ipv6.h"

namespace sluice {

bool NatFragments::KeyOf(const PacketBuffer& pkt, Key* key) noexcept {
  const PacketMeta& m = pkt.meta();
  const uint8_t* ip = pkt.data() + m.l3_off;
  if (m.l3 == L3Type::kIpv4) {
    *key = {LoadBe32(ip + ipv4::kOffSrc), LoadBe32(ip + ipv4::kOffDst), LoadBe16(ip + 4), ip[9], L3Type::kIpv4};
    return true;
  }
  if (m.l3 != L3Type::kIpv6) return false;
  // The fragment header is somewhere in the extension chain: walk it again (fragments only,
  // and parse has walked it once already, so it walks). Generous limits: parse applied the
  // configured ones.
  const uint32_t ip_len = 40u + LoadBe16(ip + 4);
  if (m.l3_off + ip_len > m.len) return false;
  ipv6::Chain chain;
  if (ipv6::WalkChain(ip, ip_len, {.max_headers = 255, .max_bytes = 65535}, &chain) != DropReason::kNone ||
      !chain.fragment) {
    return false;
  }
  // No protocol: RFC 8200 makes the id unique per (source, destination), and what the walk
  // calls the protocol differs between a first fragment (the upper layer, past any options
  // in the fragmentable part) and a later one (the fragment header's next header).
  *key = {IpAddr::FromV6Bytes(ip + 8).value, IpAddr::FromV6Bytes(ip + 24).value, chain.frag_id, 0, L3Type::kIpv6};
  return true;
}

}  // namespace sluice
