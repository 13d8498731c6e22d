// pcap in, pcap out: formats, link types, timestamps, loops, and clear errors for bad files.
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "engine/graph/pipeline.h"
#include "engine/io/gen/traffic_gen.h"
#include "engine/io/pcap/pcap_sink.h"
#include "engine/io/pcap/pcap_source.h"
#include "engine/stages/parse/parse_stage.h"
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

// in through the graph to out (and dropped packets to drops, when given): `parse` first (by
// default AcceptAll, which does not parse), then AcceptAll.
struct ReplayOptions {
  PipelineOptions pipeline{};
  PoolConfig pool{.small_buffers = 8192, .large_buffers = 64};
  std::optional<StageRef> parse{};
  fs::path drops{};
  uint64_t* too_big = nullptr;  // packets dropped as too_big
};

Status ReplayWith(const fs::path& in, const fs::path& out, uint32_t loops, const ReplayOptions& o, uint64_t* packets) {
  auto pool = std::move(BufferPool::Create(o.pool)).value();
  AcceptAll stage;
  std::vector<ShardStages> shards(o.pipeline.shards, ShardStages{StageRef::Of(stage), StageRef::Of(stage)});
  OfflinePipeline pipeline(o.pipeline, *pool, o.parse.value_or(StageRef::Of(stage)), shards);
  auto src = PcapSource::Open(in.string(), loops);
  if (!src.ok()) return src.status();
  auto writer = PcapWriter::Open(out.string(), (*src)->format());
  if (!writer.ok()) return writer.status();
  std::unique_ptr<PcapWriter> drops;
  if (!o.drops.empty()) {
    auto d = PcapWriter::Open(o.drops.string(), (*src)->format());
    if (!d.ok()) return d.status();
    drops = std::move(d).value();
  }
  PcapSink sink(std::move(writer).value(), std::move(drops));
  Status s = pipeline.Run(**src, sink);
  *packets = pipeline.run_stats().packets_in.Load();
  if (o.too_big != nullptr) {
    *o.too_big = pipeline.run_stats().dropped[static_cast<std::size_t>(DropReason::kTooBig)].Load();
  }
  return s;
}

Status Replay(const fs::path& in, const fs::path& out, uint32_t loops, PipelineOptions opts, uint64_t* packets) {
  return ReplayWith(in, out, loops, {.pipeline = opts}, packets);
}

// Writes Ethernet frames as a classic pcap file (microseconds, snaplen 262144).
void WriteFrames(const fs::path& path, const std::vector<std::vector<uint8_t>>& frames) {
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 262144);
  pcap_dumper_t* d = pcap_dump_open(dead, path.c_str());
  ASSERT_NE(d, nullptr) << pcap_geterr(dead);
  for (std::size_t i = 0; i < frames.size(); ++i) {
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(1700000000 + i);
    h.caplen = h.len = static_cast<uint32_t>(frames[i].size());
    pcap_dump(reinterpret_cast<u_char*>(d), &h, frames[i].data());
  }
  pcap_dump_close(d);
  pcap_close(dead);
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

int64_t Nanos(const timeval& ts) { return int64_t{ts.tv_sec} * 1000000000 + ts.tv_usec; }  // ReadAll: ns

// Each pass repeats the file's records, its timestamps moved on so that time runs forward:
// pass k starts one mean packet gap after pass k-1's latest timestamp.
TEST(PcapIo, LoopsRepeatTheFileWithTimeRunningOn) {
  const fs::path in = Temp("loop_in.pcap"), out = Temp("loop_out.pcap");
  ASSERT_TRUE(WritePcap({.seed = 6}, 100, in).ok());
  uint64_t n = 0;
  ASSERT_TRUE(Replay(in, out, 3, {}, &n).ok());
  EXPECT_EQ(n, 300u);
  const auto once = ReadAll(in), thrice = ReadAll(out);
  ASSERT_EQ(once.size(), 100u);
  ASSERT_EQ(thrice.size(), 300u);
  int64_t earliest = INT64_MAX, latest = INT64_MIN;
  for (const Record& r : once) {
    earliest = std::min(earliest, Nanos(r.ts));
    latest = std::max(latest, Nanos(r.ts));
  }
  ASSERT_GT(latest, earliest);
  // The file has microseconds: the shift is whole microseconds.
  const int64_t span_us = (latest - earliest) / 1000;
  const int64_t pass_ns = (span_us + std::max<int64_t>(1, span_us / 99)) * 1000;
  for (std::size_t i = 0; i < 300; ++i) {
    SCOPED_TRACE(i);
    const Record& want = once[i % 100];
    EXPECT_EQ(thrice[i].len, want.len);
    EXPECT_EQ(thrice[i].bytes, want.bytes);
    EXPECT_EQ(Nanos(thrice[i].ts), Nanos(want.ts) + static_cast<int64_t>(i / 100) * pass_ns);
  }
  EXPECT_GT(Nanos(thrice[100].ts), Nanos(thrice[99].ts)) << "the second pass starts after the first ends";
  fs::remove(in);
  fs::remove(out);
}

