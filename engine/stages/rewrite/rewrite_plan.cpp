#include "engine/stages/rewrite/rewrite_plan.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "engine/core/byte_order.h"

namespace sluice {
namespace {

std::array<uint8_t, 16> Ipv4Bytes(uint32_t addr) {
  std::array<uint8_t, 16> b{};
  StoreBe32(b.data(), addr);
  return b;
}

Status CheckAddr(const AddrRewrite& a, const char* which) {
  if (a.kind == AddrRewrite::Kind::kNone) return Status::Ok();
  const std::string field = which;
  if (a.family != L3Type::kIpv4 && a.family != L3Type::kIpv6) {
    return InvalidArgument(field + ": family must be IPv4 or IPv6");
  }
  const unsigned bits = a.family == L3Type::kIpv4 ? 32 : 128;
  if (a.kind == AddrRewrite::Kind::kMap && (a.prefix_len == 0 || a.prefix_len > bits)) {
    return InvalidArgument(field + ": prefix length " + std::to_string(a.prefix_len) +
                           " is not in 1.." + std::to_string(bits));
  }
  if (a.family == L3Type::kIpv4 &&
      (std::any_of(a.to.begin() + 4, a.to.end(), [](uint8_t b) { return b != 0; }) ||
       std::any_of(a.from.begin() + 4, a.from.end(), [](uint8_t b) { return b != 0; }))) {
    return InvalidArgument(field + ": an IPv4 address uses only the first 4 bytes");
  }
  return Status::Ok();
}

Status CheckPorts(const PortRewrite& p, const char* which) {
  if (p.kind != PortRewrite::Kind::kMap) return Status::Ok();
  const std::string field = which;
  if (p.map.empty()) return InvalidArgument(field + ": an empty port map");
  for (std::size_t i = 0; i < p.map.size(); ++i) {
    const PortMapEntry& e = p.map[i];
    const std::string at = field + " entry " + std::to_string(i) + " (" + std::to_string(e.first) +
                           "-" + std::to_string(e.last) + ")";
    if (e.first > e.last) return InvalidArgument(at + ": first is above last");
    if (e.mode == PortMapEntry::Mode::kShift && uint32_t{e.to} + (e.last - e.first) > 65535) {
      return InvalidArgument(at + ": shifted to " + std::to_string(e.to) + " it ends past 65535");
    }
    if (i > 0 && e.first <= p.map[i - 1].last) {
      return InvalidArgument(at + ": entries must be sorted by first port and must not overlap");
    }
  }
  return Status::Ok();
}

}  // namespace

AddrRewrite AddrRewrite::SetIpv4(uint32_t addr) {
  return {.kind = Kind::kSet, .family = L3Type::kIpv4, .prefix_len = 32, .to = Ipv4Bytes(addr)};
}

AddrRewrite AddrRewrite::MapIpv4(uint32_t from, uint32_t to, uint8_t prefix_len) {
  return {.kind = Kind::kMap,
          .family = L3Type::kIpv4,
          .prefix_len = prefix_len,
          .from = Ipv4Bytes(from),
          .to = Ipv4Bytes(to)};
}

AddrRewrite AddrRewrite::SetIpv6(const std::array<uint8_t, 16>& addr) {
  return {.kind = Kind::kSet, .family = L3Type::kIpv6, .prefix_len = 128, .to = addr};
}

AddrRewrite AddrRewrite::MapIpv6(const std::array<uint8_t, 16>& from,
                                 const std::array<uint8_t, 16>& to, uint8_t prefix_len) {
  return {.kind = Kind::kMap,
          .family = L3Type::kIpv6,
          .prefix_len = prefix_len,
          .from = from,
          .to = to};
}

PortRewrite PortRewrite::Set(uint16_t port) {
  PortRewrite r;
  r.kind = Kind::kSet;
  r.value = port;
  return r;
}

PortRewrite PortRewrite::Map(std::vector<PortMapEntry> entries) {
  PortRewrite r;
  r.kind = Kind::kMap;
  r.map = std::move(entries);
  return r;
}

Status Validate(const RewritePlan& plan) {
  for (auto [a, name] : {std::pair{&plan.src_addr, "src_addr"}, {&plan.dst_addr, "dst_addr"}}) {
    if (Status s = CheckAddr(*a, name); !s.ok()) return s;
  }
  for (auto [p, name] : {std::pair{&plan.src_port, "src_port"}, {&plan.dst_port, "dst_port"}}) {
    if (Status s = CheckPorts(*p, name); !s.ok()) return s;
  }
  if (plan.ttl.kind != TtlRewrite::Kind::kNone && plan.ttl.value == 0) {
    return InvalidArgument("ttl: the value must be 1..255 (a TTL is never set to 0)");
  }
  if (plan.dscp && *plan.dscp > 63) {
    return InvalidArgument("dscp: " + std::to_string(*plan.dscp) + " is not in 0..63");
  }
  if (plan.mss_clamp && *plan.mss_clamp < kMinMssClamp) {
    return InvalidArgument("mss_clamp: " + std::to_string(*plan.mss_clamp) + " is below " +
                           std::to_string(kMinMssClamp));
  }
  return Status::Ok();
}

bool MapAddress(const AddrRewrite& r, const uint8_t* addr, uint8_t* out) noexcept {
  const unsigned n = r.family == L3Type::kIpv4 ? 4 : 16;
  switch (r.kind) {
    case AddrRewrite::Kind::kNone:
      return false;
    case AddrRewrite::Kind::kSet:
      std::memcpy(out, r.to.data(), n);
      return true;
    case AddrRewrite::Kind::kMap:
      break;
  }
  if (r.family == L3Type::kIpv4) {  // one 32-bit mask instead of a byte loop
    const uint32_t mask = ~uint32_t{0} << (32 - r.prefix_len);  // prefix_len 1..32
    const uint32_t a = LoadBe32(addr);
    if (((a ^ LoadBe32(r.from.data())) & mask) != 0) return false;
    StoreBe32(out, (a & ~mask) | (LoadBe32(r.to.data()) & mask));
    return true;
  }
  uint8_t mapped[16];
  unsigned bits = r.prefix_len;
  for (unsigned i = 0; i < n; ++i) {
    const unsigned take = bits < 8 ? bits : 8;
    const auto mask = static_cast<uint8_t>(0xff00u >> take);  // the top `take` bits
    bits -= take;
    if (((addr[i] ^ r.from[i]) & mask) != 0) return false;
    mapped[i] = static_cast<uint8_t>((addr[i] & ~mask) | (r.to[i] & mask));
  }
  std::memcpy(out, mapped, n);
  return true;
}

uint16_t rewrite_detail::MapPortSearch(const PortRewrite& r, uint16_t port) noexcept {
  // The last entry whose first <= port; it covers port if port <= its last.
  const auto it = std::upper_bound(r.map.begin(), r.map.end(), port,
                                   [](uint16_t p, const PortMapEntry& e) { return p < e.first; });
  if (it == r.map.begin() || port > (it - 1)->last) return port;
  return Apply(*(it - 1), port);
}

}  // namespace sluice
