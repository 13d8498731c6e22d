// RuleSet: one compiled, immutable generation of the rules; RuleSetHandle: the current one.
//
//   Config ──Compile (off the data path)──► shared_ptr<const RuleSet> ──Publish──► RuleSetHandle
//                                                    ▲                                 │
//   ClassifyStage (one per shard): once per batch, if handle.generation() moved, ─────┘
//   take handle.Load() and keep it; every packet of the batch sees that one snapshot.
//
// Contracts
// - A RuleSet never changes after Compile, except its per-rule counters (per shard and per
//   worker, each with a single writer: the graph thread running the shard's classify stage;
//   relaxed atomics, summed off the hot path). They take shards × workers × (rules + 8) × 16
//   bytes: 2.6 MB for 1000 rules, 16 shards and 10 threads.
// - Reload is RCU-style: Publish swaps the pointer under a mutex and bumps an atomic
//   generation; stages notice with one acquire load per batch and take the mutex only then.
//   An old snapshot lives until its last holder lets go — a stage between batches, or
//   whoever called Load() — so the plans a batch points at outlive the batch's trip through
//   rewrite (classify and rewrite run back to back per shard; see classify_stage.h).
// - Reload(path) validates and compiles completely before touching anything: a config that
//   fails either leaves the running rule set in place, returns every error, and changes
//   nothing else. Flow tables are not part of a RuleSet: translations survive every reload.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/assert.h"
#include "engine/core/counter.h"
#include "engine/core/status.h"
#include "engine/rules/classifier.h"
#include "engine/rules/config.h"
#include "engine/rules/config_loader.h"
#include "engine/rules/flow_table.h"
#include "engine/rules/rewrite_plans.h"

namespace sluice {

// The per-packet view of a rule: what to do when it is the terminal match.
struct CompiledRule {
  RuleAction action = RuleAction::kAccept;
  MarkSpec mark;                        // kMark
  const RewritePlan* plan = nullptr;    // kRewrite, or a translation's edits: owned by the RuleSet
  NatTarget nat;                        // kTranslateSourcePort
};

struct RuleInfo {
  uint32_t number = 0;
  std::string name;
  RuleAction action = RuleAction::kAccept;
  bool operator==(const RuleInfo&) const = default;
};

// One rule's traffic on one shard, as one worker counted it.
struct RuleCounters {
  Counter packets;
  Counter bytes;  // IP length
};

struct RuleTotals {
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

struct RuleSetOptions {
  uint32_t shards = 1;
  uint32_t workers = 1;  // graph threads that may run a shard's classify stage: rule counters per worker
  // Interface name -> the id sources put in meta.in_if / out_if (NFQUEUE: ifindex; divert:
  // the id its interning gave the name). 0 means "unknown": such a name never matches.
  // Unset: names are numbered 1, 2, … in order of first appearance (pcap runs, tests).
  std::function<uint32_t(std::string_view)> interface_id;
  ClassifierOptions classifier;
};

class RuleSet {
 public:
  // Compiles a loaded (already validated) config. Errors here mean a bug in the loader's
  // checks, and name the rule.
  static Result<std::shared_ptr<RuleSet>> Compile(const Config& config, const RuleSetOptions& options);

  // ---- data path ----
  const Classifier& classifier() const noexcept { return classifier_; }
  const CompiledRule& rule(uint32_t i) const noexcept { return rules_[i]; }
  DefaultAction default_action() const noexcept { return default_action_; }
  bool has_translations() const noexcept { return has_translations_; }
  // The edits ([rule.rewrite]) of translate rule `number` for every packet of its
  // translations, or nullptr. Found by number, as flows outlive the rule set that made them: a
  // reload that changes a rule's edits changes them for its live flows too.
  const RewritePlan* TranslationEdits(uint32_t number) const noexcept {
    for (const auto& [n, plan] : translation_edits_) {
      if (n == number) return plan;
    }
    return nullptr;
  }
  bool has_count_rules() const noexcept { return classifier_.has_count_rules(); }
  // Shard `shard`'s rule counters as worker `worker` (Batch::worker()) bumps them.
  RuleCounters* counters(uint32_t shard, uint32_t worker) const noexcept {
    SLUICE_DCHECK(shard < shards_ && worker < workers_);
    return counters_[shard * workers_ + worker].get() + kCounterPad;
  }