// Timestamps that a later pass would carry past pcap's signed 32-bit seconds: an error after
// the passes that fit, not a wrap to 1901.
TEST(PcapIo, ALoopThatWouldWrapTheTimestampsIsAnError) {
  const fs::path in = Temp("loop_2038.pcap"), out = Temp("loop_2038_out.pcap");
  {
    pcap_t* dead = pcap_open_dead(DLT_EN10MB, 262144);
    pcap_dumper_t* d = pcap_dump_open(dead, in.c_str());
    ASSERT_NE(d, nullptr) << pcap_geterr(dead);
    const std::vector<uint8_t> frame = TrafficGenerator({.seed = 3}).Generate(1)[0];
    for (const uint32_t sec : {0x7fff0000u, 0x7fff8000u}) {  // 9 h apart, 18 h before 2038-01-19
      pcap_pkthdr h{};
      h.ts.tv_sec = static_cast<time_t>(sec);
      h.caplen = h.len = static_cast<uint32_t>(frame.size());
      pcap_dump(reinterpret_cast<u_char*>(d), &h, frame.data());
    }
    pcap_dump_close(d);
    pcap_close(dead);
  }
  uint64_t n = 0;
  const Status s = Replay(in, out, 3, {}, &n);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("32-bit"), std::string::npos) << s.message();
  EXPECT_EQ(n, 2u) << "the first pass fits; the second would pass 2038";
  fs::remove(in);
  fs::remove(out);
}

