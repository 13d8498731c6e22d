// ClassifyStage: decides what happens to each parsed packet — one per shard.
//
// Reads   slots with next() == kClassify: meta (l3, l3_off, l4_off, l4_proto, flags,
//         direction, in_if, out_if) and the header bytes parse validated.
// Writes  next(), reason() on drop, plan() for rewrites; meta.rule (the terminal rule's index,
//         kNoRule when none or when a translation matched); meta.mark and kMarkSet (mark
//         rules); and, for translated packets only, the header bytes (addresses, ports, ICMP
//         echo id, checksums) plus kModified.
// Next    kAccept, kRewrite (with plan) or kDrop (rule_drop, no_rule_match, nat_exhausted,
//         nat_table_full, nat_untranslatable). Other slots are left alone.
//
// Per packet, in this order:
//   1. Translations first (like ipfw's check-state): a TCP/UDP packet or ICMP echo whose
//      5-tuple is the original or reply key of a live translation in this shard's flow table
//      is translated (outbound: source; reply: destination back to the inside host) and
//      accepted, without a rule scan. A reload therefore never cuts an established flow.
//      An ICMP error about a translated packet is translated with its flow, found in this
//      shard's table or, with NatPeers, in another shard's.
//   2. Otherwise the rule set's classifier — for all such packets of the batch in one
//      LookupMany, so their lookups overlap — then, in slot order: count rules that matched
//      before the terminal rule are counted; the terminal rule's action is applied; no match
//      → classify.default_action. A translation created for one packet takes later packets of
//      the same batch that belong to it (they are looked up again), exactly as if the batch
//      were processed one packet at a time.
//   3. translate-source-port creates the translation (FlowTable::Create) and translates the
//      packet here, in classify: the new port is per flow, not per rule, so no static plan
//      can carry it. Everything else a rule changes is the rewrite stage's job.
//
// Time: `now` is taken once per batch (Process(b, now), or the stage's clock in Process(b)),
// never per packet. Expiry runs at the start of each batch, at most 2 * batch + 16 flows.
// Rule set: the stage keeps the snapshot it used last and checks the handle's generation once
// per batch. Plans it puts in a batch belong to that snapshot and stay valid until this
// stage's next Process(): the graph runs a shard's classify and rewrite back to back on a
// batch (engine/graph/pipeline.cpp), so rewrite always sees live plans.
// Counters: the table below (per stage and per graph thread, bumped once per batch), rule
// counters per rule (RuleSet::Totals), drops by reason (the graph's StageStats). Packets of
// an established translation count in nat_out / nat_in, not in the translate rule's counters.
// Cost: PacketFields extraction, one flow-table probe when translations exist, one classifier
// lookup; see bench/stages/classify_bench.cpp. With NatPeers, an uncontended lock around the
// batch's expiry and one around its creations (peers contend for it only with ICMP errors).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "engine/core/counter.h"
#include "engine/packet/batch.h"
#include "engine/rules/flow_table.h"
#include "engine/rules/packet_fields.h"
#include "engine/rules/rule_set.h"
#include "engine/stages/classify/nat_fragments.h"
#include "engine/stages/classify/nat_peers.h"
#include "engine/stages/classify/translate.h"

