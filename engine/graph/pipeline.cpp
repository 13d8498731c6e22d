// The offline graph, wired in one place. What each node does is a method of RunContext;
// Run() below builds the nodes in the order packets meet them, then the edges. RunInline()
// calls the same methods in one loop with no graph: the baseline the graph's cost is measured
// against (bench/graph/pipeline_bench.cpp).
#include "engine/graph/pipeline.h"

#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <string>
#include <tuple>

#include "engine/core/assert.h"
#include "engine/core/clock.h"
#include "engine/core/cpus.h"
#include "engine/core/limits.h"
#include "engine/core/tsan.h"
#include "engine/graph/ordered_section.h"
#include "engine/pool/batch_pool.h"

namespace sluice {

namespace flow = tbb::flow;

namespace {

uint32_t BurstsInFlight(const PipelineOptions& o) {
  if (o.bursts_in_flight != 0) return std::max({o.bursts_in_flight, 2u, o.shards});
  return std::max({4 * o.threads, 2u, 2 * o.shards});
}

// How many batches per shard one burst gathers. What the graph does once per burst (a token,
// the source node's turn, a turn at each shard's ordered section and at the emission) moves
// cache lines between threads, 0.1-0.5 us a round trip on the 2-vCPU VM sluice is measured
// on; gathering up to four batches per shard pays it once per up to 256 packets (measured:
// `sluice replay -t 2 -s 2`, 1M x 64 B, batch 64, alternated runs: median 0.100 -> 0.090 s;
// 1 thread 0.127 -> 0.123 s). A batch size under 16 is asked for to keep latency down, and
// four such batches per shard would split a burst into many parts, each a batch set aside:
// those bursts stay one batch per shard.
uint32_t BatchesPerBurst(const PipelineOptions& o) {
  if (o.batch_size < 16) return 1;
  return std::clamp<uint32_t>(kMaxBatch / (o.batch_size * o.shards), 1, 4);
}

uint32_t BurstSize(const PipelineOptions& o) {
  return std::min<uint32_t>(kMaxBatch, BatchesPerBurst(o) * o.batch_size * o.shards);
}

// The most batches a burst is split into: each shard's packets in batches of batch_size, the
// last one of each possibly part full (and never more than one per packet).
uint32_t MaxParts(const PipelineOptions& o) {
  const uint32_t burst = BurstSize(o);
  return std::min(burst, (burst + o.batch_size - 1) / o.batch_size + o.shards);
}

// oneTBB allows the whole process the machine's CPUs' worth of threads: an arena asking for
// more silently gets fewer (and oneTBB prints a "TBB Warning" on stderr). `threads` is the
// user's choice, oversubscribing a small machine included, so a graph with more threads than
// that raises the limit to its own count while it runs. oneTBB applies the smallest limit
// among the live ones, so nothing is set for counts at or under the default. The limit is
// process-wide: it assumes one graph per process (sluice run, sluice replay); two graphs
// running at once would share the smaller one's count of workers between them.
class AllowThreads {
 public:
  explicit AllowThreads(uint32_t threads) {
    if (threads > static_cast<uint32_t>(tbb::info::default_concurrency())) {
      limit_.emplace(tbb::global_control::max_allowed_parallelism, threads);
    }
  }

 private:
  std::optional<tbb::global_control> limit_;
};

// Which shard a packet belongs to: the flow hash scaled onto [0, shards) without a division.
inline uint32_t ShardOf(uint32_t flow_hash, uint32_t shards) noexcept {
  return static_cast<uint32_t>((static_cast<uint64_t>(flow_hash) * shards) >> 32);
}

}  // namespace

namespace {
// How many of next[0..n) are `v`, eight slots per step: RunStage counts slots around every
// stage call, and the release build (-O2) leaves a byte-per-step loop scalar (5 % of a
// 1-thread pipeline's time). Eight slots are one word: XOR leaves a matching byte zero, and
// the exact zero-byte test (no borrow between bytes) marks each with its top bit.
uint32_t CountNext(const Next* next, uint32_t n, Next v) noexcept {
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7full;
  const auto* p = reinterpret_cast<const uint8_t*>(next);
  uint32_t count = 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, sizeof w);
    w ^= kOnes * static_cast<uint8_t>(v);
    const uint64_t zero = ~(((w & kLow7) + kLow7) | w | kLow7);  // 0x80 in each zero byte
    count += static_cast<uint32_t>(((zero >> 7) * kOnes) >> 56);  // their sum, in the top byte
  }
  for (; i < n; ++i) count += next[i] == v;
  return count;
}

