// Every capture of tcpdump's test suite (830 files, many deliberately malformed) through the
// `sluice replay` binary with tests/reliability/every_rewrite.toml, two at a time. Run under
// the asan preset, a sanitizer report aborts the child and fails the file.
//
// Per file, against an independent libpcap read of the input (tests/testing/pcap_file.h):
// - a file libpcap cannot open: sluice exits 1 naming the file and libpcap's error; counted;
// - otherwise packets.in == the records libpcap reads, packets.in == accepted + rewritten +
//   dropped + skipped, the output file holds in − dropped records and the drops file dropped;
//   exit 0, or 1 with "after N records" when the file breaks off mid-record;
// - record by record (output and drops merged back into input order): every timestamp a pcap
//   file can hold comes back unchanged; a packet parse rejects leaves byte for byte as it
//   came; a dropped one is unmodified; a parsed one leaves with its length (less L2 padding)
//   and, if its IPv4 header and transport checksums verified on input, they verify on output.
//   Timestamps no pcap file can hold (past 2106, before 1970, a fraction of a second >= 1 s in
//   a corrupt file) are counted, not compared: the output is pcap, whatever the input was.
// Over the whole corpus, every edit of the rule set (addresses, ports, TTL, DSCP, MSS, mark,
// full checksums, translations, drops) happened at least once. (No capture holds enough
// translated flows to evict one: evictions are tests/reliability/flood_test.cpp's.)
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/stages/parse/parse_stage.h"
#include "tests/testing/external_tool.h"
#include "tests/testing/guarded_packet.h"
#include "tests/testing/packet_builder.h"
#include "tests/testing/pcap_file.h"

#if !defined(SLUICE_CORPUS_DIR) || !defined(SLUICE_BINARY) || !defined(SLUICE_EVERY_REWRITE)
#error "SLUICE_CORPUS_DIR, SLUICE_BINARY and SLUICE_EVERY_REWRITE must be defined"
#endif

extern char** environ;

