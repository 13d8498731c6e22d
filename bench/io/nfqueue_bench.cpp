// NFQUEUE message handling without the syscalls: what sluice spends per packet reading a packet
// message and planning + writing verdicts, against the naive one-message-per-packet verdict.
// Items are packets.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "engine/io/nfqueue/nfq_message.h"
#include "engine/io/nfqueue/verdict_plan.h"
#include "tests/io/nfqueue/nfq_test_kernel.h"

namespace sluice {
namespace {

// ParseNfqMessage on a forwarded 64-byte packet's message (ifindexes, skb info, payload).
void BM_ParsePacketMessage(benchmark::State& state) {
  testing::PacketSpec s;
  s.in_if = 2;
  s.out_if = 3;
  s.skb_info = NFQA_SKB_CSUMNOTREADY;
  s.payload = testing::Ipv4Bytes(64);
  const auto msg = testing::BuildPacketMessage(s);
  for (auto _ : state) {
    NfqMessage m = ParseNfqMessage(msg.data(), static_cast<uint32_t>(msg.size()));
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParsePacketMessage);

enum Mix { kAllAccept = 0, kTenPercentDrop, kTenPercentRewritten, kMarkEveryPacket };

std::vector<VerdictItem> Items(uint32_t n, Mix mix) {
  static const uint8_t payload[64] = {0x45};
  std::mt19937 rng(7);
  std::vector<VerdictItem> items(n);
  for (uint32_t i = 0; i < n; ++i) {
    items[i] = {.ordinal = i,
                .id = i + 1,
                .mark = 0x100,
                .kind = VerdictKind::kAccept,
                .payload = nullptr,
                .payload_len = 0};
    if (mix == kTenPercentDrop && rng() % 10 == 0) items[i].kind = VerdictKind::kDrop;
    if (mix == kTenPercentRewritten && rng() % 10 == 0) {
      items[i].kind = VerdictKind::kAcceptPayload;
      items[i].payload = payload;
      items[i].payload_len = sizeof payload;
    }
    if (mix == kMarkEveryPacket)
      items[i].mark = 0x100 | (i & 1);  // adversarial: no two neighbours share a mark
  }
  return items;
}

// PlanVerdicts + VerdictWriter for one batch: everything Send does but the sendmsg.
void BM_PlanAndWrite(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const auto items = Items(n, static_cast<Mix>(state.range(1)));
  VerdictTracker tracker;
  std::vector<VerdictMessage> msgs(n);
  VerdictWriter writer(0, n, 1 << 20);
  for (auto _ : state) {
    PlanCounts counts;
    const uint32_t m = PlanVerdicts(items, tracker, msgs.data(), &counts);
    writer.Clear();
    for (uint32_t k = 0; k < m; ++k) writer.Append(msgs[k]);
    benchmark::DoNotOptimize(writer.iov());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_PlanAndWrite)
    ->ArgsProduct({{1, 16, 64, 256},
                   {kAllAccept, kTenPercentDrop, kTenPercentRewritten, kMarkEveryPacket}})
    ->ArgNames({"batch", "mix"});

// Baseline: one verdict message per packet with libnetfilter_queue's helpers, as naive_nfq
// builds them (before its one sendto per packet).
void BM_NaiveVerdictPerPacket(benchmark::State& state) {
  alignas(4) char buf[256];
  uint32_t id = 1;
  for (auto _ : state) {
    nlmsghdr* v = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT, 0);
    nfq_nlmsg_verdict_put(v, static_cast<int>(id++), NF_ACCEPT);
    nfq_nlmsg_verdict_put_mark(v, 0x100);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NaiveVerdictPerPacket);

}  // namespace
}  // namespace sluice
