// Batch: the message the graph carries. Up to kMaxBatch packets plus, per packet, where it
// goes next and why it was dropped or skipped (VPP's vector of buffers with a next index each).
//
//   slot i:  ref_[i] (owns the buffer)   next_[i] (Next)   reason_[i] (DropReason)   plan_[i]
//   whole:   seq (the source burst it came from), shard
//
// Contracts
// - Next's zero is kDrop: a slot nobody set drops safely, it never slips through.
// - A stage works on the slots whose next() names it and moves each forward or to a terminal
//   value (kAccept, kDrop, kSkip). It never reorders slots: batches keep arrival order.
// - The sink calls RecordVerdicts() to write each packet's final verdict into its metadata,
//   then takes the buffers back with TakeBuffers(). A batch destroyed or cleared with packets
//   still in it lets their PacketRefs issue no_verdict drops.
// - Capacity is fixed (kMaxBatch); limit() is the configured size, at which a source closes it.
#pragma once

#include <array>
#include <cstdint>

#include "engine/core/assert.h"
#include "engine/packet/packet_ref.h"

namespace sluice {

struct RewritePlan;  // engine/stages/rewrite: what to change in a packet

inline constexpr uint32_t kMaxBatch = 256;
inline constexpr uint32_t kDefaultBatch = 64;

enum class Next : uint8_t {
  kDrop = 0,   // terminal: dropped; reason() says why
  kParse,      // the source filled it
  kClassify,   // parsed: look the rules up
  kRewrite,    // a rule chose a rewrite: plan() says what
  kAccept,     // terminal: back to the network (with new bytes when flagged kModified)
  kSkip,       // terminal: back to the network unmodified, never classified; reason() says why
};

constexpr bool IsTerminal(Next n) noexcept {
  return n == Next::kDrop || n == Next::kAccept || n == Next::kSkip;
}

class Batch {
 public:
  Batch() = default;
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  uint32_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  bool full() const noexcept { return size_ >= limit_; }
  uint32_t limit() const noexcept { return limit_; }
  void set_limit(uint32_t limit) noexcept {
    SLUICE_CHECK(limit >= 1 && limit <= kMaxBatch);
    limit_ = limit;
  }

  uint64_t seq() const noexcept { return seq_; }
  void set_seq(uint64_t seq) noexcept { seq_ = seq; }
  uint32_t shard() const noexcept { return shard_; }
  void set_shard(uint32_t shard) noexcept { shard_ = shard; }
  // The graph thread running the stages on this batch: which of a stage's per-worker counter
  // sets it bumps (WorkerCounterSets). 0 unless the graph says otherwise; Clear() keeps it,
  // as it keeps seq and shard (the graph sets it before every stage call).
  uint32_t worker() const noexcept { return worker_; }
  void set_worker(uint32_t worker) noexcept { worker_ = worker; }

  // Appends a packet at the end; the batch must not be full.
  void Push(PacketRef ref, Next next = Next::kParse) noexcept {
    SLUICE_CHECK(size_ < kMaxBatch);
    ref_[size_] = std::move(ref);
    next_[size_] = next;
    reason_[size_] = DropReason::kNone;
    plan_[size_] = nullptr;
    ++size_;
  }

  // Moves slot i of `from` (packet, next, reason, plan) to the end of this batch; the slot in
  // `from` is left empty (Clear() it afterwards).
  void MoveSlotFrom(Batch& from, uint32_t i) noexcept {
    SLUICE_CHECK(size_ < kMaxBatch);
    ref_[size_] = std::move(from.ref_[i]);
    next_[size_] = from.next_[i];
    reason_[size_] = from.reason_[i];
    plan_[size_] = from.plan_[i];
    ++size_;
  }

  PacketBuffer& packet(uint32_t i) noexcept { return *ref_[i]; }
  const PacketBuffer& packet(uint32_t i) const noexcept { return *ref_[i]; }
  PacketRef& ref(uint32_t i) noexcept { return ref_[i]; }

