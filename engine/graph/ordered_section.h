// OrderedSection: work numbered 0, 1, 2, … run one at a time and in number order, by whichever
// threads bring it, without a thread ever blocking on another.
//
// The offline graph's shard stages and its emission use it: each burst's work is done by the
// thread that read and parsed the burst (run to completion), so the packets stay in that
// core's cache, while a shard's flow table still sees its batches in input order. It is the
// "ordered" section of DPDK's eventdev and oneTBB's serial_in_order pipeline filter:
// - The thread bringing number n runs it when n is next and the section is free.
// - Otherwise it waits a moment for n's turn (the turn usually comes within one batch's work,
//   and running its own packets beats handing them over cold), then parks n and leaves.
// - The thread that runs number n-1 runs a parked n next, and so on: a parked number never
//   waits for a thread that has gone, so nothing deadlocks, with any number of threads.
// At most `window` numbers may be between the lowest unfinished one and the highest brought.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "engine/core/assert.h"

namespace sluice {

class alignas(64) OrderedSection {
 public:
  // spin: how many times a thread polls for its turn before it parks its number.
  OrderedSection(uint32_t window, uint32_t spin) : window_(window), spin_(spin), parked_(new bool[window]()) {}
  OrderedSection(const OrderedSection&) = delete;
  OrderedSection& operator=(const OrderedSection&) = delete;

  // Runs fn(n) for number n, and fn(m) for each parked m that follows, in order; or parks n.
  // fn must not throw. Returns how many numbers this call ran.
  template <typename Fn>
  uint32_t Run(uint64_t n, Fn&& fn) noexcept {
    for (uint32_t i = 0; i < spin_ && next_.load(std::memory_order_acquire) != n; ++i) Pause();
    {
      std::lock_guard lock(mu_);
      SLUICE_DCHECK(n >= next_ && n - next_ < window_);
      if (busy_ || next_ != n) {
        parked_[n % window_] = true;
        return 0;
      }
      busy_ = true;
    }
    uint32_t ran = 0;
    for (;;) {
      fn(n);
      ++ran;
      std::lock_guard lock(mu_);
      n = next_ + 1;
      next_.store(n, std::memory_order_release);
      bool& parked = parked_[n % window_];
      if (!parked) {
        busy_ = false;
        return ran;
      }
      parked = false;
    }
  }

  uint64_t next() const noexcept { return next_.load(std::memory_order_acquire); }

 private:
  static void Pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  // What every turn writes shares one cache line, the line that moves from thread to thread
  // with the turns; what is only read after construction is on the next.
  std::mutex mu_;
  std::atomic<uint64_t> next_{0};  // the number whose turn it is (written under mu_)
  bool busy_ = false;              // a thread is running numbers (guarded by mu_)
  alignas(64) const uint32_t window_;
  const uint32_t spin_;
  std::unique_ptr<bool[]> parked_;  // by number % window (guarded by mu_)
};

}  // namespace sluice