// Slots whose packet has ended as dropped or skipped.
uint32_t CountEnded(const Next* next, uint32_t n) noexcept {
  return CountNext(next, n, Next::kDrop) + CountNext(next, n, Next::kSkip);
}
}  // namespace

// Counts every packet's recorded verdict in `run`, with its latency from receive to `now`.
void AccountVerdicts(const Batch& b, RunStats& run, uint64_t now) noexcept {
  uint64_t accepted = 0, rewritten = 0, bytes_out = 0;
  // Packets received together share a receive time: one histogram bump per run of them.
  uint64_t run_rx = 0, run_len = 0;
  for (uint32_t i = 0; i < b.size(); ++i) {
    b.Prefetch<true>(i + kPrefetchAhead);
    const PacketMeta& m = b.packet(i).meta();
    if (m.rx_ns != run_rx) {
      if (run_len != 0) run.latency_ns.RecordMany(now - run_rx, run_len);
      run_rx = m.rx_ns;
      run_len = 0;
    }
    ++run_len;
    switch (b.next(i)) {
      case Next::kAccept:
        ++accepted;
        rewritten += (m.flags & (pkt_flag::kModified | pkt_flag::kMarkSet)) != 0;
        bytes_out += m.len;
        break;
      case Next::kSkip:
        run.skipped[static_cast<std::size_t>(b.reason(i))].Add();
        bytes_out += m.len;
        break;
      default:  // RecordVerdicts leaves only terminal values
        run.dropped[static_cast<std::size_t>(b.reason(i))].Add();
        break;
    }
  }
  if (run_len != 0) run.latency_ns.RecordMany(now - run_rx, run_len);
  run.accepted.Add(accepted - rewritten);
  run.rewritten.Add(rewritten);
  run.bytes_out.Add(bytes_out);
}

// Records every packet's verdict in its metadata and counts it: the offline graph's last node.
void RecordAndAccount(Batch& b, RunStats& run, uint64_t now) noexcept {
  b.RecordVerdicts();
  AccountVerdicts(b, run, now);
}

void RunStage(StageRef stage, StageStats& stats, Batch& b) noexcept {
  const uint32_t n = b.size();
  std::array<Next, kMaxBatch> before;
  std::copy_n(b.nexts(), kMaxBatch, before.data());  // all of it: one fixed-size copy
  const uint32_t ended_before = CountEnded(before.data(), n);
  const uint32_t accepted_before = CountNext(before.data(), n, Next::kAccept);

  const uint64_t t0 = ReadTsc();
  stage.Process(b);
  const uint64_t cycles = ReadTsc() - t0;

  // Attribute reasons only when this stage ended something (the rare case).
  if (CountEnded(b.nexts(), n) != ended_before) {
    for (uint32_t i = 0; i < n; ++i) {
      const Next next = b.next(i);
      if (!IsTerminal(before[i]) && (next == Next::kDrop || next == Next::kSkip)) {
        stats.ended[static_cast<std::size_t>(b.reason(i))].Add();
      }
    }
  }
  stats.calls.Add();
  stats.packets.Add(n - ended_before - accepted_before);  // the slots it was given to work on
  stats.cycles.Add(cycles);
}

// The work of every node, for one Run(). The source's methods are called by one node
// (serially); Work() by any number of threads at once, for different bursts.
class OfflinePipeline::RunContext {
 public:
  RunContext(OfflinePipeline& p, PacketSource& source, PacketSink& sink, uint32_t threads)
      : p_(p),
        source_(source),
        sink_(sink),
        shards_(p.options_.shards),
        window_(p.options_.bursts_in_flight),
        max_parts_(MaxParts(p.options_)),
        // Each burst in flight and each thread's cache: the burst's batch and its parts; one
        // more burst the source has read ahead.
        batches_((window_ + threads) * (max_parts_ + 1) + 2, kMaxBatch),
        bursts_(new Burst[window_]),
        emit_(window_, kSpin) {
    locals_.reserve(threads);
    for (uint32_t t = 0; t < threads; ++t) {
      locals_.push_back(std::make_unique<Local>(p.pool_, *p.workers_[t], t, window_, max_parts_));
    }
    shard_sections_.reserve(shards_);
    for (uint32_t s = 0; s < shards_; ++s) shard_sections_.push_back(std::make_unique<OrderedSection>(window_, kSpin));
  }

