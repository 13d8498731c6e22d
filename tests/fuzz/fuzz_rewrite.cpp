// libFuzzer target: parse → a rewrite plan the input describes → ApplyPlan → parse again.
//
// Input: byte 0 the link type (fuzz_packet.h), bytes 1..kPlanBytes the plan, the rest the
// packet. Address maps and port maps take their "from" side from the packet itself when a
// bit says so, so they apply often, not once in 2^32.
// Invariants:
// - a packet parse rejects is left as it came by ApplyPlan (not_parsed);
// - ttl_expired changes no byte;
// - otherwise the length is unchanged, no byte before the IP header or past the transport
//   header changes, kModified is set exactly when a byte changed, and the packet parses
//   again to the same offsets and flags;
// - an IPv4 header checksum or transport checksum that verified before verifies after (the
//   reference checks of tests/testing/packet_builder.h, independent of engine/proto); with
//   full_checksum both verify after, unless the stage counted the L4 recompute impossible;
// - the mark is (old & ~mask) | (mark & mask).
#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/core/byte_order.h"
#include "engine/proto/ipv4.h"
#include "engine/proto/tcp.h"
#include "engine/stages/parse/parse_stage.h"
#include "engine/stages/rewrite/rewrite_ops.h"
#include "engine/stages/rewrite/rewrite_stage.h"
#include "tests/fuzz/fuzz_packet.h"
#include "tests/testing/packet_builder.h"

