// OrderedSection: work numbered 0, 1, 2, … run one at a time and in number order, by whichever
// threads bring it, without a thread ever blocking on another.
//
// The offline graph's shard stages and its emission use it: each burst's work is done by the
// thread that read and parsed the burst (run to completion), so the packets stay in that
// core's cache, while a shard's flow table still sees its batches in input order. It is the
// "ordered" section of DPDK's eventdev and oneTBB's serial_in_order pipeline filter:
// - The thread bringing number n runs it when n's turn has come.
// - Otherwise it waits a moment for n's turn (the turn usually comes within one batch's work,
//   and running its own packets beats handing them over cold), then parks n and leaves.
// - The thread that runs number n-1 runs a parked n next, and so on: a parked number never
//   waits for a thread that has gone, so nothing deadlocks, with any number of threads.
// At most `window` numbers may be between the lowest unfinished one and the highest brought.
//
// No lock: the turn is one atomic number, written only by the thread whose turn it is, so a
// turn passed to a thread that was waiting for it moves one cache line, once. A parked number
// n is n+1 in its slot (n % window). Whoever finds both the turn at n and n+1 in the slot (the
// thread that just finished n-1, or the parker looking again after it parked) claims n by
// swapping n+1 for 0; the slot and the turn are written and then each reads the other's in one
// total order (seq_cst), so at least one of the two sees both, and the compare-exchange lets
// exactly one run n. The slot holds the number, not a flag: a thread stalled between giving
// the turn and looking at the slot may find a later number parked there (the turn having gone
// round the window meanwhile), and must not take it for n.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "engine/core/assert.h"

namespace sluice {

class OrderedSection {
 public:
  // spin: how many times a thread polls for its turn before it parks its number.
  OrderedSection(uint32_t window, uint32_t spin)
      : window_(window), spin_(spin), parked_(new std::atomic<uint64_t>[window]) {
    for (uint32_t i = 0; i < window; ++i) parked_[i].store(0, std::memory_order_relaxed);
  }
  OrderedSection(const OrderedSection&) = delete;
  OrderedSection& operator=(const OrderedSection&) = delete;

  // Runs fn(n) for number n, and fn(m) for each parked m that follows, in order; or parks n.
  // fn must not throw. Returns how many numbers this call ran.
  template <typename Fn>
  uint32_t Run(uint64_t n, Fn&& fn) noexcept {
    SLUICE_DCHECK(n >= next() && n - next() < window_);
    for (uint32_t i = 0; i < spin_ && next_.load(std::memory_order_acquire) != n; ++i) Pause();
    if (next_.load(std::memory_order_acquire) != n) {
      parked_[n % window_].store(n + 1, std::memory_order_seq_cst);
      // The turn may have come since: then claim n back, unless the thread that gave the turn
      // saw it parked and claimed it first.
      if (next_.load(std::memory_order_seq_cst) != n || !Claim(n)) return 0;
    }
    uint32_t ran = 0;
    for (;;) {
      fn(n);
      ++ran;
      ++n;
      next_.store(n, std::memory_order_seq_cst);
      if (parked_[n % window_].load(std::memory_order_seq_cst) != n + 1 || !Claim(n)) return ran;
    }
  }

  uint64_t next() const noexcept { return next_.load(std::memory_order_acquire); }

 private:
  // Takes parked number n for the calling thread; false when another thread took it.
  bool Claim(uint64_t n) noexcept {
    uint64_t want = n + 1;
    return parked_[n % window_].compare_exchange_strong(want, 0, std::memory_order_acq_rel);
  }

  static void Pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  alignas(64) std::atomic<uint64_t> next_{0};  // the number whose turn it is; its line alone
  alignas(64) const uint32_t window_;
  const uint32_t spin_;
  std::unique_ptr<std::atomic<uint64_t>[]> parked_;  // n+1 for a parked n, at n % window; else 0
};

}  // namespace sluice