  // What the arena thread `index` keeps for itself: buffers and batches it retired, which it
  // reads the next bursts into while they are still in its cache (index 0 outside the graph).
  struct alignas(64) Local {
    Local(BufferPool& pool, WorkerStats& stats, uint32_t worker, uint32_t window,
          uint32_t max_parts)
        : buffers(pool, PoolCache::kDefaultSize, PoolCache::Share::kReserved),
          stats(stats),
          worker(worker),
          batches(max_parts + 1) {
      done.reserve(window);  // a burst is finished once, and at most `window` are in flight
      // Room for the parts of as many bursts as one emission usually takes in a row; more
      // (many threads parking bursts at once) grows it, once.
      emitted.reserve(std::size_t{std::min(window, 16u)} * max_parts);
    }
    PoolCache buffers;   // its room is counted in SmallBuffersNeeded, so it may hold all of it
    WorkerStats& stats;  // the pipeline's, for this arena thread
    const uint32_t worker;  // this arena thread's index: Batch::worker() for the stages it runs
    std::vector<Batch*> batches;  // a burst's worth: the burst and its parts
    uint32_t batch_count = 0;
    // Work's own lists, reused from call to call: a thread runs one Work at a time (stages
    // and sinks never wait on oneTBB work, which could start another Work on the thread).
    std::vector<uint64_t> done;   // bursts to emit
    std::vector<Batch*> emitted;  // the batches of bursts it emitted, not yet recycled
  };
  Local& local(int index) noexcept {
    const auto i = static_cast<std::size_t>(std::max(index, 0));
    SLUICE_CHECK(i < locals_.size());  // its counters and those of every stage it runs are by this index
    return *locals_[i];
  }