namespace sluice::fuzz {
namespace {

uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// The packet's own address and port on one side, for maps that should match it.
struct Own {
  std::array<uint8_t, 16> addr{};
  uint16_t port = 0;
};

Own OwnSide(const PacketBuffer& b, Side side) {
  Own o;
  const PacketMeta& m = b.meta();
  const uint8_t* ip = b.data() + m.l3_off;
  if (m.l3 == L3Type::kIpv4) std::memcpy(o.addr.data(), ip + (side == Side::kSrc ? 12 : 16), 4);
  else std::memcpy(o.addr.data(), ip + (side == Side::kSrc ? 8 : 24), 16);
  if (HasPorts(m)) o.port = Get16(b.data() + m.l4_off + (side == Side::kSrc ? 0 : 2));
  return o;
}

AddrRewrite MakeAddr(uint8_t kind, uint8_t len_byte, const uint8_t* material, L3Type family, const Own& own) {
  const bool v4 = family == L3Type::kIpv4;
  std::array<uint8_t, 16> a{}, b{};
  std::memcpy(a.data(), material, v4 ? 4 : 16);
  std::memcpy(b.data(), material + 4, v4 ? 4 : 12);
  switch (kind & 3) {
    case 1:
      return v4 ? AddrRewrite::SetIpv4(LoadBe32(a.data())) : AddrRewrite::SetIpv6(a);
    case 2:
    case 3: {
      const uint8_t len = static_cast<uint8_t>(1 + len_byte % (v4 ? 32 : 128));
      const std::array<uint8_t, 16>& from = (kind & 4) ? own.addr : b;
      return v4 ? AddrRewrite::MapIpv4(LoadBe32(from.data()), LoadBe32(a.data()), len)
                : AddrRewrite::MapIpv6(from, a, len);
    }
    default:
      return {};
  }
}

PortRewrite MakePort(uint8_t kind, const uint8_t* material, uint16_t own) {
  const uint16_t x = Get16(material), y = Get16(material + 2);
  switch (kind & 3) {
    case 1:
      return PortRewrite::Set(x);
    case 2:
    case 3: {
      const uint16_t first = (kind & 4) ? std::min(own, y) : std::min(x, y);
      const uint16_t last = (kind & 4) ? std::max(own, y) : std::max(x, y);
      PortMapEntry e{.first = first, .last = last, .to = x, .mode = PortMapEntry::Mode::kCollapse};
      if ((kind & 8) && uint32_t{x} + (last - first) <= 65535) e.mode = PortMapEntry::Mode::kShift;
      std::vector<PortMapEntry> map = {e};
      if ((kind & 16) && last < 65535) map.push_back({.first = static_cast<uint16_t>(last + 1), .last = 65535, .to = y});
      return PortRewrite::Map(std::move(map));
    }
    default:
      return {};
  }
}

RewritePlan MakePlan(const uint8_t* d, const PacketBuffer& b) {
  RewritePlan p;
  L3Type family = b.meta().l3;
  if (d[0] & 0x80) family = family == L3Type::kIpv4 ? L3Type::kIpv6 : L3Type::kIpv4;  // family_mismatch
  p.src_addr = MakeAddr(d[1], d[2], d + 4, family, OwnSide(b, Side::kSrc));
  p.dst_addr = MakeAddr(d[1] >> 3, d[3], d + 8, family, OwnSide(b, Side::kDst));
  p.src_port = MakePort(d[20], d + 21, OwnSide(b, Side::kSrc).port);
  p.dst_port = MakePort(d[25], d + 26, OwnSide(b, Side::kDst).port);
  const uint8_t ttl = static_cast<uint8_t>(1 + d[30] % 255);
  if ((d[0] & 3) == 1) p.ttl = {.kind = TtlRewrite::Kind::kSet, .value = ttl};
  if ((d[0] & 3) == 2) p.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = static_cast<uint8_t>(1 + ttl % 3)};
  if (d[0] & 4) p.dscp = static_cast<uint8_t>(d[31] & 63);
  if (d[0] & 8) p.mss_clamp = static_cast<uint16_t>(kMinMssClamp + Get16(d + 29) % 1500);
  if (d[0] & 16) {
    p.mark = LoadBe32(d + 12);
    p.mark_mask = LoadBe32(d + 16) | 1;
  }
  p.full_checksum = (d[0] & 32) != 0;
  return p;
}

// Where the bytes a plan may change end: the transport header, or the IP header when parse
// found none it looked into.
uint32_t HeadersEnd(const PacketBuffer& b) {
  const PacketMeta& m = b.meta();
  const uint8_t* data = b.data();
  if (m.flags & pkt_flag::kL4Valid) {
    return m.l4_off + (m.l4_proto == 6 ? tcp::HeaderLen(data + m.l4_off) : 8u);
  }
  if (m.l4_off != 0) return m.l4_off;
  return m.l3_off + (m.l3 == L3Type::kIpv4 ? ipv4::HeaderLen(data + m.l3_off) : 40u);
}

struct Sums {
  bool ip, l4;
};
Sums Checksums(const PacketBuffer& b) {
  const uint8_t* ip = b.data() + b.meta().l3_off;
  const std::size_t n = b.len() - b.meta().l3_off;
  return {testing::RefIpHeaderChecksumOk(ip, n), testing::RefL4ChecksumOk(ip, n)};
}

void Check(const uint8_t* data, std::size_t size) {
  if (size < 1 + kPlanBytes || size - 1 - kPlanBytes > kMaxPacket) return;
  const LinkType link = kLinkTypes[data[0] % kNumLinkTypes];
  const uint8_t* desc = data + 1;
  const uint8_t* pkt = desc + kPlanBytes;
  const auto n = static_cast<uint32_t>(size - 1 - kPlanBytes);
  ParseConfig config;
  PacketBuffer& b = Slot(0).Load(pkt, n, link);
  ParseCounts pc{};
  RewriteCounts rc{};
  if (ParsePacket(b, config, pc) != DropReason::kNone) {
    RewritePlan any;
    any.ttl = {.kind = TtlRewrite::Kind::kSet, .value = 1};
    any.full_checksum = true;
    SLUICE_FUZZ_CHECK(ApplyPlan(b, any, rc) == DropReason::kNone);
    SLUICE_FUZZ_CHECK(b.len() == n && std::memcmp(b.data(), pkt, n) == 0);
    SLUICE_FUZZ_CHECK((b.meta().flags & pkt_flag::kModified) == 0);
    return;
  }
  const RewritePlan plan = MakePlan(desc, b);
  SLUICE_FUZZ_CHECK(Validate(plan).ok());
  const std::vector<uint8_t> before(b.data(), b.data() + b.len());
  const PacketMeta meta = b.meta();
  const Sums sums_before = Checksums(b);
  const uint32_t end = HeadersEnd(b);
  b.meta().mark = LoadBe32(desc + 8);
  const uint32_t mark_before = b.meta().mark;

  const DropReason r = ApplyPlan(b, plan, rc);
  const bool same = b.len() == before.size() && std::memcmp(b.data(), before.data(), before.size()) == 0;
  if (r != DropReason::kNone) {
    SLUICE_FUZZ_CHECK(r == DropReason::kTtlExpired && plan.ttl.kind == TtlRewrite::Kind::kDecrement);
    SLUICE_FUZZ_CHECK(same);
    return;
  }
  SLUICE_FUZZ_CHECK(b.len() == before.size());
  SLUICE_FUZZ_CHECK(std::memcmp(b.data(), before.data(), meta.l3_off) == 0);
  SLUICE_FUZZ_CHECK(end <= before.size());
  SLUICE_FUZZ_CHECK(std::memcmp(b.data() + end, before.data() + end, before.size() - end) == 0);
  SLUICE_FUZZ_CHECK(((b.meta().flags & pkt_flag::kModified) != 0) == !same);
  if (plan.mark) {
    SLUICE_FUZZ_CHECK(b.meta().mark == ((mark_before & ~plan.mark_mask) | (*plan.mark & plan.mark_mask)));
    SLUICE_FUZZ_CHECK(b.meta().flags & pkt_flag::kMarkSet);
  } else {
    SLUICE_FUZZ_CHECK(b.meta().mark == mark_before);
  }

  const std::vector<uint8_t> after(b.data(), b.data() + b.len());
  PacketBuffer& again = Slot(1).Load(after.data(), static_cast<uint32_t>(after.size()), link);
  SLUICE_FUZZ_CHECK(ParsePacket(again, config, pc) == DropReason::kNone);
  const PacketMeta& m2 = again.meta();
  SLUICE_FUZZ_CHECK(again.len() == after.size());
  SLUICE_FUZZ_CHECK(m2.l3 == meta.l3 && m2.l3_off == meta.l3_off && m2.l4_off == meta.l4_off);
  SLUICE_FUZZ_CHECK(m2.l4_proto == meta.l4_proto && m2.flags == meta.flags);

  const Sums sums_after = Checksums(again);
  if (sums_before.ip) SLUICE_FUZZ_CHECK(sums_after.ip);
  if (sums_before.l4) SLUICE_FUZZ_CHECK(sums_after.l4);
  if (plan.full_checksum) {
    SLUICE_FUZZ_CHECK(sums_after.ip);
    if ((meta.flags & pkt_flag::kL4Valid) && !(meta.flags & pkt_flag::kFragment) &&
        rc[RewriteCounter::kL4CsumNotPossible] == 0) {
      SLUICE_FUZZ_CHECK(sums_after.l4);
    }
  }
}

}  // namespace
}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  sluice::fuzz::Check(data, size);
  return 0;
}
