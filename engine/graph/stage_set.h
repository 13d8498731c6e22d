// StageSet: every stage object a configured sluice runs, built once from a Config.
//
//   shard s:  ParseStage  →  ClassifyStage (its own flow table)  →  RewriteStage
//                                 │
//                                 ├── RuleSetHandle (shared; a reload publishes a new RuleSet)
//                                 └── NatPeers (inline, more than one shard: ICMP errors the
//                                     kernel queued away from their flow's shard)
//
// The inline graph runs shard s's parse; the offline graph parses every burst before dispatch
// with shard 0's. Seeds: the flow hash seed and the NAT seed are random per process unless the
// options (tests, reproducible runs) or the config (nat.seed) fix them; the flow tables' key
// hash is random per table whatever the config says (only the options fix it).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/core/status.h"
#include "engine/graph/pipeline.h"
#include "engine/rules/config.h"
#include "engine/rules/rule_set.h"
#include "engine/stages/classify/classify_stage.h"
#include "engine/stages/parse/parse_stage.h"
#include "engine/stages/rewrite/rewrite_stage.h"
#include "engine/stats/report.h"

namespace sluice {

class StageSet {
 public:
  struct Options {
    uint32_t shards = 1;
    // The graph threads that may run one stage object: the offline graph's `threads` (a shard's
    // stages run on whichever thread brings the burst, each counting into its own set); 1 for
    // the inline graph, whose shards each run on one thread at a time.
    uint32_t workers = 1;
    uint64_t flow_hash_seed = 0;  // 0: random
    uint64_t nat_hash_seed = 0;   // the flow tables' key hash (FlowTableOptions::hash_seed); 0: random
    // Kernel queues (inline): with more than one shard, the shards ask each other about ICMP
    // errors their own tables do not know (NatPeers). The offline graph steers errors to their
    // flow's shard itself, so it leaves this off and its shards share nothing.
    bool nat_peers = false;
    RuleSetOptions rules;         // interface ids; `shards` and `workers` are filled in from above
  };

  static Result<std::unique_ptr<StageSet>> Build(const Config& config, const Options& options);

  uint32_t shards() const noexcept { return static_cast<uint32_t>(shards_.size()); }
  StageRef parse(uint32_t shard) noexcept { return StageRef::Of(shards_[shard]->parse); }
  std::vector<ShardStages> OfflineShards();
  std::vector<InlineShard> InlineShards(std::span<InlineEndpoint* const> endpoints);

  RuleSetHandle& rules() noexcept { return *rules_; }

  // The stages' own counters (summed over shards), each rule's hits, and the flow tables.
  void Report(StatsReport& report) const;

 private:
  struct Shard {
    Shard(const ParseConfig& parse_config, const RuleSetHandle& rules, uint32_t shard, const FlowTableOptions& nat,
          NatPeers* peers, uint32_t workers)
        : parse(parse_config, workers), classify(rules, shard, nat, {}, peers), rewrite(workers) {}
    ParseStage parse;
    ClassifyStage classify;
    RewriteStage rewrite;
  };

  StageSet() = default;
  std::unique_ptr<RuleSetHandle> rules_;
  std::unique_ptr<NatPeers> peers_;  // Options::nat_peers, more than one shard; outlives the shards
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace sluice