  // source: the next burst, numbered in input order (not yet parsed: Work parses it); nullptr
  // when the input is done.
  Batch* ReadBurst(Local& local) {
    if (!more_ || p_.stop_.load(std::memory_order_relaxed)) return nullptr;
    Batch* b = GetBatch(local);
    b->set_limit(p_.burst_);
    more_ = source_.ReadBurst(local.buffers, *b, p_.burst_);
    const uint64_t now = NowNs();
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < b->size(); ++i) {
      PacketMeta& m = b->packet(i).meta();
      m.io_token = next_ordinal_++;
      m.rx_ns = now;
      bytes += m.len;
    }
    local.stats.run.packets_in.Add(b->size());
    local.stats.run.bytes_in.Add(bytes);
    b->set_seq(next_seq_++);
    return b;
  }

  // The rest of a burst's journey, on the calling thread where it can be: parse it, split it
  // by flow hash, classify and rewrite each shard's batches in that shard's burst order, then emit
  // the burst in input order. Returns how many bursts this call retired (one token back for
  // each); a part or burst whose turn has not come is left to the thread whose turn it is.
  //
  // Parse needs no order (it keeps nothing from one packet to the next), so it runs here,
  // beside other threads' bursts, and not in the serial source, where it was a fifth of a
  // replay's serial read that no second thread could share.
  uint32_t Work(Batch* burst, Local& local) noexcept {
    burst->set_worker(local.worker);
    RunStage(p_.parse_, local.stats.parse, *burst);  // once per burst, for every shard
    const uint64_t seq = burst->seq();
    Burst& br = bursts_[seq % window_];
    Dispatch(burst, br, local);
    // Bursts whose last shard part this call finished, in the order it finished them (rising,
    // as one section's run finishes them; emission does not depend on it, since a number
    // whose turn has not come is parked). They are emitted after the shard's section is
    // left, not inside it: nested, the section stayed closed to the next burst for the whole
    // emission, which made a shard's stages and the sink one serial step.
    local.done.clear();
    for (uint32_t s = 0; s < shards_; ++s) {
      shard_sections_[s]->Run(seq, [&, s](uint64_t n) noexcept {
        Burst& b = bursts_[n % window_];
        for (uint16_t k = b.first_part[s]; k != Burst::kNone; k = b.next_part[k]) {
          Batch& part = *b.part[k];
          part.set_worker(local.worker);  // the thread whose turn it is, not the one that read it
          RunStage(p_.shards_[s].classify, local.stats.classify[s], part);
          RunStage(p_.shards_[s].rewrite, local.stats.rewrite[s], part);
        }
        if (b.remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) local.done.push_back(n);
      });
    }
    // Emission in three steps, so that the one that must be in input order, handing the
    // burst to the sink, is all the emit section holds: verdicts are recorded, counted and
    // merged into input order here, beside other threads' work; the buffers and batches go
    // back once the section has been left.
    uint32_t retired = 0;
    for (const uint64_t seq_done : local.done) {
      Finish(bursts_[seq_done % window_], local);
      retired +=
          emit_.Run(seq_done, [&](uint64_t n) noexcept { Consume(bursts_[n % window_], local); });
      Recycle(local);
    }
    return retired;
  }

  uint32_t batches_in_flight() const noexcept {
    uint32_t kept = 0;
    for (const auto& l : locals_) kept += l->batch_count;
    return batches_.in_flight() - kept;
  }

 private:
  // How many times a thread polls for its turn at an ordered section before it leaves its part
  // to the thread ahead of it. A turn usually comes within a batch's stages (tens of polls);
  // this allows several, because a part left behind is worked on cold by another core, and
  // with 2 threads that cost more than the waiting (measured: no polling at all ran 2.5× slower).
  static constexpr uint32_t kSpin = 4096;

  // A burst between its dispatch and its emission, at seq % window (its own lines).
  struct alignas(64) Burst {
    static constexpr uint16_t kNone = 0xffff;
    std::atomic<uint32_t> remaining{0};  // shards whose section has not yet passed it
    uint32_t parts = 0;
    uint32_t count = 0;        // packets
    uint64_t first_token = 0;  // its first packet's io_token (ReadBurst numbers them)
    std::array<uint16_t, kMaxShards> first_part;   // each shard's first part, or kNone
    std::array<uint16_t, kMaxBatch> next_part;     // the same shard's next part, or kNone
    std::array<Batch*, kMaxBatch> part;            // [0, parts), in the order Dispatch made them
    std::array<PacketBuffer*, kMaxBatch> ordered;  // the packets in input order (Finish)
  };

  // Splits a burst into parts: each shard's packets, in input order, in batches of at most
  // batch_size. With one shard the burst's own batch stays the first part.
  void Dispatch(Batch* burst, Burst& out, Local& local) noexcept {
    // The slot's last burst went to the sink (Consume) before this one could be read.
    tsan::Acquire(&out);
    const uint32_t n = burst->size();
    const uint32_t batch = p_.options_.batch_size;
    out.remaining.store(shards_, std::memory_order_relaxed);
    out.count = n;
    out.first_token = n != 0 ? burst->packet(0).meta().io_token : 0;
    std::fill_n(out.first_part.begin(), shards_, Burst::kNone);
    std::array<uint16_t, kMaxShards> last{};
    auto add_part = [&](uint32_t s, Batch* part) noexcept {
      const auto k = static_cast<uint16_t>(out.parts++);
      out.part[k] = part;
      out.next_part[k] = Burst::kNone;
      (out.first_part[s] == Burst::kNone ? out.first_part[s] : out.next_part[last[s]]) = k;
      last[s] = k;
    };
    auto new_part = [&](uint32_t s) noexcept {
      Batch* part = GetBatch(local);
      part->set_seq(burst->seq());
      part->set_shard(s);
      add_part(s, part);
    };
    out.parts = 0;
    if (shards_ == 1) {
      add_part(0, burst);
      if (n <= batch) return;
      for (uint32_t i = batch; i < n; ++i) {
        if (i % batch == 0) new_part(0);
        out.part[last[0]]->MoveSlotFrom(*burst, i);
      }
      burst->Truncate(batch);
      return;
    }
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t s = ShardOf(burst->packet(i).meta().flow_hash, shards_);
      if (out.first_part[s] == Burst::kNone || out.part[last[s]]->size() == batch) new_part(s);
      out.part[last[s]]->MoveSlotFrom(*burst, i);
    }
    burst->Clear();  // every slot was moved out
    PutBatch(local, burst);
  }

  Batch* GetBatch(Local& local) noexcept {
    if (local.batch_count > 0) return local.batches[--local.batch_count];
    Batch* b = batches_.TryGet();
    SLUICE_CHECK(b != nullptr);  // the tokens bound the batches in flight
    return b;
  }
  void PutBatch(Local& local, Batch* b) noexcept {
    if (local.batch_count < local.batches.size()) {
      local.batches[local.batch_count++] = b;
    } else {
      batches_.Put(b);
    }
  }

  // Records every packet's verdict and accounts it, then lists the burst's packets in input
  // order: each in its place by the ordinal ReadBurst stamped, which is consecutive in a burst.
  // The latency counted (receive to verdict) ends here, where the verdicts are known: the
  // wait for earlier bursts to reach the sink is not in it.
  void Finish(Burst& burst, Local& local) noexcept {
    const uint64_t now = NowNs();
    for (uint32_t k = 0; k < burst.parts; ++k) {
      Batch& part = *burst.part[k];
      RecordAndAccount(part, local.stats.run, now);
      for (uint32_t i = 0; i < part.size(); ++i) {
        const uint64_t at = part.packet(i).meta().io_token - burst.first_token;
        SLUICE_CHECK(at < burst.count);
        burst.ordered[at] = &part.packet(i);
      }
    }
  }

  // The burst to the sink: all the emit section does, in input order. The burst's batches are
  // listed for Recycle, and its slot is free from here on: a token another thread returns for
  // a later burst lets the source read the burst that reuses it.
  void Consume(Burst& burst, Local& local) noexcept {
    sink_.Consume(std::span<PacketBuffer* const>(burst.ordered.data(), burst.count));
    local.emitted.insert(local.emitted.end(), burst.part.begin(), burst.part.begin() + burst.parts);
    tsan::Release(&burst);  // to the Dispatch that reuses the slot
  }

  // The batches of the bursts this thread emitted, with their buffers, back to its caches.
  void Recycle(Local& local) noexcept {
    std::array<PacketBuffer*, kMaxBatch> bufs;
    for (Batch* part : local.emitted) {
      local.buffers.PutBulk(bufs.data(), part->TakeBuffers(bufs.data()));
      PutBatch(local, part);
    }
    local.emitted.clear();  // keeps its room
  }

  OfflinePipeline& p_;
  PacketSource& source_;
  PacketSink& sink_;
  const uint32_t shards_;
  const uint32_t window_;
  const uint32_t max_parts_;  // MaxParts: batches one burst is split into, at most
  BatchPool batches_;
  std::vector<std::unique_ptr<Local>> locals_;  // one per arena thread
  uint64_t next_seq_ = 0;
  uint64_t next_ordinal_ = 0;
  bool more_ = true;
  std::unique_ptr<Burst[]> bursts_;  // by seq % window
  std::vector<std::unique_ptr<OrderedSection>> shard_sections_;
  OrderedSection emit_;
};

