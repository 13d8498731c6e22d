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

// n packets of a mix (bench::Mix) in buffers from `pool`. Restore() puts every slot back to
// what a source delivers (length, next = parse): two stores per packet.
class ParseWorkload {
 public:
  ParseWorkload(BufferPool& pool, int mix, uint32_t n);
  ~ParseWorkload();  // the buffers go back to the pool
  ParseWorkload(const ParseWorkload&) = delete;
  ParseWorkload& operator=(const ParseWorkload&) = delete;

  void Restore() noexcept;
  Batch& batch() noexcept { return batch_; }
  uint64_t bytes() const noexcept { return bytes_; }

 private:
  PoolCache cache_;
  Batch batch_;
  std::vector<uint32_t> len_;
  uint64_t bytes_ = 0;
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
class RewriteWorkload {
 public:
  static constexpr uint32_t kPackets = 64;
  RewriteWorkload(BufferPool& pool, int op);
  ~RewriteWorkload();
  RewriteWorkload(const RewriteWorkload&) = delete;
  RewriteWorkload& operator=(const RewriteWorkload&) = delete;

  void Restore() noexcept;
  Batch& batch() noexcept { return batch_; }
  uint64_t bytes() const noexcept { return bytes_; }

 private:
  PoolCache cache_;
  Batch batch_;
  RewritePlan plan_;
  std::vector<testing::TestPacket> packets_;
  std::vector<PacketMeta> parsed_meta_;
  uint64_t bytes_ = 0;
};

// A classify stage with a generated rule set over a parsed batch of 256 real packets, from
// tests/rules/rule_gen.h (seed 1):
//   kAcl       ClassBench-acl-like rules; half the packets inside a random rule, half not
//   kLastRule  n-1 near misses, every packet's answer the last rule (a linear scan's worst)
// Restore() sets every slot's next back to classify (a byte store each).
enum ClassifyProfile : int { kAcl = 0, kLastRule = 1 };

class ClassifyWorkload {
 public:
  static constexpr uint32_t kPackets = 256;
  ClassifyWorkload(BufferPool& pool, ClassifyProfile profile, int rules);
  ~ClassifyWorkload();
  ClassifyWorkload(const ClassifyWorkload&) = delete;
  ClassifyWorkload& operator=(const ClassifyWorkload&) = delete;

  void Restore() noexcept;
  Batch& batch() noexcept { return batch_; }
  ClassifyStage& stage() noexcept { return *stage_; }
  const RuleSetHandle& rules() const noexcept { return *handle_; }
  uint64_t bytes() const noexcept { return bytes_; }

 private:
  PoolCache cache_;
  Config config_;
  std::deque<MatchSpec> specs_;
  std::unique_ptr<RuleSetHandle> handle_;
  std::unique_ptr<ClassifyStage> stage_;
  Batch batch_;
  uint64_t bytes_ = 0;
};

}  // namespace sluice::bench
