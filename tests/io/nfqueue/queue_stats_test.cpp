// The /proc/net/netfilter/nfnetlink_queue reader, on text in the kernel's own format
// ("%5u %6u %5u %1u %5u %5u %5u %8u %2d\n").
#include "engine/io/nfqueue/queue_stats.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "engine/stats/report.h"

namespace sluice {
namespace {

TEST(KernelQueueStats, ParsesEveryColumnOfEveryQueue) {
  const char* text =
      "    0  12345     3 2 65531     7    11   200018  1\n"
      "    1 4294967295     0 2 65531     0     0 4294967295  1\n";
  auto parsed = ParseKernelQueueStats(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  ASSERT_EQ(parsed->size(), 2u);
  const KernelQueueStats& q0 = (*parsed)[0];
  EXPECT_EQ(q0.queue, 0u);
  EXPECT_EQ(q0.portid, 12345u);
  EXPECT_EQ(q0.queue_total, 3u);
  EXPECT_EQ(q0.copy_mode, 2u);
  EXPECT_EQ(q0.copy_range, 65531u);
  EXPECT_EQ(q0.queue_dropped, 7u);
  EXPECT_EQ(q0.queue_user_dropped, 11u);
  EXPECT_EQ(q0.id_sequence, 200018u);
  const KernelQueueStats& q1 = (*parsed)[1];
  EXPECT_EQ(q1.queue, 1u);
  EXPECT_EQ(q1.portid, 4294967295u);  // port ids are full 32-bit values
  EXPECT_EQ(q1.id_sequence, 4294967295u);

  auto found = FindQueue(*parsed, 1);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->portid, 4294967295u);
  EXPECT_FALSE(FindQueue(*parsed, 2).has_value());
}

TEST(KernelQueueStats, NoQueueBoundIsEmpty) {
  auto parsed = ParseKernelQueueStats("");
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->empty());
  auto blank = ParseKernelQueueStats("\n\n");
  ASSERT_TRUE(blank.ok());
  EXPECT_TRUE(blank->empty());
}

TEST(KernelQueueStats, RejectsLinesThatAreNotNineUnsignedColumnsAndNamesTheLine) {
  for (const char* bad : {"    0  12345     3 2 65531     7    11   200018\n",          // eight
                          "    0  12345     3 2 65531     7    11   200018  1  9\n",    // ten
                          "    0  12345    -3 2 65531     7    11   200018  1\n",       // a sign
                          "    0  12345     3 2 65531     7    11   2x0018  1\n",       // junk
                          "    0  12345     3 2 65531     7    11 4294967296  1\n"}) {  // > 32 bits
    auto parsed = ParseKernelQueueStats(
        std::string("    5     1     0 2 65531     0     0        9  1\n") + bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find("line 2"), std::string::npos)
        << parsed.status().message();
  }
}

TEST(KernelQueueStats, ReadsAFileAndTreatsAMissingOneAsNoQueues) {
  const std::string path = ::testing::TempDir() + "/nfnetlink_queue_sample";
  {
    std::ofstream f(path);
    f << "   42   777     0 2 65531     1     2       30  1\n";
  }
  auto read = ReadKernelQueueStats(path);
  ASSERT_TRUE(read.ok()) << read.status().message();
  ASSERT_EQ(read->size(), 1u);
  EXPECT_EQ((*read)[0].queue, 42u);
  EXPECT_EQ((*read)[0].queue_user_dropped, 2u);
  std::remove(path.c_str());
  auto missing = ReadKernelQueueStats(path);
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->empty());
}

// What a daemon holds across dropping root: one descriptor, each Read() the file as it is now.
TEST(KernelQueueStats, AnOpenFileReadsTheCurrentContentsEachTime) {
  const std::string path = ::testing::TempDir() + "/nfnetlink_queue_reread";
  {
    std::ofstream f(path);
    f << "    0   777     5 2 65531     0     0       30  1\n";
  }
  auto file = KernelQueueStatsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  auto first = file->Read();
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  EXPECT_EQ((*first)[0].queue_total, 5u);
  {
    std::ofstream f(path, std::ios::in | std::ios::out);  // the same file, rewritten in place
    f << "    0   777     0 2 65531     0     0       31  1\n"
         "    1   778     0 2 65531     0     0        9  1\n";
  }
  auto second = file->Read();
  ASSERT_TRUE(second.ok()) << second.status().message();
  ASSERT_EQ(second->size(), 2u);
  EXPECT_EQ((*second)[0].queue_total, 0u);
  EXPECT_EQ((*second)[0].id_sequence, 31u);
  EXPECT_EQ((*second)[1].id_sequence, 9u);
  KernelQueueStatsFile moved = std::move(file).value();
  EXPECT_TRUE(moved.is_open());
  EXPECT_TRUE(moved.Read().ok());
  std::remove(path.c_str());
  EXPECT_FALSE(KernelQueueStatsFile::Open(path).ok());
}

TEST(KernelQueueStats, ExportsEachQueuesFiguresLabelledByQueue) {
  auto parsed = ParseKernelQueueStats("    3  100     4 2 65531     5     6       70  1\n");
  ASSERT_TRUE(parsed.ok());
  StatsReport report;
  AppendKernelQueueStats(*parsed, report);
  ASSERT_EQ(report.counters.size(), 4u);
  const std::pair<const char*, uint64_t> want[] = {{"nfqueue_kernel_queued", 4},
                                                   {"nfqueue_kernel_queue_dropped", 5},
                                                   {"nfqueue_kernel_queue_user_dropped", 6},
                                                   {"nfqueue_kernel_id_sequence", 70}};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(report.counters[i].name, want[i].first);
    EXPECT_EQ(report.counters[i].value, want[i].second);
    EXPECT_FALSE(report.counters[i].help.empty());
    EXPECT_EQ(report.counters[i].labels,
              (std::vector<std::pair<std::string, std::string>>{{"queue", "3"}}));
  }
}

}  // namespace
}  // namespace sluice
