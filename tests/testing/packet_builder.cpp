#include "tests/testing/packet_builder.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sluice::testing {
namespace {

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmpv6 = 58;
constexpr uint8_t kHopByHop = 0, kRouting = 43, kFragmentHdr = 44, kDestOpts = 60, kAh = 51;

void Put16(std::vector<uint8_t>& v, std::size_t at, uint16_t x) {
  v[at] = static_cast<uint8_t>(x >> 8);
  v[at + 1] = static_cast<uint8_t>(x);
}
void Put32(std::vector<uint8_t>& v, std::size_t at, uint32_t x) {
  Put16(v, at, static_cast<uint16_t>(x >> 16));
  Put16(v, at + 2, static_cast<uint16_t>(x));
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

uint32_t Sum16(const uint8_t* p, std::size_t n, uint32_t sum) {
  std::size_t i = 0;
  for (; i + 1 < n; i += 2) sum += Get16(p + i);
  if (i < n) sum += static_cast<uint32_t>(p[i]) << 8;
  return sum;
}
uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

uint32_t PseudoSum(bool v6, const uint8_t* src, const uint8_t* dst, uint8_t proto, uint32_t len) {
  const std::size_t alen = v6 ? 16 : 4;
  uint32_t s = Sum16(src, alen, 0);
  s = Sum16(dst, alen, s);
  return s + proto + (len >> 16) + (len & 0xffff);
}

// IPv6 options padded to 8n - 2 bytes with Pad1/PadN.
std::vector<uint8_t> PadOptions(std::vector<uint8_t> opts) {
  const std::size_t total = (opts.size() + 2 + 7) / 8 * 8;
  std::size_t pad = total - 2 - opts.size();
  if (pad == 1) {
    opts.push_back(0);
  } else if (pad >= 2) {
    opts.push_back(1);
    opts.push_back(static_cast<uint8_t>(pad - 2));
    opts.insert(opts.end(), pad - 2, 0);
  }
  return opts;
}

// Walks the IPv6 chain of a whole datagram: upper-layer offset, protocol, pseudo destination.
// Returns false for a fragment, a malformed chain, or a routing header whose final
// destination it cannot tell.
bool RefWalk6(const uint8_t* ip, std::size_t ip_len, std::size_t* l4, uint8_t* proto,
              const uint8_t** pdst) {
  uint8_t nh = ip[6];
  std::size_t off = 40;
  *pdst = ip + 24;
  while (nh == kHopByHop || nh == kRouting || nh == kDestOpts || nh == kAh || nh == kFragmentHdr) {
    if (off + 8 > ip_len) return false;
    const uint8_t* h = ip + off;
    std::size_t len = nh == kAh ? (h[1] + 2u) * 4u : (h[1] + 1u) * 8u;
    if (nh == kFragmentHdr) {
      len = 8;
      if ((Get16(h + 2) & 0xfff9) != 0) return false;  // not an atomic fragment
    }
    if (off + len > ip_len) return false;
    if (nh == kRouting && h[3] != 0) {
      const std::size_t n = h[1] / 2;
      if (h[2] == 0 && n != 0) {
        *pdst = h + 8 + (n - 1) * 16;
      } else if ((h[2] == 2 || h[2] == 4) && n != 0) {
        *pdst = h + 8;
      } else {
        return false;  // final destination unknown
      }
    }
    nh = h[0];
    off += len;
  }
  *l4 = off;
  *proto = nh;
  return true;
}

}  // namespace

std::vector<uint8_t> Addr(std::string_view text) {
  const std::string s(text);
  std::vector<uint8_t> out(s.find(':') == std::string::npos ? 4 : 16);
  if (inet_pton(out.size() == 4 ? AF_INET : AF_INET6, s.c_str(), out.data()) != 1) {
    std::fprintf(stderr, "packet_builder: bad address %s\n", s.c_str());
    std::abort();
  }
  return out;
}

uint16_t RefChecksum(const uint8_t* p, std::size_t n, uint32_t initial) {
  return static_cast<uint16_t>(~Fold(Sum16(p, n, initial)));
}

PacketBuilder& PacketBuilder::Ethernet() {
  link_ = LinkType::kEthernet;
  l2_ = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0, 0};
  type_pos_ = {12};
  return *this;
}

PacketBuilder& PacketBuilder::Vlan(uint16_t vid, uint16_t tpid) {
  tpids_.push_back(tpid);
  l2_.push_back(static_cast<uint8_t>(vid >> 8));
  l2_.push_back(static_cast<uint8_t>(vid));
  l2_.push_back(0);
  l2_.push_back(0);
  type_pos_.push_back(l2_.size() - 2);
  return *this;
}

