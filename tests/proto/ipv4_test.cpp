#include "engine/proto/ipv4.h"

#include <gtest/gtest.h>

#include "tests/testing/packet_builder.h"

namespace sluice {
namespace {

using testing::PacketBuilder;
using testing::TestPacket;

DropReason Check(const TestPacket& p, ipv4::Info* info, uint32_t captured = 0) {
  return ipv4::Validate(p.bytes.data() + p.l3_off,
                        captured ? captured : static_cast<uint32_t>(p.bytes.size() - p.l3_off),
                        info);
}

TEST(Ipv4, ValidHeaderWithOptions) {
  const TestPacket p = PacketBuilder()
                           .Ipv4("198.18.0.1", "198.18.0.2")
                           .Ipv4Options({1, 7, 7, 4, 0, 0, 0, 0, 0})  // NOP, record route
                           .Tcp(1, 2)
                           .Build();
  ipv4::Info info{};
  ASSERT_EQ(Check(p, &info), DropReason::kNone);
  EXPECT_EQ(info.header_len, 32u);
  EXPECT_EQ(info.total_len, p.ip_len);
  EXPECT_EQ(info.proto, 6);
  EXPECT_EQ(info.frag_offset, 0u);
  EXPECT_FALSE(info.more_fragments);
  EXPECT_EQ(ipv4::Src(p.bytes.data()), 0xc6120001u);
}

TEST(Ipv4, FragmentFields) {
  ipv4::Info info{};
  TestPacket p = PacketBuilder()
                     .Ipv4("198.18.0.1", "198.18.0.2")
                     .Fragment(1480, true)
                     .L4Proto(17)
                     .Payload(800)
                     .Build();
  ASSERT_EQ(Check(p, &info), DropReason::kNone);
  EXPECT_EQ(info.frag_offset, 1480u);
  EXPECT_TRUE(info.more_fragments);
  // The largest offset whose end still fits 65535 bytes.
  p = PacketBuilder()
          .Ipv4("198.18.0.1", "198.18.0.2")
          .Fragment(65504, false)
          .L4Proto(17)
          .Payload(8)
          .Build();
  EXPECT_EQ(Check(p, &info), DropReason::kNone);
  p = PacketBuilder()
          .Ipv4("198.18.0.1", "198.18.0.2")
          .Fragment(65512, false)
          .L4Proto(17)
          .Payload(8)
          .Build();
  EXPECT_EQ(Check(p, &info), DropReason::kIpv4BadFragment);
}

TEST(Ipv4, TotalLengthZeroIsGsoOnlyWithBytesBehind) {
  TestPacket p = PacketBuilder().Ipv4("198.18.0.1", "198.18.0.2").Tcp(1, 2).Payload(100).Build();
  p.bytes[2] = p.bytes[3] = 0;
  ipv4::Info info{};
  EXPECT_EQ(Check(p, &info), DropReason::kGsoLengthZero);
  EXPECT_EQ(Check(p, &info, 20), DropReason::kIpv4BadTotalLength);
}

}  // namespace
}  // namespace sluice
