#include "engine/packet/batch.h"

#include <gtest/gtest.h>

#include "engine/pool/buffer_pool.h"

namespace sluice {
namespace {

class BatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = BufferPool::Create({.small_buffers = kMaxBatch + 8, .large_buffers = 0});
    ASSERT_TRUE(p.ok());
    pool_ = std::move(p).value();
  }
  PacketRef Get() {
    PacketBuffer* b = nullptr;
    EXPECT_EQ(pool_->GetBulk(SizeClass::kSmall, &b, 1), 1u);
    return PacketRef(b);
  }
  std::unique_ptr<BufferPool> pool_;
};

TEST_F(BatchTest, ClosesAtItsLimitAndKeepsOrder) {
  Batch b;
  b.set_limit(4);
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_FALSE(b.full());
    PacketRef r = Get();
    r->meta().io_token = i;
    b.Push(std::move(r));
  }
  EXPECT_TRUE(b.full());
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(b.packet(i).meta().io_token, i);
    EXPECT_EQ(b.next(i), Next::kParse);
    EXPECT_EQ(b.reason(i), DropReason::kNone);
    EXPECT_EQ(b.plan(i), nullptr);
  }
  for (uint32_t i = 0; i < 4; ++i) b.set_next(i, Next::kAccept);
  b.RecordVerdicts();
  PacketBuffer* out[kMaxBatch];
  ASSERT_EQ(b.TakeBuffers(out), 4u);
  EXPECT_TRUE(b.empty());
  pool_->PutBulk(out, 4);
}

TEST_F(BatchTest, ZeroNextIsDrop) {
  EXPECT_EQ(static_cast<int>(Next::kDrop), 0);
  EXPECT_TRUE(IsTerminal(Next::kDrop));
  EXPECT_TRUE(IsTerminal(Next::kAccept));
  EXPECT_TRUE(IsTerminal(Next::kSkip));
  EXPECT_FALSE(IsTerminal(Next::kParse));
  EXPECT_FALSE(IsTerminal(Next::kClassify));
  EXPECT_FALSE(IsTerminal(Next::kRewrite));
}

TEST_F(BatchTest, RecordVerdictsMapsEveryDisposition) {
  Batch b;
  b.set_limit(kMaxBatch);
  for (int i = 0; i < 5; ++i) b.Push(Get());
  b.set_next(0, Next::kAccept);
  b.Drop(1, DropReason::kNotIp);
  b.Skip(2, DropReason::kUnsupportedLinkType);
  b.set_next(3, Next::kClassify);  // a stage never ran: must not leave looking accepted
  // slot 4 stays kParse
  b.RecordVerdicts();
  EXPECT_EQ(b.packet(0).meta().verdict, Verdict::kAccept);
  EXPECT_EQ(b.packet(1).meta().verdict, Verdict::kDrop);
  EXPECT_EQ(b.packet(1).meta().drop_reason, DropReason::kNotIp);
  EXPECT_EQ(b.packet(2).meta().verdict, Verdict::kAccept);
  EXPECT_EQ(b.packet(2).meta().drop_reason, DropReason::kUnsupportedLinkType);
  for (uint32_t i : {3u, 4u}) {
    EXPECT_EQ(b.packet(i).meta().verdict, Verdict::kDrop);
    EXPECT_EQ(b.packet(i).meta().drop_reason, DropReason::kNoVerdict);
    EXPECT_EQ(b.next(i), Next::kDrop);
  }
  b.Clear();
  EXPECT_EQ(pool_->Stats().orphaned, 0u);  // every packet had a verdict
}

TEST_F(BatchTest, ClearingUnverdictedPacketsOrphansEachExactlyOnce) {
  {
    Batch b;
    for (int i = 0; i < 3; ++i) b.Push(Get());
    b.Clear();
    EXPECT_EQ(pool_->Stats().orphaned, 3u);
    for (int i = 0; i < 2; ++i) b.Push(Get());
  }  // destroyed holding two
  EXPECT_EQ(pool_->Stats().orphaned, 5u);
  EXPECT_EQ(pool_->Stats().free_central[0], kMaxBatch + 8);
}

TEST_F(BatchTest, HoldsFullCapacity) {
  Batch b;
  b.set_limit(kMaxBatch);
  for (uint32_t i = 0; i < kMaxBatch; ++i) b.Push(Get());
  EXPECT_TRUE(b.full());
  EXPECT_EQ(b.size(), kMaxBatch);
  for (uint32_t i = 0; i < kMaxBatch; ++i) b.Drop(i, DropReason::kNotIp);
  b.RecordVerdicts();
  b.Clear();
  EXPECT_EQ(pool_->Stats().orphaned, 0u);
}

// Stages prefetch kPrefetchAhead slots in front of the one they work on, past the end near a
// batch's end, and over slots a dispatch has moved out: those must be ignored, not followed.
// A prefetch never faults, so following a null slot shows only under UBSan (the asan preset).
TEST_F(BatchTest, PrefetchIgnoresSlotsPastTheEndAndMovedOut) {
  Batch from;
  from.Push(Get());
  from.Push(Get());
  Batch to;
  to.MoveSlotFrom(from, 0);
  for (uint32_t i = 0; i < kMaxBatch + kPrefetchAhead; ++i) {
    from.Prefetch(i);         // slot 0 is empty now
    from.Prefetch<true>(i);
    to.Prefetch<true>(i);
  }
  EXPECT_EQ(from.size(), 2u);
  EXPECT_EQ(to.size(), 1u);
  from.Clear();
}

TEST(BatchDeathTest, LimitOutsideCapacityIsAProgrammerError) {
  Batch b;
  EXPECT_DEATH(b.set_limit(0), "check failed");
  EXPECT_DEATH(b.set_limit(kMaxBatch + 1), "check failed");
}

}  // namespace
}  // namespace sluice
