// sluice replay IN -c CONFIG [-o OUT]: a pcap file through the configured rules on the flow
// graph, then a summary (and optionally JSON and Prometheus stats). The main job: the same
// rules that run inline, measured offline.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <utility>
#include <thread>

#include "engine/core/clock.h"
#include "engine/core/cpus.h"
#include "engine/core/limits.h"
#include "engine/graph/pipeline.h"
#include "engine/graph/stage_set.h"
#include "engine/io/null/null_sink.h"
#include "engine/io/pcap/pcap_sink.h"
#include "engine/io/pcap/pcap_source.h"
#include "engine/rules/config_loader.h"
#include "engine/stats/report.h"
#include "tools/sluice/command.h"
#include "tools/sluice/stats_file.h"

namespace sluice::cli {
namespace {

struct ReplayArgs {
  std::string input;
  std::string config;
  std::string output;
  std::string drops;
  std::string stats_json;
  std::string prometheus;
  double prometheus_interval_s = 10;
  uint32_t threads = 0;  // 0: from the config
  uint32_t shards = 0;
  uint32_t batch = 0;
  uint32_t loops = 1;
  uint64_t seed = 0;
  bool quiet = false;
};

void Fail(const Status& s) { std::fprintf(stderr, "sluice replay: %s\n", s.message().c_str()); }

// Whether two paths name one file: the same inode when both exist (pipes and terminals too,
// which std::filesystem::equivalent refuses), else the same path once normalised. Opening an
// output truncates it, so this is checked before anything is opened.
bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa{}, sb{};
  if (stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  std::error_code ec;
  return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec);
}

// The input, -o and --drops must be three different files: writing the input would destroy
// it (it is mapped while being read), and two writers on one file interleave into garbage.
Status CheckFiles(const ReplayArgs& a) {
  const std::pair<const char*, const std::string*> files[] = {
      {"input", &a.input}, {"-o", &a.output}, {"--drops", &a.drops}, {"--stats-json", &a.stats_json},
      {"--prometheus", &a.prometheus}};
  for (std::size_t i = 1; i < std::size(files); ++i) {
    const auto& [flag, path] = files[i];
    if (path->empty()) continue;
    for (std::size_t j = 0; j < i; ++j) {
      const auto& [other_flag, other] = files[j];
      if (other->empty() || !SameFile(*path, *other)) continue;
      if (j == 0) return InvalidArgument(std::string(flag) + " " + *path + " is the input file; nothing was written");
      return InvalidArgument(std::string(other_flag) + " and " + flag + " name the same file (" + *path +
                             "); nothing was written");
    }
  }
  return Status::Ok();
}

// The live line on a terminal: packets, rate, elapsed, ETA. Quiet when stderr is not a tty.
class Progress {
 public:
  Progress(const OfflinePipeline& p, const PcapSource& src, bool enabled) : p_(p), src_(src) {
    if (enabled) thread_ = std::thread([this] { Loop(); });
  }
  ~Progress() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) {
      thread_.join();
      std::fprintf(stderr, "\r\033[K");
    }
  }

 private:
  void Loop() {
    const uint64_t start = NowNs();
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(250), [&] { return done_; })) {
      const double secs = static_cast<double>(NowNs() - start) / 1e9;
      const uint64_t n = p_.run_stats().packets_in.Load();
      const double frac = src_.Progress();
      char eta[32] = "?";
      if (frac > 0.001) std::snprintf(eta, sizeof eta, "%.1f s", secs * (1 - frac) / frac);
      std::fprintf(stderr, "\r\033[K  %.2f M packets  %.2f Mpps  %.1f s elapsed  ETA %s", static_cast<double>(n) / 1e6,
                   static_cast<double>(n) / secs / 1e6, secs, eta);
    }
  }

  const OfflinePipeline& p_;
  const PcapSource& src_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// Writes the Prometheus file every interval while the run lasts.
class PrometheusWriter {
 public:
  PrometheusWriter(std::string path, double interval_s, std::function<StatsReport()> build)
      : path_(std::move(path)), interval_(interval_s), build_(std::move(build)) {
    if (!path_.empty()) thread_ = std::thread([this] { Loop(); });
  }
  ~PrometheusWriter() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::duration<double>(interval_), [&] { return done_; })) {
      const Status s = WriteFileAtomically(path_, ToPrometheus(build_()));
      if (!s.ok()) std::fprintf(stderr, "sluice replay: %s\n", s.message().c_str());
    }
  }

  std::string path_;
  double interval_;
  std::function<StatsReport()> build_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

