// ICMP "fragmentation needed" built in place: every field, both checksums, the quote, and
// every datagram that must not be answered.
#include "engine/io/divert/frag_needed.h"

#include <gtest/gtest.h>

#include "engine/pool/buffer_pool.h"
#include "tests/io/divert/divert_test_util.h"

namespace sluice {
namespace {

using testing::Ip4;
using testing::Ipv4Packet;
using testing::Ipv4Spec;

class FragNeededTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = std::move(BufferPool::Create({.small_buffers = 64, .large_buffers = 0})).value();
    cache_ = std::make_unique<PoolCache>(*pool_, 16);
  }
  void TearDown() override {
    for (PacketBuffer* b : held_) cache_->Put(b);
    cache_.reset();
  }
  PacketBuffer& Load(const std::vector<uint8_t>& bytes) {
    PacketBuffer* b = cache_->Get(SizeClass::kSmall);
    EXPECT_TRUE(b->Assign(bytes.data(), static_cast<uint32_t>(bytes.size())));
    held_.push_back(b);
    return *b;
  }
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<PoolCache> cache_;
  std::vector<PacketBuffer*> held_;
};

constexpr uint32_t kRouter = Ip4(203, 0, 113, 1);

TEST_F(FragNeededTest, BuildsTheMessageWithValidChecksumsAndTheQuote) {
  Ipv4Spec spec;
  spec.payload = 1480;
  const std::vector<uint8_t> original = Ipv4Packet(spec);
  PacketBuffer& p = Load(original);
  ASSERT_EQ(BuildFragNeeded(p, 1400, kRouter, 77), FragNeededResult::kBuilt);

  const uint8_t* ip = p.data();
  ASSERT_EQ(p.len(), 20u + 8u + 20u + 8u);
  EXPECT_EQ(ip[0], 0x45);
  EXPECT_EQ(ip[1], 0xc0);  // precedence 6, RFC 1812 §4.3.2.5
  EXPECT_EQ(LoadBe16(ip + 2), p.len());
  EXPECT_EQ(LoadBe16(ip + 4), 77);
  EXPECT_EQ(LoadBe16(ip + 6), 0);
  EXPECT_EQ(ip[9], 1);
  EXPECT_EQ(LoadBe32(ip + 12), kRouter);
  EXPECT_EQ(LoadBe32(ip + 16), spec.src);  // back to the sender
  EXPECT_TRUE(divert_detail::Ipv4HeaderChecksumOk(ip, 20));

  const uint8_t* icmp = ip + 20;
  EXPECT_EQ(icmp[0], 3);
  EXPECT_EQ(icmp[1], 4);
  EXPECT_EQ(LoadBe16(icmp + 4), 0);
  EXPECT_EQ(LoadBe16(icmp + 6), 1400);
  EXPECT_EQ(InternetChecksum(icmp, p.len() - 20), 0) << "ICMP checksum";
  // The quote: the refused header and the first 8 bytes of its payload, byte for byte.
  EXPECT_EQ(std::memcmp(icmp + 8, original.data(), 28), 0);
}

TEST_F(FragNeededTest, QuotesARecomputedHeaderWhenTheChecksumWasUntrusted) {
  std::vector<uint8_t> bytes = Ipv4Packet({.payload = 1480});
  bytes[10] = 0xde;  // what an outbound divert read looks like
  bytes[11] = 0xad;
  PacketBuffer& p = Load(bytes);
  p.meta().flags |= pkt_flag::kIpCsumUntrusted;
  ASSERT_EQ(BuildFragNeeded(p, 1400, kRouter, 1), FragNeededResult::kBuilt);
  EXPECT_TRUE(divert_detail::Ipv4HeaderChecksumOk(p.data() + 28, 20)) << "quoted header checksum";
  EXPECT_EQ(p.meta().flags & pkt_flag::kIpCsumUntrusted, 0);
}

TEST_F(FragNeededTest, QuotesOptionsAndFewerThanEightBytesWhenThatIsAll) {
  Ipv4Spec spec;
  spec.ihl_words = 6;
  spec.payload = 3;
  const std::vector<uint8_t> original = Ipv4Packet(spec);
  PacketBuffer& p = Load(original);
  ASSERT_EQ(BuildFragNeeded(p, 20, kRouter, 1), FragNeededResult::kBuilt);
  EXPECT_EQ(p.len(), 28u + 24u + 3u);
  EXPECT_EQ(std::memcmp(p.data() + 28, original.data(), 27), 0);
  EXPECT_EQ(InternetChecksum(p.data() + 20, p.len() - 20), 0);  // odd length
}

TEST_F(FragNeededTest, LeavesEverythingElseUntouched) {
  struct Case {
    const char* what;
    std::vector<uint8_t> bytes;
    uint16_t mtu;
    FragNeededResult want;
  };
  std::vector<Case> cases;
  cases.push_back({"no DF", Ipv4Packet({.payload = 1480, .df = false}), 1400, FragNeededResult::kNoDontFragment});
  cases.push_back({"later fragment", Ipv4Packet({.payload = 1480, .frag_offset = 185}), 1400,
                   FragNeededResult::kLaterFragment});
  cases.push_back({"ICMP error", Ipv4Packet({.proto = 1, .payload = 1480, .first_payload_byte = 11}), 1400,
                   FragNeededResult::kIcmpError});
  cases.push_back({"multicast destination", Ipv4Packet({.dst = Ip4(239, 1, 1, 1), .payload = 1480}), 1400,
                   FragNeededResult::kNotUnicast});
  cases.push_back({"zero source", Ipv4Packet({.src = 0, .payload = 1480}), 1400, FragNeededResult::kNotUnicast});
  cases.push_back({"broadcast destination", Ipv4Packet({.dst = 0xffffffff, .payload = 1480}), 1400,
                   FragNeededResult::kNotUnicast});
  cases.push_back({"fits", Ipv4Packet({.payload = 1000}), 1400, FragNeededResult::kFitsMtu});
  cases.push_back({"IPv6", testing::Ipv6Packet(1400), 1280, FragNeededResult::kNotIpv4});
  std::vector<uint8_t> bad_ihl = Ipv4Packet({.payload = 1480});
  bad_ihl[0] = 0x44;
  cases.push_back({"header length 16", bad_ihl, 1400, FragNeededResult::kMalformed});
  for (const Case& c : cases) {
    PacketBuffer& p = Load(c.bytes);
    EXPECT_EQ(BuildFragNeeded(p, c.mtu, kRouter, 1), c.want) << c.what;
    ASSERT_EQ(p.len(), c.bytes.size()) << c.what;
    EXPECT_EQ(std::memcmp(p.data(), c.bytes.data(), c.bytes.size()), 0) << c.what;
  }
  // An ICMP echo request is not an error: it is answered.
  PacketBuffer& echo = Load(Ipv4Packet({.proto = 1, .payload = 1480, .first_payload_byte = 8}));
  EXPECT_EQ(BuildFragNeeded(echo, 1400, kRouter, 1), FragNeededResult::kBuilt);
}

TEST_F(FragNeededTest, NeedsHeadroomForTheNewHeaders) {
  PacketBuffer& p = Load(Ipv4Packet({.payload = 1480}));
  ASSERT_TRUE(p.Adjust(0));
  p.meta().data_off = 10;  // a stage used the headroom
  std::memmove(p.data(), p.room() + kHeadroom, p.len());
  EXPECT_EQ(BuildFragNeeded(p, 1400, kRouter, 1), FragNeededResult::kNoHeadroom);
}

}  // namespace
}  // namespace sluice
