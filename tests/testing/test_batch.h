// Filling and emptying batches in tests.
#pragma once

#include <vector>

#include "engine/packet/batch.h"
#include "engine/pool/buffer_pool.h"
#include "tests/testing/packet_builder.h"

namespace sluice::testing {

// Copies each packet into a buffer of `pool` and appends it to `batch` with `next`.
void PushPackets(BufferPool& pool, Batch& batch, const std::vector<TestPacket>& packets,
                 Next next = Next::kParse);

// Moves every buffer out of a batch whose buffers are not pool-owned (GuardedPacket, or
// buffers the test frees itself), so the batch's destructor returns nothing to a pool.
void ReleaseAll(Batch& batch);

}  // namespace sluice::testing
