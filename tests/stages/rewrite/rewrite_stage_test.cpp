#include "engine/stages/rewrite/rewrite_stage.h"

#include <gtest/gtest.h>

#include "engine/core/byte_order.h"
#include "engine/graph/stage.h"
#include "engine/pool/buffer_pool.h"
#include "engine/stages/rewrite/rewrite_ops.h"
#include "tests/stages/rewrite/rewrite_test_util.h"
#include "tests/testing/alloc_counter.h"
#include "tests/testing/test_batch.h"

namespace sluice {
namespace {

static_assert(Stage<RewriteStage>, "the graph runs it through StageRef");

using testing::PacketBuilder;
using testing::Parsed;
using testing::TestPacket;

uint64_t At(const RewriteStage& s, RewriteCounter c) { return s.counters().Load(c); }

// Runs one parsed packet through RewriteStage with plan.
struct SlotResult {
  Next next;
  DropReason reason;
};
SlotResult RewriteOne(RewriteStage& stage, Parsed& x, const RewritePlan* plan) {
  Batch batch;
  batch.Push(PacketRef(&x.buf()), Next::kRewrite);
  batch.set_plan(0, plan);
  stage.Process(batch);
  const SlotResult r{batch.next(0), batch.reason(0)};
  testing::ReleaseAll(batch);
  return r;
}

TEST(RewriteStage, PortMapRewritesAndFlagsModified) {
  RewritePlan plan;
  plan.dst_port = PortRewrite::Map({{.first = 80, .last = 80, .to = 8080}});
  ASSERT_TRUE(Validate(plan).ok());
  RewriteStage stage;
  Parsed x(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Tcp(40000, 80).Build());
  const SlotResult r = RewriteOne(stage, x, &plan);
  EXPECT_EQ(r.next, Next::kAccept);
  EXPECT_EQ(LoadBe16(x.l4() + 2), 8080);
  EXPECT_TRUE(x.meta().flags & pkt_flag::kModified);
  EXPECT_TRUE(x.L4Ok() && x.IpOk());
  EXPECT_EQ(At(stage, RewriteCounter::kRewritten), 1u);
  EXPECT_EQ(At(stage, RewriteCounter::kPortChanged), 1u);

  // A port the map does not cover: accepted, untouched, not flagged.
  Parsed y(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Tcp(40000, 443).Build());
  const auto before = y.Bytes();
  EXPECT_EQ(RewriteOne(stage, y, &plan).next, Next::kAccept);
  EXPECT_EQ(y.Bytes(), before);
  EXPECT_FALSE(y.meta().flags & pkt_flag::kModified);
  EXPECT_EQ(At(stage, RewriteCounter::kUnchanged), 1u);
}

TEST(RewriteStage, TtlDecrementDropsBeforeChangingAnything) {
  RewritePlan plan;
  plan.src_addr = AddrRewrite::SetIpv4(0x0a000001);
  plan.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = 1};
  RewriteStage stage;
  Parsed x(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Ttl(1).Udp(1, 2).Build());
  const auto before = x.Bytes();
  const SlotResult r = RewriteOne(stage, x, &plan);
  EXPECT_EQ(r.next, Next::kDrop);
  EXPECT_EQ(r.reason, DropReason::kTtlExpired);
  EXPECT_EQ(x.Bytes(), before);
  EXPECT_FALSE(x.meta().flags & pkt_flag::kModified);

  Parsed y(PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Ttl(2).Udp(1, 2).Build());
  plan.src_addr = {};
  EXPECT_EQ(RewriteOne(stage, y, &plan).next, Next::kAccept);
  EXPECT_EQ(Ttl(y.buf()), 1);
}

TEST(RewriteStage, TtlSetNeverRaises) {
  RewritePlan plan;
  plan.ttl = {.kind = TtlRewrite::Kind::kSet, .value = 32};
  RewriteStage stage;
  Parsed high(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Ttl(200).Udp(1, 2).Build());
  RewriteOne(stage, high, &plan);
  EXPECT_EQ(Ttl(high.buf()), 32);
  EXPECT_TRUE(high.IpOk());
  Parsed low(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Ttl(5).Udp(1, 2).Build());
  RewriteOne(stage, low, &plan);
  EXPECT_EQ(Ttl(low.buf()), 5);
  EXPECT_EQ(At(stage, RewriteCounter::kTtlChanged), 1u);
}

TEST(RewriteStage, NoPlanIsDropped) {
  RewriteStage stage;
  Parsed x(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Udp(1, 2).Build());
  const SlotResult r = RewriteOne(stage, x, nullptr);
  EXPECT_EQ(r.next, Next::kDrop);
  EXPECT_EQ(r.reason, DropReason::kRewriteNoPlan);
}

TEST(RewriteStage, UnparsedPacketIsLeftAlone) {
  RewritePlan plan;
  plan.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = 1};
  plan.dst_port = PortRewrite::Set(1);
  RewriteStage stage;
  testing::GuardedPacket g;
  const uint8_t tiny[3] = {0x45, 0, 0};
  PacketBuffer& buf = g.Load(tiny, sizeof tiny, LinkType::kRaw);  // parse never saw it
  Batch batch;
  batch.Push(PacketRef(&buf), Next::kRewrite);
  batch.set_plan(0, &plan);
  stage.Process(batch);
  EXPECT_EQ(batch.next(0), Next::kAccept);
  EXPECT_FALSE(buf.meta().flags & pkt_flag::kModified);
  EXPECT_EQ(At(stage, RewriteCounter::kNotParsed), 1u);
  testing::ReleaseAll(batch);
}

