// NullSink: takes every packet and writes nothing (benchmarks, and runs that only measure).
#pragma once

#include "engine/graph/endpoints.h"

namespace sluice {

class NullSink final : public PacketSink {
 public:
  void Consume(std::span<PacketBuffer* const> packets) noexcept override { seen_ += packets.size(); }
  uint64_t seen() const noexcept { return seen_; }

 private:
  uint64_t seen_ = 0;
};

}  // namespace sluice
