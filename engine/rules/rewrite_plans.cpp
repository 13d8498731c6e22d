#include "engine/rules/rewrite_plans.h"

#include <array>

#include "engine/stages/rewrite/rewrite_plan.h"

namespace sluice {
namespace {

std::array<uint8_t, 16> Bytes(const IpAddr& a) {
  std::array<uint8_t, 16> out{};
  a.ToBytes(out.data());
  return out;
}

AddrRewrite ToPlan(const AddressEdit& e) {
  switch (e.kind) {
    case AddressEdit::Kind::kNone: return {};
    case AddressEdit::Kind::kSet:
      return e.addr.family == L3Type::kIpv4 ? AddrRewrite::SetIpv4(e.addr.v4()) : AddrRewrite::SetIpv6(Bytes(e.addr));
    case AddressEdit::Kind::kPrefixMap:
      return e.from.addr.family == L3Type::kIpv4
                 ? AddrRewrite::MapIpv4(e.from.addr.v4(), e.to.addr.v4(), e.from.len)
                 : AddrRewrite::MapIpv6(Bytes(e.from.addr), Bytes(e.to.addr), e.from.len);
  }
  return {};
}

PortRewrite ToPlan(const PortEdit& e) {
  switch (e.kind) {
    case PortEdit::Kind::kNone: return {};
    case PortEdit::Kind::kSet: return PortRewrite::Set(e.port);
    case PortEdit::Kind::kMap: {
      std::vector<PortMapEntry> entries;
      for (const auto& [from, to] : e.map) entries.push_back({from, from, to, PortMapEntry::Mode::kCollapse});
      return PortRewrite::Map(std::move(entries));
    }
    case PortEdit::Kind::kShift:
      return PortRewrite::Map({{e.from.lo, e.from.hi, e.to, PortMapEntry::Mode::kShift}});
  }
  return {};
}

RewritePlan ToPlan(const RewriteSpec& w) {
  RewritePlan p;
  p.src_addr = ToPlan(w.src_addr);
  p.dst_addr = ToPlan(w.dst_addr);
  p.src_port = ToPlan(w.src_port);
  p.dst_port = ToPlan(w.dst_port);
  if (w.ttl) p.ttl = {TtlRewrite::Kind::kSet, *w.ttl};
  if (w.ttl_decrement) p.ttl = {TtlRewrite::Kind::kDecrement, 1};
  p.dscp = w.dscp;
  p.mss_clamp = w.mss_clamp;
  if (w.mark) {
    p.mark = w.mark->value;
    p.mark_mask = w.mark->mask;
  }
  p.full_checksum = w.full_checksum;
  return p;
}

}  // namespace

RewritePlans::RewritePlans() = default;
RewritePlans::~RewritePlans() = default;
RewritePlans::RewritePlans(RewritePlans&&) noexcept = default;
RewritePlans& RewritePlans::operator=(RewritePlans&&) noexcept = default;

Result<RewritePlans> RewritePlans::Build(std::span<const RuleConfig> rules) {
  RewritePlans out;
  out.index_.assign(rules.size(), nullptr);
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const RewriteSpec& w = rules[i].rewrite;
    const bool translation_edits = rules[i].action == RuleAction::kTranslateSourcePort &&
                                   (w.ttl || w.ttl_decrement || w.dscp || w.mss_clamp || w.mark || w.full_checksum);
    if (rules[i].action != RuleAction::kRewrite && !translation_edits) continue;
    auto plan = std::make_unique<RewritePlan>(ToPlan(rules[i].rewrite));
    if (Status s = Validate(*plan); !s.ok()) {
      return InvalidArgument("rule " + std::to_string(rules[i].number) + " (" + rules[i].name +
                             "): rewrite plan rejected: " + s.message());
    }
    out.index_[i] = plan.get();
    out.owned_.push_back(std::move(plan));
  }
  return out;
}

}  // namespace sluice
