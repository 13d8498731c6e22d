// sluice run -c CONFIG: the daemon. Opens one kernel queue per shard (NFQUEUE queues or divert
// ports), optionally drops root keeping CAP_NET_ADMIN, and runs the inline graph until told to
// stop.
//
// Signals: SIGHUP reloads the rules (an invalid file, or one that changes the loop guard, is
// reported and the running rules stay; other start-only sections are named, not applied);
// SIGTERM and SIGINT drain and exit 0. NFQUEUE drains in two steps: the kernel is told to queue
// nothing more (StopAdmitting: with fail-open new packets then pass unqueued, as --queue-bypass
// passes them once the queue is unbound; without, they are dropped), and the pipeline keeps
// running until the kernel holds no packet of ours (queue_total 0 on every queue, at most
// kDrainLimit); then receiving stops, every batch in flight finishes and has its verdicts
// sent, and the sockets close. So closing drops nothing the kernel had queued to sluice,
// unless the drain gives up at kDrainLimit (then what is left is logged as dropped).
// systemd: with NOTIFY_SOCKET set (Type=notify), READY=1 once the queues are bound,
// RELOADING=1/READY=1 around a SIGHUP, STOPPING=1 at the drain, and with WatchdogSec=,
// WATCHDOG=1 while every I/O thread turns (service_notify.h).
// Stats: --stats-json and --prometheus files rewritten atomically every --stats-interval
// seconds and at exit, with the kernel's per-queue counters.
// Interfaces (NFQUEUE): names in the rules and in io.nfqueue.outside_interfaces are indexes to
// the kernel. The daemon watches rtnetlink's link notifications (LinkWatch) and looks the
// names up again when links come, go or are renamed; if an index changed, the running rules
// are compiled again against the new indexes and the endpoints get the new outside
// interfaces, as natd -dynamic follows its interface. No SIGHUP needed, unless
// io.nfqueue.watch_links is false or the watch cannot be opened.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <linux/capability.h>
#include <memory>
#include <optional>
#include <thread>
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/assert.h"
#include "engine/core/clock.h"
#include "engine/core/cpus.h"
#include "engine/core/limits.h"
#include "engine/graph/pipeline.h"
#include "engine/graph/stage_set.h"
#include "engine/io/divert/divert_endpoint.h"
#include "engine/io/nfqueue/link_watch.h"
#include "engine/io/nfqueue/nfqueue_endpoint.h"
#include "engine/io/nfqueue/queue_stats.h"
#include "engine/io/privilege/privilege.h"
#include "engine/rules/config_loader.h"
#include "engine/stats/report.h"
#include "tools/sluice/command.h"
#include "tools/sluice/service_notify.h"
#include "tools/sluice/stats_file.h"

