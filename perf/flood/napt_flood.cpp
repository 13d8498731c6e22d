// napt_flood: source-port translation under floods of new flows, on the offline graph with
// the configured stages (parse → classify with its flow table → rewrite → null sink).
//
// Part 1, flood: --packets from --flows distinct UDP flows (drawn uniformly at random) through
// translate-source-port with a flow table capped at --cap per shard, evicting the oldest.
// Reports packets/s, translations created and evicted, live flows at the end (must equal the
// cap), and resident memory (VmRSS) every tenth of the run and its peak (VmHWM, reset first).
//
// Part 2, collisions: keys an attacker built to collide in the flow table, knowing its hash
// seed A (perf/flood/flood_traffic.h, CollidingFlows). Three runs, interleaved --reps times:
//   random       as many random flows, hash seed A                 (the baseline)
//   known-seed   the colliding flows, the table hashed with A      (the attack working)
//   other-seed   the same flows, the table hashed with B != A      (what sluice does: a hash
//                seed drawn at random per table, which no config file sets)
// and the medians of ns/packet, and each run's ratio to random.
//
// Usage: napt_flood [--packets N] [--flows N] [--cap N] [--threads N] [--shards N]
//                   [--collide-cap N] [--collide-packets N] [--reps N] [--skip-flood] [--skip-collide]
#include <sys/utsname.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/clock.h"
#include "engine/graph/pipeline.h"
#include "engine/graph/stage_set.h"
#include "engine/io/null/null_sink.h"
#include "engine/rules/config_loader.h"
#include "perf/flood/flood_traffic.h"

namespace sluice::flood {
namespace {

// Flow-table key hash seeds (FlowTableOptions::hash_seed): A is the one the attacker knows.
// sluice itself draws one at random per table; the harness fixes them to stage the attack.
constexpr uint64_t kSeedA = 0x5eed0000000000a1ull;
constexpr uint64_t kSeedB = 0x5eed0000000000b2ull;

struct Args {
  uint64_t packets = 10'000'000;
  uint64_t flows = 1'000'000;
  uint32_t cap = 65536;
  uint32_t threads = 1;
  uint32_t shards = 1;
  uint32_t collide_cap = 16384;
  uint64_t collide_packets = 200'000;
  uint32_t reps = 5;
  bool flood = true;
  bool collide = true;
};

uint64_t StatusKiB(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, n, key) == 0 && line[n] == ':') return std::strtoull(line.c_str() + n + 1, nullptr, 10);
  }
  return 0;
}

// Resets VmHWM to the current RSS (Linux >= 4.0).
void ResetPeak() { std::ofstream("/proc/self/clear_refs") << "5"; }

std::string ConfigText(uint32_t cap, uint32_t shards, uint64_t seed) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "[pipeline]\nshards = %u\n[nat]\nmax_flows = %u\non_full = \"evict-oldest\"\nseed = %" PRIu64
                "\n[[rule]]\nnumber = 100\nname = \"napt-out\"\naction = \"translate-source-port\"\n"
                "match = { src = \"198.18.0.0/15\", proto = \"udp\" }\ntranslate = { ports = \"1024-65535\" }\n",
                shards, cap, seed);
  return buf;
}

struct RunResult {
  uint64_t packets = 0;
  double seconds = 0;
  uint64_t created = 0, evicted = 0, expired = 0, live = 0, dropped = 0, rewritten = 0;
  uint64_t hwm_kib = 0;
  std::vector<std::pair<uint64_t, uint64_t>> rss;  // (packets so far, VmRSS KiB)
  double ns_per_packet() const { return seconds * 1e9 / static_cast<double>(packets); }
};

uint64_t Counter(const StatsReport& r, const std::string& name) {
  uint64_t sum = 0;
  for (const NamedCounter& c : r.counters) {
    if (c.name == name) sum += c.value;
  }
  return sum;
}

