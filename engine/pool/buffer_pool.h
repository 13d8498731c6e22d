// BufferPool: every packet buffer the process will ever use, allocated once at start-up.
//
//   worker A            worker B                         BufferPool (shared)
//   PoolCache (LIFO) ── bulk refill / bulk flush ──►  central free stacks, one per size class
//   PoolCache (LIFO) ──┘                               (a mutex, taken once per bulk move)
//
// Contracts
// - Memory: one mmap per size class at Create(), pre-faulted; never grown, never malloc'd
//   afterwards. Exhaustion returns fewer buffers than asked, counts an `exhausted` event and
//   changes nothing else: the caller stops reading (back-pressure) until buffers come back.
// - A PoolCache belongs to one thread at a time and needs no lock; it refills and flushes
//   in bulk (half its size) so the central lock is taken at most once per ~cache/2 packets.
//   Buffers may be returned through any cache or the pool: they flow across threads freely.
// - Buffers handed out are Reset(): standard headroom, zero length, metadata cleared, owner
//   cleared. Returning a buffer twice or a buffer of another pool is a checked error.
// - Cost: PoolCache Get/Put are a few ns per buffer; see bench/pool/buffer_pool_bench.cpp.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/core/status.h"
#include "engine/packet/packet_buffer.h"

namespace sluice {

enum class SizeClass : uint8_t { kSmall = 0, kLarge = 1 };
inline constexpr std::size_t kNumSizeClasses = 2;

// Bytes of data capacity after the headroom, per class.
inline constexpr uint32_t kSmallDataCapacity = 2048;                // any 1518 B Ethernet frame
inline constexpr uint32_t kLargeDataCapacity = 65536 + 1024;        // 64 KiB GSO + netlink slack

constexpr uint32_t DataCapacity(SizeClass c) noexcept {
  return c == SizeClass::kSmall ? kSmallDataCapacity : kLargeDataCapacity;
}
// Whole-buffer stride in memory (header lines + headroom + capacity), cache-line aligned.
constexpr std::size_t BufferStride(SizeClass c) noexcept {
  return PacketBuffer::kDataRoomOffset + kHeadroom + DataCapacity(c);
}
static_assert(BufferStride(SizeClass::kSmall) % kCacheLine == 0);
static_assert(BufferStride(SizeClass::kLarge) % kCacheLine == 0);

// The smallest class whose data capacity holds `bytes`, or false when none does.
inline bool ClassFor(uint32_t bytes, SizeClass* out) noexcept {
  if (bytes <= kSmallDataCapacity) {
    *out = SizeClass::kSmall;
    return true;
  }
  if (bytes <= kLargeDataCapacity) {
    *out = SizeClass::kLarge;
    return true;
  }
  return false;
}

struct PoolConfig {
  uint32_t small_buffers = 16384;  // about 37 MiB
  uint32_t large_buffers = 64;     // about 4.3 MiB
  bool operator==(const PoolConfig&) const = default;
};

struct PoolStats {
  uint64_t capacity[kNumSizeClasses] = {};
  uint64_t free_central[kNumSizeClasses] = {};  // free in the central stacks (caches not included)
  uint64_t exhausted = 0;                       // requests that got fewer buffers than asked
  uint64_t orphaned = 0;                        // buffers released without a verdict
};

class BufferPool {
 public:
  static Result<std::unique_ptr<BufferPool>> Create(const PoolConfig& config);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // Takes up to n buffers of class c from the central stack into out; returns how many.
  uint32_t GetBulk(SizeClass c, PacketBuffer** out, uint32_t n) noexcept;
  // Returns n buffers (of any class) to the central stacks.
  void PutBulk(PacketBuffer* const* in, uint32_t n) noexcept;

  // The slow path of PacketRef: a buffer dropped without a verdict.
  void NoteOrphan() noexcept { orphaned_.fetch_add(1, std::memory_order_relaxed); }

  // Counts a request that could not be served in full (PoolCache reports its own).
  void NoteExhausted() noexcept { exhausted_.fetch_add(1, std::memory_order_relaxed); }

