// What a buffer costs to take from and give back to the pool: through a per-thread cache
// (single and bulk) and straight from the central stacks (the lock every cache refill takes).
#include <benchmark/benchmark.h>

#include "engine/pool/buffer_pool.h"

namespace sluice {
namespace {

BufferPool& Pool() {
  static auto pool = std::move(BufferPool::Create({.small_buffers = 8192, .large_buffers = 0})).value();
  return *pool;
}

// One Get + one Put through a PoolCache, per packet.
void BM_CacheGetPutSingle(benchmark::State& state) {
  PoolCache cache(Pool());
  for (auto _ : state) {
    PacketBuffer* b = cache.Get(SizeClass::kSmall);
    benchmark::DoNotOptimize(b);
    cache.Put(b);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CacheGetPutSingle);

// GetBulk(n) + PutBulk(n) through a PoolCache; items = buffers.
void BM_CacheGetPutBulk(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  PoolCache cache(Pool());
  PacketBuffer* bufs[256];
  for (auto _ : state) {
    const uint32_t got = cache.GetBulk(SizeClass::kSmall, bufs, n);
    benchmark::DoNotOptimize(bufs[0]);
    cache.PutBulk(bufs, got);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_CacheGetPutBulk)->Arg(1)->Arg(32)->Arg(64)->Arg(256);

// Two caches, as a source thread and a sink thread use them: buffers leave through one and
// come back through the other, so every cache/2 packets a bulk move crosses the central lock.
void BM_CacheGetPutCrossCache(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  PoolCache source(Pool());
  PoolCache sink(Pool());
  PacketBuffer* bufs[256];
  for (auto _ : state) {
    const uint32_t got = source.GetBulk(SizeClass::kSmall, bufs, n);
    sink.PutBulk(bufs, got);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_CacheGetPutCrossCache)->Arg(64);

// The central stacks without a cache: the lock and the Reset per buffer.
void BM_PoolGetPutBulk(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  PacketBuffer* bufs[256];
  for (auto _ : state) {
    const uint32_t got = Pool().GetBulk(SizeClass::kSmall, bufs, n);
    Pool().PutBulk(bufs, got);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_PoolGetPutBulk)->Arg(1)->Arg(64);

// Two threads sharing the pool, each with its own cache (contention on the central lock).
void BM_CacheGetPutBulkThreads(benchmark::State& state) {
  PoolCache cache(Pool());
  PacketBuffer* bufs[64];
  for (auto _ : state) {
    const uint32_t got = cache.GetBulk(SizeClass::kSmall, bufs, 64);
    cache.PutBulk(bufs, got);
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_CacheGetPutBulkThreads)->Threads(2);

}  // namespace
}  // namespace sluice