namespace sluice::cli {
namespace {

struct RunArgs {
  std::string config;
  std::string user;
  std::string stats_json;
  std::string prometheus;
  double stats_interval_s = 10;
  uint32_t threads = 0;
  uint64_t seed = 0;
};

// printf-checked at every call site.
[[gnu::format(printf, 1, 2)]] void Log(const char* fmt, ...) {
  char when[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", std::localtime(&now));
  std::fprintf(stderr, "%s sluice run: ", when);
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  std::fputc('\n', stderr);
}

// The kernel queues of one run, whichever backend opened them.
struct Queues {
  std::vector<std::unique_ptr<NfqueueEndpoint>> nfqueue;
  std::vector<std::unique_ptr<DivertEndpoint>> divert;
  std::vector<InlineEndpoint*> endpoints;
  std::vector<std::string> interface_names;  // divert: ids are positions + 1, the same in every endpoint
  // NFQUEUE: the kernel's per-queue figures, opened with the queues (before root is dropped).
  KernelQueueStatsFile kernel_stats;
};

// Divert reports interfaces by name (7 characters): the rules' names, interned in order, are
// the ids every divert endpoint and the rules agree on.
std::vector<std::string> DivertInterfaceNames(const Config& c) {
  std::vector<std::string> names;
  for (const RuleConfig& r : c.rules) {
    for (const std::string* name : {&r.match.in_interface, &r.match.out_interface}) {
      const std::string cut = name->substr(0, 7);
      if (!cut.empty() && std::find(names.begin(), names.end(), cut) == names.end()) names.push_back(cut);
    }
  }
  return names;
}

// `id`, an interface's index just looked up; if 0, a log line says what its absence means
// (`consequence`). NFQUEUE names interfaces by index, looked up at start, on SIGHUP, and again
// whenever links change (see Interfaces at the top).
uint32_t LogIfMissing(uint32_t id, std::string_view name, const char* consequence) {
  if (id == 0) {
    Log("interface %.*s does not exist (yet): %s", static_cast<int>(name.size()), name.data(), consequence);
  }
  return id;
}

// Binds the queues (or divert sockets). Called last before the pipeline starts: from here on
// the kernel queues packets to sluice, so nothing slow may come between this and Start().
// Run() has refused the pcap backend before anything was built.
// `outside`: the outside interfaces' indexes, one per name (0: missing).
Status OpenQueues(const Config& c, Queues& q, const std::vector<uint32_t>& outside) {
  if (c.io.backend == Backend::kNfqueue) {
    const NfqueueIoConfig& n = c.io.nfqueue;
    static_assert(NfqueueIoConfig::kMaxOutsideInterfaces <= NfqueueEndpoint::kMaxOutsideInterfaces);
    for (uint32_t i = 0; i < n.queue_count; ++i) {
      NfqueueOptions o;
      o.queue = static_cast<uint16_t>(n.queue_first + i);
      o.queue_maxlen = n.queue_maxlen;
      o.rcvbuf_bytes = n.rcvbuf_bytes;
      o.fail_open = n.fail_open;
      o.gso = n.gso;
      o.verdict_mark = n.verdict_mark;
      o.verdict_mask = n.verdict_mask;
      o.outside_ifindexes = outside;
      auto ep = NfqueueEndpoint::Open(o);
      if (!ep.ok()) return ep.status();
      q.endpoints.push_back(ep->get());
      q.nfqueue.push_back(std::move(ep).value());
    }
    auto kernel_stats = KernelQueueStatsFile::Open();
    if (!kernel_stats.ok()) return kernel_stats.status();
    q.kernel_stats = std::move(kernel_stats).value();
    return Status::Ok();
  }
  SLUICE_CHECK(c.io.backend == Backend::kDivert);
  for (uint16_t port : c.io.divert.ports) {
    DivertOptions o;
    o.port = port;
    o.rcvbuf_bytes = c.io.divert.rcvbuf_bytes;
    auto ep = DivertEndpoint::Open(o);
    if (!ep.ok()) return ep.status();
    for (const std::string& name : q.interface_names) (*ep)->InternInterface(name);
    q.endpoints.push_back(ep->get());
    q.divert.push_back(std::move(ep).value());
  }
  return Status::Ok();
}

StatsReport BuildReport(const RunArgs& a, const Config& c, const InlinePipeline& p, const StageSet& stages,
                        const Queues& q, const BufferPool& pool, uint64_t start_ns) {
  StatsReport r;
  r.conditions = {{"config", a.config},
                  {"backend", std::string(Name(c.io.backend))},
                  {"shards", std::to_string(p.shards())},
                  {"batch_size", std::to_string(c.pipeline.batch_size)},
                  {"sluice", SLUICE_VERSION}};
  if (c.io.backend == Backend::kNfqueue) {
    r.conditions.emplace_back("queue_maxlen", std::to_string(c.io.nfqueue.queue_maxlen));
    r.conditions.emplace_back("rcvbuf_bytes", std::to_string(c.io.nfqueue.rcvbuf_bytes));
    r.conditions.emplace_back("fail_open", c.io.nfqueue.fail_open ? "true" : "false");
    r.conditions.emplace_back("gso", c.io.nfqueue.gso ? "true" : "false");
  }
  r.elapsed_s = static_cast<double>(NowNs() - start_ns) / 1e9;
  for (uint32_t s = 0; s < p.shards(); ++s) {
    AddRun(p.run_stats(s), r);
    AddStage("parse", s, p.parse_stats(s), r);
    AddStage("classify", s, p.classify_stats(s), r);
    AddStage("rewrite", s, p.rewrite_stats(s), r);
  }
  stages.Report(r);
  for (const auto& ep : q.nfqueue) AppendNfqueueCounters(*ep, r);
  if (q.kernel_stats.is_open()) {
    if (auto kernel = q.kernel_stats.Read(); kernel.ok()) AppendKernelQueueStats(*kernel, r);
  }
  for (const auto& ep : q.divert) {
    for (std::size_t k = 0; k < kDivertCounterTable.size(); ++k) {
      r.counters.push_back({"divert_" + std::string(kDivertCounterTable[k].name),
                            std::string(kDivertCounterTable[k].description), ep->counter(static_cast<DivertCounter>(k)),
                            {{"port", std::to_string(ep->options().port)}}});
    }
  }
  const PoolStats ps = pool.Stats();
  r.counters.push_back({"pool_exhausted", "Buffer requests the pool could not serve in full.", ps.exhausted, {}});
  r.counters.push_back({"pool_orphaned", "Buffers released without a verdict.", ps.orphaned, {}});
  for (const auto& [name, c] : {std::pair{"small", SizeClass::kSmall}, std::pair{"large", SizeClass::kLarge}}) {
    r.counters.push_back({"pool_buffers", "Buffers in the pool, by size class (the config's, or what sluice run raised it to).",
                          pool.Capacity(c), {{"class", name}}, /*gauge=*/true});
  }
  return r;
}

// How long a stop waits for the kernel's queues to empty before closing them anyway (what is
// still queued then is dropped by the kernel).
constexpr auto kDrainLimit = std::chrono::seconds(2);

// The first step of a graceful NFQUEUE stop (see the top of this file), while the pipeline runs.
void DrainKernelQueues(const Queues& q, bool fail_open) {
  if (q.nfqueue.empty()) return;
  for (const auto& ep : q.nfqueue) {
    if (Status s = ep->StopAdmitting(); !s.ok()) Log("%s", s.message().c_str());
  }
  const auto start = std::chrono::steady_clock::now();
  uint64_t held = 0;
  for (;;) {
    auto kernel = q.kernel_stats.Read();
    if (!kernel.ok()) {
      Log("cannot see the kernel's queues, closing them without waiting: %s", kernel.status().message().c_str());
      return;
    }
    held = 0;
    for (const auto& ep : q.nfqueue) {
      if (auto k = FindQueue(*kernel, ep->queue()); k && k->portid == ep->portid()) held += k->queue_total;
    }
    if (held == 0 || std::chrono::steady_clock::now() - start >= kDrainLimit) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  if (held == 0) {
    Log("drained in %lld ms: every packet queued to sluice has its verdict; new packets %s until the queues close",
        static_cast<long long>(ms.count()), fail_open ? "pass unqueued (fail-open)" : "are dropped (fail-closed)");
  } else {
    Log("drain gave up after %lld ms: the kernel drops the %llu packet(s) still queued as the queues close",
        static_cast<long long>(ms.count()), static_cast<unsigned long long>(held));
  }
}

// SIGHUP: the rules are replaced whole, or not at all. The sections read at start stay as they
// were, and a reload that changes the loop guard is refused (the endpoints keep setting the
// running one, and rule marks are checked against it). On success *applied is the new file.
// `interfaces` (NFQUEUE; else null) learns which indexes the running rules hold.
void Reload(const std::string& path, const Config& running, RuleSetHandle& rules, ConfigLoad* applied,
            InterfaceFollower* interfaces) {
  const ConfigLoad next = LoadConfigFile(path);
  Status s = next.ToStatus();
  ReloadCheck check;
  if (s.ok()) {
    check = CompareForReload(running, *next.config);
    if (check.guard_changed) {
      s = InvalidArgument(path + ": io.nfqueue.verdict_mark/verdict_mask differ from the running loop guard; "
                          "changing it needs a restart (and the matching iptables rules)");
    }
  }
  if (s.ok()) {
    s = rules.Reload(next);
    if (interfaces != nullptr) interfaces->EndRulesCompile(s.ok());
  }
  if (!s.ok()) {
    Log("reload of %s refused, the running rules stay:\n%s", path.c_str(), s.message().c_str());
    return;
  }
  Log("reloaded %s: rule set generation %llu", path.c_str(), static_cast<unsigned long long>(rules.generation()));
  *applied = next;
  if (!check.start_only.empty()) {
    std::string sections;
    for (const std::string& name : check.start_only) sections += (sections.empty() ? "[" : ", [") + name + "]";
    Log("note: %s changed in %s; those sections are read at start only and apply at the next start",
        sections.c_str(), path.c_str());
  }
}

void LogChange(const std::string& name, uint32_t before, uint32_t after) {
  if (after == 0) {
    Log("interface %s (index %u) is gone: what names it matches nothing until it returns", name.c_str(), before);
  } else if (before == 0) {
    Log("interface %s appeared as index %u", name.c_str(), after);
  } else {
    Log("interface %s is now index %u (was %u)", name.c_str(), after, before);
  }
}

// Links changed (or a recompile failed before): the endpoints get the outside interfaces'
// indexes now if they moved, and the running rules (`applied`) are compiled again if a name
// they use has another index now; their per-rule counters carry on. Returns whether to try
// again (the recompile failed).
bool FollowInterfaces(InterfaceFollower& interfaces, std::vector<uint32_t>& outside, const ConfigLoad& applied,
                      RuleSetHandle& rules, Queues& queues) {
  std::vector<std::string> logged;
  const std::vector<uint32_t> now = interfaces.Outside();
  if (now != outside) {
    for (auto& ep : queues.nfqueue) ep->SetOutsideInterfaces(now);  // before the log says so
    for (std::size_t i = 0; i < now.size(); ++i) {
      if (now[i] == outside[i]) continue;
      LogChange(interfaces.outside_names()[i], outside[i], now[i]);
      logged.push_back(interfaces.outside_names()[i]);
    }
    outside = now;
  }
  const std::vector<InterfaceFollower::Change> stale = interfaces.RulesStale();
  if (stale.empty()) return false;
  for (const InterfaceFollower::Change& c : stale) {
    if (std::find(logged.begin(), logged.end(), c.name) == logged.end()) LogChange(c.name, c.before, c.after);
  }
  const Status s = rules.Recompile(applied);
  interfaces.EndRulesCompile(s.ok());
  if (!s.ok()) {
    Log("recompiling the rules for the new interface indexes failed (tried again shortly), the running rules "
        "stay:\n%s",
        s.message().c_str());
    return true;
  }
  Log("rules recompiled for the new interface indexes: rule set generation %llu",
      static_cast<unsigned long long>(rules.generation()));
  return false;
}

void WriteStats(const RunArgs& a, const StatsReport& r) {
  if (!a.stats_json.empty()) {
    if (Status s = WriteFileAtomically(a.stats_json, ToJson(r)); !s.ok()) Log("%s", s.message().c_str());
  }
  if (!a.prometheus.empty()) {
    if (Status s = WriteFileAtomically(a.prometheus, ToPrometheus(r)); !s.ok()) Log("%s", s.message().c_str());
  }
}

int Run(const RunArgs& a) {
  // Signals are taken synchronously by this thread; every thread started later inherits the
  // mask. Blocked first: a SIGHUP while the config is read must wait, not end the process.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A stats reader (a FIFO, /dev/stdout into a pipe) or a log reader that goes away is an
  // EPIPE on that write, reported; by default SIGPIPE would end the daemon with no drain,
  // and the kernel would drop everything still queued.
  signal(SIGPIPE, SIG_IGN);

  ConfigLoad load = LoadConfigFile(a.config);
  if (!load.ok()) {
    for (const ConfigError& e : load.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    return 1;
  }
  const Config& config = *load.config;
  // Opened now, while the daemon may still open anything (it may run as --user later).
  auto notifier = ServiceNotifier::Open(std::getenv("NOTIFY_SOCKET"), std::getenv("WATCHDOG_USEC"),
                                        std::getenv("WATCHDOG_PID"), getpid());
  if (!notifier.ok()) {
    Log("%s", notifier.status().message().c_str());
    return 1;
  }
  if (const auto errors = CheckCpusForThisHost(config, AllowedCpus()); !errors.empty()) {
    for (const ConfigError& e : errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    return 1;
  }

  if (config.io.backend == Backend::kPcap) {
    Log("io.backend = \"pcap\" runs offline: use `sluice replay FILE -c CONFIG`");
    return 1;
  }
  // Everything slow (the pool's memory, compiling the rules, the flow tables) is done before
  // the queues are bound: a bound queue that nobody reads fills, then drops or (fail-open)
  // passes packets untouched.
  Queues queues;
  if (config.io.backend == Backend::kDivert) queues.interface_names = DivertInterfaceNames(config);
  const uint32_t shards = config.pipeline.shards;  // the loader checked it equals the queues or ports

  InlineOptions opts;
  opts.threads = a.threads != 0 ? a.threads
                 : config.pipeline.threads != 0 ? config.pipeline.threads
                                                : DefaultThreads();
  opts.batch_size = config.pipeline.batch_size;
  opts.batches_per_shard = config.pipeline.batches_per_shard;
  opts.batch_timeout = std::chrono::microseconds(config.pipeline.batch_timeout_us);
  opts.run_to_completion = config.pipeline.run_to_completion;
  opts.cpus = config.pipeline.cpus;
  PoolConfig pool_config = config.pipeline.pool;
  const uint64_t need = uint64_t{shards} * (uint64_t{opts.batches_per_shard} * opts.batch_size + 2 * PoolCache::kDefaultSize);
  pool_config.small_buffers = static_cast<uint32_t>(std::max<uint64_t>(pool_config.small_buffers, need));
  // With GSO on, any message may be a 64 KiB super-packet that holds a large buffer until its
  // verdict: enough for every batch in flight and every cache (LargeBuffersForGso), so bulk
  // TCP does not run the class dry. A message that finds none waits for one, and the queue is
  // not read meanwhile (nfqueue_large_buffer_waits); past 50 ms it is dropped by id
  // (nfqueue_no_large_buffer). Each is about 66 KiB of memory, populated at start: 12 MiB
  // per shard by default (run to completion, batch 64).
  if (config.io.backend == Backend::kNfqueue && config.io.nfqueue.gso) {
    const uint64_t large = InlinePipeline::LargeBuffersForGso(opts, shards);
    pool_config.large_buffers = std::max<uint32_t>(pool_config.large_buffers, static_cast<uint32_t>(large));
  }
  auto pool = BufferPool::Create(pool_config);
  if (!pool.ok()) {
    Log("%s", pool.status().message().c_str());
    return 1;
  }
  if (Status s = InlinePipeline::Validate(opts, shards, **pool); !s.ok()) {  // before any queue is bound
    Log("%s", s.message().c_str());
    return 1;
  }

  // Opened before any name is looked up (the rules' below, then the outside interfaces'), so
  // that no change after a lookup goes unseen.
  std::unique_ptr<LinkWatch> link_watch;
  if (config.io.backend == Backend::kNfqueue && !config.io.nfqueue.watch_links) {
    Log("io.nfqueue.watch_links is false: interfaces created again under new indexes need a SIGHUP");
  } else if (config.io.backend == Backend::kNfqueue) {
    auto w = LinkWatch::Open();
    if (w.ok()) {
      link_watch = std::move(w).value();
    } else {
      Log("%s: interfaces created again under new indexes need a SIGHUP", w.status().message().c_str());
    }
  }
  StageSet::Options stage_options;
  stage_options.shards = shards;
  stage_options.flow_hash_seed = a.seed;
  stage_options.nat_peers = true;  // the kernel steers ICMP errors by their own header
  InterfaceFollower interfaces(config.io.nfqueue.outside_interfaces);  // NFQUEUE only
  if (config.io.backend == Backend::kNfqueue) {
    stage_options.rules.interface_id = [&interfaces](std::string_view name) {
      return LogIfMissing(interfaces.ForRules(name), name, "rules naming it match nothing");
    };
  } else {
    // Divert names interfaces as the start-up config did (DivertInterfaceNames): a name a
    // reloaded file adds is not among them and matches nothing until a restart; said so.
    stage_options.rules.interface_id = [&queues](std::string_view name) -> uint32_t {
      const auto it = std::find(queues.interface_names.begin(), queues.interface_names.end(), name.substr(0, 7));
      if (it != queues.interface_names.end()) return static_cast<uint32_t>(it - queues.interface_names.begin() + 1);
      Log("interface %.*s was not named at start: rules naming it match nothing until a restart",
          static_cast<int>(name.size()), name.data());
      return 0;
    };
  }
  auto stages = StageSet::Build(config, stage_options);
  if (!stages.ok()) {
    Log("%s", stages.status().message().c_str());
    return 1;
  }

  interfaces.EndRulesCompile(true);
  std::optional<UserIds> user;  // --user: looked up now, while no queue is bound yet
  if (!a.user.empty()) {
    Result<UserIds> ids = LookUpUser(a.user);
    if (!ids.ok()) {
      Log("%s", ids.status().message().c_str());
      return 1;
    }
    user = std::move(ids).value();
  }
  std::vector<uint32_t> outside = interfaces.Outside();  // what the endpoints hold
  for (std::size_t i = 0; i < outside.size(); ++i) {
    LogIfMissing(outside[i], interfaces.outside_names()[i],
                 "io.nfqueue.outside_interfaces: forwarded packets through it get no direction");
  }
  if (Status s = OpenQueues(config, queues, outside); !s.ok()) {
    Log("%s", s.message().c_str());
    return 1;
  }
  SLUICE_CHECK(queues.endpoints.size() == shards);

  // Sockets are open: nothing further needs root. Before any thread starts (capabilities
  // are per thread), keep only CAP_NET_ADMIN, which every NFQUEUE verdict is checked against.
  if (user) {
    const int keep[] = {CAP_NET_ADMIN};
    if (Status s = DropPrivileges(*user, keep); !s.ok()) {
      Log("%s", s.message().c_str());
      return 1;
    }
    Log("running as %s with CAP_NET_ADMIN only, no new privileges", a.user.c_str());
  }

  std::vector<InlineShard> shard_stages = (*stages)->InlineShards(queues.endpoints);
  InlinePipeline pipeline(opts, **pool, shard_stages);
  const uint64_t start = NowNs();
  pipeline.Start();
  Log("%s: %u shard(s), stages on %s, batch %u, %zu rule(s); pid %d", std::string(Name(config.io.backend)).c_str(),
      shards, opts.run_to_completion ? "the I/O threads" : (std::to_string(opts.threads) + " worker thread(s)").c_str(),
      opts.batch_size, config.rules.size(), static_cast<int>(getpid()));
  if (const std::string note = DirectionNote(config); !note.empty()) Log("note: %s", note.c_str());
  for (uint32_t s = 0; s < shards && !opts.cpus.empty(); ++s) {
    const uint32_t cpu = opts.cpus[s % opts.cpus.size()];
    if (const int e = pipeline.io_pin_error(s); e != 0) {
      Log("warning: shard %u's I/O thread could not be pinned to CPU %u: %s", s, cpu, std::strerror(e));
    } else {
      Log("shard %u's I/O thread runs on CPU %u", s, cpu);
    }
  }

  ConfigLoad applied = load;  // the file the running rules came from (SIGHUP may replace it)
  bool retry_interfaces = false;
  auto report = [&] { return BuildReport(a, config, pipeline, **stages, queues, **pool, start); };
  const auto interval = std::chrono::duration<double>(a.stats_interval_s);
  auto next_stats = std::chrono::steady_clock::now() + interval;
  const ServiceNotifier& service = *notifier;
  auto notify = [&](const std::string& state) {
    if (Status s = service.Send(state); !s.ok()) Log("%s", s.message().c_str());
  };
  const std::string status = "STATUS=" + std::string(Name(config.io.backend)) + ": " + std::to_string(shards) +
                             " shard(s), " + std::to_string(config.rules.size()) + " rule(s)";
  notify("READY=1\n" + status);  // the queues are bound and the pipeline runs
  // With WatchdogSec=, pet the watchdog every half interval while every I/O thread turns.
  std::optional<WatchdogPacer> pacer;
  if (const auto w = service.watchdog()) {
    pacer.emplace(std::chrono::duration_cast<WatchdogPacer::Clock::duration>(*w / 2));
    if (*w < std::chrono::seconds(4)) {
      Log("warning: WatchdogSec below 4 s: one turn of an I/O thread may take about a second under "
          "back-pressure, so a healthy daemon may be restarted");
    }
  }
  bool stall_logged = false;
  auto pet_watchdog = [&] {
    if (!pacer) return;
    std::vector<uint64_t> turns(shards);
    for (uint32_t s = 0; s < shards; ++s) turns[s] = pipeline.io_turns(s);
    if (pacer->ShouldPet(std::chrono::steady_clock::now(), turns)) {
      notify("WATCHDOG=1");
      stall_logged = false;
    } else if (!pacer->stalled().empty() && !stall_logged) {
      std::string which;
      for (const uint32_t s : pacer->stalled()) which += (which.empty() ? "" : ", ") + std::to_string(s);
      Log("shard(s) %s: the I/O thread has not turned since the last watchdog ping; not petting it", which.c_str());
      stall_logged = true;
    }
  };
  for (;;) {
    pet_watchdog();
    const auto until = pacer ? pacer->UntilNextLook(std::chrono::steady_clock::now(), std::chrono::milliseconds(200))
                             : std::chrono::steady_clock::duration(std::chrono::milliseconds(200));
    const auto until_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(until).count();
    timespec wait{static_cast<time_t>(until_ns / 1'000'000'000), static_cast<long>(until_ns % 1'000'000'000)};
    const int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGHUP) {
      pet_watchdog();  // a long compile must not starve the watchdog
      notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(NowNs() / 1000));  // steady_clock: CLOCK_MONOTONIC
      Reload(a.config, config, (*stages)->rules(), &applied,
             config.io.backend == Backend::kNfqueue ? &interfaces : nullptr);
      notify("READY=1\n" + status);
    } else if (sig == SIGTERM || sig == SIGINT) {
      Log("%s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      notify("STOPPING=1\nSTATUS=draining");
      break;
    }
    // Links changed, or a SIGHUP (how interfaces are followed with watch_links = false or when
    // the link watch could not be opened; Reload looked up the new rules' names, this the
    // outside interfaces' too).
    const bool links_changed = link_watch != nullptr && link_watch->Changed();
    if (config.io.backend == Backend::kNfqueue && (links_changed || retry_interfaces || sig == SIGHUP)) {
      retry_interfaces = FollowInterfaces(interfaces, outside, applied, (*stages)->rules(), queues);
    }
    if (std::chrono::steady_clock::now() >= next_stats) {
      WriteStats(a, report());
      next_stats += std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval);
    }
  }
  DrainKernelQueues(queues, config.io.nfqueue.fail_open);
  pipeline.Stop();  // every packet received has its verdict when this returns
  const StatsReport final_report = report();
  WriteStats(a, final_report);
  std::fputs(ToText(final_report).c_str(), stderr);
  queues = Queues{};  // unbind: closing the sockets releases the queues
  Log("stopped");
  return 0;
}

}  // namespace

void RegisterRun(CLI::App& app, ExitCode& exit_code) {
  auto a = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand("run", "Run inline on the config's kernel queues (NFQUEUE or divert) until SIGTERM");
  cmd->add_option("-c,--config", a->config, "Config file (TOML)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--user", a->user, "After opening the queues, run as this user keeping only CAP_NET_ADMIN");
  cmd->add_option("--stats-json", a->stats_json, "Rewrite this JSON stats file every interval and at exit");
  cmd->add_option("--prometheus", a->prometheus, "Rewrite this Prometheus text file every interval and at exit");
  cmd->add_option("--stats-interval", a->stats_interval_s, "Seconds between stats writes")->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("-t,--threads", a->threads, "Threads for the stages (default: the config's pipeline.threads)")
      ->check(CLI::Range(1u, kMaxThreads));
  cmd->add_option("--seed", a->seed, "Flow hash seed (default: random)");
  cmd->callback([a, &exit_code] { exit_code.value = Run(*a); });
}

}  // namespace sluice::cli