// A little-endian pcapng file: one Ethernet interface (microsecond timestamps) and one
// enhanced packet block per timestamp, each carrying the same 60-byte frame.
void WritePcapng(const fs::path& path, std::initializer_list<uint64_t> timestamps_us) {
  std::vector<uint8_t> f;
  auto u32 = [&f](uint32_t v) {
    for (int i = 0; i < 4; ++i) f.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  u32(0x0A0D0D0A), u32(28), u32(0x1A2B3C4D), u32(0x00000001), u32(0xffffffff), u32(0xffffffff), u32(28);  // SHB
  u32(1), u32(20), u32(1), u32(65535), u32(20);  // IDB: LINKTYPE_ETHERNET, snaplen 65535
  for (const uint64_t ts : timestamps_us) {
    u32(6), u32(32 + 60), u32(0), u32(static_cast<uint32_t>(ts >> 32)), u32(static_cast<uint32_t>(ts)), u32(60), u32(60);
    f.insert(f.end(), 60, 0xab);
    u32(32 + 60);
  }
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
}

// pcapng carries 64-bit seconds; pcap, 32. A capture past them (tcpdump's corpus has one past
// 2106; the crafted one is past 2262, where seconds × 10^9 overflows int64) goes through one
// pass as libpcap writes it (seconds cut to 32 bits; CorpusReplay checks that), but its passes
// cannot be moved on: a loop is refused after the first pass, with no arithmetic on those
// seconds (UBSan, in the asan preset, catches the overflow).
TEST(PcapIo, ALoopOfAFileWithTimestampsBeyond32BitsIsAnError) {
  const fs::path crafted = Temp("ts_2300.pcapng");
  WritePcapng(crafted, {1'700'000'000'000'000ull, (uint64_t{1} << 40) * 1'000'000ull});
  for (const fs::path& in : {Corpus("time_2106_overflow.pcapng"), crafted}) {
    SCOPED_TRACE(in.string());
    const fs::path out = Temp("loop_beyond_out.pcap");
    uint64_t once = 0;
    ASSERT_TRUE(Replay(in, out, 1, {}, &once).ok());
    ASSERT_GT(once, 0u);
    uint64_t n = 0;
    const Status s = Replay(in, out, 2, {}, &n);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("cannot be looped"), std::string::npos) << s.message();
    EXPECT_EQ(n, once) << "the first pass goes through whole";
    fs::remove(out);
  }
  fs::remove(crafted);
}

// A single pass writes such timestamps modulo 2^32, as pcap_dump does; the source counts
// them so that replay can say so rather than change the dates silently.
TEST(PcapIo, TimestampsBeyond32BitsAreCounted) {
  auto pool = std::move(BufferPool::Create({.small_buffers = 1024, .large_buffers = 16})).value();
  for (const auto& [name, beyond] : {std::pair{"time_2106_overflow.pcapng", true}, {"tcp-handshake-nano.pcap", false}}) {
    SCOPED_TRACE(name);
    auto src = PcapSource::Open(Corpus(name).string());
    ASSERT_TRUE(src.ok()) << src.status().message();
    PoolCache cache(*pool);
    for (bool more = true; more;) {
      Batch b;
      b.set_limit(kMaxBatch);
      more = (*src)->ReadBurst(cache, b, kMaxBatch);
      PacketBuffer* bufs[kMaxBatch];
      cache.PutBulk(bufs, b.TakeBuffers(bufs));
    }
    ASSERT_TRUE((*src)->status().ok());
    EXPECT_EQ((*src)->timestamps_beyond_32bit() > 0, beyond);
    EXPECT_LE((*src)->timestamps_beyond_32bit(), (*src)->records());
  }
}

// A classic pcap file libpcap reads for us (here big-endian) keeps its microseconds: the
// output was once written in nanoseconds, against the README's promise of the input's
// precision.
TEST(PcapIo, AByteSwappedMicrosecondFileIsWrittenInMicroseconds) {
  const fs::path in = Corpus("pptp.pcap"), out = Temp("swapped_out.pcap");
  auto reader = PcapRecordReader::Open(in.string());
  ASSERT_TRUE(reader.ok());
  EXPECT_FALSE((*reader)->format().nanosecond);
  uint64_t n = 0;
  ASSERT_TRUE(Replay(in, out, 1, {}, &n).ok());
  uint32_t magic = 0;
  std::FILE* f = std::fopen(out.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fread(&magic, 4, 1, f), 1u);
  std::fclose(f);
  EXPECT_EQ(magic, 0xa1b2c3d4u) << "a microsecond pcap";
  EXPECT_EQ(ReadAll(out), ReadAll(in)) << "the same records, timestamps to the nanosecond";
  fs::remove(out);
}

TEST(PcapIo, LoopsOfANanosecondFileMoveOnInNanoseconds) {
  const fs::path in = Corpus("tcp-handshake-nano.pcap"), out = Temp("loop_nano_out.pcap");
  uint64_t n = 0;
  ASSERT_TRUE(Replay(in, out, 2, {}, &n).ok());
  const auto once = ReadAll(in), twice = ReadAll(out);
  ASSERT_GT(once.size(), 1u);
  ASSERT_EQ(twice.size(), 2 * once.size());
  int64_t earliest = INT64_MAX, latest = INT64_MIN;
  for (const Record& r : once) {
    earliest = std::min(earliest, Nanos(r.ts));
    latest = std::max(latest, Nanos(r.ts));
  }
  const int64_t span = latest - earliest;
  const int64_t pass = span + std::max<int64_t>(1, span / static_cast<int64_t>(once.size() - 1));
  for (std::size_t i = 0; i < once.size(); ++i) {
    EXPECT_EQ(Nanos(twice[i].ts), Nanos(once[i].ts));
    EXPECT_EQ(Nanos(twice[once.size() + i].ts), Nanos(once[i].ts) + pass) << i;
    EXPECT_EQ(twice[once.size() + i].bytes, once[i].bytes);
  }
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

// `sluice replay IN --drops D` without -o: the sink has no output writer. It used to write
// accepted packets through a null pointer (found by the corpus replay, docs/reliability.md).
TEST(PcapIo, SinkWithOnlyADropsFileWritesTheDropsAndSkipsTheRest) {
  const fs::path drops = Temp("drops_only.pcap");
  PcapFormat raw;
  raw.linktype = 101;  // LINKTYPE_RAW
  raw.dlt = DLT_RAW;
  auto w = PcapWriter::Open(drops.string(), raw);
  ASSERT_TRUE(w.ok());
  PcapSink sink(nullptr, std::move(w).value());
  auto pool = std::move(BufferPool::Create({.small_buffers = 64, .large_buffers = 1})).value();
  PoolCache cache(*pool);
  PacketBuffer* bufs[3] = {cache.Get(SizeClass::kSmall), cache.Get(SizeClass::kSmall), cache.Get(SizeClass::kSmall)};
  const uint8_t bytes[20] = {0x45};
  for (int i = 0; i < 3; ++i) {
    ASSERT_NE(bufs[i], nullptr);
    ASSERT_TRUE(bufs[i]->Assign(bytes, sizeof bytes));
    const PcapToken ts{1700000000 + i, 0};
    std::memcpy(bufs[i]->io().token, &ts, sizeof ts);
    bufs[i]->meta().verdict = i == 1 ? Verdict::kDrop : Verdict::kAccept;
  }
  sink.Consume(std::span<PacketBuffer* const>(bufs, 3));
  ASSERT_TRUE(sink.Finish().ok());
  const auto written = ReadAll(drops);
  ASSERT_EQ(written.size(), 1u);
  EXPECT_EQ(written[0].ts.tv_sec, 1700000001);
  for (PacketBuffer* b : bufs) cache.Put(b);
  fs::remove(drops);
}

// Parse trims what follows the IP packet (an Ethernet frame's padding, an FCS, a trailer) off
// the packet's length; the written record must still be the frame that was read, as
// tcprewrite writes it, not a shorter one with a smaller wire length.
TEST(PcapIo, ParsedFramesAreWrittenWithTheirPaddingAndTrailers) {
  const fs::path in = Temp("trailer_in.pcap"), out = Temp("trailer_out.pcap");
  auto frames = TrafficGenerator({.seed = 12, .flows = 32, .sizes = SizeMix::k64, .ipv6_share = 0.3}).Generate(200);
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const std::vector<uint8_t> tail = i % 2 ? std::vector<uint8_t>{0xde, 0xad, 0xbe, 0xef} : std::vector<uint8_t>(6, 0);
    frames[i].insert(frames[i].end(), tail.begin(), tail.end());
  }
  WriteFrames(in, frames);
  ParseStage parse(ParseConfig{}, /*workers=*/2);
  uint64_t n = 0;
  ASSERT_TRUE(ReplayWith(in, out, 1, {.pipeline = {.shards = 2, .threads = 2}, .parse = StageRef::Of(parse)}, &n).ok());
  EXPECT_EQ(n, frames.size());
  // Every frame was parsed and trimmed (the test would prove nothing otherwise) ...
  EXPECT_EQ(parse.counters().Load(ParseCounter::kParsed), frames.size());
  EXPECT_EQ(parse.counters().Load(ParseCounter::kPaddingTrimmed), frames.size());
  // ... and comes out as it went in.
  EXPECT_EQ(ReadAll(out), ReadAll(in));
  for (const auto& p : {in, out}) fs::remove(p);
}

// A record larger than any buffer is dropped as too_big, and the drops file keeps what fits
// of it with its real length, not an empty record.
TEST(PcapIo, ARecordLargerThanAnyBufferIsDroppedCutWithItsLength) {
  const fs::path in = Temp("big_in.pcap"), out = Temp("big_out.pcap"), drops = Temp("big_drops.pcap");
  std::vector<std::vector<uint8_t>> frames = TrafficGenerator({.seed = 13}).Generate(3);
  std::vector<uint8_t> big(kLargeDataCapacity + 1000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  frames.insert(frames.begin() + 1, big);
  WriteFrames(in, frames);
  uint64_t n = 0;
  uint64_t too_big = 0;
  ASSERT_TRUE(ReplayWith(in, out, 1, {.drops = drops, .too_big = &too_big}, &n).ok());
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(too_big, 1u);
  EXPECT_EQ(ReadAll(out).size(), 3u);
  const auto dropped = ReadAll(drops);
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0].len, big.size());
  EXPECT_EQ(dropped[0].bytes, std::vector<uint8_t>(big.begin(), big.begin() + kSmallDataCapacity));
  for (const auto& p : {in, out, drops}) fs::remove(p);
}

// A pool with no large buffers (a daemon's config with GSO off) cannot take a jumbo frame:
// the run drops it as too_big and goes on, instead of waiting for a buffer forever.
TEST(PcapIo, ARecordWhoseSizeClassHasNoBuffersIsDroppedNotWaitedFor) {
  const fs::path in = Temp("jumbo_in.pcap"), out = Temp("jumbo_out.pcap");
  std::vector<std::vector<uint8_t>> frames = TrafficGenerator({.seed = 14}).Generate(5);
  frames.insert(frames.begin() + 2, std::vector<uint8_t>(9000, 0xab));
  WriteFrames(in, frames);
  uint64_t n = 0;
  uint64_t too_big = 0;
  ASSERT_TRUE(ReplayWith(in, out, 1, {.pool = {.small_buffers = 8192, .large_buffers = 0}, .too_big = &too_big}, &n).ok());
  EXPECT_EQ(n, 6u);
  EXPECT_EQ(too_big, 1u);
  EXPECT_EQ(ReadAll(out).size(), 5u);
  for (const auto& p : {in, out}) fs::remove(p);
}

}  // namespace
}  // namespace sluice