OfflinePipeline::OfflinePipeline(const PipelineOptions& options, BufferPool& pool, StageRef parse,
                                 std::span<const ShardStages> shards)
    : options_(options),
      pool_(pool),
      parse_(parse),
      shards_(shards.begin(), shards.end()),
      burst_(BurstSize(options)) {
  options_.bursts_in_flight = BurstsInFlight(options);
  SLUICE_CHECK(shards_.size() == options_.shards);
  SLUICE_CHECK(Validate(options_, pool).ok());
  // Every stage has a counter set for each arena thread (StageSet::Options::workers).
  SLUICE_CHECK(parse_.workers() >= options_.threads);
  for (const ShardStages& s : shards_) {
    SLUICE_CHECK(s.classify.workers() >= options_.threads && s.rewrite.workers() >= options_.threads);
  }
  for (uint32_t t = 0; t < options_.threads; ++t) workers_.push_back(std::make_unique<WorkerStats>(options_.shards));
}

RunStats OfflinePipeline::run_stats() const {
  RunStats sum;
  for (const auto& w : workers_) sum.Add(w->run);
  return sum;
}

template <typename Pick>
StageStats OfflinePipeline::SumStage(Pick pick) const {
  StageStats sum;
  for (const auto& w : workers_) sum.Add(pick(*w));
  return sum;
}

StageStats OfflinePipeline::parse_stats() const {
  return SumStage([](const WorkerStats& w) -> const StageStats& { return w.parse; });
}
StageStats OfflinePipeline::classify_stats(uint32_t shard) const {
  return SumStage([shard](const WorkerStats& w) -> const StageStats& { return w.classify[shard]; });
}
StageStats OfflinePipeline::rewrite_stats(uint32_t shard) const {
  return SumStage([shard](const WorkerStats& w) -> const StageStats& { return w.rewrite[shard]; });
}

OfflinePipeline::~OfflinePipeline() = default;

namespace {
// The limits both graphs share (engine/core/limits.h): shards, threads, batch size.
Status CheckGraphLimits(const char* shards_name, uint32_t shards, uint32_t threads, uint32_t batch_size) {
  for (const auto& [name, value, most] : {std::tuple{shards_name, shards, kMaxShards},
                                          std::tuple{"threads", threads, kMaxThreads},
                                          std::tuple{"batch size", batch_size, kMaxBatch}}) {
    if (value < 1 || value > most) {
      return InvalidArgument(std::string(name) + " must be 1.." + std::to_string(most) + ", got " + std::to_string(value));
    }
  }
  return Status::Ok();
}
}  // namespace

