// ClassifyStage::Process ns/packet (batch time / 256) on parsed packets, at 10 .. 10,000 rules:
// field extraction, the flow-table check, the classifier, actions and counters — everything the
// stage does per packet except creating translations (bench/rules/flow_table_bench.cpp).
//
// Rules and traffic are tests/rules/rule_gen.h's (seed 1), made into real packets:
//   acl        ClassBench-acl-like rules; half the packets inside a random rule, half not
//   last-rule  n-1 near misses, every packet's answer the last rule (a linear scan's worst case)
// Each iteration resets the 256 slots to kClassify (a byte store each) and classifies them.
#include <benchmark/benchmark.h>

#include <deque>
#include <map>
#include <memory>

#include "bench/stages/bench_traffic.h"
#include "engine/stages/classify/classify_stage.h"
#include "engine/stages/parse/parse_stage.h"
#include "tests/rules/rule_gen.h"

namespace sluice {
namespace {

constexpr uint32_t kBatch = 256;

testing::TestPacket Build(const PacketFields& f) {
  testing::PacketBuilder b;
  const std::string src = ToString(IpAddr{f.family, f.src});
  const std::string dst = ToString(IpAddr{f.family, f.dst});
  if (f.family == L3Type::kIpv6) b.Ipv6(src, dst);
  else b.Ipv4(src, dst);
  b.Tos(static_cast<uint8_t>(f.dscp << 2));
  if (f.proto == 6) b.Tcp(f.sport, f.dport).TcpFlags(static_cast<uint8_t>(f.tcp_flags));
  else if (f.proto == 17) b.Udp(f.sport, f.dport);
  else if (f.proto == 1 || f.proto == 58) b.Icmp(f.family == L3Type::kIpv6 ? 128 : 8, 0, 1, 1);
  else b.L4Proto(f.proto).Payload(8);
  return b.Build();
}

struct Workload {
  Config config;
  std::deque<MatchSpec> specs;
  std::unique_ptr<RuleSetHandle> handle;
  std::unique_ptr<ClassifyStage> stage;
  Batch batch;
};

enum Profile { kAcl = 0, kLastRule = 1 };

Workload& Get(Profile profile, int n) {
  static std::map<std::pair<int, int>, std::unique_ptr<Workload>> cache;
  auto& slot = cache[{profile, n}];
  if (slot) return *slot;
  slot = std::make_unique<Workload>();
  Workload& w = *slot;
  testing::RuleGen gen(1);
  std::vector<RuleMatchInput> inputs;
  std::vector<PacketFields> traffic;
  if (profile == kAcl) gen.AclWorkload(n, kBatch, w.specs, inputs, traffic);
  else gen.LastRuleWorkload(n, kBatch, w.specs, inputs, traffic);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    RuleConfig r;
    r.number = static_cast<uint32_t>(i + 1);
    r.name = "r" + std::to_string(i + 1);
    r.action = i % 2 ? RuleAction::kAccept : RuleAction::kDrop;
    r.match = *inputs[i].match;
    w.config.rules.push_back(std::move(r));
  }
  RuleSetOptions o;
  w.handle = std::move(RuleSetHandle::Create(w.config, o)).value();
  w.stage = std::make_unique<ClassifyStage>(*w.handle, 0, FlowTableOptions::From(w.config.nat, 1, 0, 1));

  std::vector<testing::TestPacket> packets;
  for (const PacketFields& f : traffic) packets.push_back(Build(f));
  w.batch.set_limit(kMaxBatch);
  for (const auto& p : packets) {
    PacketBuffer* b = nullptr;
    bench::Pool().GetBulk(SizeClass::kSmall, &b, 1);
    b->Assign(p.bytes.data(), static_cast<uint32_t>(p.bytes.size()));
    b->meta().link_type = p.link;
    w.batch.Push(PacketRef(b));
  }
  ParseStage(ParseConfig{}).Process(w.batch);
  return w;
}

void BM_ClassifyStage(benchmark::State& state) {
  const auto profile = static_cast<Profile>(state.range(0));
  Workload& w = Get(profile, static_cast<int>(state.range(1)));
  uint64_t now = 0;
  for (auto _ : state) {
    for (uint32_t i = 0; i < w.batch.size(); ++i) w.batch.set_next(i, Next::kClassify);
    w.stage->Process(w.batch, now += 1000);
    benchmark::DoNotOptimize(w.batch.nexts());
  }
  state.SetItemsProcessed(state.iterations() * w.batch.size());
  const ClassifierStats& s = w.handle->Load()->classifier_stats();
  state.SetLabel(std::string(profile == kAcl ? "acl" : "last-rule") + " trees=" + std::to_string(s.trees) +
                 " KiB=" + std::to_string(s.bytes / 1024));
}
BENCHMARK(BM_ClassifyStage)->ArgsProduct({{kAcl, kLastRule}, {10, 100, 1000, 10000}});

}  // namespace
}  // namespace sluice
