// The offline graph, wired in one place. Read top to bottom: nodes in the order packets
// meet them, then the edges.
#include "engine/graph/pipeline.h"

#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <array>
#include <string>
#include <tuple>

#include "engine/core/assert.h"
#include "engine/core/clock.h"
#include "engine/pool/batch_pool.h"

namespace sluice {

namespace flow = tbb::flow;

namespace {

constexpr uint32_t kMaxShards = 64;

uint32_t DefaultBurstsInFlight(const PipelineOptions& o) {
  if (o.bursts_in_flight != 0) return std::max(o.bursts_in_flight, 2u);
  return std::max({4 * o.threads, 2u, 2 * o.shards});
}

uint32_t BurstSize(const PipelineOptions& o) {
  return std::min<uint32_t>(kMaxBatch, o.batch_size * o.shards);
}

// Which shard a packet belongs to: the flow hash scaled onto [0, shards) without a division.
inline uint32_t ShardOf(uint32_t flow_hash, uint32_t shards) noexcept {
  return static_cast<uint32_t>((static_cast<uint64_t>(flow_hash) * shards) >> 32);
}

// Records every packet's verdict, accounts it, hands the burst to the sink in input order
// (each part is already in input order: merge on the ordinal the source stamped), then
// returns buffers and batches.
void EmitBurst(std::span<Batch* const> parts, RunStats& run, PacketSink& sink, PoolCache& cache,
               BatchPool& batches) noexcept {
  const uint64_t now = NowNs();
  uint64_t accepted = 0, rewritten = 0, bytes_out = 0;
  for (Batch* b : parts) {
    b->RecordVerdicts();
    for (uint32_t i = 0; i < b->size(); ++i) {
      const PacketMeta& m = b->packet(i).meta();
      run.latency_ns.Record(now - m.rx_ns);
      switch (b->next(i)) {
        case Next::kAccept:
          if (m.flags & (pkt_flag::kModified | pkt_flag::kMarkSet)) {
            ++rewritten;
          } else {
            ++accepted;
          }
          bytes_out += m.len;
          break;
        case Next::kSkip:
          run.skipped[static_cast<std::size_t>(b->reason(i))].Add();
          bytes_out += m.len;
          break;
        default:  // RecordVerdicts left only terminal values
          run.dropped[static_cast<std::size_t>(b->reason(i))].Add();
          break;
      }
    }
  }
  run.accepted.Add(accepted);
  run.rewritten.Add(rewritten);
  run.bytes_out.Add(bytes_out);

  std::array<PacketBuffer*, kMaxBatch> ordered;
  uint32_t n = 0;
  if (parts.size() == 1) {
    for (uint32_t i = 0; i < parts[0]->size(); ++i) ordered[n++] = &parts[0]->packet(i);
  } else {
    std::array<uint32_t, kMaxShards> head{};
    for (;;) {
      int best = -1;
      uint64_t best_token = 0;
      for (std::size_t p = 0; p < parts.size(); ++p) {
        if (head[p] == parts[p]->size()) continue;
        const uint64_t token = parts[p]->packet(head[p]).meta().io_token;
        if (best < 0 || token < best_token) {
          best = static_cast<int>(p);
          best_token = token;
        }
      }
      if (best < 0) break;
      ordered[n++] = &parts[best]->packet(head[best]++);
    }
  }
  sink.Consume(std::span<PacketBuffer* const>(ordered.data(), n));

  std::array<PacketBuffer*, kMaxBatch> bufs;
  for (Batch* b : parts) {
    cache.PutBulk(bufs.data(), b->TakeBuffers(bufs.data()));
    batches.Put(b);
  }
}

}  // namespace

void RunStage(StageRef stage, StageStats& stats, Batch& b) noexcept {
  const uint32_t n = b.size();
  std::array<bool, kMaxBatch> open;
  uint32_t open_count = 0;
  for (uint32_t i = 0; i < n; ++i) {
    open[i] = !IsTerminal(b.next(i));
    open_count += open[i];
  }
  const uint64_t t0 = ReadTsc();
  stage.Process(b);
  const uint64_t cycles = ReadTsc() - t0;
  for (uint32_t i = 0; i < n; ++i) {
    const Next next = b.next(i);
    if (open[i] && (next == Next::kDrop || next == Next::kSkip)) {
      stats.ended[static_cast<std::size_t>(b.reason(i))].Add();
    }
  }
  stats.calls.Add();
  stats.packets.Add(open_count);
  stats.cycles.Add(cycles);
}

OfflinePipeline::OfflinePipeline(const PipelineOptions& options, BufferPool& pool, StageRef parse,
                                 std::span<const ShardStages> shards)
    : options_(options),
      pool_(pool),
      parse_(parse),
      shards_(shards.begin(), shards.end()),
      burst_(BurstSize(options)),
      shard_stats_(std::make_unique<ShardStats[]>(options.shards)),
      run_(std::make_unique<RunStats>()) {
  options_.bursts_in_flight = DefaultBurstsInFlight(options);
  SLUICE_CHECK(shards_.size() == options_.shards);
  SLUICE_CHECK(Validate(options_, pool).ok());
}

OfflinePipeline::~OfflinePipeline() = default;

Status OfflinePipeline::Validate(const PipelineOptions& o, const BufferPool& pool) {
  if (o.shards < 1 || o.shards > kMaxShards) {
    return InvalidArgument("shards must be 1.." + std::to_string(kMaxShards) + ", got " + std::to_string(o.shards));
  }
  if (o.threads < 1 || o.threads > 256) {
    return InvalidArgument("threads must be 1..256, got " + std::to_string(o.threads));
  }
  if (o.batch_size < 1 || o.batch_size > kMaxBatch) {
    return InvalidArgument("batch size must be 1.." + std::to_string(kMaxBatch) + ", got " + std::to_string(o.batch_size));
  }
  // Every burst in flight may hold a full burst of buffers, and two caches may hold theirs.
  const uint64_t need = uint64_t{DefaultBurstsInFlight(o)} * BurstSize(o) + 2 * PoolCache::kDefaultSize;
  if (pool.Capacity(SizeClass::kSmall) < need) {
    return InvalidArgument("pool too small: " + std::to_string(pool.Capacity(SizeClass::kSmall)) +
                           " small buffers for " + std::to_string(DefaultBurstsInFlight(o)) +
                           " bursts of " + std::to_string(BurstSize(o)) + " in flight; need " +
                           std::to_string(need));
  }
  return Status::Ok();
}

Status OfflinePipeline::Run(PacketSource& source, PacketSink& sink) {
  const uint32_t shard_count = options_.shards;
  const uint32_t window = options_.bursts_in_flight;
  RunStats& run = *run_;

  tbb::task_arena arena(static_cast<int>(options_.threads));
  arena.execute([&] {
    flow::graph g;  // built inside the arena, so its tasks run on the arena's threads
    BatchPool batches(window * (shard_count + 1) + 2, kMaxBatch);
    PoolCache source_cache(pool_);
    PoolCache retire_cache(pool_);

    // ---- source: one burst per message, numbered in input order ---------------------------
    uint64_t next_seq = 0;
    uint64_t next_ordinal = 0;
    bool more = true;
    flow::input_node<Batch*> source_node(g, [&](tbb::flow_control& fc) -> Batch* {
      if (!more || stop_.load(std::memory_order_relaxed)) {
        fc.stop();
        return nullptr;
      }
      Batch* b = batches.TryGet();
      SLUICE_CHECK(b != nullptr);  // tokens bound the batches in flight
      b->set_limit(burst_);
      more = source.ReadBurst(source_cache, *b, burst_);
      const uint64_t now = NowNs();
      uint64_t bytes = 0;
      for (uint32_t i = 0; i < b->size(); ++i) {
        PacketMeta& m = b->packet(i).meta();
        m.io_token = next_ordinal++;
        m.rx_ns = now;
        bytes += m.len;
      }
      run.packets_in.Add(b->size());
      run.bytes_in.Add(bytes);
      b->set_seq(next_seq++);
      return b;
    });

    // ---- tokens: at most `window` bursts between source and sink --------------------------
    flow::limiter_node<Batch*> tokens(g, window);

    // ---- parse: one stage for every shard, before dispatch, so parse runs once ------------
    flow::function_node<Batch*, Batch*> parse_node(g, flow::serial, [&](Batch* b) noexcept {
      RunStage(parse_, parse_stats_, *b);
      return b;
    });

    // ---- per shard: classify → rewrite ----------------------------------------------------
    using StageNode = flow::function_node<Batch*, Batch*, flow::queueing_lightweight>;
    std::vector<std::unique_ptr<flow::function_node<Batch*, Batch*>>> classify_nodes;
    std::vector<std::unique_ptr<StageNode>> rewrite_nodes;
    for (uint32_t s = 0; s < shard_count; ++s) {
      classify_nodes.push_back(std::make_unique<flow::function_node<Batch*, Batch*>>(
          g, flow::serial, [this, s](Batch* b) noexcept {
            RunStage(shards_[s].classify, shard_stats_[s].classify, *b);
            return b;
          }));
      rewrite_nodes.push_back(std::make_unique<StageNode>(g, flow::serial, [this, s](Batch* b) noexcept {
        RunStage(shards_[s].rewrite, shard_stats_[s].rewrite, *b);
        return b;
      }));
    }

    // ---- dispatch: split a burst by flow hash into one batch per shard that has packets ---
    flow::function_node<Batch*, flow::continue_msg> dispatch_node(
        g, flow::serial, [&](Batch* burst) noexcept {
          if (shard_count == 1 || burst->empty()) {
            burst->set_shard(0);
            burst->set_parts(1);
            classify_nodes[0]->try_put(burst);
            return flow::continue_msg();
          }
          std::array<Batch*, kMaxShards> part{};
          uint32_t parts = 0;
          for (uint32_t i = 0; i < burst->size(); ++i) {
            const uint32_t s = ShardOf(burst->packet(i).meta().flow_hash, shard_count);
            if (part[s] == nullptr) {
              part[s] = batches.TryGet();
              SLUICE_CHECK(part[s] != nullptr);
              part[s]->set_seq(burst->seq());
              part[s]->set_shard(s);
              ++parts;
            }
            part[s]->MoveSlotFrom(*burst, i);
          }
          burst->Clear();  // every ref was moved out
          batches.Put(burst);
          for (uint32_t s = 0; s < shard_count; ++s) {
            if (part[s] == nullptr) continue;
            part[s]->set_parts(parts);
            classify_nodes[s]->try_put(part[s]);
          }
          return flow::continue_msg();
        });

    // ---- collect: reassemble bursts in input order, record verdicts, sink, retire ---------
    struct Pending {
      uint32_t seen = 0;
      std::array<Batch*, kMaxShards> part{};
    };
    std::vector<Pending> pending(window);
    uint64_t next_to_emit = 0;
    using CollectNode = flow::multifunction_node<Batch*, std::tuple<flow::continue_msg>>;
    CollectNode collect_node(g, flow::serial, [&](Batch* b, CollectNode::output_ports_type& out) noexcept {
      Pending& slot = pending[b->seq() % window];
      slot.part[slot.seen++] = b;
      for (;;) {
        Pending& head = pending[next_to_emit % window];
        if (head.seen == 0 || head.seen < head.part[0]->parts()) break;
        EmitBurst(std::span(head.part.data(), head.seen), run, sink, retire_cache, batches);
        head = Pending{};
        ++next_to_emit;
        std::get<0>(out).try_put(flow::continue_msg());
      }
    });

    // ---- edges ------------------------------------------------------------------------------
    flow::make_edge(source_node, tokens);
    flow::make_edge(tokens, parse_node);
    flow::make_edge(parse_node, dispatch_node);
    for (uint32_t s = 0; s < shard_count; ++s) {
      flow::make_edge(*classify_nodes[s], *rewrite_nodes[s]);
      flow::make_edge(*rewrite_nodes[s], collect_node);
    }
    flow::make_edge(flow::output_port<0>(collect_node), tokens.decrementer());

    source_node.activate();
    g.wait_for_all();
    SLUICE_CHECK(batches.in_flight() == 0);
  });

  Status s = source.status();
  Status f = sink.Finish();
  return s.ok() ? f : s;
}

}  // namespace sluice
