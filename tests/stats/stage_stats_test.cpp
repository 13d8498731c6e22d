// Summing per-worker counters: what the offline graph's accessors do with its threads' sets.
#include "engine/stats/stage_stats.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

constexpr auto kNotIp = static_cast<std::size_t>(DropReason::kNotIp);
constexpr auto kTooBig = static_cast<std::size_t>(DropReason::kTooBig);

TEST(StageStats, AddSumsEveryCounterAndEveryReason) {
  StageStats a, b;
  a.calls.Add(2);
  a.packets.Add(100);
  a.cycles.Add(5000);
  a.ended[kNotIp].Add(3);
  b.calls.Add(1);
  b.packets.Add(40);
  b.cycles.Add(1000);
  b.ended[kNotIp].Add(1);
  b.ended[kTooBig].Add(2);
  StageStats sum;
  sum.Add(a);
  sum.Add(b);
  EXPECT_EQ(sum.calls.Load(), 3u);
  EXPECT_EQ(sum.packets.Load(), 140u);
  EXPECT_EQ(sum.cycles.Load(), 6000u);
  EXPECT_EQ(sum.ended[kNotIp].Load(), 4u);
  EXPECT_EQ(sum.ended[kTooBig].Load(), 2u);
  EXPECT_EQ(a.packets.Load(), 100u);  // the parts are left as they were
}

TEST(RunStats, AddSumsEveryCounterTheHistogramAndKeepsTheBalance) {
  RunStats a, b;
  a.packets_in.Add(5);
  a.bytes_in.Add(500);
  a.accepted.Add(2);
  a.rewritten.Add(1);
  a.dropped[kNotIp].Add(1);
  a.skipped[kTooBig].Add(1);
  a.bytes_out.Add(400);
  a.latency_ns.RecordMany(1000, 5);
  b.packets_in.Add(3);
  b.bytes_in.Add(300);
  b.rewritten.Add(3);
  b.bytes_out.Add(300);
  b.latency_ns.RecordMany(9000, 3);
  // Each worker's own set need not balance (a burst read on one thread may retire on the
  // other); their sum does.
  b.packets_in.Add(1);
  a.accepted.Add(1);
  ASSERT_FALSE(a.Balanced());
  RunStats sum;
  sum.Add(a);
  sum.Add(b);
  EXPECT_EQ(sum.packets_in.Load(), 9u);
  EXPECT_EQ(sum.bytes_in.Load(), 800u);
  EXPECT_EQ(sum.accepted.Load(), 3u);
  EXPECT_EQ(sum.rewritten.Load(), 4u);
  EXPECT_EQ(sum.Dropped(), 1u);
  EXPECT_EQ(sum.Skipped(), 1u);
  EXPECT_EQ(sum.bytes_out.Load(), 700u);
  EXPECT_TRUE(sum.Balanced());
  const auto latency = sum.latency_ns.Read();
  EXPECT_EQ(latency.total, 8u);
  EXPECT_EQ(latency.max, 9000u);
  EXPECT_EQ(latency.sum_us, 32u);

  const RunStats copy(sum);  // a copy is a snapshot of every counter
  EXPECT_EQ(copy.packets_in.Load(), 9u);
  EXPECT_EQ(copy.latency_ns.Read().total, 8u);
  EXPECT_TRUE(copy.Balanced());
}

}  // namespace
}  // namespace sluice
