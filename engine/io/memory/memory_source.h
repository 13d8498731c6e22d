// MemorySource: packets held in memory, copied into pool buffers burst by burst, `loops`
// times over. What in-memory benchmarks and tests feed the pipeline with: the copy is the
// floor every per-packet figure is compared against.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/graph/endpoints.h"

namespace sluice {

class MemorySource final : public PacketSource {
 public:
  MemorySource(const std::vector<std::vector<uint8_t>>* packets, LinkType link_type, uint64_t loops = 1)
      : packets_(packets), link_type_(link_type), total_(packets->size() * loops) {}

  bool ReadBurst(PoolCache& cache, Batch& batch, uint32_t max) override {
    PacketBuffer* bufs[kMaxBatch];
    const auto want = static_cast<uint32_t>(std::min<uint64_t>(max - batch.size(), total_ - done_));
    const uint32_t got = cache.GetBulk(SizeClass::kSmall, bufs, want);
    for (uint32_t i = 0; i < got; ++i) {
      const std::vector<uint8_t>& p = (*packets_)[next_];
      next_ = next_ + 1 == packets_->size() ? 0 : next_ + 1;
      bufs[i]->Assign(p.data(), static_cast<uint32_t>(p.size()));
      bufs[i]->meta().wire_len = static_cast<uint32_t>(p.size());
      bufs[i]->meta().link_type = link_type_;
      batch.Push(PacketRef(bufs[i]));
    }
    done_ += got;
    return done_ < total_;
  }

 private:
  const std::vector<std::vector<uint8_t>>* packets_;
  LinkType link_type_;
  uint64_t total_;
  uint64_t done_ = 0;
  std::size_t next_ = 0;
};

}  // namespace sluice
