#include "engine/core/counter.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>

namespace sluice {
namespace {

enum class Demo { kA, kB };

TEST(Counter, SingleWriterManyReaders) {
  Counter c;
  std::thread writer([&] {
    for (int i = 0; i < 100000; ++i) c.Add(2);
  });
  uint64_t last = 0;
  while (last < 200000) {
    const uint64_t now = c.Load();
    ASSERT_GE(now, last);  // a reader never sees the count go backwards
    last = now;
  }
  writer.join();
  EXPECT_EQ(c.Load(), 200000u);
}

TEST(Counter, ACopyIsASnapshot) {
  Counter c;
  c.Add(7);
  Counter copy(c);
  c.Add(1);
  EXPECT_EQ(copy.Load(), 7u);
  copy = c;
  EXPECT_EQ(copy.Load(), 8u);
}

TEST(CounterSet, IndexedByEnum) {
  CounterSet<Demo, 2> set;
  set.Add(Demo::kB, 5);
  set.Add(Demo::kB);
  EXPECT_EQ(set.Load(Demo::kA), 0u);
  EXPECT_EQ(set.Load(Demo::kB), 6u);
  EXPECT_EQ(set.LoadAt(1), 6u);
}

// Each worker bumps its own set: the others stay as they were; Sum adds them all.
TEST(WorkerCounterSets, EachWorkerHasItsOwnSetAndSumAddsThemAll) {
  WorkerCounterSets<Demo, 2> sets(3);
  EXPECT_EQ(sets.workers(), 3u);
  sets[1].Add(Demo::kA, 4);
  sets[2].Add(Demo::kA, 1);
  sets[2].Add(Demo::kB, 7);
  EXPECT_EQ(sets[0].Load(Demo::kA), 0u);
  EXPECT_EQ(sets[1].Load(Demo::kA), 4u);
  EXPECT_EQ(sets[1].Load(Demo::kB), 0u);
  EXPECT_EQ(sets[2].Load(Demo::kA), 1u);
  const CounterSet<Demo, 2> sum = sets.Sum();
  EXPECT_EQ(sum.Load(Demo::kA), 5u);
  EXPECT_EQ(sum.Load(Demo::kB), 7u);
  // Each set on cache lines of its own.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&sets[0]) % 64, 0u);
  EXPECT_GE(reinterpret_cast<uintptr_t>(&sets[1]) - reinterpret_cast<uintptr_t>(&sets[0]), 64u);
  EXPECT_EQ((WorkerCounterSets<Demo, 2>(0).workers()), 1u) << "at least one set";
}

}  // namespace
}  // namespace sluice