PacketBuilder& PacketBuilder::LinuxSll() {
  link_ = LinkType::kLinuxSll;
  // pkttype 0 (to us), ARPHRD_ETHER, address length 6, address, protocol
  l2_ = {0, 0, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 0x01, 0, 0, 0, 0};
  type_pos_ = {14};
  return *this;
}

PacketBuilder& PacketBuilder::LinuxSll2() {
  link_ = LinkType::kLinuxSll2;
  // protocol, reserved, ifindex 2, ARPHRD_ETHER, pkttype, address length 6, address
  l2_ = {0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 0x01, 0, 0};
  type_pos_ = {0};
  return *this;
}

PacketBuilder& PacketBuilder::Loopback(uint32_t af, bool network_order) {
  link_ = LinkType::kBsdLoopback;
  l2_.assign(4, 0);
  if (network_order) {
    Put32(l2_, 0, af);
  } else {
    std::memcpy(l2_.data(), &af, 4);
  }
  type_pos_.clear();
  return *this;
}

PacketBuilder& PacketBuilder::LinkIpv4() {
  link_ = LinkType::kIpv4;
  l2_.clear();
  type_pos_.clear();
  return *this;
}

PacketBuilder& PacketBuilder::LinkIpv6() {
  link_ = LinkType::kIpv6;
  l2_.clear();
  type_pos_.clear();
  return *this;
}

PacketBuilder& PacketBuilder::PadTo(std::size_t frame_len) {
  pad_to_ = frame_len;
  return *this;
}

PacketBuilder& PacketBuilder::Trailer(std::size_t n) {
  trailer_ = n;
  return *this;
}

PacketBuilder& PacketBuilder::Ipv4(std::string_view src, std::string_view dst) {
  v6_ = false;
  const auto s = Addr(src), d = Addr(dst);
  std::memcpy(src_, s.data(), 4);
  std::memcpy(dst_, d.data(), 4);
  return *this;
}

PacketBuilder& PacketBuilder::Ipv6(std::string_view src, std::string_view dst) {
  v6_ = true;
  const auto s = Addr(src), d = Addr(dst);
  std::memcpy(src_, s.data(), 16);
  std::memcpy(dst_, d.data(), 16);
  return *this;
}

PacketBuilder& PacketBuilder::Ttl(uint8_t ttl) {
  ttl_ = ttl;
  return *this;
}
PacketBuilder& PacketBuilder::Tos(uint8_t tos) {
  tos_ = tos;
  return *this;
}
PacketBuilder& PacketBuilder::FlowLabel(uint32_t label) {
  flow_label_ = label & 0xfffff;
  return *this;
}
PacketBuilder& PacketBuilder::Id(uint16_t id) {
  id_ = id;
  return *this;
}
PacketBuilder& PacketBuilder::Df() {
  frag_field_ |= 0x4000;
  return *this;
}
PacketBuilder& PacketBuilder::Ipv4Options(std::vector<uint8_t> options) {
  while (options.size() % 4 != 0) options.push_back(0);
  ip_options_ = std::move(options);
  return *this;
}

PacketBuilder& PacketBuilder::Fragment(uint32_t offset_bytes, bool more, uint32_t id) {
  if (!v6_) {
    frag_field_ = static_cast<uint16_t>((frag_field_ & 0x4000) | (more ? 0x2000 : 0) |
                                        ((offset_bytes / 8) & 0x1fff));
    id_ = static_cast<uint16_t>(id);
    return *this;
  }
  Ext e{kFragmentHdr, std::vector<uint8_t>(7, 0)};
  const auto field = static_cast<uint16_t>((offset_bytes & 0xfff8) | (more ? 1 : 0));
  e.body[1] = static_cast<uint8_t>(field >> 8);
  e.body[2] = static_cast<uint8_t>(field);
  e.body[3] = static_cast<uint8_t>(id >> 24);
  e.body[4] = static_cast<uint8_t>(id >> 16);
  e.body[5] = static_cast<uint8_t>(id >> 8);
  e.body[6] = static_cast<uint8_t>(id);
  ext_.push_back(std::move(e));
  return *this;
}

PacketBuilder& PacketBuilder::HopByHop(std::vector<uint8_t> options) {
  const auto body = PadOptions(std::move(options));
  Ext e{kHopByHop, {static_cast<uint8_t>((body.size() + 2) / 8 - 1)}};
  e.body.insert(e.body.end(), body.begin(), body.end());
  ext_.push_back(std::move(e));
  return *this;
}

