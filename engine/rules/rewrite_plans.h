// RewritePlans: the rewrite stage's RewritePlan for each `rewrite` rule, built once per rule set.
//
// The one place where the rule language meets engine/stages/rewrite: RewriteSpec (the config's
// edits) maps field by field onto RewritePlan, and every plan is Validate()d before a rule set
// is published. A rule set owns its RewritePlans; a batch's plan pointers therefore stay valid
// for as long as the classify stage that set them holds the rule set (see classify_stage.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/core/status.h"
#include "engine/rules/config.h"

namespace sluice {

struct RewritePlan;

class RewritePlans {
 public:
  RewritePlans();
  ~RewritePlans();
  RewritePlans(RewritePlans&&) noexcept;
  RewritePlans& operator=(RewritePlans&&) noexcept;

  // Plans for every rule with action kRewrite, and for every translate rule with edits,
  // indexed by rule; an invalid plan is an error
  // naming the rule (the loader's checks make that a bug, not a user error).
  static Result<RewritePlans> Build(std::span<const RuleConfig> rules);

  // The plan of rule i, or nullptr when rule i is not a rewrite.
  const RewritePlan* plan(uint32_t i) const noexcept { return i < index_.size() ? index_[i] : nullptr; }

 private:
  std::vector<std::unique_ptr<RewritePlan>> owned_;
  std::vector<const RewritePlan*> index_;
};

}  // namespace sluice