namespace sluice {
namespace {

constexpr std::size_t kCorpusFiles = 830;
constexpr int kParallel = 2;

struct Job {
  std::string input;
  std::string dir;  // the child's files: out.pcap, drops.pcap, stats.json, stderr
  pid_t pid = -1;
  int status = 0;
};

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void Spawn(Job& job) {
  std::filesystem::create_directories(job.dir);
  const std::string out = job.dir + "/out.pcap", drops = job.dir + "/drops.pcap", json = job.dir + "/stats.json",
                    err = job.dir + "/stderr";
  std::vector<std::string> args = {SLUICE_BINARY, "replay",       job.input, "-c",      SLUICE_EVERY_REWRITE,
                                   "-o",          out,            "--drops", drops,     "--stats-json",
                                   json,          "--seed",       "7",       "--quiet", "--threads",
                                   "2"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int rc = posix_spawn(&job.pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) job.pid = -1;
}

// What the whole corpus did, summed over files.
struct Totals {
  uint64_t files = 0, unopenable = 0, broken_off = 0, packets = 0, out = 0, dropped = 0, skipped = 0,
           rewritten = 0, parse_rejected_compared = 0, checksums_kept = 0, odd_timestamps = 0;
  std::map<std::string, uint64_t> counters;  // the report's named counters
  std::map<std::string, uint64_t> rules;     // rule name → packets
  std::map<std::string, uint64_t> reasons;   // dropped and skipped, by reason
  std::vector<std::string> unopenable_errors;
};

// A timestamp a pcap file holds exactly: 32-bit seconds, a fraction below one second.
bool PcapCanHold(const testing::PcapRecord& r) {
  return r.ts_sec >= 0 && r.ts_sec <= 0xffffffffLL && r.ts_nsec >= 0 && r.ts_nsec < 1000000000;
}

bool SameTime(const testing::PcapRecord& a, const testing::PcapRecord& b) {
  return a.ts_sec == b.ts_sec && a.ts_nsec == b.ts_nsec;
}

bool ChecksumsOk(const PacketBuffer& b) {
  const uint8_t* ip = b.data() + b.meta().l3_off;
  const std::size_t n = b.len() - b.meta().l3_off;
  return testing::RefIpHeaderChecksumOk(ip, n) && testing::RefL4ChecksumOk(ip, n);
}

// Checks one finished child against the independent read of its input.
void Check(const Job& job, testing::GuardedPacket& slot, Totals& t) {
  const std::string name = std::filesystem::path(job.input).filename().string();
  SCOPED_TRACE(name);
  const std::string err = ReadText(job.dir + "/stderr");
  ASSERT_TRUE(WIFEXITED(job.status)) << "killed by signal " << WTERMSIG(job.status) << "\n" << err;
  ASSERT_EQ(err.find("Sanitizer"), std::string::npos) << err;
  ASSERT_EQ(err.find("runtime error"), std::string::npos) << err;
  const int exit_code = WEXITSTATUS(job.status);
  ++t.files;

  const testing::PcapContents in = testing::ReadPcap(job.input);
  if (in.dlt < 0) {
    ++t.unopenable;
    EXPECT_EQ(exit_code, 1);
    EXPECT_NE(err.find(job.input + ": " + in.error), std::string::npos)
        << "expected libpcap's error \"" << in.error << "\", got: " << err;
    t.unopenable_errors.push_back(name + ": " + in.error);
    return;
  }
  if (in.error.empty()) {
    EXPECT_EQ(exit_code, 0) << err;
  } else {
    ++t.broken_off;
    EXPECT_EQ(exit_code, 1) << err;
    EXPECT_NE(err.find("after " + std::to_string(in.records.size()) + " records"), std::string::npos) << err;
  }

  const nlohmann::json j = nlohmann::json::parse(ReadText(job.dir + "/stats.json"), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << "no stats JSON; stderr: " << err;
  const auto& p = j["packets"];
  const uint64_t n_in = p["in"], accepted = p["accepted"], rewritten = p["rewritten"], dropped = p["dropped"],
                 skipped = p["skipped"];
  EXPECT_EQ(n_in, in.records.size()) << "sluice read a different number of records than libpcap";
  EXPECT_EQ(n_in, accepted + rewritten + dropped + skipped);
  EXPECT_TRUE(p["balanced"].get<bool>());

  const testing::PcapContents out = testing::ReadPcap(job.dir + "/out.pcap");
  const testing::PcapContents drops = testing::ReadPcap(job.dir + "/drops.pcap");
  ASSERT_TRUE(out.error.empty()) << out.error;
  ASSERT_TRUE(drops.error.empty()) << drops.error;
  ASSERT_EQ(out.records.size(), n_in - dropped);
  ASSERT_EQ(drops.records.size(), dropped);
  EXPECT_EQ(out.dlt, in.dlt);

  t.packets += n_in;
  t.out += out.records.size();
  t.dropped += dropped;
  t.skipped += skipped;
  t.rewritten += rewritten;
  for (const char* kind : {"dropped", "skipped"}) {
    for (const auto& [reason, count] : j[kind].items()) t.reasons[std::string(kind) + " " + reason] += count.get<uint64_t>();
  }
  for (const auto& c : j["counters"]) t.counters[c["name"].get<std::string>()] += c["value"].get<uint64_t>();
  for (const auto& r : j["rules"]) t.rules[r["name"].get<std::string>()] += r["packets"].get<uint64_t>();

  // Record by record. Dropped packets are never modified, so a record is the next drop when
  // that drop is a prefix of it (a too_big record keeps only its first bytes) with its timestamp.
  std::size_t o = 0, d = 0;
  const ParseConfig parse_config;
  for (std::size_t i = 0; i < in.records.size(); ++i) {
    const testing::PcapRecord& r = in.records[i];
    SCOPED_TRACE("record " + std::to_string(i));
    const bool odd_time = !PcapCanHold(r);
    t.odd_timestamps += odd_time;
    const bool is_drop = d < drops.records.size() && (odd_time || SameTime(drops.records[d], r)) &&
                         drops.records[d].bytes.size() <= r.bytes.size() &&
                         std::equal(drops.records[d].bytes.begin(), drops.records[d].bytes.end(), r.bytes.begin());
    if (is_drop) {
      ++d;
      continue;
    }
    ASSERT_LT(o, out.records.size()) << "an input record is in neither output";
    const testing::PcapRecord& w = out.records[o++];
    if (!odd_time) {
      ASSERT_TRUE(SameTime(w, r)) << "timestamp " << r.ts_sec << "." << r.ts_nsec << " came back as " << w.ts_sec
                                  << "." << w.ts_nsec << ", or the output is out of input order";
    }
    if (r.bytes.size() > kLargeDataCapacity) continue;  // too_big: the source never reads it
    PacketBuffer& b = slot.Load(r.bytes, in.link);
    ParseCounts counts{};
    if (ParsePacket(b, parse_config, counts) != DropReason::kNone) {
      ASSERT_EQ(w.bytes, r.bytes) << "a packet parse rejects was modified";
      ++t.parse_rejected_compared;
      continue;
    }
    // Parse trims what follows the IP packet (padding, an FCS, a trailer); the record is still
    // written whole, those bytes untouched.
    ASSERT_EQ(w.bytes.size(), r.bytes.size()) << "a parsed packet's record changed length";
    ASSERT_TRUE(std::equal(w.bytes.begin() + b.len(), w.bytes.end(), r.bytes.begin() + b.len()))
        << "the bytes behind the IP packet changed";
    ASSERT_TRUE(std::equal(w.bytes.begin(), w.bytes.begin() + b.meta().l3_off, r.bytes.begin()))
        << "the link-layer header changed";
    if (!ChecksumsOk(b)) continue;
    PacketBuffer& after = slot.Load(w.bytes, in.link);
    ASSERT_EQ(ParsePacket(after, parse_config, counts), DropReason::kNone) << "a rewritten packet no longer parses";
    ASSERT_TRUE(ChecksumsOk(after)) << "checksums that verified on input do not verify on output";
    ++t.checksums_kept;
  }
  EXPECT_EQ(d, drops.records.size()) << "drops out of input order";
  EXPECT_EQ(o, out.records.size());
}

// Replays every file, kParallel children at a time, checking each as it finishes.
void ReplayAll(const std::vector<std::string>& files, Totals& t) {
  testing::TempDir tmp;
  testing::GuardedPacket slot(kLargeDataCapacity);
  std::deque<Job> running;
  // An ASSERT below returns early: reap the replays still running before tmp is removed.
  struct Reaper {
    std::deque<Job>& jobs;
    ~Reaper() {
      for (const Job& j : jobs) {
        int status = 0;
        if (j.pid > 0) waitpid(j.pid, &status, 0);
      }
    }
  } reaper{running};
  std::size_t next = 0;
  while (next < files.size() || !running.empty()) {
    while (next < files.size() && running.size() < kParallel) {
      Job job{files[next], tmp.path() + "/" + std::to_string(next)};
      ++next;
      Spawn(job);
      ASSERT_GT(job.pid, 0) << "cannot run " << SLUICE_BINARY;
      running.push_back(std::move(job));
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    ASSERT_GT(pid, 0);
    auto it = std::find_if(running.begin(), running.end(), [&](const Job& j) { return j.pid == pid; });
    ASSERT_NE(it, running.end());
    it->status = status;
    Check(*it, slot, t);
    std::filesystem::remove_all(it->dir);
    running.erase(it);
  }
}

// The corpus holds no file libpcap refuses or that breaks off mid-record, so these are made
// here: sluice must name the file and libpcap's error, and account for every whole record.
TEST(CorpusReplay, FilesLibpcapRefusesOrThatBreakOff) {
  testing::TempDir tmp;
  const std::string text = tmp.File("text.pcap"), empty = tmp.File("empty.pcap"), cut = tmp.File("cut.pcap"),
                    bad_magic = tmp.File("bad_magic.pcap");
  std::ofstream(text) << "not a capture\n";
  std::ofstream(empty).close();
  std::vector<std::vector<uint8_t>> packets(5, std::vector<uint8_t>(60, 0));
  for (auto& p : packets) p[0] = 0x45;
  ASSERT_TRUE(testing::WritePcap(cut, DLT_RAW, packets));
  std::filesystem::resize_file(cut, std::filesystem::file_size(cut) - 30);  // inside the last record
  ASSERT_TRUE(testing::WritePcap(bad_magic, DLT_RAW, packets));
  {
    std::fstream f(bad_magic, std::ios::in | std::ios::out | std::ios::binary);
    f.write("\x01\x02\x03\x04", 4);
  }
  Totals t;
  ReplayAll({text, empty, cut, bad_magic}, t);
  EXPECT_EQ(t.files, 4u);
  EXPECT_EQ(t.unopenable, 3u);
  EXPECT_EQ(t.broken_off, 1u);
  EXPECT_EQ(t.packets, 4u) << "the four whole records before the cut";
  for (const std::string& e : t.unopenable_errors) std::printf("  cannot open %s\n", e.c_str());
}

TEST(CorpusReplay, EveryTcpdumpCaptureThroughSluiceReplay) {
  const std::vector<std::string> files = testing::CaptureFiles(SLUICE_CORPUS_DIR);
  ASSERT_EQ(files.size(), kCorpusFiles) << "the corpus is incomplete";
  Totals t;
  ReplayAll(files, t);
  if (HasFatalFailure()) return;

  std::printf("corpus replay: %lu files (%lu libpcap cannot open, %lu break off mid-record), %lu packets\n",
              t.files, t.unopenable, t.broken_off, t.packets);
  std::printf("  out %lu, dropped %lu, skipped %lu, rewritten %lu\n", t.out, t.dropped, t.skipped, t.rewritten);
  std::printf("  %lu parse-rejected packets compared byte for byte, %lu valid checksums verified after rewrite, "
              "%lu timestamps no pcap file holds\n",
              t.parse_rejected_compared, t.checksums_kept, t.odd_timestamps);
  for (const std::string& e : t.unopenable_errors) std::printf("  cannot open %s\n", e.c_str());
  for (const auto& [reason, n] : t.reasons) std::printf("  %-40s %lu\n", reason.c_str(), n);
  for (const auto& [rule, n] : t.rules) std::printf("  rule %-30s %lu\n", rule.c_str(), n);

  EXPECT_EQ(t.files, kCorpusFiles);
  EXPECT_EQ(t.packets, t.out + t.dropped);
  // Every rule, and every edit, happened somewhere in the corpus.
  for (const auto& [rule, n] : t.rules) EXPECT_GT(n, 0u) << "rule " << rule << " never matched";
  for (const char* c : {"rewrite_addr_changed", "rewrite_port_changed", "rewrite_ttl_changed", "rewrite_dscp_changed",
                        "rewrite_mss_clamped", "rewrite_marked", "rewrite_l4_csum_recomputed",
                        "rewrite_ip_csum_recomputed", "classify_nat_created", "classify_nat_out", "classify_marked"}) {
    EXPECT_GT(t.counters[c], 0u) << c << " never moved";
  }
  for (const char* r : {"dropped rule_drop", "dropped ttl_expired", "skipped not_ip"}) {
    EXPECT_GT(t.reasons[r], 0u) << r << " never happened";
  }
  EXPECT_GT(t.parse_rejected_compared, 100u);
  EXPECT_GT(t.checksums_kept, 3000u);
}

}  // namespace
}  // namespace sluice
