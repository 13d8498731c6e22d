// BatchPool: the fixed set of Batch objects a pipeline may have in flight.
//
// Its size is the back-pressure limit of the graph (the "tokens"): a source that cannot get a
// batch waits, and therefore stops reading, until the sink returns one. Batches are allocated
// once, at construction. Get/Put take a mutex once per batch (not per packet).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/packet/batch.h"

namespace sluice {

class BatchPool {
 public:
  BatchPool(uint32_t count, uint32_t batch_limit) : storage_(count) {
    free_.reserve(count);
    for (auto& b : storage_) {
      b = std::make_unique<Batch>();
      b->set_limit(batch_limit);
      free_.push_back(b.get());
    }
  }
  BatchPool(const BatchPool&) = delete;
  BatchPool& operator=(const BatchPool&) = delete;

  // An empty batch, or nullptr when every batch is in flight.
  Batch* TryGet() noexcept {
    std::lock_guard lock(mu_);
    return PopLocked();
  }

  // Waits up to `timeout` for a batch; nullptr on time-out.
  Batch* Get(std::chrono::microseconds timeout) noexcept {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !free_.empty(); });
    return PopLocked();
  }

  // Returns an empty batch.
  void Put(Batch* b) noexcept {
    SLUICE_CHECK(b->empty());
    {
      std::lock_guard lock(mu_);
      SLUICE_CHECK(free_.size() < storage_.size());
      free_.push_back(b);
    }
    cv_.notify_one();
  }

  uint32_t capacity() const noexcept { return static_cast<uint32_t>(storage_.size()); }
  uint32_t in_flight() const noexcept {
    std::lock_guard lock(mu_);
    return static_cast<uint32_t>(storage_.size() - free_.size());
  }

 private:
  Batch* PopLocked() noexcept {
    if (free_.empty()) return nullptr;
    Batch* b = free_.back();
    free_.pop_back();
    return b;
  }

  std::vector<std::unique_ptr<Batch>> storage_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Batch*> free_;
};

}  // namespace sluice
