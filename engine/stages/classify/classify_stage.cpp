#include "engine/stages/classify/classify_stage.h"

#include "engine/core/assert.h"
#include "engine/core/clock.h"
#include "engine/rules/packet_fields.h"
#include "engine/stages/classify/translate.h"
#include "engine/stages/rewrite/rewrite_ops.h"

namespace sluice {
namespace {

// How many counter sets a shard's stage keeps: one per worker its rule set counts for.
uint32_t RulesWorkers(const RuleSetHandle& rules) {
  const std::shared_ptr<const RuleSet> rs = rules.Load();
  return rs != nullptr ? rs->workers() : 1;
}

// Adds packets and bytes to rule counters one run at a time: consecutive packets of a batch
// mostly hit the same rule, so the worker's counter lines for the shard are touched once per run.
class RuleTally {
 public:
  explicit RuleTally(RuleCounters* counters) noexcept : counters_(counters) {}
  ~RuleTally() { Flush(); }
  void Add(uint32_t rule, uint32_t bytes) noexcept {
    if (rule != rule_) {
      Flush();
      rule_ = rule;
    }
    ++packets_;
    bytes_ += bytes;
  }

 private:
  void Flush() noexcept {
    if (packets_ == 0) return;
    counters_[rule_].packets.Add(packets_);
    counters_[rule_].bytes.Add(bytes_);
    packets_ = bytes_ = 0;
  }
  RuleCounters* counters_;
  uint32_t rule_ = kNoMatch;
  uint64_t packets_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace

// The owner's peer lock while it changes its flow table (NatPeers), when it has peers: taken
// by Hold(), at most once, and released at the end of the scope.
class ClassifyStage::PeerLock {
 public:
  PeerLock(NatPeers* peers, uint32_t shard) noexcept : mu_(peers != nullptr ? &peers->lock(shard) : nullptr) {}
  ~PeerLock() {
    if (held_) mu_->unlock();
  }
  PeerLock(const PeerLock&) = delete;
  PeerLock& operator=(const PeerLock&) = delete;
  void Hold() noexcept {
    if (mu_ == nullptr || held_) return;
    mu_->lock();
    held_ = true;
  }

