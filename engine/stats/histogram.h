// LatencyHistogram: a log-linear histogram of nanosecond values (HdrHistogram's layout).
//
// Values below 2^kSubBits are exact; above, each power-of-two range is cut into 2^kSubBits
// linear buckets, so any recorded value is reported within 1/2^kSubBits (about 3 %) of itself.
// Range: 0 .. 2^kMaxBits ns (about 18 minutes); larger values land in the last bucket.
//
// One writer (the thread retiring its batches) records; readers copy it off the hot path with
// Read, merge copies with Merge, or sum several (per-thread) histograms with Add. Record() is
// a handful of instructions and no branch on the data beyond the range check.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

namespace sluice {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr int kMaxBits = 40;
  static constexpr uint32_t kSubCount = 1u << kSubBits;
  static constexpr uint32_t kBuckets = (kMaxBits - kSubBits + 1) * kSubCount;

  static uint32_t BucketOf(uint64_t v) noexcept {
    if (v < kSubCount) return static_cast<uint32_t>(v);
    if (v >= (uint64_t{1} << kMaxBits)) return kBuckets - 1;
    const int top = 63 - __builtin_clzll(v);  // index of the highest set bit, >= kSubBits
    const int shift = top - kSubBits;
    const auto sub = static_cast<uint32_t>((v >> shift) & (kSubCount - 1));
    return static_cast<uint32_t>(shift + 1) * kSubCount + sub;
  }
  // The highest value that falls in bucket b (what percentiles report: never optimistic).
  static uint64_t UpperBound(uint32_t b) noexcept {
    if (b < kSubCount) return b;
    const uint32_t shift = b / kSubCount - 1;
    const uint64_t sub = b % kSubCount;
    return ((kSubCount + sub + 1) << shift) - 1;
  }

  LatencyHistogram() = default;
  // A copy is a snapshot, as Counter's: a reader's, off the hot path.
  LatencyHistogram(const LatencyHistogram& o) noexcept { Add(o); }
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  void Record(uint64_t v) noexcept { RecordMany(v, 1); }
  void RecordMany(uint64_t v, uint64_t n) noexcept {
    Bump(counts_[BucketOf(v)], n);
    // The sum in whole µs, the ns below a µs carried to the next record: in ns a busy queue
    // (10 Mpps at 1 ms) would wrap it in three weeks; in µs, in 58 years.
    const uint64_t ns = sum_rem_ns_ + v * n;
    sum_rem_ns_ = ns % 1000;
    Bump(sum_us_, ns / 1000);
    UpdateMax(v);
  }

  // A plain copy for reporting.
  struct Snapshot {
    std::vector<uint64_t> counts;  // kBuckets entries
    uint64_t total = 0;
    uint64_t sum_us = 0;  // of the values recorded, in µs, exact to 1 µs (the mean is sum_us / total)
    uint64_t max = 0;
    // The value at or below which fraction q (0..1) of the samples fall; 0 when empty.
    uint64_t Percentile(double q) const noexcept;
    void Merge(const Snapshot& other);
  };
  Snapshot Read() const;
  // Adds another histogram's samples into this one (a reader summing per-worker histograms;
  // the sub-µs remainders are the writers' own and not carried).
  void Add(const LatencyHistogram& other) noexcept;

 private:
  static void Bump(std::atomic<uint64_t>& c, uint64_t n) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void UpdateMax(uint64_t v) noexcept {
    if (v > max_.load(std::memory_order_relaxed)) max_.store(v, std::memory_order_relaxed);
  }

  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> sum_us_{0};
  uint64_t sum_rem_ns_ = 0;  // the writer's own
  std::atomic<uint64_t> max_{0};
};

}  // namespace sluice