int Replay(const ReplayArgs& given) {
  ConfigLoad load = given.config.empty() ? LoadConfigText("", "<built-in defaults>") : LoadConfigFile(given.config);
  if (!load.ok()) {
    for (const ConfigError& e : load.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    return 1;
  }
  Config& config = *load.config;
  // [io.pcap] input and output stand in for the command line's when it names none.
  ReplayArgs a = given;
  if (a.input.empty()) a.input = config.io.pcap.input;
  if (a.output.empty()) a.output = config.io.pcap.output;
  if (a.input.empty()) {
    return Fail(InvalidArgument("no input: name a pcap or pcapng file, or set [io.pcap] input in the config")), 1;
  }
  if (Status s = CheckFiles(a); !s.ok()) return Fail(s), 1;
  PipelineOptions opts;
  opts.shards = a.shards != 0 ? a.shards : config.pipeline.shards;
  if (opts.shards != config.pipeline.shards) {
    // The file was checked for its own pipeline.shards; rules that depend on the count (a
    // translation's port range, a translated address) are checked again for this one.
    const std::vector<ConfigError> errors = CheckRulesForShards(config, opts.shards, "--shards");
    for (const ConfigError& e : errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    if (!errors.empty()) return 1;
  }
  // By default one thread per CPU, but no more than shards: a shard's stages take its bursts
  // one at a time, so a thread beyond the shard count can only parse and emit one burst while
  // another runs the stages, and it moves bursts, flow tables and the output between cores.
  // Whether that pays depends on the host (measured with 1 shard, 1M 64 B packets, on one
  // 2-vCPU VM: 2 threads took 30 % less time than 1 while a cache line went from one vCPU to
  // the other and back in 115 ns, and 8 % more while that took 450 ns).
  opts.threads = a.threads != 0 ? a.threads
                 : config.pipeline.threads != 0 ? config.pipeline.threads
                                                : std::min(DefaultThreads(), opts.shards);
  opts.batch_size = a.batch != 0 ? a.batch : config.pipeline.batch_size;

  auto source = PcapSource::Open(a.input, a.loops);
  if (!source.ok()) return Fail(source.status()), 1;

  // The small pool holds exactly what the bursts in flight can hold: the pipeline's token limit
  // means a replay never uses more. The config's small_buffers sizes the daemon's pool; taking
  // it here (37 MiB by default) cost ~30 ms of page faults before the first packet.
  // Large buffers carry records above 2 KiB (jumbo frames, GRO/TSO captures); a file may have
  // any number, so a replay keeps at least the default count whatever the daemon's config says.
  PoolConfig pool_config = config.pipeline.pool;
  pool_config.small_buffers = static_cast<uint32_t>(OfflinePipeline::SmallBuffersNeeded(opts));
  pool_config.large_buffers = std::max(pool_config.large_buffers, PoolConfig{}.large_buffers);
  auto pool = BufferPool::Create(pool_config);
  if (!pool.ok()) return Fail(pool.status()), 1;
  if (Status s = OfflinePipeline::Validate(opts, **pool); !s.ok()) return Fail(s), 1;

  StageSet::Options stage_options;
  stage_options.shards = opts.shards;
  stage_options.workers = opts.threads;
  stage_options.flow_hash_seed = a.seed;
  auto stages = StageSet::Build(config, stage_options);
  if (!stages.ok()) return Fail(stages.status()), 1;
  std::vector<ShardStages> shard_stages = (*stages)->OfflineShards();
  OfflinePipeline pipeline(opts, **pool, (*stages)->parse(0), shard_stages);

  std::unique_ptr<PacketSink> sink;
  if (!a.output.empty() || !a.drops.empty()) {
    std::unique_ptr<PcapWriter> out, drops;
    if (!a.output.empty()) {
      auto w = PcapWriter::Open(a.output, (*source)->format());
      if (!w.ok()) return Fail(w.status()), 1;
      out = std::move(w).value();
    }
    if (!a.drops.empty()) {
      auto w = PcapWriter::Open(a.drops, (*source)->format());
      if (!w.ok()) return Fail(w.status()), 1;
      drops = std::move(w).value();
    }
    sink = std::make_unique<PcapSink>(std::move(out), std::move(drops));
  } else {
    sink = std::make_unique<NullSink>();
  }

  const uint64_t start = NowNs();
  auto build_report = [&] {
    StatsReport r;
    r.conditions = {{"input", a.input},
                    {"config", a.config.empty() ? "<built-in defaults>" : a.config},
                    {"output", a.output.empty() ? "<none>" : a.output},
                    {"threads", std::to_string(opts.threads)},
                    {"shards", std::to_string(opts.shards)},
                    {"batch_size", std::to_string(opts.batch_size)},
                    {"burst_size", std::to_string(pipeline.burst_size())},
                    {"bursts_in_flight", std::to_string(pipeline.options().bursts_in_flight)},
                    {"loops", std::to_string(a.loops)},
                    {"rules", std::to_string(config.rules.size())},
                    {"sluice", SLUICE_VERSION}};
    r.elapsed_s = static_cast<double>(NowNs() - start) / 1e9;
    AddRun(pipeline.run_stats(), r);
    AddStage("parse", 0, pipeline.parse_stats(), r);
    for (uint32_t s = 0; s < opts.shards; ++s) {
      AddStage("classify", s, pipeline.classify_stats(s), r);
      AddStage("rewrite", s, pipeline.rewrite_stats(s), r);
    }
    (*stages)->Report(r);
    const PoolStats ps = (*pool)->Stats();
    r.counters.push_back({"pool_exhausted", "Buffer requests the pool could not serve in full.", ps.exhausted, {}});
    r.counters.push_back({"pool_orphaned", "Buffers released without a verdict.", ps.orphaned, {}});
    return r;
  };

  Status run_status;
  {
    Progress progress(pipeline, **source, !a.quiet && isatty(STDERR_FILENO));
    PrometheusWriter prom(a.prometheus, a.prometheus_interval_s, build_report);
    run_status = pipeline.Run(**source, *sink);
  }
  const StatsReport report = build_report();
  // The summary goes to stdout, unless the packets do (-o /dev/stdout into a pipe).
  FILE* summary = !a.output.empty() && SameFile(a.output, "/dev/stdout") ? stderr : stdout;
  std::fprintf(summary, "sluice replay: %s → %s   [%u thread%s, %u shard%s, batch %u]\n", a.input.c_str(),
               a.output.empty() ? "(no output file)" : a.output.c_str(), opts.threads, opts.threads == 1 ? "" : "s",
               opts.shards, opts.shards == 1 ? "" : "s", opts.batch_size);
  std::fputs(ToText(report).c_str(), summary);
  if (const uint64_t wrapped = (*source)->timestamps_beyond_32bit(); wrapped != 0 && !a.output.empty()) {
    std::fprintf(stderr,
                 "sluice replay: note: %llu record(s) of %s have timestamps outside pcap's 32-bit seconds (pcapng "
                 "carries 64); %s holds their seconds modulo 2^32, as libpcap's pcap_dump writes them\n",
                 static_cast<unsigned long long>(wrapped), a.input.c_str(), a.output.c_str());
  }
  if (!a.stats_json.empty()) {
    if (Status s = WriteFileAtomically(a.stats_json, ToJson(report)); !s.ok()) return Fail(s), 1;
  }
  if (!a.prometheus.empty()) {
    if (Status s = WriteFileAtomically(a.prometheus, ToPrometheus(report)); !s.ok()) return Fail(s), 1;
  }
  if (!run_status.ok()) return Fail(run_status), 1;
  return report.Balanced() ? 0 : 1;
}

}  // namespace

void RegisterReplay(CLI::App& app, ExitCode& exit_code) {
  auto a = std::make_shared<ReplayArgs>();
  auto* cmd = app.add_subcommand("replay", "Run a pcap file through the rules on the flow graph and report");
  cmd->add_option("input", a->input, "Input pcap or pcapng file (default: the config's [io.pcap] input)")
      ->check(CLI::ExistingFile);
  cmd->add_option("-c,--config", a->config, "Config file (TOML); default: accept everything");
  cmd->add_option("-o,--output", a->output,
                  "Write accepted packets (rewritten or not) to this pcap file (default: the config's [io.pcap] output)");
  cmd->add_option("--drops", a->drops, "Write dropped packets to this pcap file");
  cmd->add_option("-t,--threads", a->threads,
                  "Threads (default: the config's pipeline.threads, else one per CPU up to one per shard)")
      ->check(CLI::Range(1u, kMaxThreads));
  cmd->add_option("-s,--shards", a->shards, "Shards (default: the config's pipeline.shards)")->check(CLI::Range(1u, 64u));
  cmd->add_option("-b,--batch", a->batch, "Packets per batch (default: the config's pipeline.batch_size)")
      ->check(CLI::Range(1u, kMaxBatch));
  cmd->add_option("-l,--loop", a->loops, "Read the input this many times (each pass's timestamps follow the one before)")->check(CLI::Range(1u, 1000000u));
  cmd->add_option("--stats-json", a->stats_json, "Write the summary as JSON to this file");
  cmd->add_option("--prometheus", a->prometheus, "Write Prometheus text exposition to this file (atomically)");
  cmd->add_option("--prometheus-interval", a->prometheus_interval_s, "Seconds between Prometheus writes")
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--seed", a->seed, "Flow hash seed (default: random)");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress line");
  cmd->callback([a, &exit_code] { exit_code.value = Replay(*a); });
}

}  // namespace sluice::cli
