// The two graphs: OfflinePipeline (files and generated traffic, in input order) and
// InlinePipeline (kernel queues, verdicts back per queue).
//
// OfflinePipeline: a pcap file (or generated or in-memory traffic) through parse → classify →
// rewrite on a oneTBB flow graph, out to a sink in input order. The wiring is all in
// pipeline.cpp, node by node, edge by edge.
//
//   source ─► tokens ─► work (one burst per task, bursts side by side on the arena's threads)
//   (read a   (limit)     parse,   ─┬─► [classify[0] → rewrite[0]] ─┬─► [emit] ─► sink
//    burst)               dispatch  ├─► [classify[1] → rewrite[1]] ─┤   (input order)
//                         (by flow  └─► …   [ ]: an ordered section ┘
//                          hash)
//      ▲                                                               │
//      └──────────────────── a token back per retired burst ◄──────────┘
//
// Contracts
// - The message is a Batch. The source reads a burst of one to four batches per shard, as
//   many as fit in 256 packets (batch_size × shards × 1..4; one batch per shard when
//   batch_size is under 16); work parses it and splits it by the symmetric flow hash parse
//   computed, so both directions of a flow meet the same shard's stages (and its flow
//   table), into batches of at most batch_size, and emits each burst whole, in input order.
//   Output is therefore identical whatever the number of threads or shards. (Bursts gather
//   several batches because what the graph does per burst passes cache lines between
//   threads.)
// - Run to completion: oneTBB runs the work task of a burst on the thread that read it (the
//   put hands the task back to run next), so a burst is parsed, classified, rewritten and
//   emitted where its bytes already are, and its buffers and batches go back to that thread's
//   own cache for the next read. Bursts are worked on side by side, one per thread. (Measured:
//   handing each stage's batches between threads moved so many cache lines that 2 threads ran
//   no faster than 1.)
// - Order: each shard's classify + rewrite, and the emission, are ordered sections
//   (ordered_section.h): they take bursts one at a time, in input order, on whichever thread
//   brings them. A shard's stages therefore see its batches in input order, so per-flow order
//   holds. A thread whose turn has not come waits briefly, then leaves its part to the thread
//   ahead of it. The source node is serial; parse is not: it may run on several threads at
//   once, each burst counted in its thread's set (Batch::worker()).
// - Back-pressure: at most `bursts_in_flight` bursts are between source and sink; the
//   source is not asked for more until one is retired (emitted, and its buffers taken back;
//   it may hold one more, read ahead, until the limit lets it through). Buffers and batches
//   are sized from that.
// - Drain: when the source ends or Stop() is called, every packet already read reaches the
//   sink with its verdict before Run() returns.
// - `threads` is the whole arena: the thread calling Run() plus threads-1 workers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/core/status.h"
#include "engine/graph/endpoints.h"
#include "engine/graph/stage.h"
#include "engine/pool/buffer_pool.h"
#include "engine/stats/stage_stats.h"

namespace sluice {

struct PipelineOptions {
  uint32_t shards = 1;
  uint32_t threads = 1;
  uint32_t batch_size = kDefaultBatch;  // packets per shard batch
  uint32_t bursts_in_flight = 0;        // 0: 4 per thread, and at least 2 per shard
};

// The stages one shard owns (they may hold per-shard state such as a flow table).
struct ShardStages {
  StageRef classify;
  StageRef rewrite;
};

class OfflinePipeline {
 public:
  // `parse` serves every shard (it runs before dispatch), and may be called on several threads
  // at once, each with its own Batch::worker(); `shards` has options.shards entries, whose
  // stages are called one at a time. The stages must outlive the pipeline.
  OfflinePipeline(const PipelineOptions& options, BufferPool& pool, StageRef parse,
                  std::span<const ShardStages> shards);
  ~OfflinePipeline();

  // Checks the options against the pool before any packet moves.
  static Status Validate(const PipelineOptions& options, const BufferPool& pool);
  // Small buffers the options need: a full burst per burst in flight, plus a cache per thread.
  static uint64_t SmallBuffersNeeded(const PipelineOptions& options);

  // Runs until the source is exhausted or Stop(); returns the source's, then the sink's error.
  Status Run(PacketSource& source, PacketSink& sink);

  // The same work as Run() on the calling thread alone, with no graph: the baseline the
  // graph's cost is measured against. Output and statistics are identical to Run()'s.
  Status RunInline(PacketSource& source, PacketSink& sink);

  // From any thread: the source reads no further burst; what is in flight drains.
  void Stop() noexcept { stop_.store(true, std::memory_order_relaxed); }

  // Readable while Run() is going and after it: sums of the arena threads' own counters,
  // each a relaxed snapshot.
  RunStats run_stats() const;
  StageStats parse_stats() const;
  StageStats classify_stats(uint32_t shard) const;
  StageStats rewrite_stats(uint32_t shard) const;
  const PipelineOptions& options() const noexcept { return options_; }
  uint32_t burst_size() const noexcept { return burst_; }

 private:
  class RunContext;
  static Status Finish(PacketSource& source, PacketSink& sink);

  // What one arena thread counted (index 0: RunInline's): each thread bumps only its own, as
  // VPP's workers do their node counters, so no counter's line moves between cores with the
  // bursts; the accessors above sum them.
  struct WorkerStats {
    explicit WorkerStats(uint32_t shards) : classify(shards), rewrite(shards) {}
    RunStats run;
    StageStats parse;
    std::vector<StageStats> classify, rewrite;  // by shard
  };
  template <typename Pick>  // Pick(const WorkerStats&) -> const StageStats&
  StageStats SumStage(Pick pick) const;