  PoolStats Stats() const noexcept;
  uint32_t Capacity(SizeClass c) const noexcept { return class_[Index(c)].count; }
  bool Owns(const PacketBuffer* b) const noexcept;

 private:
  struct ClassArena {
    uint8_t* base = nullptr;
    std::size_t bytes = 0;
    uint32_t count = 0;
    std::vector<PacketBuffer*> free;  // reserved to count at Create: pushes never allocate
  };
  friend class PoolCache;
  BufferPool() = default;
  // Takes up to n buffers without counting exhaustion (the cache asks for more than it needs).
  uint32_t Take(SizeClass c, PacketBuffer** out, uint32_t n) noexcept;
  // Returns buffers already tagged free (the cache's flush path).
  void Give(PacketBuffer* const* in, uint32_t n) noexcept;
  static constexpr std::size_t Index(SizeClass c) { return static_cast<std::size_t>(c); }

  mutable std::mutex mu_;
  std::array<ClassArena, kNumSizeClasses> class_;
  std::atomic<uint64_t> exhausted_{0};
  std::atomic<uint64_t> orphaned_{0};
};

// A per-thread LIFO cache in front of the pool (DPDK's mempool cache, VPP's per-thread
// buffer cache). Not thread-safe: one owner thread at a time.
//
// Each class's cache holds at most min(size, capacity of the class / kCapacityShare) buffers
// (of the small-buffer class, `size` when its room was set aside: Share::kReserved), so no
// cache can hoard a class of few buffers: with 64 large buffers and a cache size of 512, one
// cache would otherwise keep every large buffer it ever saw returned, and a source reading
// through another cache would find none. A class of fewer than 2 × kCapacityShare buffers is not
// cached at all: its Gets and Puts go straight to the pool. The large class is cached at most
// kLargeCacheMax deep whatever its size: its buffers are for the rare long packet (GSO,
// jumbo), a pool lock per 16 of them costs nothing beside their bytes, and many shards' caches
// must not park what one queue's burst of super-packets needs (see LargeBuffersForGso).
class PoolCache {
 public:
  static constexpr uint32_t kDefaultSize = 512;
  static constexpr uint32_t kCapacityShare = 16;
  static constexpr uint32_t kLargeCacheMax = 32;

  // kReserved: the pool was sized with `size` small buffers set aside for this cache, so its
  // small class may hold all of them, whatever share of the pool that is. The offline graph's
  // thread caches are so (OfflinePipeline::SmallBuffersNeeded counts one per thread): held to
  // a share of a pool sized that tightly, they held less than a burst, and each burst's
  // buffers went through the central stacks to whichever thread read next, cold.
  enum class Share : uint8_t { kCapped, kReserved };
  explicit PoolCache(BufferPool& pool, uint32_t size = kDefaultSize,
                     Share share_of_small = Share::kCapped);
  ~PoolCache();  // returns everything it holds to the pool
  PoolCache(const PoolCache&) = delete;
  PoolCache& operator=(const PoolCache&) = delete;

  // Up to n Reset() buffers of class c; fewer only when the pool is exhausted.
  uint32_t GetBulk(SizeClass c, PacketBuffer** out, uint32_t n) noexcept;
  PacketBuffer* Get(SizeClass c) noexcept {
    PacketBuffer* b = nullptr;
    GetBulk(c, &b, 1);
    return b;
  }
  void PutBulk(PacketBuffer* const* in, uint32_t n) noexcept;
  void Put(PacketBuffer* b) noexcept { PutBulk(&b, 1); }
  // Returns every cached buffer to the pool.
  void Flush() noexcept;

  BufferPool& pool() noexcept { return pool_; }
  uint32_t cached(SizeClass c) const noexcept { return count_[static_cast<std::size_t>(c)]; }

 private:
  BufferPool& pool_;
  uint32_t size_;
  std::array<uint32_t, kNumSizeClasses> limit_{};  // per class: see the class comment
  std::array<uint32_t, kNumSizeClasses> count_{};
  std::array<std::unique_ptr<PacketBuffer*[]>, kNumSizeClasses> stack_;
};

}  // namespace sluice
