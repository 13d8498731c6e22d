// pcap in, pcap out: formats, link types, timestamps, loops, and clear errors for bad files.
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/graph/pipeline.h"
#include "engine/io/gen/traffic_gen.h"
#include "engine/io/pcap/pcap_sink.h"
#include "engine/io/pcap/pcap_source.h"
#include "tests/testing/external_tool.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

// Every test's files live in one fresh directory, so parallel runs never share a name.
fs::path Temp(const std::string& name) {
  static testing::TempDir dir;
  return fs::path(dir.path()) / name;
}

fs::path Corpus(const std::string& name) { return fs::path(SLUICE_SOURCE_DIR) / "tests/corpus/tcpdump" / name; }

struct Record {
  timeval ts;
  uint32_t len;
  std::vector<uint8_t> bytes;
  bool operator==(const Record& o) const {
    return ts.tv_sec == o.ts.tv_sec && ts.tv_usec == o.ts.tv_usec && len == o.len && bytes == o.bytes;
  }
};

std::vector<Record> ReadAll(const fs::path& path, int* dlt = nullptr) {
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  EXPECT_NE(p, nullptr) << err;
  if (p == nullptr) return {};
  if (dlt) *dlt = pcap_datalink(p);
  std::vector<Record> out;
  pcap_pkthdr* h;
  const u_char* d;
  while (pcap_next_ex(p, &h, &d) == 1) out.push_back({h->ts, h->len, {d, d + h->caplen}});
  pcap_close(p);
  return out;
}

// Every packet accepted unmodified, without parsing: what goes in comes out.
struct AcceptAll {
  void Process(Batch& b) noexcept {
    for (uint32_t i = 0; i < b.size(); ++i) {
      if (!IsTerminal(b.next(i))) b.set_next(i, Next::kAccept);
    }
  }
};

Status Replay(const fs::path& in, const fs::path& out, uint32_t loops, PipelineOptions opts, uint64_t* packets) {
  auto pool = std::move(BufferPool::Create({.small_buffers = 8192, .large_buffers = 64})).value();
  AcceptAll stage;
  std::vector<ShardStages> shards(opts.shards, ShardStages{StageRef::Of(stage), StageRef::Of(stage)});
  OfflinePipeline pipeline(opts, *pool, StageRef::Of(stage), shards);
  auto src = PcapSource::Open(in.string(), loops);
  if (!src.ok()) return src.status();
  auto writer = PcapWriter::Open(out.string(), (*src)->format());
  if (!writer.ok()) return writer.status();
  PcapSink sink(std::move(writer).value(), nullptr);
  Status s = pipeline.Run(**src, sink);
  *packets = pipeline.run_stats().packets_in.Load();
  return s;
}

TEST(PcapIo, RoundTripKeepsBytesTimestampsAndOrder) {
  const fs::path in = Temp("rt_in.pcap"), out = Temp("rt_out.pcap");
  ASSERT_TRUE(WritePcap({.seed = 5, .flows = 64, .sizes = SizeMix::kImix, .ipv6_share = 0.2}, 5000, in).ok());
  uint64_t n = 0;
  ASSERT_TRUE(Replay(in, out, 1, {.shards = 1, .threads = 2}, &n).ok());
  EXPECT_EQ(n, 5000u);
  int dlt = 0;
  EXPECT_EQ(ReadAll(out, &dlt), ReadAll(in));
  EXPECT_EQ(dlt, DLT_EN10MB);
  fs::remove(in);
  fs::remove(out);
}

TEST(PcapIo, LoopsRepeatTheFile) {
  const fs::path in = Temp("loop_in.pcap"), out = Temp("loop_out.pcap");
  ASSERT_TRUE(WritePcap({.seed = 6}, 100, in).ok());
  uint64_t n = 0;
  ASSERT_TRUE(Replay(in, out, 3, {}, &n).ok());
  EXPECT_EQ(n, 300u);
  const auto once = ReadAll(in), thrice = ReadAll(out);
  ASSERT_EQ(thrice.size(), 300u);
  for (std::size_t i = 0; i < 300; ++i) EXPECT_EQ(thrice[i], once[i % 100]);
  fs::remove(in);
  fs::remove(out);
}

