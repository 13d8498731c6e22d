// sluice_gate: the CI performance gate's fixed workloads, counted in instructions.
//
// perf/gate/run runs this binary once under callgrind and compares each workload's count with
// perf/baseline.json. Each workload is built first (traffic, rules, pools: not counted), then
// run between CALLGRIND_ZERO_STATS and CALLGRIND_DUMP_STATS_AT("gate:<name>"), then checked
// (not counted): a workload that did not do its job (nothing parsed, nothing rewritten,
// packets lost) fails the binary, so the gate can never pass by measuring nothing.
//
// Determinism (what makes the same binary and input give the same count, run after run):
// - fixed inputs: mixes from fixed seeds, a committed pcap (perf/gate/replay.pcap), a frozen
//   copy of the demo rules below, fixed flow-hash and NAT seeds, and a fake classify clock
//   (time moves 100 µs per batch, so NAT timeouts never depend on how slow valgrind is);
// - single-threaded: the replay uses OfflinePipeline::RunInline (no TBB thread, no graph);
// - no allocation and no pointer-keyed hashing on the measured paths; every data buffer the
//   workloads sum or copy is 64-byte aligned, so glibc's string functions take the same path
//   whatever the environment's size or the heap's placement;
// - glibc's ifunc choices are pinned by perf/gate/run (GLIBC_TUNABLES), and recorded.
// The only clock reads left on a measured path are the pipeline's latency stamps (NowNs) and
// stage cycle counters (rdtsc): their values go into histograms and counters, never into a
// branch the instruction count depends on beyond the histogram's max update (checked: two
// runs give identical counts, perf/gate/tests).
//
// With -DSLUICE_PERF_CANARY=1 (the sluice_gate_canary target only) the rewrite stage carries
// a known extra cost: the proof that the gate catches a real slowdown (perf/gate/CMakeLists.txt).
//
//   sluice_gate [--list] [--only NAME,...] [--pcap FILE]
#include <valgrind/callgrind.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/common/build_info.h"
#include "bench/stages/stage_workloads.h"
#include "engine/graph/pipeline.h"
#include "engine/io/pcap/pcap_sink.h"
#include "engine/io/pcap/pcap_source.h"
#include "engine/proto/checksum.h"
#include "engine/rules/config_loader.h"
#include "engine/stages/classify/classify_stage.h"
#include "engine/stages/parse/parse_stage.h"
#include "engine/stages/rewrite/rewrite_stage.h"
#include "perf/gate/canary.h"