PacketBuilder& PacketBuilder::DestOpts(std::vector<uint8_t> options) {
  HopByHop(std::move(options));
  ext_.back().type = kDestOpts;
  return *this;
}

PacketBuilder& PacketBuilder::Routing(uint8_t type, uint8_t segments_left,
                                      std::vector<std::string> addresses) {
  Ext e{kRouting, {static_cast<uint8_t>(2 * addresses.size()), type, segments_left, 0, 0, 0, 0}};
  if (type == 4 && !addresses.empty()) e.body[4] = static_cast<uint8_t>(addresses.size() - 1);
  for (const auto& a : addresses) {
    const auto b = Addr(a);
    e.body.insert(e.body.end(), b.begin(), b.end());
  }
  if (segments_left != 0 && !addresses.empty()) {
    final_dst_ = Addr(type == 4 ? addresses.front() : addresses.back());
  }
  ext_.push_back(std::move(e));
  return *this;
}

PacketBuilder& PacketBuilder::Ah(uint32_t icv_len) {
  const uint32_t len = 12 + icv_len;
  Ext e{kAh, std::vector<uint8_t>(len - 1, 0)};
  e.body[0] = static_cast<uint8_t>(len / 4 - 2);
  e.body[4] = 0x11;  // SPI
  e.body[10] = 1;    // sequence number
  for (uint32_t i = 11; i < len - 1; ++i) e.body[i] = static_cast<uint8_t>(i);
  ext_.push_back(std::move(e));
  return *this;
}

PacketBuilder& PacketBuilder::Tcp(uint16_t sport, uint16_t dport) {
  l4_ = L4::kTcp;
  sport_ = sport;
  dport_ = dport;
  return *this;
}
PacketBuilder& PacketBuilder::TcpFlags(uint8_t flags) {
  tcp_flags_ = flags;
  return *this;
}
PacketBuilder& PacketBuilder::TcpOptions(std::vector<uint8_t> options) {
  tcp_options_.insert(tcp_options_.end(), options.begin(), options.end());
  return *this;
}
PacketBuilder& PacketBuilder::Mss(uint16_t mss) {
  return TcpOptions({2, 4, static_cast<uint8_t>(mss >> 8), static_cast<uint8_t>(mss)});
}
PacketBuilder& PacketBuilder::Udp(uint16_t sport, uint16_t dport) {
  l4_ = L4::kUdp;
  sport_ = sport;
  dport_ = dport;
  return *this;
}
PacketBuilder& PacketBuilder::UdpNoChecksum() {
  udp_no_checksum_ = true;
  return *this;
}
PacketBuilder& PacketBuilder::Icmp(uint8_t type, uint8_t code, uint16_t id, uint16_t seq) {
  l4_ = L4::kIcmp;
  icmp_type_ = type;
  icmp_code_ = code;
  icmp_id_ = id;
  icmp_seq_ = seq;
  return *this;
}
PacketBuilder& PacketBuilder::L4Proto(uint8_t proto) {
  l4_ = L4::kRaw;
  raw_proto_ = proto;
  return *this;
}
PacketBuilder& PacketBuilder::Payload(std::size_t n) {
  payload_.resize(n);
  for (std::size_t i = 0; i < n; ++i) payload_[i] = static_cast<uint8_t>(0x30 + i * 7);
  return *this;
}
PacketBuilder& PacketBuilder::Payload(std::vector<uint8_t> bytes) {
  payload_ = std::move(bytes);
  return *this;
}