RunResult Run(const Args& a, std::vector<Flow> flows, uint64_t packets, uint32_t cap, uint64_t seed, bool sample) {
  ConfigLoad load = LoadConfigText(ConfigText(cap, a.shards, seed), "<napt_flood>");
  if (!load.ok()) {
    for (const ConfigError& e : load.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    std::exit(1);
  }
  PipelineOptions opts;
  opts.shards = a.shards;
  opts.threads = a.threads;
  opts.batch_size = 64;
  PoolConfig pool_config = load.config->pipeline.pool;
  pool_config.small_buffers =
      static_cast<uint32_t>(std::max<uint64_t>(pool_config.small_buffers, OfflinePipeline::SmallBuffersNeeded(opts)));
  auto pool = std::move(BufferPool::Create(pool_config)).value();
  StageSet::Options so;
  so.shards = a.shards;
  so.workers = a.threads;
  so.flow_hash_seed = 1;
  so.nat_hash_seed = seed;
  auto stages = std::move(StageSet::Build(*load.config, so)).value();
  std::vector<ShardStages> shard_stages = stages->OfflineShards();
  OfflinePipeline pipeline(opts, *pool, stages->parse(0), shard_stages);

  RunResult r;
  r.rss.reserve(16);
  FloodSource source(std::move(flows), packets, 0x9e3779b97f4a7c15ull);
  if (sample) {
    source.OnProgress(
        std::max<uint64_t>(1, packets / 10),
        [](uint64_t done, void* ctx) {
          static_cast<RunResult*>(ctx)->rss.emplace_back(done, StatusKiB("VmRSS"));
        },
        &r);
    ResetPeak();
  }
  NullSink sink;
  const uint64_t start = NowNs();
  if (Status s = pipeline.Run(source, sink); !s.ok()) {
    std::fprintf(stderr, "napt_flood: %s\n", s.message().c_str());
    std::exit(1);
  }
  r.seconds = static_cast<double>(NowNs() - start) / 1e9;
  r.hwm_kib = StatusKiB("VmHWM");
  StatsReport report;
  AddRun(pipeline.run_stats(), report);
  stages->Report(report);
  r.packets = report.packets_in;
  r.created = Counter(report, "classify_nat_created");
  r.evicted = Counter(report, "classify_nat_evicted");
  r.expired = Counter(report, "classify_nat_expired");
  r.live = Counter(report, "nat_flows");
  r.dropped = report.DroppedTotal();
  r.rewritten = report.rewritten;
  return r;
}

void PrintConditions(const Args& a) {
  utsname u{};
  uname(&u);
  std::string cpu = "?";
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  std::printf("napt_flood: kernel %s, cpu %s, %ld online\n", u.release, cpu.c_str(), sysconf(_SC_NPROCESSORS_ONLN));
  std::printf("  threads %u, shards %u, batch 64, UDP 46 B packets, translate-source-port 1024-65535,\n"
              "  on_full evict-oldest, flow-table hash seeds A=%#" PRIx64 " B=%#" PRIx64 ", flood source xorshift\n",
              a.threads, a.shards, kSeedA, kSeedB);
}

void Flood(const Args& a) {
  std::printf("\n== flood: %" PRIu64 " packets from %" PRIu64 " flows, cap %u per shard\n", a.packets, a.flows, a.cap);
  std::vector<Flow> flows;
  flows.reserve(a.flows);
  for (uint64_t i = 0; i < a.flows; ++i) flows.push_back(FlowAt(i));
  const uint64_t rss_before = StatusKiB("VmRSS");
  const RunResult r = Run(a, std::move(flows), a.packets, a.cap, kSeedA, true);
  std::printf("  %.2f Mpps (%.0f ns/packet), %.1f s\n", static_cast<double>(r.packets) / r.seconds / 1e6,
              r.ns_per_packet(), r.seconds);
  std::printf("  translations: created %" PRIu64 ", evicted %" PRIu64 ", expired %" PRIu64 ", live at the end %" PRIu64
              " (cap %" PRIu64 ")\n",
              r.created, r.evicted, r.expired, r.live, uint64_t{a.cap} * a.shards);
  std::printf("  packets rewritten %" PRIu64 ", dropped %" PRIu64 "\n", r.rewritten, r.dropped);
  std::printf("  resident memory: %" PRIu64 " KiB before the run (flow list built), then\n", rss_before);
  for (const auto& [n, kib] : r.rss) std::printf("    after %10" PRIu64 " packets  VmRSS %8" PRIu64 " KiB\n", n, kib);
  std::printf("  peak during the run VmHWM %" PRIu64 " KiB (%.1f MiB)\n", r.hwm_kib, static_cast<double>(r.hwm_kib) / 1024);
  const bool ok = r.live == uint64_t{a.cap} * a.shards && r.created == r.live + r.evicted + r.expired &&
                  r.dropped == 0 && r.packets == a.packets;
  std::printf("  %s\n", ok ? "table at its cap, every creation accounted for, nothing dropped"
                           : "UNEXPECTED: see the figures above");
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void Collide(const Args& a) {
  const uint32_t n = a.collide_cap * 2;
  const uint32_t window = 256;
  std::printf("\n== collisions: %" PRIu64 " packets from %u flows, cap %u, %u reps interleaved\n", a.collide_packets, n,
              a.collide_cap, a.reps);
  FlowTableOptions known = FlowTableOptions::From(NatConfig{}, kSeedA, 0, 1);
  known.hash_seed = kSeedA;
  const uint64_t t0 = NowNs();
  const std::vector<Flow> colliding = CollidingFlows(known, n, window);
  std::printf("  attacker's search: %u flows whose key hash (seed A) has its low %u bits below %u, in %.1f s\n",
              static_cast<unsigned>(colliding.size()), kCollisionHashBits, window,
              static_cast<double>(NowNs() - t0) / 1e9);
  std::vector<Flow> random;
  for (uint64_t i = 0; i < n; ++i) random.push_back(FlowAt(i * 7919 % kMaxFloodFlows));
  std::vector<double> ns[3];
  uint64_t evicted[3] = {};
  for (uint32_t rep = 0; rep < a.reps; ++rep) {
    const RunResult r0 = Run(a, random, a.collide_packets, a.collide_cap, kSeedA, false);
    const RunResult r1 = Run(a, colliding, a.collide_packets, a.collide_cap, kSeedA, false);
    const RunResult r2 = Run(a, colliding, a.collide_packets, a.collide_cap, kSeedB, false);
    ns[0].push_back(r0.ns_per_packet());
    ns[1].push_back(r1.ns_per_packet());
    ns[2].push_back(r2.ns_per_packet());
    evicted[0] = r0.evicted, evicted[1] = r1.evicted, evicted[2] = r2.evicted;
    std::printf("  rep %u: random %.0f ns, known-seed %.0f ns, other-seed %.0f ns per packet\n", rep, ns[0].back(),
                ns[1].back(), ns[2].back());
  }
  const double base = Median(ns[0]);
  const char* names[3] = {"random", "known-seed", "other-seed"};
  std::printf("  %-12s %14s %10s %10s\n", "keys", "median ns/pkt", "× random", "evicted");
  for (int k = 0; k < 3; ++k) {
    std::printf("  %-12s %14.0f %10.2f %10" PRIu64 "\n", names[k], Median(ns[k]), Median(ns[k]) / base, evicted[k]);
  }
}

}  // namespace
}  // namespace sluice::flood

