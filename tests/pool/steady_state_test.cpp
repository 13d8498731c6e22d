// The packet core allocates nothing per packet once it is warm: get buffers, fill a batch,
// record verdicts, return the buffers, again and again.
#include <gtest/gtest.h>

#include <cstring>

#include "engine/pool/batch_pool.h"
#include "engine/pool/buffer_pool.h"
#include "tests/testing/alloc_counter.h"

namespace sluice {
namespace {

TEST(SteadyState, NoHeapAllocationPerPacket) {
  auto p = BufferPool::Create({.small_buffers = 4096, .large_buffers = 0});
  ASSERT_TRUE(p.ok());
  BufferPool& pool = **p;
  BatchPool batches(4, kDefaultBatch);
  PoolCache source_cache(pool);
  PoolCache sink_cache(pool);
  const uint8_t frame[60] = {0x45};

  auto round = [&] {
    Batch* b = batches.TryGet();
    PacketBuffer* bufs[kMaxBatch];
    const uint32_t n = source_cache.GetBulk(SizeClass::kSmall, bufs, b->limit());
    for (uint32_t i = 0; i < n; ++i) {
      bufs[i]->Assign(frame, sizeof frame);
      b->Push(PacketRef(bufs[i]));
    }
    for (uint32_t i = 0; i < b->size(); ++i) {
      if (i % 3 == 0) {
        b->Drop(i, DropReason::kNotIp);
      } else {
        b->set_next(i, Next::kAccept);
      }
    }
    b->RecordVerdicts();
    const uint32_t m = b->TakeBuffers(bufs);
    sink_cache.PutBulk(bufs, m);
    batches.Put(b);
    return m;
  };

  for (int i = 0; i < 100; ++i) round();  // warm up: caches reach their working size
  testing::AllocationScope allocs;
  uint64_t packets = 0;
  for (int i = 0; i < 10000; ++i) packets += round();
  EXPECT_EQ(packets, 10000u * kDefaultBatch);
  EXPECT_EQ(allocs.count(), 0u) << "heap allocations over " << packets << " packets";
  EXPECT_EQ(pool.Stats().orphaned, 0u);
}

}  // namespace
}  // namespace sluice
