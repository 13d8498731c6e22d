#include "engine/stages/rewrite/rewrite_plan.h"

#include <gtest/gtest.h>

#include "tests/testing/packet_builder.h"

namespace sluice {
namespace {

using Entry = PortMapEntry;

std::array<uint8_t, 16> A6(const char* s) {
  std::array<uint8_t, 16> a{};
  const auto v = testing::Addr(s);
  std::copy(v.begin(), v.end(), a.begin());
  return a;
}

TEST(RewritePlan, ValidPlansPass) {
  RewritePlan p;
  EXPECT_TRUE(Validate(p).ok());
  p.src_addr = AddrRewrite::MapIpv4(0xc6120000, 0xc6130000, 16);
  p.dst_addr = AddrRewrite::SetIpv4(0xc6120001);
  p.src_port = PortRewrite::Set(1);
  p.dst_port =
      PortRewrite::Map({{.first = 80, .last = 80, .to = 8080},
                        {.first = 1000, .last = 1999, .to = 3000, .mode = Entry::Mode::kShift},
                        {.first = 8000, .last = 8999, .to = 80}});
  p.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = 1};
  p.dscp = 63;
  p.mss_clamp = 1400;
  p.mark = 1;
  EXPECT_TRUE(Validate(p).ok()) << Validate(p).message();
}

TEST(RewritePlan, InvalidPlansNameTheField) {
  const auto expect_bad = [](const RewritePlan& p, const char* field) {
    const Status s = Validate(p);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
  };
  RewritePlan p;
  p.src_addr = AddrRewrite::MapIpv4(0, 0, 33);
  expect_bad(p, "src_addr");
  p = {};
  p.dst_addr = AddrRewrite::MapIpv6(A6("2001:2::"), A6("2001:3::"), 0);
  expect_bad(p, "dst_addr");
  p = {};
  p.dst_addr.kind = AddrRewrite::Kind::kSet;  // no family
  expect_bad(p, "dst_addr");
  p = {};
  p.src_addr = AddrRewrite::SetIpv4(1);
  p.src_addr.to[7] = 1;
  expect_bad(p, "src_addr");
  p = {};
  p.dst_port = PortRewrite::Map({});
  expect_bad(p, "dst_port");
  p.dst_port = PortRewrite::Map({{.first = 90, .last = 80, .to = 1}});
  expect_bad(p, "dst_port entry 0");
  p.dst_port =
      PortRewrite::Map({{.first = 80, .last = 90, .to = 1}, {.first = 85, .last = 95, .to = 2}});
  expect_bad(p, "dst_port entry 1");
  p.dst_port =
      PortRewrite::Map({{.first = 80, .last = 90, .to = 1}, {.first = 10, .last = 20, .to = 2}});
  expect_bad(p, "sorted");
  p.dst_port =
      PortRewrite::Map({{.first = 60000, .last = 65535, .to = 10000, .mode = Entry::Mode::kShift}});
  EXPECT_TRUE(Validate(p).ok());
  p.src_port =
      PortRewrite::Map({{.first = 1000, .last = 2000, .to = 65000, .mode = Entry::Mode::kShift}});
  expect_bad(p, "src_port");
  p = {};
  p.ttl = {.kind = TtlRewrite::Kind::kSet, .value = 0};
  expect_bad(p, "ttl");
  p = {};
  p.dscp = 64;
  expect_bad(p, "dscp");
  p = {};
  p.mss_clamp = 87;
  expect_bad(p, "mss_clamp");
}

TEST(RewritePlan, MapPortSetMapShiftCollapse) {
  EXPECT_EQ(MapPort(PortRewrite{}, 80), 80);
  EXPECT_EQ(MapPort(PortRewrite::Set(9), 80), 9);
  const PortRewrite m =
      PortRewrite::Map({{.first = 0, .last = 0, .to = 1},
                        {.first = 80, .last = 80, .to = 8080},
                        {.first = 1000, .last = 1999, .to = 5000, .mode = Entry::Mode::kShift},
                        {.first = 8000, .last = 8999, .to = 80},
                        {.first = 65535, .last = 65535, .to = 2}});
  RewritePlan plan;
  plan.dst_port = m;
  ASSERT_TRUE(Validate(plan).ok());
  EXPECT_EQ(MapPort(m, 0), 1);
  EXPECT_EQ(MapPort(m, 1), 1);
  EXPECT_EQ(MapPort(m, 79), 79);
  EXPECT_EQ(MapPort(m, 80), 8080);
  EXPECT_EQ(MapPort(m, 81), 81);
  EXPECT_EQ(MapPort(m, 999), 999);
  EXPECT_EQ(MapPort(m, 1000), 5000);
  EXPECT_EQ(MapPort(m, 1234), 5234);
  EXPECT_EQ(MapPort(m, 1999), 5999);
  EXPECT_EQ(MapPort(m, 2000), 2000);
  EXPECT_EQ(MapPort(m, 8000), 80);
  EXPECT_EQ(MapPort(m, 8999), 80);
  EXPECT_EQ(MapPort(m, 9000), 9000);
  EXPECT_EQ(MapPort(m, 65534), 65534);
  EXPECT_EQ(MapPort(m, 65535), 2);
}

TEST(RewritePlan, MapAddressKeepsHostBits) {
  uint8_t out[16] = {};
  const auto in4 = testing::Addr("198.18.77.9");
  ASSERT_TRUE(MapAddress(AddrRewrite::MapIpv4(0xc6120000, 0x0a000000, 15), in4.data(), out));
  EXPECT_EQ(std::vector<uint8_t>(out, out + 4), testing::Addr("10.0.77.9"));
  // 198.18/15 also holds 198.19.x.y: bit 16 is a host bit, kept.
  const auto in4b = testing::Addr("198.19.1.2");
  ASSERT_TRUE(MapAddress(AddrRewrite::MapIpv4(0xc6120000, 0x0a000000, 15), in4b.data(), out));
  EXPECT_EQ(std::vector<uint8_t>(out, out + 4), testing::Addr("10.1.1.2"));
  // Outside the prefix: left alone, out untouched.
  const auto other = testing::Addr("198.20.0.1");
  out[0] = 0x77;
  EXPECT_FALSE(MapAddress(AddrRewrite::MapIpv4(0xc6120000, 0x0a000000, 15), other.data(), out));
  EXPECT_EQ(out[0], 0x77);
  // A /32 map is a conditional set; a set is unconditional.
  EXPECT_FALSE(MapAddress(AddrRewrite::MapIpv4(0xc6120001, 1, 32), other.data(), out));
  ASSERT_TRUE(MapAddress(AddrRewrite::SetIpv4(0x01020304), other.data(), out));
  EXPECT_EQ(std::vector<uint8_t>(out, out + 4), testing::Addr("1.2.3.4"));
  // IPv6 with a prefix that ends inside a byte.
  const auto in6 = testing::Addr("2001:2:abcd::42");
  ASSERT_TRUE(MapAddress(AddrRewrite::MapIpv6(A6("2001:2:a800::"), A6("fd00:0:5000::"), 37),
                         in6.data(), out));
  EXPECT_EQ(std::vector<uint8_t>(out, out + 16), testing::Addr("fd00:0:53cd::42"));
  EXPECT_FALSE(
      MapAddress(AddrRewrite::MapIpv6(A6("2001:2:a000::"), A6("fd00::"), 37), in6.data(), out));
  ASSERT_TRUE(
      MapAddress(AddrRewrite::MapIpv6(A6("2001:2:abcd::42"), A6("::1"), 128), in6.data(), out));
  EXPECT_EQ(std::vector<uint8_t>(out, out + 16), testing::Addr("::1"));
  EXPECT_FALSE(MapAddress(AddrRewrite{}, in6.data(), out));
}

}  // namespace
}  // namespace sluice
