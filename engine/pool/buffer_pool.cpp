#include "engine/pool/buffer_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>

#include "engine/core/assert.h"
#include "engine/core/pages.h"
#include "engine/packet/packet_ref.h"

namespace sluice {

namespace {
constexpr std::size_t kHugePage = std::size_t{2} << 20;  // x86-64 transparent huge pages
}  // namespace

Result<std::unique_ptr<BufferPool>> BufferPool::Create(const PoolConfig& config) {
  std::unique_ptr<BufferPool> pool(new BufferPool());
  const uint32_t counts[kNumSizeClasses] = {config.small_buffers, config.large_buffers};
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const auto c = static_cast<SizeClass>(i);
    ClassArena& a = pool->class_[i];
    a.count = counts[i];
    a.free.reserve(a.count);
    if (a.count == 0) continue;
    a.bytes = BufferStride(c) * a.count;
    // Mapped on a huge-page boundary and asked for huge pages before any page is touched, then
    // faulted in: the kernel can then give every 2 MiB huge from the start. (Faulted first and
    // asked after, the pages were small until khugepaged got round to them, or not: one
    // process ran at one speed and the next at another.)
    // The mapping is whole pages: a.bytes rounded up (what the destructor's munmap frees), and
    // a huge page of slack to align it, trimmed off both ends.
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t span = (a.bytes + page - 1) & ~(page - 1);
    void* mem = mmap(nullptr, span + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      return Status(StatusCode::kResourceExhausted,
                    "buffer pool: cannot map " + std::to_string(span + kHugePage) + " bytes for " +
                        std::to_string(a.count) + " buffers: " + std::strerror(errno));
    }
    auto* raw = static_cast<uint8_t*>(mem);
    auto* aligned = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) & ~(kHugePage - 1));
    const auto head = static_cast<std::size_t>(aligned - raw);  // a whole number of pages
    if (head != 0) SLUICE_CHECK(munmap(raw, head) == 0);
    if (head != kHugePage) SLUICE_CHECK(munmap(aligned + span, kHugePage - head) == 0);
    madvise(aligned, a.bytes, MADV_HUGEPAGE);  // best effort: fewer TLB misses
    PrefaultPages(aligned, a.bytes);
    a.base = aligned;
    // Pushed in reverse so the first Get returns the lowest address.
    for (uint32_t k = a.count; k-- > 0;) {
      auto* b = new (a.base + k * BufferStride(c)) PacketBuffer();
      b->meta_.room = kHeadroom + DataCapacity(c);
      b->meta_.size_class = static_cast<uint8_t>(c);
      b->meta_.pool_tag = kFreeTag;
      b->io_.pool = pool.get();
      a.free.push_back(b);
    }
  }
  return pool;
}

BufferPool::~BufferPool() {
  for (ClassArena& a : class_) {
    if (a.base != nullptr) munmap(a.base, a.bytes);
  }
}

uint32_t BufferPool::Take(SizeClass c, PacketBuffer** out, uint32_t n) noexcept {
  std::lock_guard lock(mu_);
  auto& free = class_[Index(c)].free;
  const auto got = static_cast<uint32_t>(std::min<std::size_t>(n, free.size()));
  std::copy(free.end() - got, free.end(), out);
  free.resize(free.size() - got);
  return got;
}

uint32_t BufferPool::GetBulk(SizeClass c, PacketBuffer** out, uint32_t n) noexcept {
  const uint32_t got = Take(c, out, n);
  if (got < n) NoteExhausted();
  for (uint32_t i = 0; i < got; ++i) out[i]->Reset();
  return got;
}

void BufferPool::PutBulk(PacketBuffer* const* in, uint32_t n) noexcept {
  for (uint32_t i = 0; i < n; ++i) {
    SLUICE_CHECK(in[i]->meta_.pool_tag != kFreeTag);  // returned twice
    in[i]->meta_.pool_tag = kFreeTag;
  }
  Give(in, n);
}

void BufferPool::Give(PacketBuffer* const* in, uint32_t n) noexcept {
  std::lock_guard lock(mu_);
  for (uint32_t i = 0; i < n; ++i) {
    PacketBuffer* b = in[i];
    SLUICE_CHECK(b->io_.pool == this);
    auto& free = class_[b->meta_.size_class].free;
    SLUICE_CHECK(free.size() < free.capacity());  // more returned than exist
    free.push_back(b);
  }
}

PoolStats BufferPool::Stats() const noexcept {
  std::lock_guard lock(mu_);
  PoolStats s;
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    s.capacity[i] = class_[i].count;
    s.free_central[i] = class_[i].free.size();
  }
  s.exhausted = exhausted_.load(std::memory_order_relaxed);
  s.orphaned = orphaned_.load(std::memory_order_relaxed);
  return s;
}