TEST(PcapIo, ReadsPcapngAndNanosecondFilesExactly) {
  for (const char* name : {"ahcp.pcapng", "OSPFv2_Capture_FINAL.pcapng", "tcp-handshake-nano.pcap"}) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(fs::exists(Corpus(name)));
    const fs::path out = Temp("ng_out.pcap");
    uint64_t n = 0;
    ASSERT_TRUE(Replay(Corpus(name), out, 1, {}, &n).ok());
    const auto want = ReadAll(Corpus(name));
    EXPECT_GT(want.size(), 0u);
    EXPECT_EQ(n, want.size());
    EXPECT_EQ(ReadAll(out), want);
    fs::remove(out);
  }
}

TEST(PcapIo, LinkTypesAreMappedAndUnknownOnesTaggedUnsupported) {
  EXPECT_EQ(LinkTypeOfDlt(DLT_EN10MB), LinkType::kEthernet);
  EXPECT_EQ(LinkTypeOfDlt(DLT_RAW), LinkType::kRaw);
  EXPECT_EQ(LinkTypeOfDlt(101), LinkType::kRaw);
  EXPECT_EQ(LinkTypeOfDlt(DLT_LINUX_SLL), LinkType::kLinuxSll);
  EXPECT_EQ(LinkTypeOfDlt(276), LinkType::kLinuxSll2);
  EXPECT_EQ(LinkTypeOfDlt(DLT_NULL), LinkType::kBsdLoopback);
  EXPECT_EQ(LinkTypeOfDlt(DLT_LOOP), LinkType::kBsdLoopback);
  EXPECT_EQ(LinkTypeOfDlt(228), LinkType::kIpv4);
  EXPECT_EQ(LinkTypeOfDlt(229), LinkType::kIpv6);
  EXPECT_EQ(LinkTypeOfDlt(DLT_IEEE802_11), LinkType::kUnsupported);
}

TEST(PcapIo, MissingFileIsAClearError) {
  auto src = PcapSource::Open("/nonexistent/dir/x.pcap");
  ASSERT_FALSE(src.ok());
  EXPECT_NE(src.status().message().find("/nonexistent/dir/x.pcap"), std::string::npos);
}

TEST(PcapIo, NotAPcapFileIsAClearError) {
  const fs::path p = Temp("garbage.pcap");
  std::ofstream(p) << "this is not a capture file at all, just text\n";
  auto src = PcapSource::Open(p.string());
  ASSERT_FALSE(src.ok());
  EXPECT_NE(src.status().message().find(p.string()), std::string::npos) << src.status().message();
  fs::remove(p);
}

TEST(PcapIo, FileCutMidRecordEndsTheRunWithAnErrorAfterEveryWholeRecord) {
  const fs::path in = Temp("cut_in.pcap"), cut = Temp("cut.pcap"), out = Temp("cut_out.pcap");
  ASSERT_TRUE(WritePcap({.seed = 8}, 1000, in).ok());
  const auto size = fs::file_size(in);
  fs::copy_file(in, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, size - 30);  // the last record loses its tail
  uint64_t n = 0;
  const Status s = Replay(cut, out, 1, {.shards = 2, .threads = 2}, &n);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(cut.string()), std::string::npos) << s.message();
  EXPECT_EQ(n, 999u);                 // every whole record went through
  EXPECT_EQ(ReadAll(out).size(), 999u);  // and was written
  for (const auto& p : {in, cut, out}) fs::remove(p);
}

TEST(PcapIo, UnwritableOutputIsAClearError) {
  auto w = PcapWriter::Open("/nonexistent/dir/out.pcap", PcapFormat{});
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("/nonexistent/dir/out.pcap"), std::string::npos);
}

}  // namespace
}  // namespace sluice