TEST(RewriteStage, OperationsThatDoNotApplyAreCounted) {
  RewritePlan plan;
  plan.src_addr = AddrRewrite::SetIpv4(0x0a000001);  // an IPv6 packet comes
  plan.dst_port = PortRewrite::Set(1);               // it is a later fragment
  RewriteStage stage;
  Parsed x(PacketBuilder()
               .Ipv6("2001:2::1", "2001:2::2")
               .Fragment(1024, false)
               .L4Proto(6)
               .Payload(40)
               .Build());
  const auto before = x.Bytes();
  EXPECT_EQ(RewriteOne(stage, x, &plan).next, Next::kAccept);
  EXPECT_EQ(x.Bytes(), before);
  EXPECT_EQ(At(stage, RewriteCounter::kFamilyMismatch), 1u);
  EXPECT_EQ(At(stage, RewriteCounter::kNoPorts), 1u);
}

TEST(RewriteStage, MarkWithMask) {
  RewritePlan plan;
  plan.mark = 0x0000ab00;
  plan.mark_mask = 0x0000ff00;
  RewriteStage stage;
  Parsed x(PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Udp(1, 2).Build());
  x.meta().mark = 0x12345678;
  RewriteOne(stage, x, &plan);
  EXPECT_EQ(x.meta().mark, 0x1234ab78u);
  EXPECT_TRUE(x.meta().flags & pkt_flag::kMarkSet);
  EXPECT_FALSE(x.meta().flags & pkt_flag::kModified);
}

TEST(RewriteStage, FullChecksumRepairsBadInput) {
  RewritePlan plan;
  plan.full_checksum = true;
  RewriteStage stage;
  struct Broken {
    TestPacket p;
    uint32_t l4_csum;  // offset of the L4 checksum within the L4 header
  };
  for (Broken b :
       {Broken{PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Tcp(1, 2).Payload(5).Build(), 16},
        Broken{PacketBuilder().Ipv6("2001:2::1", "2001:2::2").Icmp(128, 0).Payload(5).Build(),
               2}}) {
    TestPacket& p = b.p;
    p.bytes[p.l4_off + b.l4_csum] ^= 0x55;
    if (p.bytes[0] >> 4 == 4) p.bytes[10] ^= 0x11;  // and the IPv4 header checksum
    Parsed x(p);
    ASSERT_FALSE(x.IpOk() && x.L4Ok());
    RewriteOne(stage, x, &plan);
    EXPECT_TRUE(x.IpOk());
    EXPECT_TRUE(x.L4Ok());
    EXPECT_TRUE(x.meta().flags & pkt_flag::kModified);
  }
  EXPECT_EQ(At(stage, RewriteCounter::kL4CsumRecomputed), 2u);
  EXPECT_EQ(At(stage, RewriteCounter::kIpCsumRecomputed), 1u);
}

TEST(RewriteStage, OnlyTouchesSlotsBoundForRewriteAndAllocatesNothing) {
  auto pool = std::move(BufferPool::Create({.small_buffers = 128, .large_buffers = 0})).value();
  RewritePlan plan;
  plan.src_addr = AddrRewrite::MapIpv4(0xc6120000, 0x0a000000, 16);
  plan.dst_port = PortRewrite::Set(1);
  plan.mss_clamp = 1000;
  const TestPacket p =
      PacketBuilder().Ipv4("198.18.0.1", "198.19.0.2").Tcp(1, 2).TcpFlags(2).Mss(1460).Build();
  Batch batch;
  ParseStage parse({});
  testing::PushPackets(*pool, batch, std::vector<TestPacket>(64, p));
  parse.Process(batch);
  for (uint32_t i = 0; i < batch.size(); ++i) {
    batch.set_next(i, i % 2 == 0 ? Next::kRewrite : Next::kAccept);
    batch.set_plan(i, &plan);
  }
  RewriteStage stage;
  testing::AllocationScope scope;
  stage.Process(batch);
  EXPECT_EQ(scope.count(), 0u);
  for (uint32_t i = 0; i < batch.size(); ++i) {
    EXPECT_EQ(batch.next(i), Next::kAccept);
    EXPECT_EQ((batch.packet(i).meta().flags & pkt_flag::kModified) != 0, i % 2 == 0);
  }
  EXPECT_EQ(At(stage, RewriteCounter::kRewritten), 32u);
  EXPECT_EQ(At(stage, RewriteCounter::kMssClamped), 32u);
  batch.RecordVerdicts();
  batch.Clear();
}

TEST(RewriteStage, CounterTableIsDocumented) {
  for (const CounterInfo& info : kRewriteCounterTable) {
    EXPECT_FALSE(info.name.empty());
    EXPECT_FALSE(info.description.empty());
  }
}

}  // namespace
}  // namespace sluice