  // ---- off the data path ----
  uint32_t size() const noexcept { return static_cast<uint32_t>(rules_.size()); }
  uint32_t shards() const noexcept { return shards_; }
  uint32_t workers() const noexcept { return workers_; }
  const RuleInfo& info(uint32_t i) const noexcept { return info_[i]; }
  RuleTotals Totals(uint32_t i) const noexcept;  // summed over shards and workers
  const ClassifierStats& classifier_stats() const noexcept { return classifier_.stats(); }
  // Set by RuleSetHandle::Publish: 1 for the first rule set, then one more per reload.
  uint64_t generation() const noexcept { return generation_; }

  RuleSet(const RuleSet&) = delete;
  RuleSet& operator=(const RuleSet&) = delete;

 private:
  friend class RuleSetHandle;
  RuleSet() = default;

  Classifier classifier_;
  std::vector<CompiledRule> rules_;
  std::vector<RuleInfo> info_;
  RewritePlans plans_;
  DefaultAction default_action_ = DefaultAction::kAccept;
  bool has_translations_ = false;
  std::vector<std::pair<uint32_t, const RewritePlan*>> translation_edits_;  // (rule number, plan): few
  uint32_t shards_ = 1;
  uint32_t workers_ = 1;
  // [shard * workers + worker][kCounterPad + rule]; shared with the next generation when it is
  // the same rules compiled again (RuleSetHandle::Recompile). Each array has one writer either
  // way: one worker running shard s's classify stage, which uses one generation at a time.
  // kCounterPad entries (a cache line) before and after keep each array's lines its own.
  static constexpr std::size_t kCounterPad = 64 / sizeof(RuleCounters);
  std::vector<std::shared_ptr<RuleCounters[]>> counters_;
  uint64_t generation_ = 0;
};

class RuleSetHandle {
 public:
  // `options` are kept for Reload: the shard count is fixed; interface_id is asked again on
  // every Reload (sluice run reloads the running file when an interface's index changes).
  RuleSetHandle(std::shared_ptr<const RuleSet> initial, RuleSetOptions options);

  // Loads, validates and compiles `config` and, if everything succeeded, publishes it.
  // Returns the errors otherwise, with the running rule set untouched.
  static Result<std::unique_ptr<RuleSetHandle>> Create(const Config& config, RuleSetOptions options);

  // Cheap, for the per-batch check: the generation of the current rule set.
  uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }
  // The current rule set (takes the mutex: once per reload per stage, never per packet).
  std::shared_ptr<const RuleSet> Load() const;

  // Makes `next` current (its generation is set here). It must have been compiled with this
  // handle's shards and workers: the stages index its counters by them.
  void Publish(std::shared_ptr<RuleSet> next);

  // Reads, validates and compiles the file; publishes only if all of that succeeded. Only
  // [[rule]] and [classify] take effect: [io], [pipeline], [parse] and [nat] are read at start
  // (a reload that changes pipeline.shards is refused: translation port shares depend on it).
  Status ReloadFile(const std::string& path);
  Status ReloadText(std::string_view text, std::string source_name = "<text>");
  Status Reload(const ConfigLoad& load);
  // The running rules compiled again, from the file they came from (`load`), asking
  // interface_id afresh: for interfaces whose index changed. If the rules are the same (number,
  // name and action, in order) as the running ones, their per-rule counters carry on;
  // otherwise this is Reload.
  Status Recompile(const ConfigLoad& load);

  const RuleSetOptions& options() const noexcept { return options_; }

 private:
  // Reload and Recompile: compile `load` and publish it; with `carry_counters`, the running
  // rules' counters go on when the rules are the same.
  Status CompileAndPublish(const ConfigLoad& load, bool carry_counters);

  RuleSetOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<const RuleSet> current_;
  std::atomic<uint64_t> generation_{0};
};

}  // namespace sluice
