// NAPT flow table: translation lookup (hit, both directions; miss) and creation, ns per
// operation, at 1k to 1M live flows, plus creation when the port range is nearly full.
// Keys are precomputed (seed 1); items = operations.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "engine/rules/flow_table.h"
#include "engine/rules/packet_fields.h"

namespace sluice {
namespace {

constexpr uint64_t kSec = 1000000000ull;

FlowKey Key(uint32_t i, uint8_t proto = ip_proto::kTcp) {
  FlowKey k;
  k.set_src(0xc6120000u | (i & 0xffff));       // 198.18.0.0/16 clients
  k.set_dst(0xc6130000u | ((i >> 16) & 0xff)); // a few servers
  k.sport = static_cast<uint16_t>(1024 + (i % 60000));
  k.dport = 443;
  k.proto = proto;
  k.family = L3Type::kIpv4;
  return k;
}

FlowTableOptions Options(uint32_t capacity) {
  NatConfig nat;
  nat.max_flows = capacity;
  return FlowTableOptions::From(nat, 1, 0, 1);
}

NatTarget Target() {
  NatTarget t;
  t.ports = {1024, 65535};
  return t;
}

// A table holding n flows, and their original and reply keys.
struct Filled {
  explicit Filled(uint32_t n) : table(Options(n)) {
    for (uint32_t i = 0; i < n; ++i) {
      const auto c = table.Create(Key(i), Target(), 0x02, kSec);
      if (c.status != FlowTable::CreateStatus::kCreated) continue;
      keys.push_back(Key(i));
      keys.push_back(table.flow(c.flow).ReplyKey());
    }
    std::mt19937_64 rng(1);
    std::shuffle(keys.begin(), keys.end(), rng);
  }
  FlowTable table;
  std::vector<FlowKey> keys;
};

// A lookup that finds its flow, original or reply direction at random, plus the Touch that
// follows every hit in the classify stage.
void BM_LookupHit(benchmark::State& state) {
  Filled f(static_cast<uint32_t>(state.range(0)));
  std::size_t i = 0;
  uint64_t now = kSec;
  for (auto _ : state) {
    FlowTable::Hit hit;
    const bool found = f.table.Lookup(f.keys[i], &hit);
    if (found) f.table.Touch(hit.flow, hit.dir, 0x10, now);
    benchmark::DoNotOptimize(found);
    i = i + 1 == f.keys.size() ? 0 : i + 1;
    now += 1000;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(std::to_string(f.table.size()) + " flows");
}
BENCHMARK(BM_LookupHit)->Arg(1024)->Arg(65536)->Arg(1 << 20);

// A lookup for a tuple no flow has (every new flow's first packet pays it).
void BM_LookupMiss(benchmark::State& state) {
  Filled f(static_cast<uint32_t>(state.range(0)));
  std::vector<FlowKey> misses;
  for (uint32_t i = 0; i < 4096; ++i) misses.push_back(Key(0x7000000 + i, ip_proto::kUdp));
  std::size_t i = 0;
  for (auto _ : state) {
    FlowTable::Hit hit;
    benchmark::DoNotOptimize(f.table.Lookup(misses[i], &hit));
    i = (i + 1) & 4095;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LookupMiss)->Arg(1024)->Arg(65536)->Arg(1 << 20);

// Creation at capacity: each new flow (port choice, three index inserts) evicts the least
// recently used one (three index removals) — the steady state of a full table under a flood.
void BM_CreateAtCapacity(benchmark::State& state) {
  Filled f(static_cast<uint32_t>(state.range(0)));
  uint32_t next = 1u << 24;
  uint64_t now = 2 * kSec;
  for (auto _ : state) {
    const auto c = f.table.Create(Key(next++), Target(), 0x02, now);
    benchmark::DoNotOptimize(c.flow);
    now += 1000;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CreateAtCapacity)->Arg(1024)->Arg(65536)->Arg(1 << 20);

// Creation and removal with the port range 90% taken by one inside host: port choice probes.
void BM_CreateInACrowdedRange(benchmark::State& state) {
  NatTarget t;
  t.ports = {20000, 20999};
  FlowTable table(Options(4096));
  for (uint32_t i = 0; i < 900; ++i) table.Create(Key(i * 65536), t, 0x02, kSec);  // one client, 900 ports
  uint32_t next = 1u << 20;
  for (auto _ : state) {
    FlowKey k = Key((next++ & 0xff) << 16);  // the same client as the 900
    k.dport = 80;                             // but tuples none of them has
    const auto c = table.Create(k, t, 0x02, kSec);
    if (c.status == FlowTable::CreateStatus::kCreated) table.Remove(c.flow);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("1000-port range, 900 taken");
}
BENCHMARK(BM_CreateInACrowdedRange);

}  // namespace
}  // namespace sluice