Status OfflinePipeline::Validate(const PipelineOptions& o, const BufferPool& pool) {
  if (Status s = CheckGraphLimits("shards", o.shards, o.threads, o.batch_size); !s.ok()) return s;
  const uint64_t need = SmallBuffersNeeded(o);
  if (pool.Capacity(SizeClass::kSmall) < need) {
    return InvalidArgument("pool too small: " + std::to_string(pool.Capacity(SizeClass::kSmall)) +
                           " small buffers for " + std::to_string(BurstsInFlight(o)) + " bursts of " +
                           std::to_string(BurstSize(o)) + " in flight; need " + std::to_string(need));
  }
  return Status::Ok();
}

uint64_t OfflinePipeline::SmallBuffersNeeded(const PipelineOptions& o) {
  return uint64_t{BurstsInFlight(o)} * BurstSize(o) + uint64_t{o.threads} * PoolCache::kDefaultSize;
}

Status OfflinePipeline::Run(PacketSource& source, PacketSink& sink) {
  const AllowThreads allow(options_.threads);
  tbb::task_arena arena(static_cast<int>(options_.threads));
  arena.execute([&] {
    RunContext ctx(*this, source, sink, options_.threads);
    flow::graph g;  // built inside the arena, so its tasks run on the arena's threads
    auto thread_local_state = [&]() -> RunContext::Local& { return ctx.local(tbb::this_task_arena::current_thread_index()); };

    // tsan::…: the edges oneTBB makes inside libtbb (the graph's start and end, each serial
    // node's runs, each put), stated for ThreadSanitizer; nothing outside the tsan preset.

    // source: reads a burst, serially, in input order; one burst per message. Parse is work's.
    flow::input_node<Batch*> source_node(g, [&](tbb::flow_control& fc) -> Batch* {
      tsan::GraphBody body;
      tsan::SerialBody serial(&source_node);
      RunContext::Local& local = thread_local_state();
      tsan::SerialBody local_owner(&local);  // a Local is its arena slot's, which threads hand on
      Batch* b = ctx.ReadBurst(local);
      if (b == nullptr) {
        fc.stop();
        return b;
      }
      tsan::Release(b);
      return b;
    });

    // tokens: at most bursts_in_flight bursts between source and sink.
    flow::limiter_node<Batch*> tokens(g, options_.bursts_in_flight);

    // work: the rest of each burst's journey (parse, dispatch, each shard's classify and
    // rewrite in that shard's order, emission in input order), bursts side by side; a token
    // back per burst retired. oneTBB runs a message's task on the thread that put it when it
    // can (the put returns the task to run next), so a burst stays on the thread that read it.
    using WorkNode = flow::multifunction_node<Batch*, std::tuple<flow::continue_msg>>;
    WorkNode work_node(g, flow::unlimited, [&](Batch* b, WorkNode::output_ports_type& out) noexcept {
      tsan::Acquire(b);
      tsan::GraphBody body;
      RunContext::Local& local = thread_local_state();
      tsan::SerialBody local_owner(&local);
      const uint32_t retired = ctx.Work(b, local);
      for (uint32_t n = retired; n > 0; --n) std::get<0>(out).try_put(flow::continue_msg());
    });

    flow::make_edge(source_node, tokens);
    flow::make_edge(tokens, work_node);
    flow::make_edge(flow::output_port<0>(work_node), tokens.decrementer());

    tsan::GraphStarted();
    source_node.activate();
    g.wait_for_all();
    tsan::GraphFinished();
    SLUICE_CHECK(ctx.batches_in_flight() == 0);
  });
  return Finish(source, sink);
}

Status OfflinePipeline::RunInline(PacketSource& source, PacketSink& sink) {
  RunContext ctx(*this, source, sink, 1);
  RunContext::Local& local = ctx.local(0);
  while (Batch* burst = ctx.ReadBurst(local)) ctx.Work(burst, local);
  SLUICE_CHECK(ctx.batches_in_flight() == 0);
  return Finish(source, sink);
}

// ---- InlinePipeline ------------------------------------------------------------------------

struct InlinePipeline::Shard {
  Shard(const InlineShard& s, BufferPool& pool, const InlineOptions& o)
      : stages(s), batches(o.batches_per_shard, o.batch_size), io_cache(pool), retire_cache(pool) {}
  InlineShard stages;
  BatchPool batches;       // this shard's tokens
  PoolCache io_cache;      // the I/O thread's
  PoolCache retire_cache;  // the shard node's
  std::function<void(Batch*)> submit;  // puts a received batch to the shard's node
  RunStats run;
  StageStats parse, classify, rewrite;
  std::thread io;
  int pin_error = 0;  // `io`'s pthread_setaffinity_np of itself, with options.cpus
  std::atomic<uint64_t> turns{0};  // IoLoop's turns with a batch to fill (its thread writes)
};

