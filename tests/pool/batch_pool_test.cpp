#include "engine/pool/batch_pool.h"

#include <gtest/gtest.h>

#include <thread>

#include "engine/pool/buffer_pool.h"

namespace sluice {
namespace {

TEST(BatchPool, TokensLimitBatchesInFlight) {
  BatchPool pool(2, 32);
  Batch* a = pool.TryGet();
  Batch* b = pool.TryGet();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->limit(), 32u);
  EXPECT_EQ(pool.TryGet(), nullptr);
  EXPECT_EQ(pool.in_flight(), 2u);
  EXPECT_EQ(pool.Get(std::chrono::microseconds(100)), nullptr);  // times out
  pool.Put(a);
  EXPECT_EQ(pool.TryGet(), a);
  pool.Put(a);
  pool.Put(b);
  EXPECT_EQ(pool.in_flight(), 0u);
}

TEST(BatchPool, GetWakesWhenABatchIsReturned) {
  BatchPool pool(1, 64);
  Batch* only = pool.TryGet();
  std::thread returner([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pool.Put(only);
  });
  Batch* got = pool.Get(std::chrono::seconds(10));
  returner.join();
  EXPECT_EQ(got, only);
  pool.Put(got);
}

TEST(BatchPoolDeathTest, ANonEmptyBatchCannotBeReturned) {
  auto bufs = BufferPool::Create({.small_buffers = 1, .large_buffers = 0});
  ASSERT_TRUE(bufs.ok());
  BatchPool pool(1, 8);
  Batch* b = pool.TryGet();
  EXPECT_DEATH(
      {
        PacketBuffer* raw = nullptr;
        (*bufs)->GetBulk(SizeClass::kSmall, &raw, 1);
        b->Push(PacketRef(raw));
        pool.Put(b);
      },
      "check failed");
  pool.Put(b);
}

}  // namespace
}  // namespace sluice
