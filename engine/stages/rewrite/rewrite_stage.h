// RewriteStage: the last stage. Applies each packet's RewritePlan with the primitives of
// rewrite_ops.h and leaves every checksum right (or as wrong as it came).
//
// Reads   batch.plan(i); meta.l3, l3_off, l4_off, l4_proto, flags (as parse wrote them).
// Writes  the packet bytes; meta.flags |= kModified when any byte changed, kMarkSet and
//         meta.mark when the plan marks.
// Next    slots whose next is kRewrite go to kAccept; a TTL decrement that would reach 0 is
//         Drop(ttl_expired) with no byte changed (a router would send ICMP time exceeded;
//         sluice is not the router, so it only drops and counts); a slot without a plan is
//         Drop(rewrite_no_plan): classify sent it here by mistake. A packet parse did not
//         validate (meta.l3 == kNone) is accepted untouched and counted as not_parsed.
// Checksums: incremental per field (RFC 1624); a full L4 recompute when the plan asks for it
// or the packet is flagged kL4CsumNotReady and changed; a full IPv4 header recompute when the
// plan asks or the packet is flagged kIpCsumUntrusted (FinishChecksums). A fragment keeps the
// incremental update even when a full one was asked (counted: l4_csum_not_possible).
//
// Cost: no allocation, no lock, no virtual call; counters accumulate in locals and are added
// once per batch. bench/stages/rewrite_bench.cpp has ns/packet per operation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "engine/core/counter.h"
#include "engine/packet/batch.h"
#include "engine/stages/rewrite/rewrite_plan.h"

namespace sluice {

// X(Enumerator, "name", "description").
// rewritten + unchanged + not_parsed == packets accepted here.
#define SLUICE_REWRITE_COUNTERS(X)                                                             \
  X(kRewritten, "rewritten", "packets with at least one byte changed")                         \
  X(kUnchanged, "unchanged", "packets the plan left byte for byte as they were")               \
  X(kAddrChanged, "addr_changed", "addresses changed")                                         \
  X(kPortChanged, "port_changed", "ports changed")                                             \
  X(kTtlChanged, "ttl_changed", "TTLs or hop limits lowered")                                  \
  X(kDscpChanged, "dscp_changed", "DSCP values changed")                                       \
  X(kMssClamped, "mss_clamped", "TCP SYN MSS options lowered")                                 \
  X(kMarked, "marked", "packets whose mark the plan set")                                      \
  X(kFamilyMismatch, "family_mismatch",                                                        \
    "address operations not applied: the packet is of the other IP family")                    \
  X(kNoPorts, "no_ports",                                                                      \
    "port operations not applied: no TCP/UDP header (another protocol, a non-first fragment)") \
  X(kL4CsumRecomputed, "l4_csum_recomputed", "full L4 checksum recomputations")                \
  X(kL4CsumNotPossible, "l4_csum_not_possible",                                                \
    "full L4 recomputations due but not possible (a fragment): incremental update kept")       \
  X(kIpCsumRecomputed, "ip_csum_recomputed", "full IPv4 header checksum recomputations")       \
  X(kNotParsed, "not_parsed",                                                                 \
    "packets sent here that parse never validated (a bug upstream): accepted unmodified")

enum class RewriteCounter : uint8_t { SLUICE_REWRITE_COUNTERS(SLUICE_COUNTER_ENUMERATOR) };
inline constexpr std::array kRewriteCounterTable = {SLUICE_REWRITE_COUNTERS(SLUICE_COUNTER_INFO)};

inline constexpr std::size_t kNumRewriteCounters = kRewriteCounterTable.size();
using RewriteCounters = CounterSet<RewriteCounter, kNumRewriteCounters>;
using RewriteCounts = BatchCounts<RewriteCounter, kNumRewriteCounters>;

class RewriteStage {
 public:
  // `workers`: the graph threads that may run this stage (one counter set each).
  explicit RewriteStage(uint32_t workers = 1) : counters_(workers) {}

  // Applies plan(i) to every slot whose next is kRewrite; see the contract above.
  void Process(Batch& batch) noexcept;

  RewriteCounters counters() const noexcept { return counters_.Sum(); }  // over the workers
  uint32_t workers() const noexcept { return counters_.workers(); }

 private:
  WorkerCounterSets<RewriteCounter, kNumRewriteCounters> counters_;
};

// One packet, without a batch: what Process does to a slot, counters bumped in counts.
// Returns kNone (accept) or the drop reason.
DropReason ApplyPlan(PacketBuffer& buf, const RewritePlan& plan, RewriteCounts& counts) noexcept;

}  // namespace sluice
