// The direct classic-pcap reader gives exactly the records libpcap gives, over the whole
// tcpdump corpus (malformed files included: same records before the same failure), and the
// buffered writer writes what libpcap's pcap_dump would.
#include "engine/io/pcap/pcap_records.h"

#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/io/gen/traffic_gen.h"
#include "tests/testing/external_tool.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

struct Rec {
  int64_t sec, nsec;
  uint32_t caplen, len;
  std::vector<uint8_t> bytes;
  bool operator==(const Rec&) const = default;
};

struct Stream {
  std::vector<Rec> records;
  bool error = false;
};

Stream ReadWithLibpcap(const std::string& path) {
  Stream s;
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (p == nullptr) {
    s.error = true;
    return s;
  }
  pcap_pkthdr* h;
  const u_char* d;
  int rc;
  while ((rc = pcap_next_ex(p, &h, &d)) == 1) s.records.push_back({h->ts.tv_sec, h->ts.tv_usec, h->caplen, h->len, {d, d + h->caplen}});
  s.error = rc != PCAP_ERROR_BREAK;
  pcap_close(p);
  return s;
}

// A record as the reader handed it out; `scale` takes its fraction of a second to nanoseconds.
Rec RecOf(const PcapRecord& r, int64_t scale) {
  return {r.sec, r.frac * scale, r.caplen, r.len, {r.data, r.data + r.caplen}};
}

Stream ReadWithRecords(const std::string& path, bool* direct) {
  Stream s;
  auto r = PcapRecordReader::Open(path);
  if (!r.ok()) {
    s.error = true;
    return s;
  }
  *direct = (*r)->direct();
  const int64_t scale = (*r)->format().nanosecond ? 1 : 1000;
  PcapRecord rec;
  PcapRecordReader::Result rc;
  while ((rc = (*r)->Next(rec)) == PcapRecordReader::Result::kRecord) {
    s.records.push_back(RecOf(rec, scale));
  }
  s.error = rc == PcapRecordReader::Result::kError;
  return s;
}

TEST(PcapRecords, SameRecordsAsLibpcapOverTheWholeCorpus) {
  uint64_t files = 0, direct_files = 0, records = 0, failing = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(SLUICE_SOURCE_DIR) / "tests/corpus/tcpdump")) {
    const std::string path = entry.path().string();
    if (path.ends_with(".md") || path.ends_with("LICENSE")) continue;
    SCOPED_TRACE(path);
    bool direct = false;
    const Stream want = ReadWithLibpcap(path);
    const Stream got = ReadWithRecords(path, &direct);
    ASSERT_EQ(got.error, want.error);
    ASSERT_EQ(got.records.size(), want.records.size());
    for (std::size_t i = 0; i < want.records.size(); ++i) ASSERT_EQ(got.records[i], want.records[i]) << "record " << i;
    ++files;
    direct_files += direct;
    records += want.records.size();
    failing += want.error;
  }
  EXPECT_EQ(files, 830u);
  EXPECT_GT(direct_files, 700u);  // most of the corpus is classic pcap: the fast path is what runs
  std::printf("%llu files (%llu direct), %llu records, %llu ending in an error\n",
              (unsigned long long)files, (unsigned long long)direct_files,
              (unsigned long long)records, (unsigned long long)failing);
}

