// Every packet of tcpdump's 830 test captures (many deliberately malformed) through
// ParseStage and then RewriteStage, each packet ending at a guard page: no crash, no read
// past the captured bytes, no sanitizer report (run it under the asan preset). Checksums
// that verified before a rewrite verify after it; ones that did not still do not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/pool/buffer_pool.h"
#include "engine/stages/parse/parse_stage.h"
#include "engine/stages/rewrite/rewrite_stage.h"
#include "tests/testing/guarded_packet.h"
#include "tests/testing/packet_builder.h"
#include "tests/testing/pcap_file.h"

#ifndef SLUICE_CORPUS_DIR
#error "SLUICE_CORPUS_DIR must name tests/corpus/tcpdump"
#endif

namespace sluice {
namespace {

constexpr std::size_t kCorpusFiles = 830;
constexpr uint32_t kSlots = 64;

// Rewrites everything a plan can: both addresses (IPv4 prefix maps that keep host bits, or
// IPv6 sets), both ports, TTL, DSCP, MSS. Incremental only, so checksum status is preserved.
struct Plans {
  RewritePlan v4;
  RewritePlan v6;
  Plans() {
    v4.src_addr = AddrRewrite::MapIpv4(0, 0xc6120000, 1);  // top bit: every address matches
    v4.dst_addr = AddrRewrite::MapIpv4(0x80000000, 0x0a000000, 1);
    for (RewritePlan* p : {&v4, &v6}) {
      p->src_port = PortRewrite::Map(
          {{.first = 0, .last = 65535, .to = 0, .mode = PortMapEntry::Mode::kCollapse}});
      p->dst_port = PortRewrite::Set(8080);
      p->ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = 1};
      p->dscp = 46;
      p->mss_clamp = 536;
      p->mark = 7;
    }
    std::array<uint8_t, 16> to{};
    to[0] = 0x80;
    v6.src_addr = AddrRewrite::MapIpv6(std::array<uint8_t, 16>{}, to, 1);  // ::/1 → 8000::/1
    std::array<uint8_t, 16> a{0x20, 0x01, 0x00, 0x02};
    a[15] = 0x98;
    v6.dst_addr = AddrRewrite::SetIpv6(a);
    EXPECT_TRUE(Validate(v4).ok());
    EXPECT_TRUE(Validate(v6).ok());
  }
};

struct Stats {
  std::map<std::string, uint64_t> reasons;  // parse outcome per packet
  std::map<std::string, uint64_t> links;    // files per link type
  uint64_t files = 0, unreadable = 0, read_errors = 0, packets = 0, too_big = 0, rewritten = 0,
           ttl_expired = 0;
  uint64_t csum_checked = 0, l4_valid_ok = 0, l4_valid_bad = 0;
};

std::string LinkName(const testing::PcapContents& pc) {
  switch (pc.link) {
    case LinkType::kRaw:
      return "raw";
    case LinkType::kEthernet:
      return "ethernet";
    case LinkType::kLinuxSll:
      return "linux_sll";
    case LinkType::kLinuxSll2:
      return "linux_sll2";
    case LinkType::kBsdLoopback:
      return "bsd_loopback";
    case LinkType::kIpv4:
      return "ipv4";
    case LinkType::kIpv6:
      return "ipv6";
    case LinkType::kUnsupported:
      break;
  }
  return "unsupported";
}

struct CsumStatus {
  bool ip, l4;
};

CsumStatus Status(const PacketBuffer& b) {
  const uint8_t* ip = b.data() + b.meta().l3_off;
  const std::size_t n = b.len() - b.meta().l3_off;
  return {testing::RefIpHeaderChecksumOk(ip, n), testing::RefL4ChecksumOk(ip, n)};
}

void RunBatch(std::vector<std::unique_ptr<testing::GuardedPacket>>& slots,
              const std::vector<const testing::PcapRecord*>& recs, LinkType link, ParseStage& parse,
              RewriteStage& rewrite, const Plans& plans, const std::string& file, Stats& st) {
  Batch batch;
  batch.set_limit(kMaxBatch);
  for (uint32_t i = 0; i < recs.size(); ++i) {
    PacketBuffer& b = slots[i]->Load(recs[i]->bytes, link);
    b.meta().wire_len = recs[i]->wire_len;
    if (b.meta().wire_len > b.len()) b.meta().flags |= pkt_flag::kTruncated;
    batch.Push(PacketRef(&b));
  }
  parse.Process(batch);
  std::vector<CsumStatus> before(batch.size());
  std::vector<std::vector<uint8_t>> bytes(batch.size());
  for (uint32_t i = 0; i < batch.size(); ++i) {
    const PacketBuffer& b = batch.packet(i);
    ++st.reasons[std::string(Name(batch.reason(i)))];
    if (batch.next(i) != Next::kClassify) continue;
    before[i] = Status(b);
    bytes[i].assign(b.data(), b.data() + b.len());
    batch.set_next(i, Next::kRewrite);
    batch.set_plan(i, b.meta().l3 == L3Type::kIpv4 ? &plans.v4 : &plans.v6);
  }
  rewrite.Process(batch);
  for (uint32_t i = 0; i < batch.size(); ++i) {
    if (bytes[i].empty()) continue;
    const PacketBuffer& b = batch.packet(i);
    if (batch.next(i) == Next::kDrop) {
      ASSERT_EQ(batch.reason(i), DropReason::kTtlExpired) << file << " record " << i;
      ASSERT_TRUE(std::equal(bytes[i].begin(), bytes[i].end(), b.data()))
          << file << ": a dropped packet was modified";
      ++st.ttl_expired;
      continue;
    }
    ASSERT_EQ(batch.next(i), Next::kAccept);
    st.rewritten += (b.meta().flags & pkt_flag::kModified) != 0;
    const CsumStatus after = Status(b);
    ASSERT_EQ(before[i].ip, after.ip) << file << " packet " << i << ": IPv4 header checksum";
    ASSERT_EQ(before[i].l4, after.l4) << file << " packet " << i << ": L4 checksum";
    ++st.csum_checked;
    if ((b.meta().flags & pkt_flag::kL4Valid) && !(b.meta().flags & pkt_flag::kFragment)) {
      ++(after.l4 ? st.l4_valid_ok : st.l4_valid_bad);
    }
  }
  testing::ReleaseAll(batch);
}

TEST(Corpus, EveryTcpdumpCapture) {
  const std::vector<std::string> files = testing::CaptureFiles(SLUICE_CORPUS_DIR);
  ASSERT_EQ(files.size(), kCorpusFiles) << "the corpus is incomplete";

  std::vector<std::unique_ptr<testing::GuardedPacket>> slots;
  for (uint32_t i = 0; i < kSlots; ++i) {
    slots.push_back(std::make_unique<testing::GuardedPacket>(kLargeDataCapacity));
  }
  ParseStage parse({});
  RewriteStage rewrite;
  const Plans plans;
  Stats st;
  for (const std::string& file : files) {
    const testing::PcapContents pc = testing::ReadPcap(file);
    ++st.files;
    if (pc.dlt < 0) {
      ++st.unreadable;  // libpcap cannot open it at all (deliberately corrupt headers)
      continue;
    }
    ++st.links[LinkName(pc)];
    st.read_errors += !pc.error.empty();  // a record cut short: the ones before it count
    std::vector<const testing::PcapRecord*> recs;
    for (const testing::PcapRecord& r : pc.records) {
      ++st.packets;
      if (r.bytes.size() > kLargeDataCapacity) {
        ++st.too_big;  // the source drops these (too_big) before parse
        continue;
      }
      recs.push_back(&r);
      if (recs.size() == kSlots) {
        RunBatch(slots, recs, pc.link, parse, rewrite, plans, file, st);
        if (HasFatalFailure()) return;
        recs.clear();
      }
    }
    if (!recs.empty()) RunBatch(slots, recs, pc.link, parse, rewrite, plans, file, st);
    if (HasFatalFailure()) return;
  }

  std::printf(
      "tcpdump corpus: %lu files (%lu libpcap cannot open, %lu end in a read error), "
      "%lu packets, %lu too big for a buffer\n",
      st.files, st.unreadable, st.read_errors, st.packets, st.too_big);
  std::printf("files per link type:\n");
  for (const auto& [k, n] : st.links) std::printf("  %-20s %lu\n", k.c_str(), n);
  std::printf("parse outcome per packet:\n");
  for (const auto& [k, n] : st.reasons) std::printf("  %-28s %lu\n", k.c_str(), n);
  std::printf(
      "rewritten %lu, ttl_expired %lu, checksum status preserved on %lu "
      "(transport checksums: %lu verify, %lu were bad on input and still are)\n",
      st.rewritten, st.ttl_expired, st.csum_checked, st.l4_valid_ok, st.l4_valid_bad);
  EXPECT_EQ(st.files, kCorpusFiles);
  EXPECT_GT(st.reasons["none"], 4000u);  // plenty of real traffic parsed and rewritten
  EXPECT_GT(st.rewritten, 3000u);
  EXPECT_GT(st.l4_valid_ok, 1000u);
  uint64_t counted = 0;
  for (std::size_t k = 0; k < kNumParseCounters; ++k) {
    const auto c = static_cast<ParseCounter>(k);
    if (c == ParseCounter::kParsed || c == ParseCounter::kMalformed || c == ParseCounter::kNotIp) {
      counted += parse.counters().LoadAt(k);
    }
  }
  EXPECT_EQ(counted, st.packets - st.too_big) << "parsed + malformed + not_ip == packets";
}

}  // namespace
}  // namespace sluice