TestPacket PacketBuilder::Build() const {
  // Transport header and payload.
  std::vector<uint8_t> l4;
  uint8_t proto = raw_proto_;
  std::size_t csum_at = 0;  // offset of the L4 checksum within l4, 0 = none
  switch (l4_) {
    case L4::kTcp: {
      std::vector<uint8_t> opts = tcp_options_;
      while (opts.size() % 4 != 0) opts.push_back(0);
      l4.assign(20, 0);
      Put16(l4, 0, sport_);
      Put16(l4, 2, dport_);
      Put32(l4, 4, 0x01020304);
      Put32(l4, 8, (tcp_flags_ & 0x10) != 0 ? 0x0a0b0c0d : 0);
      l4[12] = static_cast<uint8_t>(((20 + opts.size()) / 4) << 4);
      l4[13] = tcp_flags_;
      Put16(l4, 14, 65535);
      l4.insert(l4.end(), opts.begin(), opts.end());
      proto = kTcp;
      csum_at = 16;
      break;
    }
    case L4::kUdp:
      l4.assign(8, 0);
      Put16(l4, 0, sport_);
      Put16(l4, 2, dport_);
      Put16(l4, 4, static_cast<uint16_t>(8 + payload_.size()));
      proto = kUdp;
      csum_at = 6;
      break;
    case L4::kIcmp:
      l4.assign(8, 0);
      l4[0] = icmp_type_;
      l4[1] = icmp_code_;
      Put16(l4, 4, icmp_id_);
      Put16(l4, 6, icmp_seq_);
      proto = v6_ ? kIcmpv6 : kIcmp;
      csum_at = 2;
      break;
    case L4::kNone:
      proto = v6_ ? 59 : 255;
      break;
    case L4::kRaw:
      break;
  }
  const std::size_t l4_hdr = l4.size();
  l4.insert(l4.end(), payload_.begin(), payload_.end());
  const uint8_t* pseudo_dst = final_dst_.empty() ? dst_ : final_dst_.data();
  if (csum_at != 0) {
    const bool pseudo = !(l4_ == L4::kIcmp && !v6_);
    const uint32_t seed =
        pseudo ? PseudoSum(v6_, src_, pseudo_dst, proto, static_cast<uint32_t>(l4.size())) : 0;
    uint16_t c = RefChecksum(l4.data(), l4.size(), seed);
    if (l4_ == L4::kUdp && c == 0) c = 0xffff;
    if (l4_ == L4::kUdp && udp_no_checksum_) c = 0;
    Put16(l4, csum_at, c);
  }

  // IP header (and IPv6 extension headers).
  std::vector<uint8_t> ip;
  if (!v6_) {
    const std::size_t hl = 20 + ip_options_.size();
    ip.assign(20, 0);
    ip[0] = static_cast<uint8_t>(0x40 | (hl / 4));
    ip[1] = tos_;
    Put16(ip, 2, static_cast<uint16_t>(hl + l4.size()));
    Put16(ip, 4, id_);
    Put16(ip, 6, frag_field_);
    ip[8] = ttl_;
    ip[9] = proto;
    std::memcpy(&ip[12], src_, 4);
    std::memcpy(&ip[16], dst_, 4);
    ip.insert(ip.end(), ip_options_.begin(), ip_options_.end());
    Put16(ip, 10, RefChecksum(ip.data(), ip.size()));
  } else {
    ip.assign(40, 0);
    Put32(ip, 0, (6u << 28) | (uint32_t{tos_} << 20) | flow_label_);
    ip[7] = ttl_;
    std::memcpy(&ip[8], src_, 16);
    std::memcpy(&ip[24], dst_, 16);
    std::size_t nh_at = 6;
    for (const Ext& e : ext_) {
      ip[nh_at] = e.type;
      nh_at = ip.size();
      ip.push_back(0);
      ip.insert(ip.end(), e.body.begin(), e.body.end());
    }
    ip[nh_at] = proto;
    Put16(ip, 4, static_cast<uint16_t>(ip.size() - 40 + l4.size()));
  }

  TestPacket p;
  p.link = link_;
  std::vector<uint8_t> l2 = l2_;
  if (!type_pos_.empty()) {
    for (std::size_t k = 0; k < type_pos_.size(); ++k) {
      const uint16_t type = k < tpids_.size() ? tpids_[k] : (v6_ ? 0x86dd : 0x0800);
      Put16(l2, type_pos_[k], type);
    }
  }
  p.bytes = l2;
  p.l3_off = static_cast<uint32_t>(l2.size());
  p.bytes.insert(p.bytes.end(), ip.begin(), ip.end());
  p.l4_off = l4_hdr != 0 || l4_ == L4::kRaw ? static_cast<uint32_t>(p.bytes.size()) : 0;
  p.bytes.insert(p.bytes.end(), l4.begin(), l4.end());
  p.ip_len = static_cast<uint32_t>(ip.size() + l4.size());
  if (p.bytes.size() < pad_to_) p.bytes.resize(pad_to_, 0);
  p.bytes.insert(p.bytes.end(), trailer_, 0xee);
  return p;
}

