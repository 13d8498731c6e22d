// A read error in the middle of a capture file (EIO from a failing disk), which no file on a
// healthy disk can give: this executable defines pread itself, ahead of libc's, and fails the
// calls it is told to. It is an executable of its own so that no other test reads through it.
// Linux on a 64-bit ABI (the system call takes the offset whole).
#include <errno.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/io/pcap/pcap_records.h"
#include "tests/testing/external_tool.h"
#include "tests/testing/pcap_file.h"

namespace {

// The file (by device and inode) whose reads at or past `fail_from` fail with EIO; inode 0:
// none.
std::atomic<dev_t> fail_device{0};
std::atomic<ino_t> fail_inode{0};
std::atomic<off_t> fail_from{0};
std::atomic<uint64_t> failed_reads{0};

static_assert(sizeof(off_t) == 8, "the offset goes to the system call in one register");

ssize_t Pread(int fd, void* buf, size_t n, off_t offset) {
  const ino_t inode = fail_inode.load();
  struct stat st {};
  if (inode != 0 && offset >= fail_from.load() && fstat(fd, &st) == 0 && st.st_ino == inode &&
      st.st_dev == fail_device.load()) {
    failed_reads.fetch_add(1);
    errno = EIO;
    return -1;
  }
  return syscall(SYS_pread64, fd, buf, n, offset);
}

}  // namespace

// Declared by <unistd.h>: with _FILE_OFFSET_BITS=64 the name is pread64's, and this defines
// that one.
extern "C" ssize_t pread(int fd, void* buf, size_t n, off_t offset) {
  return Pread(fd, buf, n, offset);
}

namespace sluice {
namespace {

// The direct reader reads 256 KiB at a time from offset 24 (DirectReader::kChunk). Failing
// every read past the first: the records wholly inside the first chunk come out, in order and
// intact, then Next says kError with libpcap's words for a failed read, naming the file.
TEST(PcapReadError, AReadErrorEndsTheFileAfterTheRecordsReadBeforeIt) {
  testing::TempDir dir;
  const std::string path = dir.File("eio.pcap");
  std::vector<std::vector<uint8_t>> packets;
  for (uint32_t i = 0; i < 600; ++i) {
    std::vector<uint8_t> p(1000 + i % 7);
    for (std::size_t j = 0; j < p.size(); ++j) p[j] = static_cast<uint8_t>(i + j * 3);
    packets.push_back(std::move(p));
  }
  ASSERT_TRUE(testing::WritePcap(path, 1, packets));  // ~600 KiB: three chunks
  const testing::PcapContents want = testing::ReadPcap(path);
  ASSERT_TRUE(want.error.empty()) << want.error;
  ASSERT_EQ(want.records.size(), packets.size());

  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  auto r = PcapRecordReader::Open(path);  // reads the file header with pread, at offset 0
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE((*r)->direct());
  constexpr off_t kSecondChunk = 24 + (off_t{256} << 10);
  fail_from = kSecondChunk;
  fail_device = st.st_dev;
  fail_inode = st.st_ino;

  // The records that end inside the first chunk.
  std::size_t in_first = 0;
  for (off_t end = 24; in_first < want.records.size(); ++in_first) {
    end += 16 + static_cast<off_t>(want.records[in_first].bytes.size());
    if (end > kSecondChunk) break;
  }
  ASSERT_GT(in_first, 0u);
  ASSERT_LT(in_first, want.records.size());

  PcapRecord rec;
  PcapRecordReader::Result rc;
  std::size_t got = 0;
  while ((rc = (*r)->Next(rec)) == PcapRecordReader::Result::kRecord) {
    ASSERT_LT(got, in_first);
    const auto& w = want.records[got];
    EXPECT_EQ(std::vector<uint8_t>(rec.data, rec.data + rec.caplen), w.bytes) << got;
    EXPECT_EQ(rec.len, w.wire_len) << got;
    ++got;
  }
  fail_inode = 0;
  EXPECT_EQ(rc, PcapRecordReader::Result::kError);
  EXPECT_EQ(got, in_first);
  EXPECT_GE(failed_reads.load(), 1u);
  const std::string& error = (*r)->error();
  EXPECT_NE(error.find(path), std::string::npos) << error;
  EXPECT_NE(error.find("error reading dump file: Input/output error"), std::string::npos) << error;
  EXPECT_NE(error.find("after " + std::to_string(in_first) + " records"), std::string::npos)
      << error;
}

}  // namespace
}  // namespace sluice
