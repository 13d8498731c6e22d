#include "engine/packet/packet_buffer.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>

#include "engine/pool/buffer_pool.h"

namespace sluice {
namespace {

class PacketBufferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = BufferPool::Create({.small_buffers = 4, .large_buffers = 1});
    ASSERT_TRUE(p.ok()) << p.status().message();
    pool_ = std::move(p).value();
    ASSERT_EQ(pool_->GetBulk(SizeClass::kSmall, &buf_, 1), 1u);
  }
  void TearDown() override { pool_->PutBulk(&buf_, 1); }

  std::unique_ptr<BufferPool> pool_;
  PacketBuffer* buf_ = nullptr;
};

TEST_F(PacketBufferTest, LayoutIsTwoHeaderLinesThenHeadroomThenData) {
  EXPECT_EQ(sizeof(PacketMeta), 64u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buf_) % 64, 0u);
  EXPECT_EQ(buf_->room() - reinterpret_cast<uint8_t*>(buf_), 128);
  EXPECT_EQ(buf_->headroom(), kHeadroom);
  EXPECT_EQ(buf_->data() - buf_->room(), static_cast<std::ptrdiff_t>(kHeadroom));
  EXPECT_EQ(buf_->len(), 0u);
  EXPECT_EQ(buf_->tailroom(), kSmallDataCapacity);
  EXPECT_EQ(buf_->meta().rule, kNoRule);
  EXPECT_EQ(buf_->meta().verdict, Verdict::kNone);
}

TEST_F(PacketBufferTest, AppendFillsTailroomExactlyAndNoFurther) {
  ASSERT_NE(buf_->Append(kSmallDataCapacity - 1), nullptr);
  EXPECT_EQ(buf_->tailroom(), 1u);
  EXPECT_EQ(buf_->Append(2), nullptr);  // does not fit
  EXPECT_EQ(buf_->len(), kSmallDataCapacity - 1);  // unchanged by the failed call
  ASSERT_NE(buf_->Append(1), nullptr);
  EXPECT_EQ(buf_->tailroom(), 0u);
}

TEST_F(PacketBufferTest, PrependUsesHeadroomAndFailsWithoutSideEffects) {
  const uint8_t payload[] = {1, 2, 3, 4};
  ASSERT_TRUE(buf_->Assign(payload, sizeof payload));
  uint8_t* front = buf_->Prepend(14);
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(buf_->len(), 18u);
  EXPECT_EQ(buf_->headroom(), kHeadroom - 14);
  EXPECT_EQ(std::memcmp(buf_->data() + 14, payload, 4), 0);

  EXPECT_EQ(buf_->Prepend(kHeadroom), nullptr);  // only 114 bytes of headroom left
  EXPECT_EQ(buf_->len(), 18u);
  EXPECT_EQ(buf_->headroom(), kHeadroom - 14);
  EXPECT_EQ(buf_->data(), front);
}

TEST_F(PacketBufferTest, AdjustStripsFromTheFrontAndRefusesMoreThanLen) {
  const uint8_t bytes[] = {0xaa, 0xbb, 0xcc};
  ASSERT_TRUE(buf_->Assign(bytes, 3));
  EXPECT_FALSE(buf_->Adjust(4));
  EXPECT_EQ(buf_->len(), 3u);
  EXPECT_EQ(buf_->data()[0], 0xaa);
  ASSERT_TRUE(buf_->Adjust(1));
  EXPECT_EQ(buf_->len(), 2u);
  EXPECT_EQ(buf_->data()[0], 0xbb);
  ASSERT_TRUE(buf_->Adjust(2));
  EXPECT_EQ(buf_->len(), 0u);
}

TEST_F(PacketBufferTest, TrimRemovesPaddingAndRefusesMoreThanLen) {
  const uint8_t bytes[60] = {};
  ASSERT_TRUE(buf_->Assign(bytes, 60));
  EXPECT_FALSE(buf_->Trim(61));
  EXPECT_EQ(buf_->len(), 60u);
  ASSERT_TRUE(buf_->Trim(14));
  EXPECT_EQ(buf_->len(), 46u);
  EXPECT_EQ(buf_->tailroom(), kSmallDataCapacity - 46);
}

TEST_F(PacketBufferTest, AssignRefusesWhatDoesNotFit) {
  std::vector<uint8_t> big(kSmallDataCapacity + 1, 7);
  EXPECT_FALSE(buf_->Assign(big.data(), static_cast<uint32_t>(big.size())));
  EXPECT_EQ(buf_->len(), 0u);
  EXPECT_TRUE(buf_->Assign(big.data(), kSmallDataCapacity));
}

TEST_F(PacketBufferTest, ResetRestoresHeadroomAndClearsMetadata) {
  buf_->Prepend(20);
  buf_->meta().flags = pkt_flag::kModified;
  buf_->meta().mark = 7;
  buf_->meta().rule = 3;
  PacketOwner* fake_owner = reinterpret_cast<PacketOwner*>(0x1000);
  buf_->SetOwner(fake_owner);
  EXPECT_EQ(buf_->owner(), fake_owner);
  buf_->Reset();
  EXPECT_EQ(buf_->owner(), nullptr);
  EXPECT_EQ(buf_->headroom(), kHeadroom);
  EXPECT_EQ(buf_->len(), 0u);
  EXPECT_EQ(buf_->meta().flags, 0);
  EXPECT_EQ(buf_->meta().mark, 0u);
  EXPECT_EQ(buf_->meta().rule, kNoRule);
  EXPECT_EQ(buf_->meta().size_class, static_cast<uint8_t>(SizeClass::kSmall));
  EXPECT_EQ(buf_->io().pool, pool_.get());
}

TEST(PacketBufferLarge, HoldsA64KiBGsoPacket) {
  auto p = BufferPool::Create({.small_buffers = 1, .large_buffers = 1});
  ASSERT_TRUE(p.ok());
  PacketBuffer* b = nullptr;
  ASSERT_EQ((*p)->GetBulk(SizeClass::kLarge, &b, 1), 1u);
  EXPECT_NE(b->Append(65535), nullptr);
  EXPECT_EQ(b->headroom(), kHeadroom);
  (*p)->PutBulk(&b, 1);
}

TEST(SizeClass, SmallestClassThatFits) {
  SizeClass c;
  ASSERT_TRUE(ClassFor(60, &c));
  EXPECT_EQ(c, SizeClass::kSmall);
  ASSERT_TRUE(ClassFor(1514, &c));
  EXPECT_EQ(c, SizeClass::kSmall);
  ASSERT_TRUE(ClassFor(kSmallDataCapacity + 1, &c));
  EXPECT_EQ(c, SizeClass::kLarge);
  ASSERT_TRUE(ClassFor(65535, &c));
  EXPECT_EQ(c, SizeClass::kLarge);
  EXPECT_FALSE(ClassFor(kLargeDataCapacity + 1, &c));
  // A 64 B packet does not pay for 64 KiB.
  EXPECT_LT(BufferStride(SizeClass::kSmall), 4096u);
}

}  // namespace
}  // namespace sluice