// A file cut anywhere: the same whole records, then the same verdict (end or error).
// The direct reader takes only what it reads exactly as libpcap does: version 2.4 files of link
// types whose records libpcap caps at MAXIMUM_SNAPLEN. Others go through libpcap itself.
TEST(PcapRecords, OtherVersionsAndLinkTypesGoThroughLibpcap) {
  testing::TempDir dir;
  const std::string base = dir.path() + "/base.pcap";
  ASSERT_TRUE(WritePcap({.seed = 21}, 50, base).ok());
  bool direct = false;
  ReadWithRecords(base, &direct);
  EXPECT_TRUE(direct) << "a plain 2.4 Ethernet file takes the direct reader";
  const struct {
    const char* name;
    std::size_t offset;  // in the file header
    uint32_t value;
    std::size_t width;
  } edits[] = {{"version 2.3", 6, 3, 2}, {"USBPcap link type", 20, 249, 4}};
  for (const auto& e : edits) {
    SCOPED_TRACE(e.name);
    std::ifstream in(base, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::memcpy(bytes.data() + e.offset, &e.value, e.width);  // host order, as the file is
    const std::string path = dir.path() + "/edited.pcap";
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    const Stream want = ReadWithLibpcap(path);
    direct = true;
    const Stream got = ReadWithRecords(path, &direct);
    EXPECT_FALSE(direct);
    EXPECT_EQ(got.error, want.error);
    EXPECT_EQ(got.records, want.records);
  }
}

TEST(PcapRecords, CutFilesEndLikeLibpcapAtEveryLength) {
  testing::TempDir dir;
  const std::string whole = dir.File("whole.pcap"), cut = dir.File("cut.pcap");
  ASSERT_TRUE(WritePcap({.seed = 5, .flows = 4, .sizes = SizeMix::k64}, 8, whole).ok());
  const auto size = fs::file_size(whole);
  for (uintmax_t n = 24; n <= size; ++n) {
    SCOPED_TRACE(n);
    fs::copy_file(whole, cut, fs::copy_options::overwrite_existing);
    fs::resize_file(cut, n);
    bool direct = false;
    const Stream want = ReadWithLibpcap(cut);
    const Stream got = ReadWithRecords(cut, &direct);
    ASSERT_TRUE(direct);
    ASSERT_EQ(got.error, want.error);
    ASSERT_EQ(got.records, want.records);
  }
}

// Writes records of the given captured lengths (bytes from a fixed pattern, timestamps and wire
// lengths varying with the index): Ethernet, snaplen 262144, libpcap's largest record for it.
void WriteRecords(const std::string& path, const std::vector<uint32_t>& caplens) {
  static const std::vector<uint8_t> bytes = [] {
    std::vector<uint8_t> b(262144 + 97);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7 + i / 251);
    return b;
  }();
  auto w = PcapRecordWriter::Open(path, PcapFormat{});
  ASSERT_TRUE(w.ok());
  for (std::size_t i = 0; i < caplens.size(); ++i) {
    const PcapRecord r{.sec = 1700000000 + static_cast<int64_t>(i),
                       .frac = static_cast<int64_t>(i),
                       .caplen = caplens[i],
                       .len = caplens[i] + static_cast<uint32_t>(i % 3),
                       .data = bytes.data() + i % 97};
    (*w)->Write(r);
  }
  ASSERT_TRUE((*w)->Close().ok());
}

// The direct reader reads the file 256 KiB at a time from offset 24 (DirectReader::kChunk).
// Around the first chunk's end, a record's header starts `shift` bytes before it (0: the
// record before ends exactly there; 1..15: the header is split; 16: its bytes start there).
// That record is as large as libpcap allows, so with its header split it takes two more
// reads; small records follow into a third chunk. Each such file, and the file cut at and
// around those points, reads as libpcap reads it.
TEST(PcapRecords, RecordsSplitByTheReadsComeOutAsLibpcapsDo) {
  constexpr uint32_t kChunk = 256 << 10;  // DirectReader::kChunk
  testing::TempDir dir;
  const std::string path = dir.File("split.pcap"), cut = dir.File("cut.pcap");
  for (uint32_t shift = 0; shift <= 20; ++shift) {
    SCOPED_TRACE(shift);
    std::vector<uint32_t> caplens = {kChunk - 16 - shift, 262144};
    for (uint32_t i = 0; i < 60; ++i) caplens.push_back(60 + (i * 389) % 1400);
    WriteRecords(path, caplens);
    bool direct = false;
    const Stream want = ReadWithLibpcap(path);
    const Stream got = ReadWithRecords(path, &direct);
    ASSERT_TRUE(direct);
    ASSERT_EQ(want.records.size(), caplens.size());
    ASSERT_FALSE(want.error);
    ASSERT_EQ(got.error, want.error);
    ASSERT_EQ(got.records, want.records);
    const std::size_t edge = 24 + kChunk - shift;  // where the large record's header starts
    const std::size_t after_large = edge + 16 + 262144;
    for (const std::size_t at :
         {edge, edge + 8, edge + 16, edge + 16 + 100000, after_large, after_large + 10}) {
      SCOPED_TRACE(at);
      fs::copy_file(path, cut, fs::copy_options::overwrite_existing);
      fs::resize_file(cut, at);
      const Stream w = ReadWithLibpcap(cut);
      const Stream g = ReadWithRecords(cut, &direct);
      ASSERT_EQ(g.error, w.error);
      ASSERT_EQ(g.records, w.records);
    }
  }
}