// The thread that owns the arena: it builds the graph, then helps run it until Stop().
struct InlinePipeline::Host {
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  flow::graph* graph = nullptr;
  std::vector<flow::receiver<Batch*>*> shard_nodes;
};

InlinePipeline::InlinePipeline(const InlineOptions& options, BufferPool& pool, std::span<const InlineShard> shards)
    : options_(options), pool_(pool) {
  SLUICE_CHECK(Validate(options, static_cast<uint32_t>(shards.size()), pool).ok());
  for (const InlineShard& s : shards) shards_.push_back(std::make_unique<Shard>(s, pool, options));
}

InlinePipeline::~InlinePipeline() { Stop(); }

Status InlinePipeline::Validate(const InlineOptions& o, uint32_t shards, const BufferPool& pool) {
  if (Status s = CheckGraphLimits("shards (queues)", shards, o.threads, o.batch_size); !s.ok()) return s;
  if (o.batches_per_shard < 1) return InvalidArgument("batches per shard must be at least 1");
  if (!o.cpus.empty()) {
    const std::vector<uint32_t> allowed = AllowedCpus();
    for (const uint32_t c : o.cpus) {
      if (std::find(allowed.begin(), allowed.end(), c) == allowed.end()) {
        return InvalidArgument("cpu " + std::to_string(c) + " is not one this process may run on (allowed: " +
                               CpuList(allowed) + ")");
      }
    }
  }
  // Every token may hold a full batch; each shard has two caches.
  const uint64_t need = uint64_t{shards} * (uint64_t{o.batches_per_shard} * o.batch_size + 2 * PoolCache::kDefaultSize);
  if (pool.Capacity(SizeClass::kSmall) < need) {
    return InvalidArgument("pool too small: " + std::to_string(pool.Capacity(SizeClass::kSmall)) +
                           " small buffers for " + std::to_string(shards) + " shards; need " + std::to_string(need));
  }
  return Status::Ok();
}

uint64_t InlinePipeline::LargeBuffersForGso(const InlineOptions& o, uint32_t shards) {
  const uint64_t batches = o.run_to_completion ? 2 : o.batches_per_shard;
  return uint64_t{shards} * (batches * o.batch_size + 2 * PoolCache::kLargeCacheMax);
}

void InlinePipeline::Start() {
  SLUICE_CHECK(host_ == nullptr);
  stop_.store(false);
  host_ = std::make_unique<Host>();
  Host& host = *host_;
  host.thread = std::thread([this, &host] {
    const AllowThreads allow(options_.threads);
    tbb::task_arena arena(static_cast<int>(options_.threads));
    arena.execute([&] {
      flow::graph g;
      // One node per shard: a shard's batches are processed and sent one at a time, in order.
      // Run to completion: the node is lightweight, so the I/O thread's put runs the body on
      // the I/O thread itself whenever the node is free (always, as that thread is its only
      // producer); otherwise a put is a hand-off to the arena's threads.
      auto body = [](Shard& shard) {
        return [&shard](Batch* b) noexcept {
          tsan::Acquire(b);  // for ThreadSanitizer only, as in OfflinePipeline::Run
          tsan::GraphBody graph_body;
          tsan::SerialBody serial(&shard);
          RunStage(shard.stages.parse, shard.parse, *b);
          RunStage(shard.stages.classify, shard.classify, *b);
          RunStage(shard.stages.rewrite, shard.rewrite, *b);
          // Counted after Send: it may turn an accept it cannot carry out into a drop.
          b->RecordVerdicts();
          shard.stages.endpoint->Send(*b);
          AccountVerdicts(*b, shard.run, NowNs());
          std::array<PacketBuffer*, kMaxBatch> bufs;
          shard.retire_cache.PutBulk(bufs.data(), b->TakeBuffers(bufs.data()));
          shard.batches.Put(b);
          return flow::continue_msg();
        };
      };
      using HandOffNode = flow::function_node<Batch*, flow::continue_msg>;
      using InPlaceNode = flow::function_node<Batch*, flow::continue_msg, flow::queueing_lightweight>;
      std::vector<std::unique_ptr<flow::receiver<Batch*>>> nodes;
      for (auto& shard_ptr : shards_) {
        if (options_.run_to_completion) {
          nodes.push_back(std::make_unique<InPlaceNode>(g, flow::serial, body(*shard_ptr)));
        } else {
          nodes.push_back(std::make_unique<HandOffNode>(g, flow::serial, body(*shard_ptr)));
        }
      }
      g.reserve_wait();  // wait_for_all returns only after Stop() has joined the I/O threads
      tsan::GraphStarted();
      {
        std::lock_guard lock(host.mu);
        host.graph = &g;
        for (auto& n : nodes) host.shard_nodes.push_back(n.get());
        host.ready = true;
      }
      host.cv.notify_all();
      g.wait_for_all();  // this thread runs stages too while it waits
      tsan::GraphFinished();
      tsan::Acquire(&g);  // Stop()'s release: the joined I/O threads
    });
  });
  {
    std::unique_lock lock(host.mu);
    host.cv.wait(lock, [&] { return host.ready; });
  }
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    Shard* s = shards_[i].get();
    s->submit = [node = host.shard_nodes[i]](Batch* b) {
      tsan::Release(b);
      node->try_put(b);
    };
    if (options_.cpus.empty()) {
      s->io = std::thread([this, s] { IoLoop(*s); });
      continue;
    }
    // The thread pins itself before it receives anything (its first batch, and the pool
    // cache it fills, belong on its CPU too); Start() waits, so it returns knowing how it went.
    std::promise<int> pinned;
    std::future<int> pin_result = pinned.get_future();
    s->io = std::thread([this, s, cpu = options_.cpus[i % options_.cpus.size()], pinned = std::move(pinned)]() mutable {
      pinned.set_value(PinThread(pthread_self(), cpu));
      IoLoop(*s);
    });
    s->pin_error = pin_result.get();
  }
}

