#include "engine/stats/histogram.h"

#include <gtest/gtest.h>

#include <random>

namespace sluice {
namespace {

TEST(LatencyHistogram, SmallValuesAreExact) {
  for (uint64_t v = 0; v < LatencyHistogram::kSubCount; ++v) {
    EXPECT_EQ(LatencyHistogram::UpperBound(LatencyHistogram::BucketOf(v)), v);
  }
}

TEST(LatencyHistogram, EveryValueIsWithinThreePercentAndNeverUnderstated) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = rng() >> (24 + rng() % 40);
    const uint64_t up = LatencyHistogram::UpperBound(LatencyHistogram::BucketOf(v));
    ASSERT_GE(up, v);
    ASSERT_LE(static_cast<double>(up - v), static_cast<double>(v) / 32.0 + 1.0) << v;
  }
}

// The sum is kept in µs, the ns below a µs carried from record to record: a thousand 1 ns
// latencies add up to 1 µs, and a value is never lost to rounding.
TEST(LatencyHistogram, TheSumCarriesWhatIsBelowAMicrosecond) {
  LatencyHistogram h;
  for (int i = 0; i < 999; ++i) h.Record(1);
  EXPECT_EQ(h.Read().sum_us, 0u);
  h.Record(1);
  EXPECT_EQ(h.Read().sum_us, 1u);
  h.RecordMany(2'500, 3);  // 7.5 µs
  EXPECT_EQ(h.Read().sum_us, 8u);
  h.Record(500);
  EXPECT_EQ(h.Read().sum_us, 9u);
}

TEST(LatencyHistogram, BucketsAreMonotonic) {
  uint64_t prev = 0;
  for (uint32_t b = 1; b < LatencyHistogram::kBuckets; ++b) {
    const uint64_t up = LatencyHistogram::UpperBound(b);
    ASSERT_GT(up, prev) << b;
    ASSERT_EQ(LatencyHistogram::BucketOf(up), b);
    prev = up;
  }
}

TEST(LatencyHistogram, PercentilesOfAKnownDistribution) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 1000; ++v) h.Record(v * 1000);  // 1 µs .. 1 ms, uniform
  const auto s = h.Read();
  EXPECT_EQ(s.total, 1000u);
  EXPECT_EQ(s.max, 1000000u);
  auto near = [](uint64_t got, uint64_t want) {
    return got >= want && static_cast<double>(got) <= static_cast<double>(want) * 1.04;
  };
  EXPECT_TRUE(near(s.Percentile(0.50), 500000)) << s.Percentile(0.50);
  EXPECT_TRUE(near(s.Percentile(0.99), 990000)) << s.Percentile(0.99);
  EXPECT_EQ(s.Percentile(1.0), 1000000u);
}

TEST(LatencyHistogram, MergeAddsCounts) {
  LatencyHistogram a, b;
  a.RecordMany(100, 3);
  b.RecordMany(5000, 1);
  auto s = a.Read();
  s.Merge(b.Read());
  EXPECT_EQ(s.total, 4u);
  EXPECT_EQ(s.max, 5000u);
  EXPECT_GE(s.Percentile(0.75), 100u);
  EXPECT_LE(s.Percentile(0.75), 104u);
  EXPECT_GE(s.Percentile(1.0), 5000u);
}

TEST(LatencyHistogram, AddTakesAnotherHistogramsSamplesAndACopyIsTheSame) {
  LatencyHistogram a, b;
  a.RecordMany(100, 3);
  a.Record(2500);  // with the 300 ns before: 2 µs into the sum, 800 ns kept back by `a`
  b.RecordMany(5000, 2);
  LatencyHistogram sum(a);  // a copy: a's samples
  sum.Add(b);
  const auto s = sum.Read();
  EXPECT_EQ(s.total, 6u);
  EXPECT_EQ(s.max, 5000u);
  EXPECT_EQ(s.sum_us, a.Read().sum_us + b.Read().sum_us);
  EXPECT_EQ(s.sum_us, 12u);  // 0.3 + 2.5 → 2 (the rest kept back by a) + 10
  EXPECT_EQ(s.counts[LatencyHistogram::BucketOf(100)], 3u);
  EXPECT_EQ(s.counts[LatencyHistogram::BucketOf(2500)], 1u);
  EXPECT_EQ(s.counts[LatencyHistogram::BucketOf(5000)], 2u);
  EXPECT_EQ(a.Read().total, 4u);  // the sources are left as they were
  EXPECT_EQ(b.Read().total, 2u);
}

TEST(LatencyHistogram, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.Read().Percentile(0.99), 0u);
}

TEST(LatencyHistogram, HugeValuesSaturate) {
  LatencyHistogram h;
  h.Record(~uint64_t{0});
  const auto s = h.Read();
  EXPECT_EQ(s.total, 1u);
  EXPECT_EQ(s.counts[LatencyHistogram::kBuckets - 1], 1u);
}

}  // namespace
}  // namespace sluice
