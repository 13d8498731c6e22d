// OrderedSection: numbers run one at a time, in order, whichever thread brings them; a number
// that comes early is parked and run by the thread that runs the one before it.
#include "engine/graph/ordered_section.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace sluice {
namespace {

TEST(OrderedSection, RunsNumbersBroughtInOrderAtOnce) {
  OrderedSection section(8, 0);
  std::vector<uint64_t> ran;
  for (uint64_t n = 0; n < 20; ++n) {
    EXPECT_EQ(section.Run(n, [&](uint64_t m) noexcept { ran.push_back(m); }), 1u);
    EXPECT_EQ(section.next(), n + 1);
  }
  ASSERT_EQ(ran.size(), 20u);
  for (uint64_t n = 0; n < 20; ++n) EXPECT_EQ(ran[n], n);
}

TEST(OrderedSection, AnEarlyNumberWaitsForTheOneBeforeItAndRunsAfterIt) {
  OrderedSection section(8, 0);
  std::vector<uint64_t> ran;
  auto record = [&](uint64_t m) noexcept { ran.push_back(m); };
  EXPECT_EQ(section.Run(2, record), 0u);  // parked: 0 and 1 have not come
  EXPECT_EQ(section.Run(1, record), 0u);
  EXPECT_TRUE(ran.empty());
  EXPECT_EQ(section.next(), 0u);
  EXPECT_EQ(section.Run(0, record), 3u);  // 0, then the parked 1 and 2
  EXPECT_EQ(ran, (std::vector<uint64_t>{0, 1, 2}));
  EXPECT_EQ(section.Run(4, record), 0u);  // a gap: 3 has not come
  EXPECT_EQ(section.Run(3, record), 2u);
  EXPECT_EQ(ran, (std::vector<uint64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(section.next(), 5u);
}

// Threads take numbers from a shared ticket and bring them at once; every number runs exactly
// once, in order, never two at a time. A short poll makes them park often.
void RunFromThreads(uint32_t spin) {
  constexpr uint32_t kThreads = 4;
  constexpr uint32_t kWindow = 64;
  constexpr uint64_t kNumbers = 200000;
  OrderedSection section(kWindow, spin);
  std::atomic<uint64_t> ticket{0};
  std::atomic<uint64_t> done{0};
  std::atomic<bool> inside{false};
  uint64_t expected = 0;  // touched only inside the section
  uint64_t out_of_order = 0, overlapped = 0;
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (;;) {
        // Take the next number only while it is within the window of the next one to run (as
        // the graph's tokens keep bursts): taken with a compare-exchange, as the section's
        // turn only moves on, it stays within.
        uint64_t n = ticket.load();
        for (;;) {
          if (n >= kNumbers) return;
          if (n - section.next() >= kWindow) {
            std::this_thread::yield();
            n = ticket.load();
          } else if (ticket.compare_exchange_weak(n, n + 1)) {
            break;
          }
        }
        section.Run(n, [&](uint64_t m) noexcept {
          if (inside.exchange(true)) ++overlapped;
          if (m != expected) ++out_of_order;
          ++expected;
          inside.store(false);
          done.fetch_add(1);
        });
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(expected, kNumbers);
  EXPECT_EQ(done.load(), kNumbers);
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_EQ(overlapped, 0u);
  EXPECT_EQ(section.next(), kNumbers);
}

// Parking on every early number, with more threads than this machine's CPUs, stalls threads
// between giving the turn and looking for a parked successor; a section that took whatever it
// found parked for the number it expected ran numbers twice here (one time in a few runs).
TEST(OrderedSection, ThreadsThatParkKeepOrderAndRunOneAtATime) {
  for (int round = 0; round < 3; ++round) RunFromThreads(0);
}
TEST(OrderedSection, ThreadsThatWaitKeepOrderAndRunOneAtATime) { RunFromThreads(4096); }

}  // namespace
}  // namespace sluice
