// DropReason: the closed table of reasons a packet did not take the normal path.
//
// A packet whose disposition is kDrop carries the reason it was dropped; a packet whose
// disposition is kSkip (passed unmodified without classification) carries the reason it was
// skipped. Every reason has a stable snake_case name (used in stats, JSON and Prometheus
// labels) and a one-line description for people. Stages extend the table here, in one place,
// so names stay unique and the set stays closed.
//
// Value 0 is kNone. Keep values dense: counters are arrays indexed by the reason.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice {

// X(Enumerator, "name", "description")
#define SLUICE_DROP_REASONS(X)                                                                    \
  X(kNone, "none", "not dropped")                                                                 \
  /* packet core */                                                                               \
  X(kNoVerdict, "no_verdict",                                                                     \
    "released without a verdict (a bug upstream); dropped so no kernel queue id leaks")           \
  X(kTooBig, "too_big", "larger than the largest pool buffer")                                    \
  /* sources */                                                                                   \
  X(kUnsupportedLinkType, "unsupported_link_type", "link layer the parser does not decode")       \
  X(kNotIp, "not_ip", "link-layer frame that does not carry IPv4 or IPv6")                       \
  /* rules */                                                                                     \
  X(kRuleDrop, "rule_drop", "a rule with action drop matched")                                    \
  X(kNoRuleMatch, "no_rule_match", "no rule matched and classify.default_action is drop")         \
  X(kNatExhausted, "nat_exhausted",                                                               \
    "translate-source-port: no free port in this shard's share of the rule's range")              \
  X(kNatTableFull, "nat_table_full", "translate-source-port: flow table full, nat.on_full = drop-new") \
  X(kNatUntranslatable, "nat_untranslatable",                                                     \
    "translate-source-port matched a packet without TCP/UDP ports that is no ICMP echo request")

enum class DropReason : uint16_t {
#define SLUICE_X(e, name, desc) e,
  SLUICE_DROP_REASONS(SLUICE_X)
#undef SLUICE_X
};

struct DropReasonInfo {
  std::string_view name;
  std::string_view description;
};

inline constexpr std::array kDropReasonTable = {
#define SLUICE_X(e, name, desc) DropReasonInfo{name, desc},
    SLUICE_DROP_REASONS(SLUICE_X)
#undef SLUICE_X
};

inline constexpr std::size_t kNumDropReasons = kDropReasonTable.size();

constexpr std::string_view Name(DropReason r) noexcept {
  return kDropReasonTable[static_cast<std::size_t>(r)].name;
}

constexpr std::string_view Description(DropReason r) noexcept {
  return kDropReasonTable[static_cast<std::size_t>(r)].description;
}

}  // namespace sluice
