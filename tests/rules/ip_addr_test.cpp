#include "engine/rules/ip_addr.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(IpAddrTest, ParsesIpv4Strictly) {
  ASSERT_TRUE(ParseIpAddr("198.18.0.1"));
  EXPECT_EQ(ParseIpAddr("198.18.0.1")->v4(), 0xc6120001u);
  EXPECT_EQ(ParseIpAddr("0.0.0.0")->v4(), 0u);
  EXPECT_EQ(ParseIpAddr("255.255.255.255")->v4(), 0xffffffffu);
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.04", "1..2.3", "1.2.3.4 ", " 1.2.3.4",
                          "a.b.c.d", "1.2.3.-4", "1.2.3.4/", "1234.1.1.1"}) {
    EXPECT_FALSE(ParseIpAddr(bad)) << '"' << bad << '"';
  }
}

TEST(IpAddrTest, ParsesIpv6TextForms) {
  EXPECT_EQ(ParseIpAddr("::")->value, U128{0});
  EXPECT_EQ(ParseIpAddr("::1")->value, U128{1});
  EXPECT_EQ(ParseIpAddr("2001:db8::")->value, MakeU128(0x20010db800000000ull, 0));
  EXPECT_EQ(ParseIpAddr("2001:db8::1:0:0:1")->value, MakeU128(0x20010db800000000ull, 0x0001000000000001ull));
  EXPECT_EQ(ParseIpAddr("1:2:3:4:5:6:7:8")->value, MakeU128(0x0001000200030004ull, 0x0005000600070008ull));
  EXPECT_EQ(ParseIpAddr("1:2:3:4:5:6:7::")->value, MakeU128(0x0001000200030004ull, 0x0005000600070000ull));
  EXPECT_EQ(ParseIpAddr("::ffff:198.18.0.1")->value, MakeU128(0, 0x0000ffffc6120001ull));
  EXPECT_EQ(ParseIpAddr("64:ff9b::198.18.0.1")->value, MakeU128(0x0064ff9b00000000ull, 0xc6120001ull));
  EXPECT_EQ(ParseIpAddr("FE80::AbCd")->value, MakeU128(0xfe80000000000000ull, 0xabcd));
  for (const char* bad : {":", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "::g",
                          "1:2:3:4:5:6:7:8::", "::1.2.3", "1:2:3:4:5:6:1.2.3.4:8", "fe80::1%eth0", "1:"}) {
    EXPECT_FALSE(ParseIpAddr(bad)) << '"' << bad << '"';
  }
}

TEST(IpAddrTest, FormatsAsRfc5952) {
  EXPECT_EQ(ToString(*ParseIpAddr("2001:0db8:0000:0000:0000:0000:0000:0001")), "2001:db8::1");
  EXPECT_EQ(ToString(*ParseIpAddr("2001:db8:0:1:1:1:1:1")), "2001:db8:0:1:1:1:1:1") << "a single 0 is not compressed";
  EXPECT_EQ(ToString(*ParseIpAddr("2001:0:0:1:0:0:0:1")), "2001:0:0:1::1") << "the longest run";
  EXPECT_EQ(ToString(*ParseIpAddr("2001:db8:0:0:1:0:0:1")), "2001:db8::1:0:0:1") << "the first of equal runs";
  EXPECT_EQ(ToString(*ParseIpAddr("::")), "::");
  EXPECT_EQ(ToString(*ParseIpAddr("198.18.0.1")), "198.18.0.1");
}

TEST(IpAddrTest, BytesRoundTrip) {
  const IpAddr a = *ParseIpAddr("2001:db8::abcd:1");
  uint8_t b[16];
  a.ToBytes(b);
  EXPECT_EQ(b[0], 0x20);
  EXPECT_EQ(b[15], 0x01);
  EXPECT_EQ(IpAddr::FromV6Bytes(b), a);
  const IpAddr v4 = *ParseIpAddr("10.1.2.3");
  v4.ToBytes(b);
  EXPECT_EQ(IpAddr::FromV4Bytes(b), v4);
}

TEST(CidrTest, ParsesPrefixesAndRejectsHostBits) {
  const Cidr c = *ParseCidr("198.18.0.0/15");
  EXPECT_EQ(c.first(), U128{0xc6120000u});
  EXPECT_EQ(c.last(), U128{0xc613ffffu});
  EXPECT_TRUE(c.Contains(*ParseIpAddr("198.19.255.255")));
  EXPECT_FALSE(c.Contains(*ParseIpAddr("198.20.0.0")));
  EXPECT_FALSE(c.Contains(IpAddr::V6(0xc6120000u))) << "families never match across";
  EXPECT_EQ(ParseCidr("10.0.0.1")->len, 32) << "a bare address is a host prefix";
  EXPECT_EQ(ParseCidr("0.0.0.0/0")->last(), U128{0xffffffffu});
  EXPECT_EQ(ParseCidr("::/0")->last(), ~U128{0});
  EXPECT_EQ(ParseCidr("2001:db8::/32")->last(), MakeU128(0x20010db8ffffffffull, ~0ull));
  std::string why;
  EXPECT_FALSE(ParseCidr("10.1.2.3/8", &why));
  EXPECT_EQ(why, "host bits are set below the /8 prefix (did you mean 10.0.0.0/8?)");
  EXPECT_FALSE(ParseCidr("10.0.0.0/33", &why));
  EXPECT_EQ(why, "prefix length 33 is longer than 32 bits");
  EXPECT_FALSE(ParseCidr("10.0.0.0/x", &why));
  EXPECT_FALSE(ParseCidr("10.0.0.0/", &why));
  EXPECT_FALSE(ParseCidr("2001:db8::/129", &why));
  EXPECT_EQ(ToString(*ParseCidr("2001:db8::/32")), "2001:db8::/32");
}

}  // namespace
}  // namespace sluice