bool BufferPool::Owns(const PacketBuffer* b) const noexcept {
  const auto* p = reinterpret_cast<const uint8_t*>(b);
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const ClassArena& a = class_[i];
    if (a.base == nullptr || p < a.base || p >= a.base + a.bytes) continue;
    return static_cast<std::size_t>(p - a.base) % BufferStride(static_cast<SizeClass>(i)) == 0;
  }
  return false;
}

PoolCache::PoolCache(BufferPool& pool, uint32_t size, Share share_of_small)
    : pool_(pool), size_(std::max(size, 2u)) {
  for (std::size_t ci = 0; ci < kNumSizeClasses; ++ci) {
    const uint32_t capacity = pool.Capacity(static_cast<SizeClass>(ci));
    const bool reserved =
        share_of_small == Share::kReserved && static_cast<SizeClass>(ci) == SizeClass::kSmall;
    const uint32_t share = reserved ? capacity : capacity / kCapacityShare;
    const uint32_t most = static_cast<SizeClass>(ci) == SizeClass::kLarge ? std::min(size_, kLargeCacheMax) : size_;
    limit_[ci] = share < 2 ? 0 : std::min(share, most);  // an overflow moves limit / 2 >= 1 out
    stack_[ci] = std::make_unique<PacketBuffer*[]>(limit_[ci]);
  }
}

PoolCache::~PoolCache() { Flush(); }

uint32_t PoolCache::GetBulk(SizeClass c, PacketBuffer** out, uint32_t n) noexcept {
  const auto ci = static_cast<std::size_t>(c);
  const uint32_t limit = limit_[ci];
  if (n > limit) return pool_.GetBulk(c, out, n);  // larger than the cache: straight from the pool
  PacketBuffer** stack = stack_[ci].get();
  uint32_t& count = count_[ci];
  if (count < n) {
    // One central move that leaves the cache about half full after serving n.
    const uint32_t want = std::min(limit - count, n - count + limit / 2);
    count += pool_.Take(c, stack + count, want);
  }
  const uint32_t served = std::min(n, count);
  if (served < n) pool_.NoteExhausted();
  count -= served;
  for (uint32_t i = 0; i < served; ++i) {
    if (i + kPrefetchAhead < served) stack[count + served - 1 - i - kPrefetchAhead]->Prefetch<true>();
    PacketBuffer* b = stack[count + served - 1 - i];  // LIFO: the most recently freed first
    SLUICE_DCHECK(b->meta().pool_tag == kFreeTag);
    b->Reset();
    out[i] = b;
  }
  return served;
}

void PoolCache::PutBulk(PacketBuffer* const* in, uint32_t n) noexcept {
  for (uint32_t i = 0; i < n; ++i) {
    PacketBuffer* b = in[i];
    SLUICE_CHECK(b->meta().pool_tag != kFreeTag);  // returned twice
    SLUICE_DCHECK(b->io().pool == &pool_);
    b->meta().pool_tag = kFreeTag;
    const std::size_t ci = b->meta().size_class;
    uint32_t& count = count_[ci];
    PacketBuffer** stack = stack_[ci].get();
    if (count == limit_[ci]) {
      if (count == 0) {  // a class too small to share out between caches: never cached
        pool_.Give(&b, 1);
        continue;
      }
      // Full: the coldest half (the bottom of the stack) goes back to the pool in one move.
      const uint32_t half = limit_[ci] / 2;
      pool_.Give(stack, half);
      std::copy(stack + half, stack + count, stack);
      count -= half;
    }
    stack[count++] = b;
  }
}

void PoolCache::Flush() noexcept {
  for (std::size_t ci = 0; ci < kNumSizeClasses; ++ci) {
    pool_.Give(stack_[ci].get(), count_[ci]);
    count_[ci] = 0;
  }
}

}  // namespace sluice

namespace sluice {

// Declared in engine/packet/packet_ref.h; defined here because it needs the pool.
void PacketRef::DisposeSlow() noexcept {
  PacketBuffer* b = std::exchange(buf_, nullptr);
  PacketMeta& m = b->meta();
  BufferPool* pool = b->io().pool;
  if (m.verdict == Verdict::kNone) {
    m.verdict = Verdict::kDrop;
    m.drop_reason = DropReason::kNoVerdict;
    pool->NoteOrphan();
    if (PacketOwner* owner = b->owner()) owner->OnOrphan(*b);
  }
  pool->PutBulk(&b, 1);
}

}  // namespace sluice