int InlinePipeline::io_pin_error(uint32_t shard) const noexcept { return shards_[shard]->pin_error; }

uint64_t InlinePipeline::io_turns(uint32_t shard) const noexcept {
  return shards_[shard]->turns.load(std::memory_order_relaxed);
}

void InlinePipeline::IoLoop(Shard& shard) noexcept {
  // After Stop(), only what the endpoint still holds: it was received, so it needs a verdict.
  for (;;) {
    const bool stopping = stop_.load(std::memory_order_relaxed);
    if (stopping && !shard.stages.endpoint->Holding()) break;
    Batch* b = shard.batches.Get(options_.receive_wait);
    if (b == nullptr) continue;  // every token in flight: stop reading until one returns
    // A turn: a batch to receive into (so a pipeline that stopped returning batches stops
    // the turns too, in hand-off mode as in run to completion).
    shard.turns.store(shard.turns.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    b->set_limit(options_.batch_size);
    const uint32_t n = shard.stages.endpoint->Receive(shard.io_cache, *b, options_.batch_size, options_.receive_wait);
    if (n != 0 && options_.batch_timeout.count() > 0 && !stopping) {
      // Close on size or on the timer, whichever comes first, or as soon as the endpoint holds
      // messages back: they wait for buffers that only retiring batches (this one) return.
      const auto deadline = std::chrono::steady_clock::now() + options_.batch_timeout;
      while (b->size() < options_.batch_size && !shard.stages.endpoint->Holding()) {
        const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        shard.stages.endpoint->Receive(shard.io_cache, *b, options_.batch_size - b->size(), left);
      }
    }
    if (n == 0) {
      b->Clear();
      shard.batches.Put(b);
      shard.stages.endpoint->Idle();
      continue;
    }
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < b->size(); ++i) bytes += b->packet(i).len();
    shard.run.packets_in.Add(b->size());
    shard.run.bytes_in.Add(bytes);
    shard.submit(b);
  }
}

void InlinePipeline::Stop() {
  if (host_ == nullptr) return;
  stop_.store(true);
  for (auto& shard : shards_) {
    if (shard->io.joinable()) shard->io.join();
  }
  tsan::Release(host_->graph);   // the I/O threads, joined above, before the graph's end
  host_->graph->release_wait();  // in-flight batches finish; then the host's wait returns
  host_->thread.join();
  host_.reset();
  for (auto& shard : shards_) shard->stages.endpoint->Idle();  // nothing is held back at stop
}

const RunStats& InlinePipeline::run_stats(uint32_t s) const noexcept { return shards_[s]->run; }
const StageStats& InlinePipeline::parse_stats(uint32_t s) const noexcept { return shards_[s]->parse; }
const StageStats& InlinePipeline::classify_stats(uint32_t s) const noexcept { return shards_[s]->classify; }
const StageStats& InlinePipeline::rewrite_stats(uint32_t s) const noexcept { return shards_[s]->rewrite; }

Status OfflinePipeline::Finish(PacketSource& source, PacketSink& sink) {
  Status s = source.status();
  return Both(std::move(s), sink.Finish());
}

}  // namespace sluice
