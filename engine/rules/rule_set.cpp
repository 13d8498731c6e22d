#include "engine/rules/rule_set.h"

#include <algorithm>
#include <map>

namespace sluice {

Result<std::shared_ptr<RuleSet>> RuleSet::Compile(const Config& config, const RuleSetOptions& options) {
  if (options.shards < 1) return InvalidArgument("rule set: shards must be at least 1");
  auto rs = std::shared_ptr<RuleSet>(new RuleSet());
  rs->shards_ = options.shards;
  rs->workers_ = std::max<uint32_t>(options.workers, 1);
  rs->default_action_ = config.classify.default_action;

  // Interface names to ids: the backend's numbering, or our own.
  std::map<std::string, uint32_t, std::less<>> interned;
  auto interface_id = [&](const std::string& name) -> uint32_t {
    if (name.empty()) return 0;
    if (options.interface_id) {
      const uint32_t id = options.interface_id(name);
      return id == 0 ? kUnresolvedInterface : id;
    }
    auto [it, fresh] = interned.emplace(name, static_cast<uint32_t>(interned.size() + 1));
    return it->second;
  };

  std::vector<RuleMatchInput> inputs;
  inputs.reserve(config.rules.size());
  for (const RuleConfig& r : config.rules) {
    inputs.push_back({&r.match, interface_id(r.match.in_interface), interface_id(r.match.out_interface),
                      r.action != RuleAction::kCount});
  }
  rs->classifier_ = Classifier::Build(inputs, options.classifier);

  auto plans = RewritePlans::Build(config.rules);
  if (!plans.ok()) return plans.status();
  rs->plans_ = std::move(plans).value();

  for (uint32_t i = 0; i < config.rules.size(); ++i) {
    const RuleConfig& r = config.rules[i];
    CompiledRule c;
    c.action = r.action;
    c.mark = r.mark;
    c.plan = rs->plans_.plan(i);
    if (r.action == RuleAction::kRewrite && c.plan == nullptr) {
      return InvalidArgument("rule " + std::to_string(r.number) + " (" + r.name + "): no rewrite plan was built");
    }
    if (r.action == RuleAction::kTranslateSourcePort) {
      c.nat.ports = r.translate.ports;
      c.nat.keep_address = !r.translate.address.has_value();
      c.nat.address = r.translate.address ? r.translate.address->value : 0;
      c.nat.rule_number = r.number;
      rs->has_translations_ = true;
      if (c.plan != nullptr) rs->translation_edits_.emplace_back(r.number, c.plan);
    }
    rs->rules_.push_back(c);
    rs->info_.push_back({r.number, r.name, r.action});
  }
  for (uint32_t k = 0; k < rs->shards_ * rs->workers_; ++k) {
    rs->counters_.emplace_back(new RuleCounters[rs->rules_.size() + 2 * kCounterPad]());
  }
  return rs;
}

RuleTotals RuleSet::Totals(uint32_t i) const noexcept {
  RuleTotals t;
  for (const auto& counters : counters_) {
    t.packets += counters[kCounterPad + i].packets.Load();
    t.bytes += counters[kCounterPad + i].bytes.Load();
  }
  return t;
}

RuleSetHandle::RuleSetHandle(std::shared_ptr<const RuleSet> initial, RuleSetOptions options)
    : options_(std::move(options)), current_(std::move(initial)) {
  generation_.store(current_ ? current_->generation() : 0, std::memory_order_release);
}

Result<std::unique_ptr<RuleSetHandle>> RuleSetHandle::Create(const Config& config, RuleSetOptions options) {
  auto rs = RuleSet::Compile(config, options);
  if (!rs.ok()) return rs.status();
  auto handle = std::make_unique<RuleSetHandle>(nullptr, std::move(options));
  handle->Publish(std::move(rs).value());
  return handle;
}

std::shared_ptr<const RuleSet> RuleSetHandle::Load() const {
  std::lock_guard lock(mu_);
  return current_;
}

void RuleSetHandle::Publish(std::shared_ptr<RuleSet> next) {
  std::shared_ptr<const RuleSet> old;
  {
    SLUICE_CHECK(next->shards_ == options_.shards && next->workers_ == std::max<uint32_t>(options_.workers, 1) &&
                 next->counters_.size() == std::size_t{next->shards_} * next->workers_);
    std::lock_guard lock(mu_);
    next->generation_ = generation_.load(std::memory_order_relaxed) + 1;
    old = std::exchange(current_, std::move(next));
    generation_.store(current_->generation_, std::memory_order_release);
  }
  // `old` is released here, outside the lock; stages still holding it keep it alive.
}

Status RuleSetHandle::Reload(const ConfigLoad& load) { return CompileAndPublish(load, false); }

Status RuleSetHandle::Recompile(const ConfigLoad& load) { return CompileAndPublish(load, true); }

Status RuleSetHandle::CompileAndPublish(const ConfigLoad& load, bool carry_counters) {
  if (!load.ok()) return load.ToStatus();
  const Config& config = *load.config;
  if (config.pipeline.shards != options_.shards) {
    return InvalidArgument(config.source + ": pipeline.shards changed from " + std::to_string(options_.shards) +
                           " to " + std::to_string(config.pipeline.shards) +
                           "; the shard count is fixed at start (restart to change it)");
  }
  auto rs = RuleSet::Compile(config, options_);
  if (!rs.ok()) return rs.status();
  std::shared_ptr<RuleSet> next = std::move(rs).value();
  if (carry_counters) {
    const std::shared_ptr<const RuleSet> running = Load();
    if (running != nullptr && running->info_ == next->info_) next->counters_ = running->counters_;
  }
  Publish(std::move(next));
  return Status::Ok();
}

Status RuleSetHandle::ReloadFile(const std::string& path) { return Reload(LoadConfigFile(path)); }

Status RuleSetHandle::ReloadText(std::string_view text, std::string source_name) {
  return Reload(LoadConfigText(text, std::move(source_name)));
}

}  // namespace sluice
