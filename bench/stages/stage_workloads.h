// Stage workloads shared by the stage benchmarks (bench/stages/*_bench.cpp, timed) and the CI
// gate (perf/gate, counted in instructions): the same batches, plans and rule sets, built once
// with fixed seeds, each with the per-iteration restore its stage needs. What a benchmark
// iteration or a gate repetition runs is `Restore(); stage.Process(batch())`.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "bench/stages/bench_traffic.h"
#include "engine/packet/batch.h"
#include "engine/pool/buffer_pool.h"
#include "engine/rules/config.h"
#include "engine/rules/rule_set.h"
#include "engine/stages/classify/classify_stage.h"
#include "engine/stages/rewrite/rewrite_plan.h"

namespace sluice::bench {

// A batch of packets in buffers from a pool, given back when the workload is destroyed.
class BatchWorkload {
 public:
  explicit BatchWorkload(BufferPool& pool) : cache_(pool) { batch_.set_limit(kMaxBatch); }
  ~BatchWorkload();
  BatchWorkload(const BatchWorkload&) = delete;
  BatchWorkload& operator=(const BatchWorkload&) = delete;

  Batch& batch() noexcept { return batch_; }
  uint64_t bytes() const noexcept { return bytes_; }  // frame bytes in the batch

 protected:
  void Push(const testing::TestPacket& p);  // a copy of p into a pooled buffer, appended

  PoolCache cache_;
  Batch batch_;
  uint64_t bytes_ = 0;
};

// n packets of a mix (bench::Mix). Restore() puts every slot back to what a source delivers
// (length, next = parse): two stores per packet.
class ParseWorkload : public BatchWorkload {
 public:
  ParseWorkload(BufferPool& pool, int mix, uint32_t n);
  void Restore() noexcept;

 private:
  std::vector<uint32_t> len_;
};

// The rewrite operations BM_RewriteOp sweeps, one plan each.
enum RewriteOp : int {
  kNoop,
  kPortSet,
  kPortMap,
  kAddr4Set,
  kAddr4Map,
  kAddr6Set,
  kTtlDecrement,
  kDscp,
  kMssClamp,
  kFullChecksum,
  kMark,
  kEverything,
  kNumRewriteOps
};
const char* RewriteOpName(int op);
RewritePlan RewriteOpPlan(int op);

// 64 parsed 64 B TCP SYNs to port 80 with an MSS option (IPv6 for kAddr6Set) and the op's
// plan. Restore() copies each packet's pristine bytes back (a 60-byte memcpy: what the noop
// row measures alone) and re-arms flags, next = rewrite and the plan.
class RewriteWorkload : public BatchWorkload {
 public:
  static constexpr uint32_t kPackets = 64;
  RewriteWorkload(BufferPool& pool, int op);
  void Restore() noexcept;

 private:
  RewritePlan plan_;
  std::vector<testing::TestPacket> packets_;
  std::vector<PacketMeta> parsed_meta_;
};

// A classify stage with a generated rule set over a parsed batch of 256 real packets, from
// tests/rules/rule_gen.h (seed 1):
//   kAcl       ClassBench-acl-like rules; half the packets inside a random rule, half not
//   kLastRule  n-1 near misses, every packet's answer the last rule (a linear scan's worst)
// Restore() sets every slot's next back to classify (a byte store each).
enum ClassifyProfile : int { kAcl = 0, kLastRule = 1 };

class ClassifyWorkload : public BatchWorkload {
 public:
  static constexpr uint32_t kPackets = 256;
  ClassifyWorkload(BufferPool& pool, ClassifyProfile profile, int rules);
  void Restore() noexcept;
  ClassifyStage& stage() noexcept { return *stage_; }
  const RuleSetHandle& rules() const noexcept { return *handle_; }

 private:
  Config config_;
  std::deque<MatchSpec> specs_;
  std::unique_ptr<RuleSetHandle> handle_;
  std::unique_ptr<ClassifyStage> stage_;
};

}  // namespace sluice::bench