std::vector<TestPacket> FragmentPacket(const TestPacket& whole, uint32_t chunk, uint32_t id) {
  std::vector<TestPacket> out;
  const uint8_t* ip = whole.bytes.data() + whole.l3_off;
  const bool v6 = (ip[0] >> 4) == 6;
  std::size_t unfrag = v6 ? 40 : (ip[0] & 0x0f) * 4u;
  uint8_t first_nh = v6 ? ip[6] : 0;
  std::size_t nh_at = 6;
  if (v6 && first_nh == kHopByHop) {  // hop-by-hop stays in every fragment
    nh_at = 40;
    first_nh = ip[40];
    unfrag += (ip[41] + 1u) * 8u;
  }
  const std::size_t total = whole.ip_len;
  for (std::size_t off = unfrag; off < total; off += chunk) {
    const std::size_t n = std::min<std::size_t>(chunk, total - off);
    const bool more = off + n < total;
    const auto frag_off = static_cast<uint32_t>(off - unfrag);
    TestPacket f;
    f.link = LinkType::kRaw;
    f.bytes.assign(ip, ip + unfrag);
    if (v6) {
      f.bytes[nh_at] = kFragmentHdr;
      const auto field = static_cast<uint16_t>(frag_off | (more ? 1 : 0));
      const uint8_t fh[8] = {first_nh,
                             0,
                             static_cast<uint8_t>(field >> 8),
                             static_cast<uint8_t>(field),
                             static_cast<uint8_t>(id >> 24),
                             static_cast<uint8_t>(id >> 16),
                             static_cast<uint8_t>(id >> 8),
                             static_cast<uint8_t>(id)};
      f.bytes.insert(f.bytes.end(), fh, fh + 8);
    }
    const std::size_t hdr = f.bytes.size();
    f.bytes.insert(f.bytes.end(), ip + off, ip + off + n);
    if (v6) {
      Put16(f.bytes, 4, static_cast<uint16_t>(f.bytes.size() - 40));
    } else {
      Put16(f.bytes, 2, static_cast<uint16_t>(f.bytes.size()));
      Put16(f.bytes, 4, static_cast<uint16_t>(id));
      Put16(f.bytes, 6,
            static_cast<uint16_t>((Get16(ip + 6) & 0x4000) | (more ? 0x2000 : 0) | (frag_off / 8)));
      Put16(f.bytes, 10, 0);
      Put16(f.bytes, 10, RefChecksum(f.bytes.data(), hdr));
    }
    f.l3_off = 0;
    f.l4_off = frag_off == 0 ? static_cast<uint32_t>(hdr) : 0;
    f.ip_len = static_cast<uint32_t>(f.bytes.size());
    out.push_back(std::move(f));
  }
  return out;
}

bool RefIpHeaderChecksumOk(const uint8_t* ip, std::size_t ip_len) {
  if ((ip[0] >> 4) != 4) return true;
  const std::size_t hl = (ip[0] & 0x0f) * 4u;
  return hl <= ip_len && Fold(Sum16(ip, hl, 0)) == 0xffff;
}

bool RefL4ChecksumOk(const uint8_t* ip, std::size_t ip_len) {
  std::size_t l4;
  uint8_t proto;
  const uint8_t* src;
  const uint8_t* pdst;
  const bool v6 = (ip[0] >> 4) == 6;
  if (v6) {
    if (!RefWalk6(ip, ip_len, &l4, &proto, &pdst)) return true;
    src = ip + 8;
  } else {
    if ((Get16(ip + 6) & 0x3fff) != 0) return true;  // a fragment: covers bytes not here
    l4 = (ip[0] & 0x0f) * 4u;
    proto = ip[9];
    src = ip + 12;
    pdst = ip + 16;
  }
  std::size_t len = ip_len - l4;
  const uint8_t* h = ip + l4;
  uint32_t seed;
  switch (proto) {
    case kTcp:
      if (len < 20) return false;
      seed = PseudoSum(v6, src, pdst, proto, static_cast<uint32_t>(len));
      break;
    case kUdp:
      if (len < 8) return false;
      if (!v6 && Get16(h + 6) == 0) return true;
      if (v6 && Get16(h + 6) == 0) return false;
      len = Get16(h + 4);
      seed = PseudoSum(v6, src, pdst, proto, static_cast<uint32_t>(len));
      break;
    case kIcmp:
      if (v6) return true;
      seed = 0;
      break;
    case kIcmpv6:
      if (!v6) return true;
      seed = PseudoSum(v6, src, pdst, proto, static_cast<uint32_t>(len));
      break;
    default:
      return true;
  }
  return Fold(Sum16(h, len, seed)) == 0xffff;
}

}  // namespace sluice::testing
