#include "engine/io/divert/frag_needed.h"

#include <algorithm>
#include <cstring>

#include "engine/core/byte_order.h"
#include "engine/proto/checksum.h"

namespace sluice {

namespace divert_detail {

void SetIpv4HeaderChecksum(uint8_t* ip, std::size_t hlen) noexcept {
  StoreHost16(ip + 10, 0);
  StoreHost16(ip + 10, InternetChecksum(ip, hlen));
}

}  // namespace divert_detail

namespace {

constexpr uint32_t kIpHeader = 20;
constexpr uint32_t kIcmpHeader = 8;
constexpr uint32_t kQuotedPayload = 8;  // "the first 64 bits of the original datagram's data"
constexpr uint8_t kProtoIcmp = 1;
constexpr uint16_t kIpDf = 0x4000;
constexpr uint16_t kIpOffMask = 0x1fff;
constexpr uint8_t kIcmpUnreach = 3;
constexpr uint8_t kIcmpNeedFrag = 4;
// RFC 1812 §4.3.2.5: ICMP errors SHOULD carry precedence 6 (internetwork control).
constexpr uint8_t kTosInternetControl = 0xc0;
constexpr uint8_t kTtl = 64;

bool IsIcmpError(uint8_t type) noexcept {
  switch (type) {
    case 3:   // destination unreachable
    case 4:   // source quench
    case 5:   // redirect
    case 11:  // time exceeded
    case 12:  // parameter problem
      return true;
    default:
      return false;
  }
}

// A unicast host address (host order): not 0/8, 127/8, 224/4 (multicast) or 240/4 (class E,
// including the limited broadcast 255.255.255.255).
bool IsUnicast(uint32_t a) noexcept {
  const uint32_t first = a >> 24;
  return first != 0 && first != 127 && first < 224;
}

}  // namespace

FragNeededResult BuildFragNeeded(PacketBuffer& pkt, uint16_t mtu, uint32_t source,
                                 uint16_t ip_id) noexcept {
  uint8_t* ip = pkt.data();
  const uint32_t len = pkt.len();
  if (len < kIpHeader || (ip[0] >> 4) != 4) return FragNeededResult::kNotIpv4;
  const uint32_t hlen = (ip[0] & 0x0fu) * 4u;
  const uint32_t total = LoadBe16(ip + 2);
  if (hlen < kIpHeader || hlen > len || total < hlen) return FragNeededResult::kMalformed;
  const uint16_t off = LoadBe16(ip + 6);
  if ((off & kIpDf) == 0) return FragNeededResult::kNoDontFragment;
  if ((off & kIpOffMask) != 0) return FragNeededResult::kLaterFragment;
  if (ip[9] == kProtoIcmp) {
    if (len < hlen + 1) return FragNeededResult::kMalformed;
    if (IsIcmpError(ip[hlen])) return FragNeededResult::kIcmpError;
  }
  const uint32_t src = LoadBe32(ip + 12);
  const uint32_t dst = LoadBe32(ip + 16);
  if (!IsUnicast(src) || !IsUnicast(dst) || !IsUnicast(source)) return FragNeededResult::kNotUnicast;
  if (total <= mtu) return FragNeededResult::kFitsMtu;
  if (pkt.headroom() < kIpHeader + kIcmpHeader) return FragNeededResult::kNoHeadroom;

  if (pkt.meta().flags & pkt_flag::kIpCsumUntrusted) divert_detail::SetIpv4HeaderChecksum(ip, hlen);
  const uint32_t quote =
      hlen + std::min({kQuotedPayload, total - hlen, len - hlen});  // never past the bytes held
  pkt.Trim(len - quote);
  uint8_t* out = pkt.Prepend(kIpHeader + kIcmpHeader);

  uint8_t* icmp = out + kIpHeader;
  icmp[0] = kIcmpUnreach;
  icmp[1] = kIcmpNeedFrag;
  StoreBe16(icmp + 2, 0);
  StoreBe16(icmp + 4, 0);    // unused
  StoreBe16(icmp + 6, mtu);  // next-hop MTU (RFC 1191)
  StoreHost16(icmp + 2, InternetChecksum(icmp, kIcmpHeader + quote));

  const uint32_t out_len = kIpHeader + kIcmpHeader + quote;
  out[0] = 0x45;
  out[1] = kTosInternetControl;
  StoreBe16(out + 2, static_cast<uint16_t>(out_len));
  StoreBe16(out + 4, ip_id);
  StoreBe16(out + 6, 0);
  out[8] = kTtl;
  out[9] = kProtoIcmp;
  StoreBe32(out + 12, source);
  StoreBe32(out + 16, src);  // back to where the refused datagram came from
  divert_detail::SetIpv4HeaderChecksum(out, kIpHeader);

  pkt.meta().flags &= static_cast<uint16_t>(~pkt_flag::kIpCsumUntrusted);
  pkt.meta().flags |= pkt_flag::kModified;
  return FragNeededResult::kBuilt;
}

}  // namespace sluice
