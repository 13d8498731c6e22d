// RewriteStage ns/packet per operation, and the whole data path of a 64 B port rewrite
// (copy in, parse, rewrite, give back) to compare with the memcpy floor of packet_bench.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <vector>

#include "bench/stages/bench_traffic.h"
#include "engine/pool/buffer_pool.h"
#include "engine/stages/parse/parse_stage.h"
#include "engine/stages/rewrite/rewrite_stage.h"

namespace sluice {
namespace {

enum Op : int {
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
  kNumOps
};
const char* OpName(int op) {
  static const char* const kNames[] = {
      "noop (restore only)", "port_set", "port_map",  "addr4_set",     "addr4_map", "addr6_set",
      "ttl_decrement",       "dscp",     "mss_clamp", "full_checksum", "mark",      "everything"};
  return kNames[op];
}

RewritePlan PlanFor(int op) {
  RewritePlan p;
  const PortRewrite map = PortRewrite::Map(
      {{.first = 80, .last = 80, .to = 8080},
       {.first = 443, .last = 443, .to = 8443},
       {.first = 1024, .last = 65535, .to = 1024, .mode = PortMapEntry::Mode::kShift}});
  std::array<uint8_t, 16> v6{0xfd, 0, 0, 2};
  v6[15] = 1;
  switch (op) {
    case kPortSet:
      p.dst_port = PortRewrite::Set(8080);
      break;
    case kPortMap:
      p.src_port = map;
      p.dst_port = map;
      break;
    case kAddr4Set:
      p.src_addr = AddrRewrite::SetIpv4(0x0a000001);
      break;
    case kAddr4Map:
      p.dst_addr = AddrRewrite::MapIpv4(0xc6120000, 0x0a000000, 15);
      break;
    case kAddr6Set:
      p.src_addr = AddrRewrite::SetIpv6(v6);
      break;
    case kTtlDecrement:
      p.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = 1};
      break;
    case kDscp:
      p.dscp = 46;
      break;
    case kMssClamp:
      p.mss_clamp = 1200;
      break;
    case kFullChecksum:
      p.full_checksum = true;
      break;
    case kMark:
      p.mark = 0x5a;
      break;
    case kEverything:
      p.src_addr = AddrRewrite::MapIpv4(0xc6120000, 0x0a000000, 15);
      p.dst_addr = AddrRewrite::SetIpv4(0xc0000201);
      p.src_port = map;
      p.dst_port = map;
      p.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = 1};
      p.dscp = 46;
      p.mss_clamp = 1200;
      p.mark = 1;
      break;
    default:
      break;
  }
  return p;
}

// One rewrite operation over a batch of 64 parsed 64 B TCP SYNs (IPv6 for addr6_set). Each
// iteration first restores the pristine bytes (a 60-byte copy per packet: the noop row
// measures that alone), then rewrites. Items = packets.
void BM_RewriteOp(benchmark::State& state) {
  const int op = static_cast<int>(state.range(0));
  constexpr uint32_t kN = 64;
  std::vector<testing::TestPacket> packets;
  for (uint32_t i = 0; i < kN; ++i) {
    testing::PacketBuilder b;
    b.Ethernet();
    if (op == kAddr6Set) {
      b.Ipv6("2001:2::1", "2001:2::" + std::to_string(i + 2));
    } else {
      b.Ipv4("198.18.0.1", "198.19.0." + std::to_string(i + 2));
    }
    packets.push_back(
        b.Tcp(static_cast<uint16_t>(40000 + i), 80).TcpFlags(0x02).Mss(1460).PadTo(60).Build());
  }
  PoolCache cache(bench::Pool());
  Batch batch;
  batch.set_limit(kMaxBatch);
  ParseStage parse({});
  for (const auto& p : packets) {
    PacketBuffer* b = cache.Get(SizeClass::kSmall);
    b->Assign(p.bytes.data(), static_cast<uint32_t>(p.bytes.size()));
    b->meta().link_type = p.link;
    batch.Push(PacketRef(b));
  }
  parse.Process(batch);
  std::vector<PacketMeta> parsed_meta(kN);
  for (uint32_t i = 0; i < kN; ++i) parsed_meta[i] = batch.packet(i).meta();
  const RewritePlan plan = PlanFor(op);
  RewriteStage stage;
  for (auto _ : state) {
    for (uint32_t i = 0; i < kN; ++i) {
      PacketBuffer& b = batch.packet(i);
      std::memcpy(b.data(), packets[i].bytes.data(), parsed_meta[i].len);
      b.meta().flags = parsed_meta[i].flags;
      batch.set_next(i, Next::kRewrite);
      batch.set_plan(i, &plan);
    }
    stage.Process(batch);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kN));
  state.SetLabel(OpName(op));
  for (uint32_t i = 0; i < kN; ++i) batch.set_next(i, Next::kAccept);
  batch.RecordVerdicts();
  PacketBuffer* out[kMaxBatch];
  cache.PutBulk(out, batch.TakeBuffers(out));
}
BENCHMARK(BM_RewriteOp)->DenseRange(0, kNumOps - 1);

// The data path at 64 B, to set against BM_MemcpyFloor/0/64 (packet_bench), which does the
// first and last steps only: take buffers from the pool cache, copy each 60-byte frame in
// (IPv4 TCP to port 80, many flows), parse, rewrite port 80 to 8080 with the checksum fixed
// (the classify stand-in sets next and plan), record verdicts, give the buffers back.
// Args: batch size. Items = packets.
void BM_ParseRewritePort64B(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const auto packets = bench::MixPackets(bench::kIpv4Tcp64, n);
  RewritePlan plan;
  plan.dst_port = PortRewrite::Map({{.first = 80, .last = 80, .to = 8080}});
  PoolCache cache(bench::Pool());
  ParseStage parse({});
  RewriteStage rewrite;
  Batch batch;
  batch.set_limit(kMaxBatch);
  PacketBuffer* bufs[kMaxBatch];
  for (auto _ : state) {
    const uint32_t got = cache.GetBulk(SizeClass::kSmall, bufs, n);
    for (uint32_t i = 0; i < got; ++i) {
      bufs[i]->Assign(packets[i].bytes.data(), static_cast<uint32_t>(packets[i].bytes.size()));
      bufs[i]->meta().link_type = LinkType::kEthernet;
      batch.Push(PacketRef(bufs[i]));
    }
    parse.Process(batch);
    for (uint32_t i = 0; i < got; ++i) {
      if (batch.next(i) != Next::kClassify) continue;
      batch.set_next(i, Next::kRewrite);
      batch.set_plan(i, &plan);
    }
    rewrite.Process(batch);
    batch.RecordVerdicts();
    cache.PutBulk(bufs, batch.TakeBuffers(bufs));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.counters["rewritten_pct"] =
      100.0 * static_cast<double>(rewrite.counters().Load(RewriteCounter::kRewritten)) /
      static_cast<double>(state.iterations() * n);
}
BENCHMARK(BM_ParseRewritePort64B)->Arg(64)->Arg(256);

}  // namespace
}  // namespace sluice
