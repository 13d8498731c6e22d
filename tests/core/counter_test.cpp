#include "engine/core/counter.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace sluice
