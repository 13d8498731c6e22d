#include "engine/proto/checksum.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/core/byte_order.h"
#include "tests/testing/packet_builder.h"

namespace sluice {
namespace {

// The memory-order checksum as a big-endian number, to compare with RefChecksum.
uint16_t AsNumber(uint16_t mem) { return MemBe16(mem); }

TEST(Checksum, Rfc1071Example) {
  // RFC 1071 §3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2, so the checksum is 220d.
  const uint8_t data[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(AsNumber(InternetChecksum(data, sizeof data)), 0x220d);
  EXPECT_EQ(AsNumber(InternetChecksumPlain16(data, sizeof data)), 0x220d);
  EXPECT_EQ(ChecksumFold(ChecksumAccumulate(data, sizeof data, 0)), MemBe16(0xddf2));
}

TEST(Checksum, KnownIpv4Header) {
  // A captured header whose checksum field is b861.
  const uint8_t ip[] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                        0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(AsNumber(InternetChecksum(ip, sizeof ip)), 0xb861);
}

TEST(Checksum, EmptyAndAllZero) {
  const uint8_t zeros[64] = {};
  EXPECT_EQ(InternetChecksum(zeros, 0), 0xffff);
  EXPECT_EQ(InternetChecksum(zeros, sizeof zeros), 0xffff);
}

TEST(Checksum, FullMatchesReferenceAtEveryLengthAndAlignment) {
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(70000);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (std::size_t len = 0; len <= 300; ++len) {
    for (std::size_t align = 0; align < 8; ++align) {
      const uint8_t* p = buf.data() + align;
      ASSERT_EQ(AsNumber(InternetChecksum(p, len)), testing::RefChecksum(p, len))
          << "len " << len << " align " << align;
      ASSERT_EQ(InternetChecksumPlain16(p, len), InternetChecksum(p, len));
    }
  }
  for (std::size_t len : {1499u, 1500u, 9000u, 65535u, 65536u}) {
    EXPECT_EQ(AsNumber(InternetChecksum(buf.data() + 3, len)),
              testing::RefChecksum(buf.data() + 3, len));
  }
  // All 0xff bytes: every lane carries on every add.
  std::vector<uint8_t> ones(4096, 0xff);
  EXPECT_EQ(AsNumber(InternetChecksum(ones.data(), ones.size())),
            testing::RefChecksum(ones.data(), ones.size()));
}

TEST(Checksum, NeverReadsPastTheEnd) {
  // The byte after the range differs between the two buffers; the sums must not.
  std::vector<uint8_t> a(64, 0x5a), b(64, 0x5a);
  for (std::size_t len = 0; len < 40; ++len) {
    a[len] = 0x00;
    b[len] = 0xff;
    ASSERT_EQ(InternetChecksum(a.data(), len), InternetChecksum(b.data(), len)) << len;
    a[len] = b[len] = 0x5a;
  }
}

TEST(Checksum, PseudoHeadersMatchReference) {
  const auto s4 = testing::Addr("198.18.0.1"), d4 = testing::Addr("198.19.255.254");
  const auto s6 = testing::Addr("2001:2::1"), d6 = testing::Addr("2001:2:ffff::fffe");
  const uint8_t seg[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  // IPv4: src, dst, zero, proto, length.
  std::vector<uint8_t> ph4 = {s4[0], s4[1], s4[2], s4[3], d4[0], d4[1], d4[2], d4[3], 0, 6, 0, 9};
  ph4.insert(ph4.end(), seg, seg + 9);
  EXPECT_EQ(AsNumber(InternetChecksum(seg, 9, Ipv4PseudoHeaderSum(s4.data(), d4.data(), 6, 9))),
            testing::RefChecksum(ph4.data(), ph4.size()));
  // IPv6: src, dst, 32-bit length, 3 zero bytes, next header.
  std::vector<uint8_t> ph6(s6.begin(), s6.end());
  ph6.insert(ph6.end(), d6.begin(), d6.end());
  const uint8_t tail[] = {0, 0, 0, 9, 0, 0, 0, 17};
  ph6.insert(ph6.end(), tail, tail + 8);
  ph6.insert(ph6.end(), seg, seg + 9);
  EXPECT_EQ(AsNumber(InternetChecksum(seg, 9, Ipv6PseudoHeaderSum(s6.data(), d6.data(), 17, 9))),
            testing::RefChecksum(ph6.data(), ph6.size()));
}

// Replaces `width` bytes at `at` with random ones, updating the checksum incrementally.
uint16_t RandomIncrementalEdit(std::vector<uint8_t>& data, std::size_t at, int width, uint16_t hc,
                               std::mt19937& rng) {
  std::vector<uint8_t> repl(width);
  for (auto& b : repl) b = static_cast<uint8_t>(rng());
  uint16_t out;
  if (width == 2) {
    out = CsumUpdate16(hc, LoadHost16(&data[at]), LoadHost16(repl.data()));
  } else if (width == 4) {
    out = CsumUpdate32(hc, LoadHost32(&data[at]), LoadHost32(repl.data()));
  } else {
    out = CsumUpdate128(hc, &data[at], repl.data());
  }
  std::memcpy(&data[at], repl.data(), width);
  return out;
}

TEST(Checksum, IncrementalEqualsFullFor16And32And128BitFields) {
  std::mt19937 rng(11);
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> data(2 * (16 + rng() % 60));
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    data[0] |= 1;  // never all zero (where one's complement has two zeros)
    uint16_t hc = InternetChecksum(data.data(), data.size());
    for (int edit = 0; edit < 4; ++edit) {
      const int width = (int[]){2, 4, 16}[rng() % 3];
      const std::size_t at = 2 + 2 * (rng() % ((data.size() - 2 - width) / 2 + 1));
      hc = RandomIncrementalEdit(data, at, width, hc, rng);
      ASSERT_EQ(hc, InternetChecksum(data.data(), data.size())) << iter;
    }
  }
}

TEST(Checksum, WrongChecksumStaysWrongByTheSameAmount) {
  std::mt19937 rng(12);
  // fold(sum(data) + c): 0xffff exactly when c is the right checksum of data; otherwise it
  // is the error, c - right, in one's complement.
  const auto residual = [](const std::vector<uint8_t>& data, uint16_t c) {
    return ChecksumFold(ChecksumAccumulate(data.data(), data.size(), c)) % 0xffff;
  };
  int checked = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    std::vector<uint8_t> data(40);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    data[0] |= 1;
    const uint16_t good = InternetChecksum(data.data(), data.size());
    const auto bad = static_cast<uint16_t>(good ^ (1 + rng() % 0xfffe));
    const uint32_t error = residual(data, bad);
    if (error == 0) continue;  // 0x0000 vs 0xffff: one value in one's complement
    const uint16_t after = RandomIncrementalEdit(data, 4, 4, bad, rng);
    ASSERT_NE(residual(data, after), 0u) << "a bad checksum became good after an update";
    ASSERT_EQ(residual(data, after), error) << "the error changed";
    ++checked;
  }
  EXPECT_GT(checked, 4900);
}

TEST(Checksum, OddOffsetFieldEntersByteSwapped) {
  std::mt19937 rng(13);
  for (int iter = 0; iter < 5000; ++iter) {
    std::vector<uint8_t> data(31);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    data[0] |= 1;
    const uint16_t hc = InternetChecksum(data.data(), data.size());
    const std::size_t at = 1 + 2 * (rng() % 14);  // odd
    const uint16_t old_v = LoadHost16(&data[at]);
    const auto new_v = static_cast<uint16_t>(rng());
    std::memcpy(&data[at], &new_v, 2);
    CsumDelta d;
    d.Replace16At(true, old_v, new_v);
    ASSERT_EQ(d.Apply(hc), InternetChecksum(data.data(), data.size()));
  }
}

TEST(Checksum, UdpZeroRules) {
  // A computed 0 goes out as 0xffff for UDP, as 0 otherwise.
  EXPECT_EQ(FinishL4Checksum(0xffff, CsumZero::kUdpIpv4), 0xffff);
  EXPECT_EQ(FinishL4Checksum(0xffff, CsumZero::kUdpIpv6), 0xffff);
  EXPECT_EQ(FinishL4Checksum(0xffff, CsumZero::kPlain), 0x0000);
  // A UDP "no checksum" 0 survives an update: IPv4's, and an IPv6 tunnel's zero checksum
  // (RFC 6935; updating it would make up a wrong one that every receiver drops). Not so for
  // the other protocols, where 0 is a value.
  CsumDelta d;
  d.Replace16(MemBe16(80), MemBe16(8080));
  uint8_t field[2] = {0, 0};
  d.ApplyTo(field, CsumZero::kUdpIpv4);
  EXPECT_EQ(LoadHost16(field), 0);
  d.ApplyTo(field, CsumZero::kUdpIpv6);
  EXPECT_EQ(LoadHost16(field), 0);
  d.ApplyTo(field, CsumZero::kPlain);
  EXPECT_NE(LoadHost16(field), 0);
  // An update whose result is 0 is written as 0xffff for UDP.
  for (uint32_t v = 0; v < 0x10000; ++v) {
    CsumDelta e;
    e.Replace16(MemBe16(0x1234), MemBe16(static_cast<uint16_t>(v)));
    if (e.Apply(MemBe16(0x4321)) == 0) {
      EXPECT_EQ(e.Apply(MemBe16(0x4321), CsumZero::kUdpIpv4), 0xffff);
      EXPECT_EQ(e.Apply(MemBe16(0x4321), CsumZero::kUdpIpv6), 0xffff);
      return;
    }
  }
  FAIL() << "no 16-bit value gives a zero checksum";
}

}  // namespace
}  // namespace sluice