// What the direct reader reads is the file as it was when opened: records appended after are
// not read (the file ends cleanly where it ended), and a file cut short while it is read ends
// where the cut is, with libpcap's error for a record cut off.
TEST(PcapRecords, TheDirectReaderReadsTheFileAsItWasWhenOpenedUnlessCutShort) {
  testing::TempDir dir;
  const std::string path = dir.File("grow.pcap"), same = dir.File("same.pcap");
  std::vector<uint32_t> caplens;
  for (uint32_t i = 0; i < 1000; ++i)
    caplens.push_back(60 + (i * 389) % 1400);  // ~700 KiB: 3 chunks
  WriteRecords(path, caplens);
  const Stream whole = ReadWithLibpcap(path);
  ASSERT_EQ(whole.records.size(), caplens.size());
  {
    auto r = PcapRecordReader::Open(path);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->direct());
    std::ofstream(path, std::ios::binary | std::ios::app)
        .write("0123456789abcdef0123456789", 26);  // more bytes
    std::vector<Rec> got;
    PcapRecord rec;
    PcapRecordReader::Result rc;
    while ((rc = (*r)->Next(rec)) == PcapRecordReader::Result::kRecord) {
      got.push_back(RecOf(rec, 1000));  // written in microseconds
    }
    EXPECT_EQ(rc, PcapRecordReader::Result::kEnd) << (*r)->error();
    EXPECT_EQ(got, whole.records);
  }
  WriteRecords(path, caplens);
  const std::size_t cut_at = (std::size_t{256} << 10) + 24 + 5000;  // inside the second chunk
  fs::copy_file(path, same, fs::copy_options::overwrite_existing);
  fs::resize_file(same, cut_at);
  const Stream want = ReadWithLibpcap(same);
  ASSERT_TRUE(want.error);
  auto r = PcapRecordReader::Open(path);
  ASSERT_TRUE(r.ok());
  PcapRecord rec;
  std::vector<Rec> got;
  ASSERT_EQ((*r)->Next(rec), PcapRecordReader::Result::kRecord);  // the first chunk is in
  got.push_back(RecOf(rec, 1000));                                // written in microseconds
  fs::resize_file(path, cut_at);
  PcapRecordReader::Result rc;
  while ((rc = (*r)->Next(rec)) == PcapRecordReader::Result::kRecord) {
    got.push_back(RecOf(rec, 1000));  // written in microseconds
  }
  EXPECT_EQ(rc, PcapRecordReader::Result::kError);
  EXPECT_NE((*r)->error().find("truncated dump file"), std::string::npos) << (*r)->error();
  EXPECT_EQ(got, want.records);
}

TEST(PcapRecords, WriterMatchesPcapDumpByteForByte) {
  testing::TempDir dir;
  const std::string in = dir.File("in.pcap"), ours = dir.File("ours.pcap"), theirs = dir.File("theirs.pcap");
  ASSERT_TRUE(WritePcap({.seed = 4, .flows = 50, .sizes = SizeMix::kImix, .ipv6_share = 0.3}, 3000, in).ok());
  auto reader = PcapRecordReader::Open(in);
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE((*reader)->direct());
  auto writer = PcapRecordWriter::Open(ours, (*reader)->format());
  ASSERT_TRUE(writer.ok());
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, static_cast<int>((*reader)->format().snaplen));
  pcap_dumper_t* dumper = pcap_dump_open(dead, theirs.c_str());
  ASSERT_NE(dumper, nullptr);
  PcapRecord r;
  while ((*reader)->Next(r) == PcapRecordReader::Result::kRecord) {
    (*writer)->Write(r);
    pcap_pkthdr h{};
    h.ts.tv_sec = r.sec;
    h.ts.tv_usec = r.frac;
    h.caplen = r.caplen;
    h.len = r.len;
    pcap_dump(reinterpret_cast<u_char*>(dumper), &h, r.data);
  }
  ASSERT_TRUE((*writer)->Close().ok());
  pcap_dump_close(dumper);
  pcap_close(dead);
  auto bytes = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(f), {});
  };
  const auto a = bytes(ours), b = bytes(theirs);
  EXPECT_GT(a.size(), 3000u * 60u);
  EXPECT_TRUE(a == b);
  EXPECT_TRUE(a == bytes(in));  // and the generator's own file, written by libpcap, too
}

TEST(PcapRecords, WriteErrorsAreReportedByClose) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  auto w = PcapRecordWriter::Open("/dev/full", PcapFormat{});
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> data(1500, 1);
  PcapRecord r;
  r.caplen = r.len = 1500;
  r.data = data.data();
  for (int i = 0; i < 2000; ++i) (*w)->Write(r);  // more than the buffer: a write happens
  const Status s = (*w)->Close();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/dev/full"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace sluice
