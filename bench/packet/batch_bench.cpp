// Filling and retiring batches, and the floor every per-packet ratio is measured against:
// memcpy of the packets into pool buffers (64 B frames and IMIX 7:4:1 of 60/590/1514 B).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "engine/pool/batch_pool.h"
#include "engine/pool/buffer_pool.h"

namespace sluice {
namespace {

BufferPool& Pool() {
  static auto pool = std::move(BufferPool::Create({.small_buffers = 8192, .large_buffers = 0})).value();
  return *pool;
}

// Frame lengths for a mix, in a fixed shuffled order (seed 1).
std::vector<uint32_t> MixLengths(int mix) {
  std::vector<uint32_t> lens;
  if (mix == 0) {
    lens.assign(64, 60);  // 64 B on the wire = 60 B frame without FCS
  } else {
    for (int i = 0; i < 7; ++i) lens.push_back(60);
    for (int i = 0; i < 4; ++i) lens.push_back(590);
    lens.push_back(1514);
    std::vector<uint32_t> many;
    for (int r = 0; r < 16; ++r) many.insert(many.end(), lens.begin(), lens.end());
    std::mt19937 rng(1);
    std::shuffle(many.begin(), many.end(), rng);
    lens = many;
  }
  return lens;
}

const char* MixName(int mix) { return mix == 0 ? "64B" : "IMIX"; }

// The floor: take a batch of buffers, memcpy each packet in, give them back. Items = packets.
void BM_MemcpyFloor(benchmark::State& state) {
  const int mix = static_cast<int>(state.range(0));
  const auto batch = static_cast<uint32_t>(state.range(1));
  const std::vector<uint32_t> lens = MixLengths(mix);
  std::vector<uint8_t> src(2048 * lens.size());
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 31);
  PoolCache cache(Pool());
  PacketBuffer* bufs[kMaxBatch];
  std::size_t next = 0;
  uint64_t bytes = 0;
  for (auto _ : state) {
    const uint32_t n = cache.GetBulk(SizeClass::kSmall, bufs, batch);
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t len = lens[next];
      bufs[i]->Assign(src.data() + next * 2048, len);
      bytes += len;
      next = next + 1 == lens.size() ? 0 : next + 1;
    }
    benchmark::ClobberMemory();
    cache.PutBulk(bufs, n);
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.SetLabel(MixName(mix));
}
BENCHMARK(BM_MemcpyFloor)->ArgsProduct({{0, 1}, {64, 256}});

// The whole life of a batch without any stage: buffers in, verdicts recorded, buffers out.
void BM_BatchFillAndRetire(benchmark::State& state) {
  const auto limit = static_cast<uint32_t>(state.range(0));
  BatchPool batches(2, limit);
  PoolCache cache(Pool());
  PacketBuffer* bufs[kMaxBatch];
  for (auto _ : state) {
    Batch* b = batches.TryGet();
    const uint32_t n = cache.GetBulk(SizeClass::kSmall, bufs, limit);
    for (uint32_t i = 0; i < n; ++i) b->Push(PacketRef(bufs[i]));
    for (uint32_t i = 0; i < n; ++i) b->set_next(i, Next::kAccept);
    b->RecordVerdicts();
    cache.PutBulk(bufs, b->TakeBuffers(bufs));
    batches.Put(b);
  }
  state.SetItemsProcessed(state.iterations() * limit);
}
BENCHMARK(BM_BatchFillAndRetire)->Arg(1)->Arg(32)->Arg(64)->Arg(256);

}  // namespace
}  // namespace sluice
