#include "engine/graph/stage_set.h"

#include <string>

#include "engine/core/random_seed.h"

namespace sluice {
namespace {

// Adds one counter table (already summed over shards and workers) as report counters.
template <typename Table, typename Set>
void AddTable(const std::string& prefix, const Table& table, const Set& sum, StatsReport& r) {
  for (std::size_t k = 0; k < table.size(); ++k) {
    r.counters.push_back({prefix + std::string(table[k].name), std::string(table[k].description), sum.LoadAt(k), {}});
  }
}

}  // namespace

Result<std::unique_ptr<StageSet>> StageSet::Build(const Config& config, const Options& options) {
  std::unique_ptr<StageSet> set(new StageSet());
  ParseConfig parse = config.parse;
  parse.flow_hash_seed = options.flow_hash_seed != 0 ? options.flow_hash_seed : RandomSeed();
  if (Status s = Validate(parse); !s.ok()) return s;

  RuleSetOptions rule_options = options.rules;
  rule_options.shards = options.shards;
  rule_options.workers = options.workers;
  auto handle = RuleSetHandle::Create(config, rule_options);
  if (!handle.ok()) return handle.status();
  set->rules_ = std::move(handle).value();

  const uint64_t nat_seed = config.nat.seed != 0 ? config.nat.seed : RandomSeed();
  if (options.nat_peers && options.shards > 1) set->peers_ = std::make_unique<NatPeers>(options.shards);
  for (uint32_t s = 0; s < options.shards; ++s) {
    FlowTableOptions nat = FlowTableOptions::From(config.nat, nat_seed, s, options.shards);
    nat.hash_seed = options.nat_hash_seed;
    set->shards_.push_back(std::make_unique<Shard>(parse, *set->rules_, s, nat, set->peers_.get(), options.workers));
  }
  return set;
}

std::vector<ShardStages> StageSet::OfflineShards() {
  std::vector<ShardStages> out;
  for (auto& s : shards_) out.push_back({StageRef::Of(s->classify), StageRef::Of(s->rewrite)});
  return out;
}

std::vector<InlineShard> StageSet::InlineShards(std::span<InlineEndpoint* const> endpoints) {
  std::vector<InlineShard> out;
  for (std::size_t i = 0; i < shards_.size() && i < endpoints.size(); ++i) {
    Shard& s = *shards_[i];
    out.push_back({endpoints[i], StageRef::Of(s.parse), StageRef::Of(s.classify), StageRef::Of(s.rewrite)});
  }
  return out;
}

void StageSet::Report(StatsReport& r) const {
  const std::size_t n = shards_.size();
  ParseCounters parse;
  ClassifyCounters classify;
  RewriteCounters rewrite;
  for (const auto& shard : shards_) {  // each counters() sums the stage's workers once
    parse.Add(shard->parse.counters());
    classify.Add(shard->classify.counters());
    rewrite.Add(shard->rewrite.counters());
  }
  AddTable("parse_", kParseCounterTable, parse, r);
  AddTable("classify_", kClassifyCounterTable, classify, r);
  AddTable("rewrite_", kRewriteCounterTable, rewrite, r);
  for (std::size_t s = 0; s < n; ++s) {
    r.counters.push_back({"nat_flows", "Live translations in the shard's flow table.",
                          shards_[s]->classify.nat_flows(), {{"shard", std::to_string(s)}}, /*gauge=*/true});
  }
  const std::shared_ptr<const RuleSet> rules = rules_->Load();
  for (uint32_t i = 0; i < rules->size(); ++i) {
    const RuleInfo& info = rules->info(i);
    const RuleTotals t = rules->Totals(i);
    r.rules.push_back({info.number, info.name, std::string(Name(info.action)), t.packets, t.bytes});
  }
}

}  // namespace sluice