int main(int argc, char** argv) {
  sluice::flood::Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> uint64_t {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "napt_flood: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      return std::strtoull(argv[++i], nullptr, 10);
    };
    if (k == "--packets") a.packets = next();
    else if (k == "--flows") a.flows = next();
    else if (k == "--cap") a.cap = static_cast<uint32_t>(next());
    else if (k == "--threads") a.threads = static_cast<uint32_t>(next());
    else if (k == "--shards") a.shards = static_cast<uint32_t>(next());
    else if (k == "--collide-cap") a.collide_cap = static_cast<uint32_t>(next());
    else if (k == "--collide-packets") a.collide_packets = next();
    else if (k == "--reps") a.reps = static_cast<uint32_t>(next());
    else if (k == "--skip-flood") a.flood = false;
    else if (k == "--skip-collide") a.collide = false;
    else {
      std::fprintf(stderr,
                   "usage: napt_flood [--packets N] [--flows N] [--cap N] [--threads N] [--shards N]\n"
                   "                  [--collide-cap N] [--collide-packets N] [--reps N] [--skip-flood] "
                   "[--skip-collide]\n");
      return 2;
    }
  }
  sluice::flood::PrintConditions(a);
  if (a.flood) sluice::flood::Flood(a);
  if (a.collide) sluice::flood::Collide(a);
  return 0;
}