  PipelineOptions options_;
  BufferPool& pool_;
  StageRef parse_;
  std::vector<ShardStages> shards_;
  uint32_t burst_;
  std::vector<std::unique_ptr<WorkerStats>> workers_;  // by arena thread index
  std::atomic<bool> stop_{false};
};

// InlinePipeline: packets from kernel queues (NFQUEUE, divert), one shard per queue, back to
// the kernel with their verdicts. Wired in pipeline.cpp next to the offline graph.
//
//   I/O thread i ── Receive ──► shard[i]: parse → classify → rewrite → verdicts → Send
//                               (on the I/O thread itself, or on the arena: run_to_completion)
//        ▲                                                              │
//        └──────────── a batch token back when the batch retires ◄──────┘
//
// Contracts
// - One I/O thread per shard blocks in the endpoint's Receive; the stages run on the arena's
//   `threads` threads. A shard's batches are processed and sent in the order they were
//   received: verdicts for a queue never overtake each other (NFQUEUE's batch verdict
//   accepts every id up to N, so an overtaking verdict would accept unprocessed packets).
// - Back-pressure: `batches_per_shard` tokens per shard; with none free the I/O thread stops
//   reading and the kernel queue absorbs (then drops or, fail-open, bypasses) the excess.
// - Stop(): the I/O threads stop receiving (after handing out what an endpoint still holds,
//   InlineEndpoint::Holding); every batch already received is processed and its verdicts
//   sent before Stop() returns. The endpoints stay open (their owner closes them).
struct InlineOptions {
  uint32_t threads = 1;
  uint32_t batch_size = kDefaultBatch;
  uint32_t batches_per_shard = 8;
  std::chrono::microseconds receive_wait{20000};  // an idle I/O thread looks at Stop() this often
  // How long a partly filled batch waits for more packets before it goes; 0: it goes as soon
  // as the queue has nothing more ready (a batch closes on size or when the queue is drained).
  // It goes at once, too, when the endpoint holds messages back (InlineEndpoint::Holding).
  std::chrono::microseconds batch_timeout{0};
  // On: each I/O thread runs its shard's stages itself (run to completion): no thread hand-off
  // per batch, so the lowest latency and CPU per packet, and one core per queue. Off: the
  // stages run on the arena's `threads`, so receiving overlaps processing and one queue can
  // use two cores, at the cost of a wake-up per batch (worth it only near saturation with
  // fewer queues than cores).
  bool run_to_completion = true;
  // CPUs the I/O threads run on: shard i's on cpus[i % cpus.size()], as Suricata's
  // cpu-affinity and VPP's corelist-workers pin theirs. With run to completion the stages run
  // there too, so a queue's packets, flow table and counters stay in one core's caches, and
  // the queue's thread can sit beside the core that takes its NIC's interrupts. Empty: the
  // scheduler places them. (The arena's worker threads are not pinned.)
  std::vector<uint32_t> cpus = {};
};

struct InlineShard {
  InlineEndpoint* endpoint;
  StageRef parse;
  StageRef classify;
  StageRef rewrite;
};

class InlinePipeline {
 public:
  InlinePipeline(const InlineOptions& options, BufferPool& pool, std::span<const InlineShard> shards);
  ~InlinePipeline();  // Stop()s if running

  // Also that every CPU in options.cpus is one this process may run on.
  static Status Validate(const InlineOptions& options, uint32_t shards, const BufferPool& pool);
  // Large buffers for NFQUEUE with GSO, where any message may be a 64 KiB super-packet that
  // holds a large buffer until its verdict: per shard, every batch it can have in flight full
  // of them (two when the stages run on the I/O thread: one in the stages, one being
  // received; batches_per_shard otherwise), plus what its two caches may keep
  // (PoolCache::kLargeCacheMax each). Fewer, and one queue's bulk TCP can starve another.
  static uint64_t LargeBuffersForGso(const InlineOptions& options, uint32_t shards);

  void Start();
  void Stop();

  uint32_t shards() const noexcept { return static_cast<uint32_t>(shards_.size()); }
  // After Start(), with options.cpus: 0 when the shard's I/O thread was pinned, else the
  // error pinning it failed with (it runs where the scheduler puts it).
  int io_pin_error(uint32_t shard) const noexcept;
  // How many times the shard's I/O thread has gone round its loop with a batch to receive
  // into (once per batch, or per receive wait when idle): a count that stops moving means the
  // thread, or the stages it waits on for batches, is stuck.
  uint64_t io_turns(uint32_t shard) const noexcept;
  // Readable at any time (relaxed snapshots).
  const RunStats& run_stats(uint32_t shard) const noexcept;
  const StageStats& parse_stats(uint32_t shard) const noexcept;
  const StageStats& classify_stats(uint32_t shard) const noexcept;
  const StageStats& rewrite_stats(uint32_t shard) const noexcept;

 private:
  struct Shard;
  struct Host;
  void IoLoop(Shard& shard) noexcept;

  InlineOptions options_;
  BufferPool& pool_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<Host> host_;
  std::atomic<bool> stop_{false};
};

// Runs one stage over a batch and accounts it in `stats` (calls, packets, cycles, and the
// packets it ended by reason). What every graph node does around its stage.
void RunStage(StageRef stage, StageStats& stats, Batch& batch) noexcept;

}  // namespace sluice
