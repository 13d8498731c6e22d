#include "engine/stats/histogram.h"

#include <algorithm>
#include <cmath>

namespace sluice {

LatencyHistogram::Snapshot LatencyHistogram::Read() const {
  Snapshot s;
  s.counts.resize(kBuckets);
  for (uint32_t b = 0; b < kBuckets; ++b) {
    s.counts[b] = counts_[b].load(std::memory_order_relaxed);
    s.total += s.counts[b];
  }
  s.sum_us = sum_us_.load(std::memory_order_relaxed);
  s.max = max_.load(std::memory_order_relaxed);
  return s;
}

void LatencyHistogram::Add(const LatencyHistogram& other) noexcept {
  for (uint32_t b = 0; b < kBuckets; ++b) Bump(counts_[b], other.counts_[b].load(std::memory_order_relaxed));
  Bump(sum_us_, other.sum_us_.load(std::memory_order_relaxed));
  UpdateMax(other.max_.load(std::memory_order_relaxed));
}

uint64_t LatencyHistogram::Snapshot::Percentile(double q) const noexcept {
  if (total == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The rank of the sample asked for, 1-based: p50 of 10 samples is the 5th.
  const auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(total))));
  uint64_t seen = 0;
  for (uint32_t b = 0; b < counts.size(); ++b) {
    seen += counts[b];
    if (seen >= rank) return std::min(UpperBound(b), max);
  }
  return max;
}

void LatencyHistogram::Snapshot::Merge(const Snapshot& other) {
  if (counts.empty()) counts.resize(kBuckets);
  for (std::size_t b = 0; b < counts.size() && b < other.counts.size(); ++b) {
    counts[b] += other.counts[b];
  }
  total += other.total;
  sum_us += other.sum_us;
  max = std::max(max, other.max);
}

}  // namespace sluice
