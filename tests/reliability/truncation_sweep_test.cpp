// Every IPv4/IPv6 packet of tcpdump's 830 test captures, cut at every length from 0 to its
// size, through parse → classify → rewrite with tests/reliability/every_rewrite.toml. Each
// cut ends at a guard page, so a read one byte past it faults in any build (and under the
// asan preset, ASan watches everything else).
//
// Asserts, per cut:
// - a cut parse rejects leaves classify and rewrite byte for byte and length for length as it
//   came, and stays so when it is sent to rewrite with a plan regardless (not_parsed);
// - for a packet whose whole capture parses, every cut short of its IP length is rejected,
//   and every cut at or past it parses to exactly the IP length (only L2 padding is cut);
// - a cut that parses has every offset parse wrote inside the cut.
// The packets are de-duplicated (the same bytes on the same link type are swept once).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engine/core/assert.h"
#include "engine/graph/stage_set.h"
#include "engine/rules/config_loader.h"
#include "tests/testing/guarded_packet.h"
#include "tests/testing/pcap_file.h"
#include "tests/testing/test_batch.h"

#if !defined(SLUICE_CORPUS_DIR) || !defined(SLUICE_EVERY_REWRITE)
#error "SLUICE_CORPUS_DIR and SLUICE_EVERY_REWRITE must be defined"
#endif

namespace sluice {
namespace {

constexpr uint32_t kSlots = 64;

struct Packet {
  LinkType link;
  std::vector<uint8_t> bytes;
  uint32_t ip_end = 0;  // l3_off + IP length when the whole capture parses; 0 when it does not
};

// A parse outcome that says the packet is IP (valid or malformed at or above the IP header).
bool IsIpOutcome(DropReason r) {
  return r == DropReason::kNone ||
         (static_cast<uint16_t>(r) >= static_cast<uint16_t>(DropReason::kBadIpVersion) &&
          static_cast<uint16_t>(r) <= static_cast<uint16_t>(DropReason::kIcmpTruncated));
}

// Every distinct IPv4/IPv6 packet of the corpus.
std::vector<Packet> CorpusIpPackets(uint64_t* records) {
  const std::vector<std::string> files = testing::CaptureFiles(SLUICE_CORPUS_DIR);
  std::set<std::pair<LinkType, std::vector<uint8_t>>> seen;
  std::vector<Packet> out;
  testing::GuardedPacket g(kLargeDataCapacity);
  const ParseConfig config;
  for (const std::string& f : files) {
    testing::PcapContents pc = testing::ReadPcap(f);
    if (pc.link == LinkType::kUnsupported) continue;
    for (testing::PcapRecord& r : pc.records) {
      if (r.bytes.size() > kLargeDataCapacity) continue;
      ++*records;
      PacketBuffer& b = g.Load(r.bytes, pc.link);
      ParseCounts counts{};
      const DropReason reason = ParsePacket(b, config, counts);
      if (!IsIpOutcome(reason)) continue;
      if (!seen.insert({pc.link, r.bytes}).second) continue;
      out.push_back({pc.link, std::move(r.bytes), reason == DropReason::kNone ? b.len() : 0});
    }
  }
  return out;
}

struct Cut {
  const Packet* packet;
  uint32_t len;
};

struct Tally {
  uint64_t cuts = 0, rejected = 0, parsed = 0, rewritten = 0, forced_not_parsed = 0;
  std::map<std::string, uint64_t> reasons;
};

class Sweep {
 public:
  Sweep() {
    ConfigLoad load = LoadConfigFile(SLUICE_EVERY_REWRITE);
    for (const ConfigError& e : load.errors) ADD_FAILURE() << e.ToString();
    SLUICE_CHECK(load.ok());
    config_ = std::move(*load.config);
    StageSet::Options o;
    o.shards = 1;
    o.flow_hash_seed = 7;
    auto set = StageSet::Build(config_, o);
    SLUICE_CHECK(set.ok());
    stages_ = std::move(set).value();
    shards_ = stages_->OfflineShards();
    for (uint32_t i = 0; i < kSlots; ++i) slots_.push_back(std::make_unique<testing::GuardedPacket>(kLargeDataCapacity));
    forced_.ttl = {.kind = TtlRewrite::Kind::kSet, .value = 1};
    forced_.dscp = 1;
    forced_.src_port = PortRewrite::Set(1);
    forced_.full_checksum = true;
  }

  void Add(const Packet& p, uint32_t len) {
    pending_.push_back({&p, len});
    if (pending_.size() == kSlots) Flush();
  }

