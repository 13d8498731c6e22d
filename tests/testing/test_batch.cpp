#include "tests/testing/test_batch.h"

#include <gtest/gtest.h>

namespace sluice::testing {

void PushPackets(BufferPool& pool, Batch& batch, const std::vector<TestPacket>& packets,
                 Next next) {
  for (const TestPacket& p : packets) {
    PacketBuffer* b = nullptr;
    ASSERT_EQ(pool.GetBulk(SizeClass::kSmall, &b, 1), 1u) << "test pool exhausted";
    ASSERT_TRUE(b->Assign(p.bytes.data(), static_cast<uint32_t>(p.bytes.size())));
    b->meta().link_type = p.link;
    batch.Push(PacketRef(b), next);
  }
}

void ReleaseAll(Batch& batch) {
  for (uint32_t i = 0; i < batch.size(); ++i) (void)batch.ref(i).Release();
  batch.Clear();
}

}  // namespace sluice::testing