namespace sluice {

// X(Enumerator, "name", "description")
#define SLUICE_CLASSIFY_COUNTERS(X)                                                                   \
  X(kClassified, "classified", "packets classified (flow table or rules)")                          \
  X(kRuleMatched, "rule_matched", "packets whose terminal rule matched")                            \
  X(kDefaultAction, "default_action", "packets no rule matched (classify.default_action applied)")  \
  X(kCountMatches, "count_matches", "count-rule matches (one packet may match several)")            \
  X(kRewritePlanned, "rewrite_planned", "packets sent to rewrite with their rule's plan")           \
  X(kMarked, "marked", "packets given a mark rule's mark")                                          \
  X(kNatOut, "nat_out", "packets of a live translation, original direction, translated")           \
  X(kNatIn, "nat_in", "replies of a live translation translated back")                              \
  X(kNatCreated, "nat_created", "translations created")                                             \
  X(kNatExpired, "nat_expired", "translations removed after their idle timeout")                    \
  X(kNatEvicted, "nat_evicted", "live translations evicted because the flow table was full")        \
  X(kNatExhausted, "nat_exhausted", "new translations refused: no free port")                       \
  X(kNatTableFull, "nat_table_full", "new translations refused: table full, on_full = drop-new")    \
  X(kNatUntranslatable, "nat_untranslatable", "translate rule matched a packet it cannot translate") \
  X(kNatIcmpErrors, "nat_icmp_errors",                                                              \
    "ICMP errors quoting a packet of a live translation, translated with it (either direction)")    \
  X(kNatIcmpErrorsPeer, "nat_icmp_errors_peer",                                                     \
    "of nat_icmp_errors, those whose translation another shard holds (queued by their own header)") \
  X(kNatPeerScansSkipped, "nat_peer_scans_skipped",                                                 \
    "ICMP errors not asked of every other shard: over the batch's budget (kPeerScansPerBatch)")      \
  X(kNatFragments, "nat_fragments",                                                                  \
    "later fragments given what their first fragment's translation gave it (address, edits)")        \
  X(kNatFragmentPassed, "nat_fragment_passed",                                                      \
    "non-first fragments a port-only translate rule matched with nothing remembered: passed, "         \
    "with the rule's edits (their ports are in fragment 1)")                                          \
  X(kNatFragmentAhead, "nat_fragment_ahead",                                                        \
    "non-first fragments going out that an address translate rule matched with nothing remembered "   \
    "(ahead of their first, or its entry gone): given the rule's address")                            \
  X(kRuleSetSwaps, "rule_set_swaps", "times this stage took up a newly published rule set")

enum class ClassifyCounter : uint8_t { SLUICE_CLASSIFY_COUNTERS(SLUICE_COUNTER_ENUMERATOR) };
inline constexpr std::array kClassifyCounterTable = {SLUICE_CLASSIFY_COUNTERS(SLUICE_COUNTER_INFO)};
inline constexpr std::size_t kNumClassifyCounters = kClassifyCounterTable.size();
using ClassifyCounters = CounterSet<ClassifyCounter, kNumClassifyCounters>;
using ClassifyCounts = BatchCounts<ClassifyCounter, kNumClassifyCounters>;

// Where Process(Batch&) gets `now` (nanoseconds, monotonic): fn(ctx) once per batch.
// Default (fn == nullptr): NowNs(). Tests and replays of captured time inject their own.
struct StageClock {
  uint64_t (*fn)(void* ctx) noexcept = nullptr;
  void* ctx = nullptr;
};

class ClassifyStage {
 public:
  // `rules` must outlive the stage and hold a rule set. `nat` sizes this shard's flow table
  // (allocated here, once): FlowTableOptions::From(config.nat, seed, shard, shards).
  // `peers`, when given, holds every shard's table (NatPeers): this stage attaches its own,
  // changes it under its peer lock, and asks the others about ICMP errors its own table does
  // not know. It must outlive the stage.
  ClassifyStage(const RuleSetHandle& rules, uint32_t shard, const FlowTableOptions& nat, StageClock clock = {},
                NatPeers* peers = nullptr);
  ClassifyStage(const ClassifyStage&) = delete;
  ClassifyStage& operator=(const ClassifyStage&) = delete;

  void Process(Batch& b) noexcept;
  void Process(Batch& b, uint64_t now_ns) noexcept;

  ClassifyCounters counters() const noexcept { return counters_.Sum(); }  // over the workers
  // The graph threads that may run this stage: the rule set's (RuleSetOptions::workers).
  uint32_t workers() const noexcept { return counters_.workers(); }
  // Live translations at the end of the last batch (any thread may read it).
  uint64_t nat_flows() const noexcept { return nat_flows_.load(std::memory_order_relaxed); }
  // The flow table itself: only from the thread that runs Process (or when it is idle).
  const FlowTable& flows() const noexcept { return flows_; }
  uint32_t shard() const noexcept { return shard_; }

