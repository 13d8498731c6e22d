// WriteFileAtomically (tools/sluice/stats_file.cpp) on what is not a regular file: written in
// place, and never a stall of the caller — the daemon's main thread also takes its signals,
// so a stats reader that stops reading once kept SIGTERM from being seen.
#include "tools/sluice/stats_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace sluice::cli {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/sluice-stats-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string path;
};

TEST(StatsFile, AFifoWhoseReaderStopsReadingIsAnErrorNotAStall) {
  TempDir dir;
  const std::string fifo = dir.path + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // No reader at all: an error at once.
  Status s = WriteFileAtomically(fifo, "x");
  EXPECT_FALSE(s.ok());
  // A reader that opened the FIFO and reads nothing: more than the pipe holds cannot go.
  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  s = WriteFileAtomically(fifo, std::string(4 << 20, 'x'));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("timed out"), std::string::npos) << s.message();
  // A reader with room in the pipe: the write goes through, in place.
  close(reader);
  const int reader2 = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader2, 0);
  EXPECT_TRUE(WriteFileAtomically(fifo, "sluice_x 1\n").ok());
  char got[32] = {};
  EXPECT_EQ(read(reader2, got, sizeof got), 11);
  close(reader2);
  EXPECT_TRUE(fs::is_fifo(fifo)) << "never replaced by a regular file";
}

TEST(StatsFile, ARegularFileIsReplacedWholeAndALinkKept) {
  TempDir dir;
  const std::string real = dir.path + "/real.prom", link = dir.path + "/link.prom";
  ASSERT_EQ(symlink("real.prom", link.c_str()), 0);
  ASSERT_TRUE(WriteFileAtomically(link, "a 1\n").ok());
  ASSERT_TRUE(WriteFileAtomically(link, "b 2\n").ok());
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(fs::file_size(real), 4u);
  EXPECT_FALSE(WriteFileAtomically(dir.path, "x").ok()) << "a directory";
}

}  // namespace
}  // namespace sluice::cli
