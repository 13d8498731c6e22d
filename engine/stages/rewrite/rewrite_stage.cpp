#include "engine/stages/rewrite/rewrite_stage.h"

#include "engine/core/assert.h"
#include "engine/core/byte_order.h"
#include "engine/proto/ipv4.h"
#include "engine/proto/ipv6.h"
#include "engine/proto/tcp.h"
#include "engine/stages/rewrite/rewrite_ops.h"

namespace sluice {
namespace {

bool ApplyAddr(PacketBuffer& buf, Side side, const AddrRewrite& a, RewriteCounts& c) noexcept {
  if (a.kind == AddrRewrite::Kind::kNone) return false;
  const PacketMeta& m = buf.meta();
  if (a.family != m.l3) {
    c.Bump(RewriteCounter::kFamilyMismatch);
    return false;
  }
  const uint8_t* ip = buf.data() + m.l3_off;
  uint8_t addr[16];
  bool changed = false;
  if (m.l3 == L3Type::kIpv4) {
    const uint8_t* old_addr = ip + (side == Side::kSrc ? ipv4::kOffSrc : ipv4::kOffDst);
    changed = MapAddress(a, old_addr, addr) && SetIpv4Address(buf, side, LoadBe32(addr));
  } else {
    const uint8_t* old_addr = ip + (side == Side::kSrc ? ipv6::kOffSrc : ipv6::kOffDst);
    changed = MapAddress(a, old_addr, addr) && SetIpv6Address(buf, side, addr);
  }
  if (changed) c.Bump(RewriteCounter::kAddrChanged);
  return changed;
}

bool ApplyPort(PacketBuffer& buf, Side side, const PortRewrite& p, RewriteCounts& c) noexcept {
  if (p.kind == PortRewrite::Kind::kNone) return false;
  const PacketMeta& m = buf.meta();
  if (!HasPorts(m)) {
    c.Bump(RewriteCounter::kNoPorts);
    return false;
  }
  const uint8_t* l4 = buf.data() + m.l4_off;
  const uint16_t old_port = side == Side::kSrc ? tcp::SrcPort(l4) : tcp::DstPort(l4);
  const bool changed = SetL4Port(buf, side, MapPort(p, old_port));
  if (changed) c.Bump(RewriteCounter::kPortChanged);
  return changed;
}

}  // namespace

DropReason ApplyPlan(PacketBuffer& buf, const RewritePlan& plan, RewriteCounts& c) noexcept {
  PacketMeta& m = buf.meta();
  if (SLUICE_UNLIKELY(m.l3 == L3Type::kNone)) {
    c.Bump(RewriteCounter::kNotParsed);  // nothing here may be trusted: leave it as it is
    return DropReason::kNone;
  }
  const uint8_t ttl = plan.ttl.kind == TtlRewrite::Kind::kNone ? 0 : Ttl(buf);
  if (plan.ttl.kind == TtlRewrite::Kind::kDecrement && ttl <= plan.ttl.value) {
    return DropReason::kTtlExpired;  // before any byte changes
  }

  bool changed = false;
  changed |= ApplyAddr(buf, Side::kSrc, plan.src_addr, c);
  changed |= ApplyAddr(buf, Side::kDst, plan.dst_addr, c);
  changed |= ApplyPort(buf, Side::kSrc, plan.src_port, c);
  changed |= ApplyPort(buf, Side::kDst, plan.dst_port, c);
  if (plan.ttl.kind != TtlRewrite::Kind::kNone) {
    const uint8_t v = plan.ttl.kind == TtlRewrite::Kind::kDecrement
                          ? static_cast<uint8_t>(ttl - plan.ttl.value)
                          : (ttl > plan.ttl.value ? plan.ttl.value : ttl);
    if (SetTtl(buf, v)) {
      changed = true;
      c.Bump(RewriteCounter::kTtlChanged);
    }
  }
  if (plan.dscp && SetDscp(buf, *plan.dscp)) {
    changed = true;
    c.Bump(RewriteCounter::kDscpChanged);
  }
  if (plan.mss_clamp && ClampTcpMss(buf, *plan.mss_clamp)) {
    changed = true;
    c.Bump(RewriteCounter::kMssClamped);
  }

  const ChecksumFinish f = FinishChecksums(buf, changed, plan.full_checksum);
  changed |= f.changed;
  if (f.l4_recomputed) c.Bump(RewriteCounter::kL4CsumRecomputed);
  if (f.l4_not_possible) c.Bump(RewriteCounter::kL4CsumNotPossible);
  if (f.ip_recomputed) c.Bump(RewriteCounter::kIpCsumRecomputed);

  if (plan.mark) {
    m.mark = (m.mark & ~plan.mark_mask) | (*plan.mark & plan.mark_mask);
    m.flags |= pkt_flag::kMarkSet;
    c.Bump(RewriteCounter::kMarked);
  }
  if (changed) {
    m.flags |= pkt_flag::kModified;
    c.Bump(RewriteCounter::kRewritten);
  } else {
    c.Bump(RewriteCounter::kUnchanged);
  }
  return DropReason::kNone;
}

void RewriteStage::Process(Batch& batch) noexcept {
  RewriteCounts counts{};
  const uint32_t n = batch.size();
  for (uint32_t i = 0; i < n; ++i) {
    if (batch.next(i) != Next::kRewrite) continue;
    const RewritePlan* plan = batch.plan(i);
    if (SLUICE_UNLIKELY(plan == nullptr)) {
      batch.Drop(i, DropReason::kRewriteNoPlan);
      continue;
    }
    const DropReason r = ApplyPlan(batch.packet(i), *plan, counts);
    if (SLUICE_LIKELY(r == DropReason::kNone)) {
      batch.set_next(i, Next::kAccept);
    } else {
      batch.Drop(i, r);
    }
  }
  counts.AddTo(counters_[batch.worker()]);
}

}  // namespace sluice