  void Flush() {
    if (pending_.empty()) return;
    Batch batch;
    struct Release {  // the slots are not pool buffers: out of the batch before it dies
      Batch& b;
      ~Release() { testing::ReleaseAll(b); }
    } release{batch};
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      const Cut& c = pending_[i];
      PacketBuffer& b = slots_[i]->Load(c.packet->bytes.data(), c.len, c.packet->link);
      batch.Push(PacketRef(&b));
    }
    stages_->parse(0).Process(batch);
    std::vector<bool> rejected(batch.size());
    for (uint32_t i = 0; i < batch.size(); ++i) {
      const Cut& c = pending_[i];
      const PacketBuffer& b = batch.packet(i);
      ++tally_.cuts;
      ++tally_.reasons[std::string(Name(batch.reason(i)))];
      rejected[i] = batch.next(i) != Next::kClassify;
      if (rejected[i]) {
        ++tally_.rejected;
        ASSERT_EQ(b.meta().l3, L3Type::kNone);
        ASSERT_TRUE(c.packet->ip_end == 0 || c.len < c.packet->ip_end)
            << "a packet of IP length " << c.packet->ip_end << " cut at " << c.len << " was rejected: "
            << Name(batch.reason(i));
        continue;
      }
      ++tally_.parsed;
      const PacketMeta& m = b.meta();
      ASSERT_LE(b.len(), c.len);
      ASSERT_LT(m.l3_off, b.len());
      if (m.l4_off != 0) {
        ASSERT_LT(m.l4_off, b.len());
      }
      if (c.packet->ip_end != 0) {
        ASSERT_GE(c.len, c.packet->ip_end) << "a packet of IP length " << c.packet->ip_end << " cut at " << c.len
                                           << " parsed";
        ASSERT_EQ(b.len(), c.packet->ip_end);
      }
    }
    shards_[0].classify.Process(batch);
    shards_[0].rewrite.Process(batch);
    for (uint32_t i = 0; i < batch.size(); ++i) {
      if (!rejected[i]) {
        tally_.rewritten += (batch.packet(i).meta().flags & pkt_flag::kModified) != 0;
        continue;
      }
      ExpectUnmodified(batch, i, "after classify and rewrite");
      batch.set_next(i, Next::kRewrite);  // as a bug upstream would
      batch.set_plan(i, &forced_);
    }
    shards_[0].rewrite.Process(batch);
    for (uint32_t i = 0; i < batch.size(); ++i) {
      if (!rejected[i]) continue;
      ASSERT_EQ(batch.next(i), Next::kAccept);
      ExpectUnmodified(batch, i, "when sent to rewrite with a plan");
      ++tally_.forced_not_parsed;
    }
    pending_.clear();
  }

  const Tally& tally() const { return tally_; }
  uint64_t not_parsed_counter() const { return Sum(RewriteCounter::kNotParsed); }

 private:
  void ExpectUnmodified(const Batch& batch, uint32_t i, const char* when) {
    const Cut& c = pending_[i];
    const PacketBuffer& b = batch.packet(i);
    ASSERT_EQ(b.len(), c.len) << "a rejected packet changed length " << when;
    ASSERT_TRUE(std::equal(c.packet->bytes.begin(), c.packet->bytes.begin() + c.len, b.data()))
        << "a rejected packet (" << Name(batch.reason(i)) << ", cut at " << c.len << ") was modified " << when;
    ASSERT_EQ(b.meta().flags & (pkt_flag::kModified | pkt_flag::kMarkSet), 0);
  }
  uint64_t Sum(RewriteCounter c) const {
    StatsReport r;
    stages_->Report(r);
    for (const NamedCounter& n : r.counters) {
      if (n.name == "rewrite_" + std::string(kRewriteCounterTable[static_cast<std::size_t>(c)].name)) return n.value;
    }
    return 0;
  }

  Config config_;
  std::unique_ptr<StageSet> stages_;
  std::vector<ShardStages> shards_;
  std::vector<std::unique_ptr<testing::GuardedPacket>> slots_;
  std::vector<Cut> pending_;
  RewritePlan forced_;
  Tally tally_;
};

TEST(TruncationSweep, EveryCorpusIpPacketCutAtEveryLength) {
  const auto start = std::chrono::steady_clock::now();
  uint64_t records = 0;
  const std::vector<Packet> packets = CorpusIpPackets(&records);
  uint64_t bytes = 0, valid = 0;
  Sweep sweep;
  for (const Packet& p : packets) {
    bytes += p.bytes.size();
    valid += p.ip_end != 0;
    for (uint32_t len = 0; len <= p.bytes.size(); ++len) {
      sweep.Add(p, len);
      if (HasFatalFailure()) return;
    }
  }
  sweep.Flush();
  if (HasFatalFailure()) return;
  const Tally& t = sweep.tally();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("truncation sweep: %lu records read, %zu distinct IP packets (%lu parse whole, %lu bytes), "
              "%lu cuts in %.1f s\n",
              records, packets.size(), valid, bytes, t.cuts, secs);
  std::printf("  rejected %lu (each also forced through rewrite: %lu unmodified), parsed %lu, rewritten %lu\n",
              t.rejected, t.forced_not_parsed, t.parsed, t.rewritten);
  for (const auto& [reason, n] : t.reasons) std::printf("  %-28s %lu\n", reason.c_str(), n);
  EXPECT_EQ(t.cuts, bytes + packets.size());
  EXPECT_EQ(t.forced_not_parsed, t.rejected);
  EXPECT_EQ(sweep.not_parsed_counter(), t.rejected) << "rewrite's not_parsed counter";
  EXPECT_GT(packets.size(), 4500u);
  EXPECT_GT(t.rewritten, 5000u);
}

}  // namespace
}  // namespace sluice