 private:
  std::mutex* mu_;
  bool held_ = false;
};

ClassifyStage::ClassifyStage(const RuleSetHandle& rules, uint32_t shard, const FlowTableOptions& nat, StageClock clock,
                             NatPeers* peers)
    : rules_(rules), shard_(shard), flows_(nat), peers_(peers), clock_(clock), counters_(RulesWorkers(rules)) {
  TakeSnapshot();
  SLUICE_CHECK(snapshot_ != nullptr);
  SLUICE_CHECK(shard_ < snapshot_->shards());
  // Rules that translate from the start get their flow table's memory now, not page by page
  // under traffic; without them it stays untouched (a reload that adds one faults it in as
  // flows come).
  if (snapshot_->has_translations()) flows_.Prefault();
  if (peers_ != nullptr) {
    SLUICE_CHECK(shard_ < peers_->shards());
    peers_->Attach(shard_, &flows_);
  }
}

void ClassifyStage::TakeSnapshot() noexcept {
  snapshot_ = rules_.Load();  // the mutex: only when the generation moved
  generation_ = snapshot_ != nullptr ? snapshot_->generation() : 0;
}

void ClassifyStage::Process(Batch& b) noexcept { Process(b, clock_.fn != nullptr ? clock_.fn(clock_.ctx) : NowNs()); }

// The scratch is the thread's, not the stage's: a shard's stage runs on whichever thread
// brings the batch (the offline graph runs each burst to completion on the thread that read
// it), and a per-stage scratch, written afresh every batch, would move from core to core with
// the stage: about 130 cache lines per batch of 64.
ClassifyStage::Scratch& ClassifyStage::ThreadScratch() noexcept {
  thread_local Scratch scratch;
  return scratch;
}

void ClassifyStage::Process(Batch& b, uint64_t now) noexcept {
  Scratch& scratch = ThreadScratch();
  ClassifyCounts tally;
  if (rules_.generation() != generation_) {
    TakeSnapshot();
    tally.Bump(ClassifyCounter::kRuleSetSwaps);
  }
  const RuleSet& rs = *snapshot_;
  if (flows_.size() != 0) {
    PeerLock lock(peers_, shard_);
    lock.Hold();
    tally.Bump(ClassifyCounter::kNatExpired, flows_.Expire(now, 2 * b.size() + 16).expired);
  }
  const bool want_key =
      rs.has_translations() || flows_.size() != 0 || (peers_ != nullptr && peers_->AnyFlows());
  const bool want_counts = rs.has_count_rules();
  RuleTally rule_tally(rs.counters(shard_, b.worker()));

  // Pass 1: fields and keys; each key's hash, and its first flow-table slot prefetched. The
  // table only changes in pass 3 (lookups here all see the same flows), so the lookups of
  // pass 1b can wait for the batch's prefetches instead of missing one after another.
  const bool look_up = want_key && flows_.size() != 0;
  uint32_t n = 0;
  for (uint32_t i = 0; i < b.size(); ++i) {
    b.Prefetch<true>(i + kPrefetchAhead);
    if (b.next(i) != Next::kClassify) continue;
    PacketBuffer& pkt = b.packet(i);
    PacketFields& f = scratch.fields[n];
    ExtractFields(pkt, &f);
    tally.Bump(ClassifyCounter::kClassified);
    pkt.meta().rule = kNoRule;
    const KeyKind kind = want_key ? TranslationKey(pkt, f, &scratch.keys[n]) : KeyKind::kNone;
    scratch.kind[n] = kind;
    scratch.slot[n] = i;
    if (look_up && kind != KeyKind::kNone) {
      scratch.hash[n] = flows_.KeyHash(scratch.keys[n]);
      flows_.Prefetch(scratch.hash[n]);
    }
    ++n;
  }

  // Pass 1b: packets of live translations are translated, accepted, done; the rest go to the
  // rules (candidate[k] is pass 1's index of the k-th of them).
  uint32_t pending = 0;
  peer_scans_ = 0;
  for (uint32_t j = 0; j < n; ++j) {
    FlowTable::Hit hit;
    if (scratch.kind[j] == KeyKind::kNone && fragments_.any() &&
        TranslateLaterFragment(b, scratch.slot[j], now, tally)) {
      continue;
    }
    const bool own =
        look_up && scratch.kind[j] != KeyKind::kNone && flows_.Lookup(scratch.keys[j], scratch.hash[j], &hit);
    if (own && Translate(b, scratch.slot[j], scratch.kind[j], hit, static_cast<uint8_t>(scratch.fields[j].tcp_flags),
                         now, tally)) {
      continue;
    }
    // A flow has its keys in one table only: a peer is asked only when this one has none.
    if (!own && scratch.kind[j] == KeyKind::kIcmpError && peers_ != nullptr &&
        TranslatePeersIcmpError(b, scratch.slot[j], scratch.fields[j], scratch.keys[j], tally)) {
      continue;
    }
    scratch.candidate[pending] = j;
    scratch.field_ptr[pending] = &scratch.fields[j];
    ++pending;
  }

  // Pass 2: the rules, for every packet pass 1 left, in one call (lookups overlap).
  rs.classifier().LookupMany(scratch.field_ptr.data(), pending, scratch.rule.data(),
                             want_counts ? scratch.counts.data() : nullptr);

  // Pass 3: actions, in slot order. A translation created here may own later packets of the
  // same batch (a reply right behind the first packet): after a creation, those look again.
  // The first creation takes the peer lock for the rest of the pass.
  bool created = false;
  PeerLock creating(peers_, shard_);
  for (uint32_t k = 0; k < pending; ++k) {
    const uint32_t j = scratch.candidate[k];
    const uint32_t i = scratch.slot[j];
    const PacketFields& f = scratch.fields[j];
    const FlowKey& key = scratch.keys[j];
    PacketBuffer& pkt = b.packet(i);
    PacketMeta& m = pkt.meta();
    FlowTable::Hit hit;
    if (created && scratch.kind[j] != KeyKind::kNone && flows_.Lookup(key, &hit) &&
        Translate(b, i, scratch.kind[j], hit, static_cast<uint8_t>(f.tcp_flags), now, tally)) {
      continue;
    }
    if (created && scratch.kind[j] == KeyKind::kNone && fragments_.any() && TranslateLaterFragment(b, i, now, tally)) {
      continue;
    }
    const uint32_t r = scratch.rule[k];
    if (want_counts) {
      const CountMatches& counts = scratch.counts[k];
      if (counts.overflow) {
        rs.classifier().ForEachCountMatch(f, r, [&](uint32_t c) {
          rule_tally.Add(c, f.length);
          tally.Bump(ClassifyCounter::kCountMatches);
        });
      } else {
        for (uint32_t c = 0; c < counts.n; ++c) rule_tally.Add(counts.rule[c], f.length);
        tally.Bump(ClassifyCounter::kCountMatches, counts.n);
      }
    }
    if (r == kNoMatch) {
      tally.Bump(ClassifyCounter::kDefaultAction);
      if (rs.default_action() == DefaultAction::kDrop) b.Drop(i, DropReason::kNoRuleMatch);
      else b.set_next(i, Next::kAccept);
      continue;
    }
    rule_tally.Add(r, f.length);
    tally.Bump(ClassifyCounter::kRuleMatched);
    m.rule = static_cast<uint16_t>(r);  // rule numbers are <= 65535, so indexes fit below kNoRule
    const CompiledRule& rule = rs.rule(r);
    switch (rule.action) {
      case RuleAction::kAccept:
        b.set_next(i, Next::kAccept);
        break;
      case RuleAction::kDrop:
        b.Drop(i, DropReason::kRuleDrop);
        break;
      case RuleAction::kRewrite:
        b.set_plan(i, rule.plan);
        b.set_next(i, Next::kRewrite);
        tally.Bump(ClassifyCounter::kRewritePlanned);
        break;
      case RuleAction::kMark:
        m.mark = (m.mark & ~rule.mark.mask) | rule.mark.value;
        m.flags |= pkt_flag::kMarkSet;
        b.set_next(i, Next::kAccept);
        tally.Bump(ClassifyCounter::kMarked);
        break;
      case RuleAction::kTranslateSourcePort:
        created |= CreateTranslation(b, i, f, rule.nat, scratch.kind[j], key, now, creating, tally);
        break;
      case RuleAction::kCount:  // never terminal: the classifier does not return count rules
        b.set_next(i, Next::kAccept);
        break;
    }
  }

  tally.AddTo(counters_[b.worker()]);
  nat_flows_.store(flows_.size(), std::memory_order_relaxed);
  if (peers_ != nullptr && (flows_.size() != 0) != had_flows_) {
    had_flows_ = !had_flows_;
    peers_->TableHasFlows(had_flows_);
  }
}

bool ClassifyStage::Translate(Batch& b, uint32_t i, KeyKind kind, const FlowTable::Hit& hit, uint8_t tcp_flags,
                              uint64_t now, ClassifyCounts& tally) noexcept {
  if (kind == KeyKind::kIcmpError) return TranslateIcmpError(b, i, flows_.flow(hit.flow), hit.dir, tally);
  flows_.Touch(hit.flow, hit.dir, tcp_flags, now);
  RememberFirstFragment(b.packet(i), flows_.flow(hit.flow), hit.dir, now);
  ApplyTranslation(b.packet(i), flows_.flow(hit.flow), hit.dir);
  Translated(b, i, flows_.flow(hit.flow).rule_number, tally);
  tally.Bump(hit.dir == FlowTable::Dir::kOriginal ? ClassifyCounter::kNatOut : ClassifyCounter::kNatIn);
  return true;
}

bool ClassifyStage::TranslateIcmpError(Batch& b, uint32_t i, const FlowTable::Flow& flow, FlowTable::Dir dir,
                                       ClassifyCounts& tally) noexcept {
  // An error keeps nothing alive (a spoofed one could, otherwise): no Touch.
  if (!ApplyIcmpErrorTranslation(b.packet(i), flow, dir)) return false;
  Translated(b, i, flow.rule_number, tally);  // the flow's edits too (its mark)
  tally.Bump(ClassifyCounter::kNatIcmpErrors);
  return true;
}

bool ClassifyStage::TranslatePeersIcmpError(Batch& b, uint32_t i, const PacketFields& f, const FlowKey& key,
                                            ClassifyCounts& tally) noexcept {
  FlowTable::Flow flow;
  FlowTable::Dir dir;
  // Every other shard is asked only about what may be an inside host's error about a reply:
  // sent by the quoted packet's destination, not known to come in, within the batch's budget.
  bool scan = f.src == key.src() && b.packet(i).meta().direction != Direction::kIn;
  if (scan && peer_scans_ == kPeerScansPerBatch) {
    tally.Bump(ClassifyCounter::kNatPeerScansSkipped);
    scan = false;
  }
  peer_scans_ += scan;
  if (!peers_->Find(shard_, key, scan, &flow, &dir) || !TranslateIcmpError(b, i, flow, dir, tally)) return false;
  tally.Bump(ClassifyCounter::kNatIcmpErrorsPeer);
  return true;
}

bool ClassifyStage::CreateTranslation(Batch& b, uint32_t i, const PacketFields& f, const NatTarget& target,
                                      KeyKind kind, const FlowKey& key, uint64_t now, PeerLock& creating,
                                      ClassifyCounts& tally) noexcept {
  if (kind == KeyKind::kNone || kind == KeyKind::kEchoReply || kind == KeyKind::kIcmpError) {
    // No ports and no echo request (an echo reply, or an ICMP error, about no live flow
    // included) — except a non-first fragment, whose ports travelled in the first fragment
    // (one whose first was remembered went through TranslateLaterFragment; this one has
    // nothing remembered: it came ahead of its first, or its first never came or was
    // forgotten). Under a port-only rule it passes with its address. Under one that moves the
    // address, one going out leaves with the rule's address, which needs no port, as
    // libalias's FragmentOut sends it: when its first gets the same rule's address (one
    // masquerade rule), the datagram reassembles from one source whichever fragment goes
    // first. One coming in (its direction says so, or it is addressed to the rule's address
    // already) names no inside host, and is untranslatable.
    const PacketMeta& m = b.packet(i).meta();
    const bool later_fragment = kind == KeyKind::kNone && (m.flags & pkt_flag::kFragmentLater) != 0;
    const bool going_out = m.direction != Direction::kIn && f.dst != target.address;
    if (later_fragment && target.keep_address) {
      Translated(b, i, target.rule_number, tally);  // the rule's edits, as its first gets them
      tally.Bump(ClassifyCounter::kNatFragmentPassed);
    } else if (later_fragment && going_out) {
      ApplyFragmentAddress(b.packet(i), Side::kSrc, target.address);
      Translated(b, i, target.rule_number, tally);
      tally.Bump(ClassifyCounter::kNatFragmentAhead);
    } else {
      b.Drop(i, DropReason::kNatUntranslatable);
      tally.Bump(ClassifyCounter::kNatUntranslatable);
    }
    return false;
  }
  creating.Hold();
  const FlowTable::CreateResult c = flows_.Create(key, target, static_cast<uint8_t>(f.tcp_flags), now);
  if (c.evicted) tally.Bump(ClassifyCounter::kNatEvicted);
  switch (c.status) {
    case FlowTable::CreateStatus::kCreated:
      tally.Bump(ClassifyCounter::kNatCreated);
      RememberFirstFragment(b.packet(i), flows_.flow(c.flow), FlowTable::Dir::kOriginal, now);
      ApplyTranslation(b.packet(i), flows_.flow(c.flow), FlowTable::Dir::kOriginal);
      Translated(b, i, target.rule_number, tally);
      return true;
    case FlowTable::CreateStatus::kNoPort:
      tally.Bump(ClassifyCounter::kNatExhausted);
      b.Drop(i, DropReason::kNatExhausted);
      return false;
    case FlowTable::CreateStatus::kTableFull:
      tally.Bump(ClassifyCounter::kNatTableFull);
      b.Drop(i, DropReason::kNatTableFull);
      return false;
  }
  return false;
}

void ClassifyStage::Translated(Batch& b, uint32_t i, uint32_t rule_number, ClassifyCounts& tally) noexcept {
  if (const RewritePlan* edits = snapshot_->TranslationEdits(rule_number)) {
    b.set_plan(i, edits);
    b.set_next(i, Next::kRewrite);
    tally.Bump(ClassifyCounter::kRewritePlanned);
    return;
  }
  b.set_next(i, Next::kAccept);
}

void ClassifyStage::RememberFirstFragment(const PacketBuffer& pkt, const FlowTable::Flow& flow, FlowTable::Dir dir,
                                          uint64_t now) noexcept {
  const PacketMeta& m = pkt.meta();
  if ((m.flags & (pkt_flag::kFragment | pkt_flag::kFragmentLater)) != pkt_flag::kFragment) return;
  const FlowKey& o = flow.orig;
  const bool port_only = flow.xaddr == o.src();
  // Port-only: later fragments pass as they are, unless the rule has edits for them.
  if (port_only && snapshot_->TranslationEdits(flow.rule_number) == nullptr) return;
  NatFragments::Key key;
  if (!NatFragments::KeyOf(pkt, &key)) return;
  if (port_only) {
    fragments_.Remember(key, NatFragments::Side::kNone, 0, flow.rule_number, now);
  } else if (dir == FlowTable::Dir::kOriginal) {
    fragments_.Remember(key, NatFragments::Side::kSrc, flow.xaddr, flow.rule_number, now);
  } else {
    fragments_.Remember(key, NatFragments::Side::kDst, o.src(), flow.rule_number, now);
  }
}

bool ClassifyStage::TranslateLaterFragment(Batch& b, uint32_t i, uint64_t now, ClassifyCounts& tally) noexcept {
  PacketBuffer& pkt = b.packet(i);
  const PacketMeta& m = pkt.meta();
  if ((m.flags & pkt_flag::kFragmentLater) == 0) return false;
  NatFragments::Key key;
  NatFragments::Side side;
  U128 addr = 0;
  uint32_t rule_number = 0;
  if (!NatFragments::KeyOf(pkt, &key) || !fragments_.Find(key, now, &side, &addr, &rule_number)) return false;
  if (side != NatFragments::Side::kNone) {
    ApplyFragmentAddress(pkt, side == NatFragments::Side::kSrc ? Side::kSrc : Side::kDst, addr);
  }
  Translated(b, i, rule_number, tally);
  tally.Bump(ClassifyCounter::kNatFragments);
  return true;
}

}  // namespace sluice