 private:
  void TakeSnapshot() noexcept;
  // Slot i, whose key (of `kind`) hit a live translation: translated and accepted. False when
  // it is an ICMP error not about that flow after all (it then goes to the rules).
  bool Translate(Batch& b, uint32_t i, KeyKind kind, const FlowTable::Hit& hit, uint8_t tcp_flags, uint64_t now,
                 ClassifyCounts& tally) noexcept;
  // Slot i, an ICMP error quoting a packet of `flow` (this shard's or a peer's) in `dir`:
  // translated with it. False when it is not about that flow after all.
  bool TranslateIcmpError(Batch& b, uint32_t i, const FlowTable::Flow& flow, FlowTable::Dir dir,
                          ClassifyCounts& tally) noexcept;
  // Slot i, an ICMP error (fields f, key) whose key this shard's table does not know:
  // translated if a peer's does (the kernel queued it by its own header, not its flow's).
  bool TranslatePeersIcmpError(Batch& b, uint32_t i, const PacketFields& f, const FlowKey& key,
                               ClassifyCounts& tally) noexcept;
  // Slot i was translated by a flow of translate rule `rule_number`: on to rewrite with the
  // rule's edits when it has some ([rule.rewrite]), else accepted.
  void Translated(Batch& b, uint32_t i, uint32_t rule_number, ClassifyCounts& tally) noexcept;
  // A first IPv4 fragment about to be translated with `flow` in `dir`: when the translation
  // moves the address, its later fragments must get it too (NatFragments).
  void RememberFirstFragment(const PacketBuffer& pkt, const FlowTable::Flow& flow, FlowTable::Dir dir,
                             uint64_t now) noexcept;
  // Slot i, a later IPv4 fragment: translated and accepted if its first fragment was.
  bool TranslateLaterFragment(Batch& b, uint32_t i, uint64_t now, ClassifyCounts& tally) noexcept;
  // translate-source-port for slot i (kind and key from TranslationKey). True when a flow
  // was created. `creating` is held from the first creation on (peers read the table).
  class PeerLock;
  bool CreateTranslation(Batch& b, uint32_t i, const PacketFields& f, const NatTarget& target, KeyKind kind,
                         const FlowKey& key, uint64_t now, PeerLock& creating, ClassifyCounts& tally) noexcept;

  // Per-batch working space (about 50 KiB): one per thread, not per stage (ThreadScratch).
  struct Scratch {
    std::array<PacketFields, kMaxBatch> fields;
    std::array<const PacketFields*, kMaxBatch> field_ptr;
    std::array<FlowKey, kMaxBatch> keys;
    std::array<uint32_t, kMaxBatch> slot;       // pass 1's packets: their index in the batch
    std::array<uint32_t, kMaxBatch> hash;       // their keys' flow-table hashes
    std::array<uint32_t, kMaxBatch> candidate;  // the packets left for the rules: pass 1 index
    std::array<KeyKind, kMaxBatch> kind;
    std::array<uint32_t, kMaxBatch> rule;
    std::array<CountMatches, kMaxBatch> counts;
  };
  static Scratch& ThreadScratch() noexcept;

  const RuleSetHandle& rules_;
  const uint32_t shard_;
  std::shared_ptr<const RuleSet> snapshot_;
  uint64_t generation_ = 0;
  FlowTable flows_;
  NatPeers* peers_;  // null: one shard, or the offline graph (it steers errors itself)
  bool had_flows_ = false;  // what this stage last told peers_ (TableHasFlows)
  // Errors per batch that may ask every other shard (NatPeers::Find's scan): a flood of them
  // must not have this shard take every other shard's lock per packet.
  static constexpr uint32_t kPeerScansPerBatch = 8;
  uint32_t peer_scans_ = 0;  // this batch's so far
  NatFragments fragments_;
  StageClock clock_;
  WorkerCounterSets<ClassifyCounter, kNumClassifyCounters> counters_;
  std::atomic<uint64_t> nat_flows_{0};
};

}  // namespace sluice