namespace sluice::gate {
namespace {

// examples/demo.toml's rules, frozen here: the gate measures code, so its input must not move
// when the example is edited. (Rewrites, a NAPT translation, marks, drops; two shards.)
constexpr const char* kDemoRules = R"toml(
[pipeline]
batch_size = 64
shards = 2
[parse]
malformed = "drop"
[nat]
max_flows = 65536
seed = 1
[classify]
default_action = "accept"
[[rule]]
number = 100
name = "count-dns"
action = "count"
match = { proto = "udp", dst_port = 53 }
[[rule]]
number = 200
name = "drop-smtp"
action = "drop"
match = { proto = "tcp", src = ["198.18.0.0/16", "2001:2:0:c::/64"], dst_port = 25 }
[[rule]]
number = 300
name = "drop-ssh-from-guests"
action = "drop"
match = { proto = "tcp", src = "198.18.128.0/17", dst_port = 22 }
[[rule]]
number = 400
name = "drop-udp-to-web-ports"
action = "drop"
match = { proto = "udp", dst_port = [80, 443, 8080, 8443] }
[[rule]]
number = 500
name = "clamp-syn-mss"
action = "rewrite"
match = { family = "ipv4", proto = "tcp", tcp_flags = "syn", dst_port = [80, 8080] }
rewrite = { mss_clamp = 1360 }
[[rule]]
number = 600
name = "web-to-proxy"
action = "rewrite"
match = { proto = "tcp", dst = "198.19.0.0/24", dst_port = 80 }
rewrite = { dst_port = 8080 }
[[rule]]
number = 700
name = "tls-alt-to-443"
action = "rewrite"
match = { proto = "tcp", dst_port = 8443 }
rewrite = { dst_port = 443 }
[[rule]]
number = 800
name = "voice-ef"
action = "rewrite"
match = { proto = "udp", dst_port = [5060, 3478] }
rewrite = { dscp = "ef" }
[[rule]]
number = 900
name = "ntp-to-new-servers"
action = "rewrite"
match = { proto = "udp", dst = "198.19.0.0/24", dst_port = 123 }
rewrite = { dst_prefix_map = { from = "198.19.0.0/24", to = "198.19.1.0/24" }, ttl_decrement = true }
[[rule]]
number = 1000
name = "napt-https"
action = "translate-source-port"
match = { proto = "tcp", src = "198.18.0.0/16", dst_port = 443 }
translate = { ports = "20000-29999" }
[[rule]]
number = 1100
name = "mark-v6"
action = "mark"
match = { family = "ipv6" }
mark = 0x10
)toml";

using RewriteUnderTest = GateRewriteStage;  // RewriteStage, or the canary's (canary.h)

struct Workload {
  std::string name;                    // stable: perf/baseline.json is keyed by it
  std::string what;                    // one line for the gate's table
  std::function<void()> run;           // the counted part
  std::function<std::string()> check;  // after the run: "" if it did its job, else why not
};

// A classify clock that moves 100 µs per batch: deterministic, and NAT timeouts (minutes)
// never fire inside a workload.
uint64_t FakeNow(void* ctx) noexcept { return *static_cast<uint64_t*>(ctx) += 100'000; }

std::string Expect(bool ok, const std::string& what) { return ok ? "" : what; }

// Reads every packet of a pcap file into memory (setup only).
std::vector<std::vector<uint8_t>> ReadFrames(const std::string& path, BufferPool& pool) {
  std::vector<std::vector<uint8_t>> frames;
  auto src = PcapSource::Open(path);
  if (!src.ok()) {
    std::fprintf(stderr, "sluice_gate: %s\n", src.status().message().c_str());
    std::exit(2);
  }
  PoolCache cache(pool);
  bool more = true;
  while (more) {
    Batch b;
    b.set_limit(kMaxBatch);
    more = (*src)->ReadBurst(cache, b, kMaxBatch);
    for (uint32_t i = 0; i < b.size(); ++i) {
      const PacketBuffer& p = b.packet(i);
      frames.emplace_back(p.data(), p.data() + p.len());
      b.set_next(i, Next::kAccept);
    }
    b.RecordVerdicts();
    PacketBuffer* out[kMaxBatch];
    cache.PutBulk(out, b.TakeBuffers(out));
  }
  return frames;
}

// The demo's stages for `shards` shards with fixed seeds and the fake clock.
struct DemoStages {
  explicit DemoStages(uint32_t shards) {
    ConfigLoad load = LoadConfigText(kDemoRules, "gate:demo");
    if (!load.ok()) {
      for (const ConfigError& e : load.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
      std::exit(2);
    }
    config = *load.config;
    ParseConfig parse_config = config.parse;
    parse_config.flow_hash_seed = 0x5eed;
    RuleSetOptions rule_options;
    rule_options.shards = shards;
    rules = std::move(RuleSetHandle::Create(config, rule_options)).value();
    parse = std::make_unique<ParseStage>(parse_config);
    for (uint32_t s = 0; s < shards; ++s) {
      FlowTableOptions nat = FlowTableOptions::From(config.nat, config.nat.seed, s, shards);
      nat.hash_seed = 0x5eed + s;  // the key hash is random per table unless fixed here
      classify.push_back(std::make_unique<ClassifyStage>(*rules, s, nat, StageClock{FakeNow, &now}));
      rewrite.push_back(std::make_unique<RewriteUnderTest>());
    }
  }
  uint64_t ClassifyTotal(ClassifyCounter c) const {
    uint64_t n = 0;
    for (const auto& s : classify) n += s->counters().Load(c);
    return n;
  }
  uint64_t RewriteTotal(RewriteCounter c) const {
    uint64_t n = 0;
    for (const auto& s : rewrite) n += s->counters().Load(c);
    return n;
  }

  Config config;
  uint64_t now = 0;
  std::unique_ptr<RuleSetHandle> rules;
  std::unique_ptr<ParseStage> parse;
  std::vector<std::unique_ptr<ClassifyStage>> classify;
  std::vector<std::unique_ptr<RewriteUnderTest>> rewrite;
};

// ---- the workloads --------------------------------------------------------------------------

constexpr int kParseReps = 32;
constexpr int kRewriteReps = 64;
constexpr int kAclReps = 32;

void AddParse(std::vector<Workload>& out, BufferPool& pool) {
  for (int mix : {bench::kIpv4Tcp64, bench::kIpv6Ext, bench::kImix, bench::kAdversarial}) {
    auto w = std::make_shared<bench::ParseWorkload>(pool, mix, 256);
    ParseConfig config;
    config.flow_hash_seed = 1;
    auto stage = std::make_shared<ParseStage>(config);
    const bool adversarial = mix == bench::kAdversarial;
    out.push_back({std::string("parse/") + bench::MixName(mix),
                   "ParseStage, 256 packets × " + std::to_string(kParseReps),
                   [w, stage] {
                     for (int r = 0; r < kParseReps; ++r) {
                       w->Restore();
                       stage->Process(w->batch());
                     }
                   },
                   [stage, adversarial] {
                     const uint64_t parsed = stage->counters().Load(ParseCounter::kParsed);
                     const uint64_t total = 256 * kParseReps;
                     if (adversarial) return Expect(parsed > 0 && parsed < total, "adversarial mix: expected some parsed, some malformed");
                     return Expect(parsed == total, "expected every packet parsed, got " + std::to_string(parsed));
                   }});
  }
}

void AddClassify(std::vector<Workload>& out, BufferPool& pool, const std::vector<std::vector<uint8_t>>& frames) {
  {
    auto w = std::make_shared<bench::ClassifyWorkload>(pool, bench::kAcl, 1000);
    auto now = std::make_shared<uint64_t>(0);
    out.push_back({"classify/acl_1000", "ClassifyStage, 1000 ClassBench-like rules, 256 packets × " + std::to_string(kAclReps),
                   [w, now] {
                     for (int r = 0; r < kAclReps; ++r) {
                       w->Restore();
                       w->stage().Process(w->batch(), *now += 100'000);
                     }
                   },
                   [w] {
                     const uint64_t matched = w->stage().counters().Load(ClassifyCounter::kRuleMatched);
                     return Expect(matched > 0, "no packet matched a rule");
                   }});
  }
  {
    // The replay pcap's packets, parsed once, in batches of 64; every repetition restores
    // next = classify on the packets parse passed and classifies each batch (translations
    // are made in the first pass, hit afterwards).
    struct State {
      explicit State(BufferPool& pool) : stages(1), cache(pool) {}
      DemoStages stages;
      PoolCache cache;
      std::vector<std::unique_ptr<Batch>> batches;
      std::vector<std::vector<Next>> parsed_next;
      ~State() {
        for (auto& b : batches) {
          for (uint32_t i = 0; i < b->size(); ++i) b->set_next(i, Next::kAccept);
          b->RecordVerdicts();
          PacketBuffer* bufs[kMaxBatch];
          cache.PutBulk(bufs, b->TakeBuffers(bufs));
        }
      }
    };
    auto st = std::make_shared<State>(pool);
    for (std::size_t i = 0; i < frames.size(); i += 64) {
      auto b = std::make_unique<Batch>();
      b->set_limit(64);
      for (std::size_t k = i; k < std::min(frames.size(), i + 64); ++k) {
        PacketBuffer* buf = st->cache.Get(SizeClass::kSmall);
        buf->Assign(frames[k].data(), static_cast<uint32_t>(frames[k].size()));
        buf->meta().link_type = LinkType::kEthernet;
        b->Push(PacketRef(buf));
      }
      st->stages.parse->Process(*b);
      st->parsed_next.emplace_back(b->nexts(), b->nexts() + b->size());
      st->batches.push_back(std::move(b));
    }
    out.push_back({"classify/demo_rules",
                   "ClassifyStage, the demo's 11 rules with NAPT, " + std::to_string(frames.size()) + " packets × 4",
                   [st] {
                     for (int pass = 0; pass < 4; ++pass) {
                       for (std::size_t k = 0; k < st->batches.size(); ++k) {
                         Batch& b = *st->batches[k];
                         for (uint32_t i = 0; i < b.size(); ++i) b.set_next(i, st->parsed_next[k][i]);
                         st->stages.classify[0]->Process(b);
                       }
                     }
                   },
                   [st] {
                     const DemoStages& s = st->stages;
                     if (s.ClassifyTotal(ClassifyCounter::kRewritePlanned) == 0) return std::string("no rewrite planned");
                     if (s.ClassifyTotal(ClassifyCounter::kNatCreated) == 0) return std::string("no translation created");
                     return Expect(s.ClassifyTotal(ClassifyCounter::kNatOut) > 0, "no translation hit");
                   }});
  }
}

void AddRewrite(std::vector<Workload>& out, BufferPool& pool) {
  for (int op : {bench::kPortMap, bench::kAddr4Map, bench::kAddr6Set, bench::kEverything}) {
    auto w = std::make_shared<bench::RewriteWorkload>(pool, op);
    auto stage = std::make_shared<RewriteUnderTest>();
    out.push_back({std::string("rewrite/") + bench::RewriteOpName(op),
                   "RewriteStage, 64 TCP SYNs × " + std::to_string(kRewriteReps) + " (restore: a 60 B copy each)",
                   [w, stage] {
                     for (int r = 0; r < kRewriteReps; ++r) {
                       w->Restore();
                       stage->Process(w->batch());
                     }
                   },
                   [stage] {
                     const uint64_t n = stage->counters().Load(RewriteCounter::kRewritten);
                     return Expect(n == uint64_t{bench::RewriteWorkload::kPackets} * kRewriteReps,
                                   "expected every packet rewritten, got " + std::to_string(n));
                   }});
  }
}

void AddChecksum(std::vector<Workload>& out) {
  struct Data {
    alignas(64) uint8_t bytes[65536 + 64];
    uint16_t sums[4] = {};
    alignas(64) uint8_t header[64];
    uint16_t header_csum = 0;
  };
  auto d = std::make_shared<Data>();
  for (std::size_t i = 0; i < sizeof d->bytes; ++i) d->bytes[i] = static_cast<uint8_t>(i * 131 + (i >> 7));
  static constexpr std::size_t kSizes[4] = {20, 40, 1500, 65536};
  static constexpr int kReps[4] = {4096, 4096, 512, 16};
  out.push_back({"checksum/full", "InternetChecksum of 20, 40, 1500, 65536 B at odd addresses, 80 KiB to 1 MiB of each size",
                 [d] {
                   for (int s = 0; s < 4; ++s) {
                     uint16_t acc = 0;
                     for (int r = 0; r < kReps[s]; ++r) acc ^= InternetChecksum(d->bytes + 1 + (r & 7) * 2, kSizes[s]);
                     d->sums[s] = acc;
                   }
                 },
                 [d] {
                   for (int s = 0; s < 4; ++s) {
                     uint16_t acc = 0;
                     for (int r = 0; r < kReps[s]; ++r) acc ^= InternetChecksumPlain16(d->bytes + 1 + (r & 7) * 2, kSizes[s]);
                     if (acc != d->sums[s]) return "size " + std::to_string(kSizes[s]) + ": wide != plain16";
                   }
                   return std::string();
                 }});
  // A 64-byte header with its checksum at offset 10, a port at 20, an IPv4 address at 24 and
  // an IPv6 address at 32 rewritten 8192 times, the checksum kept by RFC 1624 updates.
  for (std::size_t i = 0; i < sizeof d->header; ++i) d->header[i] = static_cast<uint8_t>(i * 7 + 3);
  StoreHost16(d->header + 10, 0);
  d->header_csum = InternetChecksum(d->header, sizeof d->header);
  StoreHost16(d->header + 10, d->header_csum);
  out.push_back({"checksum/incremental", "CsumDelta: 16-, 32- and 128-bit field updates, 8192 each",
                 [d] {
                   uint16_t hc = d->header_csum;
                   for (uint32_t k = 1; k <= 8192; ++k) {
                     CsumDelta delta;
                     delta.Write16(d->header + 20, static_cast<uint16_t>(k * 40503u));
                     delta.Write32(d->header + 24, k * 2654435761u);
                     uint8_t v6[16];
                     std::memcpy(v6, d->header + 32, 16);
                     v6[k & 15] ^= static_cast<uint8_t>(k);
                     delta.Replace128(d->header + 32, v6);
                     std::memcpy(d->header + 32, v6, 16);
                     hc = delta.Apply(hc);
                   }
                   StoreHost16(d->header + 10, hc);
                 },
                 [d] {
                   return Expect(ChecksumFold(ChecksumAccumulate(d->header, sizeof d->header, 0)) == 0xffff,
                                 "the incrementally kept checksum does not verify");
                 }});
}

void AddPool(std::vector<Workload>& out, BufferPool& pool) {
  auto caches = std::make_shared<std::pair<PoolCache, PoolCache>>(pool, pool);
  out.push_back({"pool/bulk_64", "PoolCache GetBulk/PutBulk of 64: 2048 × same cache, 2048 × across two caches",
                 [caches] {
                   PacketBuffer* bufs[64];
                   for (int r = 0; r < 2048; ++r) caches->first.PutBulk(bufs, caches->first.GetBulk(SizeClass::kSmall, bufs, 64));
                   for (int r = 0; r < 2048; ++r) caches->second.PutBulk(bufs, caches->first.GetBulk(SizeClass::kSmall, bufs, 64));
                 },
                 [&pool] { return Expect(pool.Stats().exhausted == 0, "the pool ran dry"); }});
}

void AddReplay(std::vector<Workload>& out, const std::string& pcap) {
  constexpr uint32_t kLoops = 4;
  struct State {
    State() : stages(2), pool(std::move(BufferPool::Create({.small_buffers = 4096, .large_buffers = 64})).value()) {
      std::vector<ShardStages> shards;
      for (uint32_t s = 0; s < 2; ++s) shards.push_back({StageRef::Of(*stages.classify[s]), StageRef::Of(*stages.rewrite[s])});
      pipeline = std::make_unique<OfflinePipeline>(PipelineOptions{.shards = 2, .threads = 1, .batch_size = 64}, *pool,
                                                   StageRef::Of(*stages.parse), shards);
    }
    DemoStages stages;
    std::unique_ptr<BufferPool> pool;
    std::unique_ptr<OfflinePipeline> pipeline;
    std::unique_ptr<PcapSource> source;
    std::unique_ptr<PcapSink> sink;
    Status status;
  };
  auto st = std::make_shared<State>();
  auto src = PcapSource::Open(pcap, kLoops);
  if (!src.ok()) {
    std::fprintf(stderr, "sluice_gate: %s\n", src.status().message().c_str());
    std::exit(2);
  }
  st->source = std::move(src).value();
  auto w = PcapWriter::Open("/dev/null", st->source->format());
  if (!w.ok()) {
    std::fprintf(stderr, "sluice_gate: %s\n", w.status().message().c_str());
    std::exit(2);
  }
  st->sink = std::make_unique<PcapSink>(std::move(w).value(), nullptr);
  out.push_back({"replay/demo_inline",
                 "replay.pcap × " + std::to_string(kLoops) + " through RunInline: pcap in, parse, 2 shards of classify + rewrite, pcap out",
                 [st] { st->status = st->pipeline->RunInline(*st->source, *st->sink); },
                 [st] {
                   if (!st->status.ok()) return "run failed: " + st->status.message();
                   const RunStats& r = st->pipeline->run_stats();
                   const uint64_t in = r.packets_in.Load();
                   if (in == 0) return std::string("no packets read");
                   if (in != r.accepted.Load() + r.rewritten.Load() + r.Dropped() + r.Skipped()) {
                     return std::string("packets unaccounted for");
                   }
                   if (st->stages.RewriteTotal(RewriteCounter::kRewritten) == 0) return std::string("nothing rewritten");
                   if (st->stages.ClassifyTotal(ClassifyCounter::kNatCreated) == 0) return std::string("no translation");
                   return Expect(r.Dropped() > 0, "the demo rules drop some packets; none dropped");
                 }});
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

int Main(int argc, char** argv) {
  bool list = false;
  std::set<std::string> only;
  std::string pcap = SLUICE_GATE_PCAP;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--list") {
      list = true;
    } else if (a == "--only" && i + 1 < argc) {
      for (const std::string& n : Split(argv[++i])) only.insert(n);
    } else if (a == "--pcap" && i + 1 < argc) {
      pcap = argv[++i];
    } else {
      std::fprintf(stderr, "usage: sluice_gate [--list] [--only NAME,...] [--pcap FILE]\n");
      return 2;
    }
  }

  // Every workload is built before any is counted.
  auto pool = std::move(BufferPool::Create({.small_buffers = 8192, .large_buffers = 0})).value();
  std::vector<Workload> all;
  AddParse(all, *pool);
  AddClassify(all, *pool, ReadFrames(pcap, *pool));
  AddRewrite(all, *pool);
  AddChecksum(all);
  AddPool(all, *pool);
  AddReplay(all, pcap);

  for (const auto& [key, value] : bench::BuildConditions()) std::printf("condition %s=%s\n", key.c_str(), value.c_str());
  std::printf("condition canary=%s\n", kCanary ? "on" : "off");
  std::printf("condition under_valgrind=%s\n", RUNNING_ON_VALGRIND ? "yes" : "no");
  if (list) {
    for (const Workload& w : all) std::printf("workload %s\t%s\n", w.name.c_str(), w.what.c_str());
    return 0;
  }
  for (const std::string& n : only) {
    bool known = false;
    for (const Workload& w : all) known |= w.name == n;
    if (!known) {
      std::fprintf(stderr, "sluice_gate: no workload named %s (--list)\n", n.c_str());
      return 2;
    }
  }

  int failed = 0;
  for (Workload& w : all) {
    if (!only.empty() && !only.count(w.name)) continue;
    const std::string dump = "gate:" + w.name;
    const auto t0 = std::chrono::steady_clock::now();
    CALLGRIND_START_INSTRUMENTATION;
    CALLGRIND_ZERO_STATS;
    w.run();
    CALLGRIND_DUMP_STATS_AT(dump.c_str());
    CALLGRIND_STOP_INSTRUMENTATION;
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    const std::string why = w.check();
    if (why.empty()) {
      std::printf("ok %s %.0f us\n", w.name.c_str(), us);
    } else {
      std::printf("FAILED %s: %s\n", w.name.c_str(), why.c_str());
      ++failed;
    }
  }
  std::fflush(stdout);
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace sluice::gate

int main(int argc, char** argv) { return sluice::gate::Main(argc, argv); }