  // PacketBuffer::Prefetch for slot i, when there is one: a stage's loop calls it for the slot
  // kPrefetchAhead in front of the one it works on.
  template <bool kWrite = false>
  void Prefetch(uint32_t i) const noexcept {
    if (i < size_ && ref_[i].get() != nullptr) ref_[i]->Prefetch<kWrite>();
  }

  Next next(uint32_t i) const noexcept { return next_[i]; }
  const Next* nexts() const noexcept { return next_.data(); }
  void set_next(uint32_t i, Next n) noexcept { next_[i] = n; }
  DropReason reason(uint32_t i) const noexcept { return reason_[i]; }
  void Drop(uint32_t i, DropReason r) noexcept {
    next_[i] = Next::kDrop;
    reason_[i] = r;
  }
  // A drop decided after RecordVerdicts (an inline endpoint's Send that cannot carry out an
  // accept): the slot and the packet's recorded verdict both say so.
  void DropRecorded(uint32_t i, DropReason r) noexcept {
    Drop(i, r);
    PacketMeta& m = ref_[i]->meta();
    m.verdict = Verdict::kDrop;
    m.drop_reason = r;
  }
  void Skip(uint32_t i, DropReason r) noexcept {
    next_[i] = Next::kSkip;
    reason_[i] = r;
  }
  const RewritePlan* plan(uint32_t i) const noexcept { return plan_[i]; }
  void set_plan(uint32_t i, const RewritePlan* p) noexcept { plan_[i] = p; }

  // Writes every packet's final verdict into its metadata. A slot still on its way (a stage
  // did not run) is dropped as no_verdict: it never leaves looking accepted.
  void RecordVerdicts() noexcept {
    for (uint32_t i = 0; i < size_; ++i) {
      PacketMeta& m = ref_[i]->meta();
      switch (next_[i]) {
        case Next::kAccept:
        case Next::kSkip:
          m.verdict = Verdict::kAccept;
          m.drop_reason = reason_[i];
          break;
        case Next::kDrop:
          m.verdict = Verdict::kDrop;
          m.drop_reason = reason_[i];
          break;
        default:
          next_[i] = Next::kDrop;
          reason_[i] = DropReason::kNoVerdict;
          m.verdict = Verdict::kDrop;
          m.drop_reason = DropReason::kNoVerdict;
          break;
      }
    }
  }

  // Moves every buffer out into out[0..size()) and empties the batch. The caller returns them
  // to a pool (normally PoolCache::PutBulk) after the verdicts have been acted on.
  uint32_t TakeBuffers(PacketBuffer** out) noexcept {
    const uint32_t n = size_;
    for (uint32_t i = 0; i < n; ++i) out[i] = ref_[i].Release();
    size_ = 0;
    return n;
  }

  // Ends the batch at slot n: the slots from n on must have been moved out (MoveSlotFrom).
  void Truncate(uint32_t n) noexcept {
    SLUICE_CHECK(n <= size_);
    for (uint32_t i = n; i < size_; ++i) SLUICE_DCHECK(ref_[i].get() == nullptr);
    size_ = n;
  }

  // Empties the batch; any packet still in it dies through its PacketRef.
  void Clear() noexcept {
    for (uint32_t i = 0; i < size_; ++i) ref_[i] = PacketRef();
    size_ = 0;
  }

 private:
  uint32_t size_ = 0;
  uint32_t limit_ = kDefaultBatch;
  uint64_t seq_ = 0;
  uint32_t shard_ = 0;
  uint32_t worker_ = 0;
  std::array<Next, kMaxBatch> next_{};
  std::array<DropReason, kMaxBatch> reason_{};
  std::array<const RewritePlan*, kMaxBatch> plan_{};
  std::array<PacketRef, kMaxBatch> ref_;
};

}  // namespace sluice
