// Which verdict messages return a batch of NFQUEUE packets, and why a batch verdict never
// accepts a packet sluice has not decided on. Pure: no socket, no clock, no allocation after
// construction; the endpoint and the unit tests drive it.
//
// The kernel side (net/netfilter/nfnetlink_queue.c):
// - Every packet queued to a queue gets the next id (id_sequence + 1) and is appended to the
//   queue's list after its message reached our socket, under one lock. Ids are therefore
//   delivered in increasing order (mod 2^32) and the list is in id order. A message the kernel
//   could not deliver (socket buffer full) uses up its id but is not in the list.
// - NFQNL_MSG_VERDICT(id): that one entry, with optional mark and new payload.
// - NFQNL_MSG_VERDICT_BATCH(N): walks the list from its head and gives the verdict and mark
//   to every entry whose id is not after N (serial-number order), stopping at the first that
//   is. It covers *every* queued packet up to N, including ones sluice has not decided on.
// - The messages of one sendmsg() are processed in order, inside the syscall.
//
// Safety argument. Each received packet gets an ordinal (0, 1, 2 … in socket order, which is
// id order). VerdictTracker knows which ordinals are resolved: their verdict reached the
// kernel. A batch verdict for a run whose highest id is N is planned only when every ordinal
// below the run's first is resolved or is resolved by an earlier message of the same plan, and
// the run's packets are consecutive among the unresolved ordinals. Then the kernel entries
// with id <= N are exactly the run's packets: anything received earlier is gone, anything
// not yet received has a larger id (socket order), and undeliverable ids are not listed.
// Whatever breaks the premise — a packet that left its batch (orphan), a verdict whose
// sendmsg failed, a malformed message — leaves an unresolved ordinal behind, and every packet
// after it is verdicted one by one until it is resolved. Slower, never wrong.
//
// Plan shape (PlanVerdicts): for the items in receive order,
// - a maximal run of unmodified accepts with the same mark, each consecutive as above, is one
//   NFQNL_MSG_VERDICT_BATCH for its last id (one NFQNL_MSG_VERDICT when the run has one packet);
// - a drop is one NFQNL_MSG_VERDICT; it does not end a run: it is emitted at once, before the
//   run's batch message, so the batch no longer finds it (a dropped packet has no place in
//   the wire order, so moving its verdict earlier changes nothing on the wire);
// - a modified packet is one NFQNL_MSG_VERDICT carrying its bytes; it ends the run, so the
//   packets before it are reinjected before it and the wire order within a flow is kept;
// - every message carries the mark the packet should leave with.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

namespace sluice {

enum class VerdictKind : uint8_t {
  kAccept = 0,     // unmodified: may join a batch verdict
  kAcceptPayload,  // accept with new bytes
  kDrop,
};

// One packet's verdict, as the planner sees it.
struct VerdictItem {
  uint64_t ordinal;  // receive ordinal (see above)
  uint32_t id;       // kernel packet id
  uint32_t mark;     // mark the packet leaves with
  VerdictKind kind;
  const uint8_t* payload;  // kAcceptPayload: the bytes to return
  uint32_t payload_len;
};

// One message of a plan. It resolves items [first, first + count) of the planned span, except
// that a batch message's range may also hold drops, which have their own (earlier) messages:
// a batch message resolves the kAccept items of its range.
struct VerdictMessage {
  bool batch;   // NFQNL_MSG_VERDICT_BATCH (else NFQNL_MSG_VERDICT)
  bool accept;  // NF_ACCEPT (else NF_DROP)
  uint32_t id;  // the packet's id; for a batch, the highest id of the run
  uint32_t mark;
  const uint8_t* payload;  // non-null: NFQA_PAYLOAD with these bytes
  uint32_t payload_len;
  uint32_t first;
  uint32_t count;
};

// Which receive ordinals are resolved. Resolutions arrive mostly in order (a contiguous
// prefix that advances); the rest are kept in a bitmap window of kWindow ordinals above the
// prefix. An ordinal resolved beyond the window is not recorded (counted in overflows()): it
// then looks unresolved for ever, which only ever costs batching, never safety.
class VerdictTracker {
 public:
  static constexpr uint64_t kWindow = uint64_t{1} << 16;

  VerdictTracker();

  // Every ordinal below low() is resolved.
  uint64_t low() const noexcept { return low_; }
  // The first ordinal >= from that is not resolved.
  uint64_t FirstUnresolved(uint64_t from) const noexcept;
  bool IsResolved(uint64_t ordinal) const noexcept;
  // Records that the kernel has this ordinal's verdict. Idempotent.
  void Resolve(uint64_t ordinal) noexcept;
  uint64_t overflows() const noexcept { return overflows_; }

 private:
  bool Bit(uint64_t ordinal) const noexcept {
    const uint64_t i = ordinal & (kWindow - 1);
    return (bits_[i >> 6] >> (i & 63)) & 1;
  }
  uint64_t low_ = 0;
  uint64_t overflows_ = 0;
  std::unique_ptr<uint64_t[]>
      bits_;  // kWindow bits; bit (o mod kWindow) for o in [low_, low_ + kWindow)
};

struct PlanCounts {
  uint32_t batch_messages = 0;   // NFQNL_MSG_VERDICT_BATCH messages
  uint32_t batched_packets = 0;  // packets they accept
  uint32_t unbatched =
      0;  // unmodified accepts sent alone because an earlier ordinal was unresolved
};

// Plans the messages for `items` (receive order) into `out` (room for items.size() messages);
// returns how many. `tracker` is only read: the caller resolves each message's items once it
// has reached the kernel.
uint32_t PlanVerdicts(std::span<const VerdictItem> items, const VerdictTracker& tracker,
                      VerdictMessage* out, PlanCounts* counts) noexcept;

}  // namespace sluice
