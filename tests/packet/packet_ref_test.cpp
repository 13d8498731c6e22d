#include "engine/packet/packet_ref.h"

#include <gtest/gtest.h>

#include <vector>

#include "engine/pool/buffer_pool.h"

namespace sluice {
namespace {

// Records what a kernel-facing source would be told.
class RecordingOwner final : public PacketOwner {
 public:
  void OnOrphan(PacketBuffer& buf) noexcept override { tokens.push_back(buf.meta().io_token); }
  std::vector<uint64_t> tokens;
};

std::unique_ptr<BufferPool> MakePool(uint32_t small = 8) {
  auto p = BufferPool::Create({.small_buffers = small, .large_buffers = 0});
  EXPECT_TRUE(p.ok());
  return std::move(p).value();
}

TEST(PacketRef, DestroyedWithoutVerdictDropsTellsOwnerAndReturnsBuffer) {
  auto pool = MakePool();
  RecordingOwner owner;
  PacketBuffer* raw = nullptr;
  ASSERT_EQ(pool->GetBulk(SizeClass::kSmall, &raw, 1), 1u);
  raw->meta().io_token = 4242;  // e.g. an NFQUEUE packet id
  raw->SetOwner(&owner);
  { PacketRef ref(raw); }
  EXPECT_EQ(raw->meta().verdict, Verdict::kDrop);
  EXPECT_EQ(raw->meta().drop_reason, DropReason::kNoVerdict);
  ASSERT_EQ(owner.tokens.size(), 1u);
  EXPECT_EQ(owner.tokens[0], 4242u);
  const PoolStats s = pool->Stats();
  EXPECT_EQ(s.orphaned, 1u);
  EXPECT_EQ(s.free_central[0], 8u);  // the buffer is back
}

TEST(PacketRef, DestroyedWithVerdictIsNotAnOrphan) {
  auto pool = MakePool();
  RecordingOwner owner;
  PacketBuffer* raw = nullptr;
  ASSERT_EQ(pool->GetBulk(SizeClass::kSmall, &raw, 1), 1u);
  raw->SetOwner(&owner);
  {
    PacketRef ref(raw);
    ref.SetVerdict(Verdict::kAccept);
  }
  EXPECT_TRUE(owner.tokens.empty());
  EXPECT_EQ(pool->Stats().orphaned, 0u);
  EXPECT_EQ(pool->Stats().free_central[0], 8u);
}

TEST(PacketRef, MoveTransfersOwnershipExactlyOnce) {
  auto pool = MakePool();
  PacketBuffer* raw = nullptr;
  ASSERT_EQ(pool->GetBulk(SizeClass::kSmall, &raw, 1), 1u);
  PacketRef a(raw);
  PacketRef b(std::move(a));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_EQ(b.get(), raw);
  PacketRef c;
  c = std::move(b);
  EXPECT_EQ(c.get(), raw);
  c.SetVerdict(Verdict::kAccept);
  c = PacketRef();  // assignment releases the old buffer
  EXPECT_EQ(pool->Stats().free_central[0], 8u);
  EXPECT_EQ(pool->Stats().orphaned, 0u);
}

TEST(PacketRef, AssigningOverAnUnverdictedRefOrphansIt) {
  auto pool = MakePool();
  PacketBuffer* raws[2];
  ASSERT_EQ(pool->GetBulk(SizeClass::kSmall, raws, 2), 2u);
  PacketRef a(raws[0]);
  a = PacketRef(raws[1]);
  EXPECT_EQ(pool->Stats().orphaned, 1u);
  a.SetVerdict(Verdict::kDrop);
}

TEST(PacketRef, ReleaseHandsOverWithoutAction) {
  auto pool = MakePool();
  PacketBuffer* raw = nullptr;
  ASSERT_EQ(pool->GetBulk(SizeClass::kSmall, &raw, 1), 1u);
  PacketRef ref(raw);
  EXPECT_EQ(ref.Release(), raw);
  EXPECT_FALSE(ref);
  EXPECT_EQ(pool->Stats().free_central[0], 7u);  // still out: the caller owns it
  raw->meta().verdict = Verdict::kAccept;
  pool->PutBulk(&raw, 1);
  EXPECT_EQ(pool->Stats().orphaned, 0u);
}

}  // namespace
}  // namespace sluice
