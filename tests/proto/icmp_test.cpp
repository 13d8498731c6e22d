#include "engine/proto/icmp.h"

#include <gtest/gtest.h>

#include <vector>

namespace sluice {
namespace {

// An ICMP error's header followed by `quote` bytes whose first is `first_byte`.
std::vector<uint8_t> Error(uint8_t first_byte, uint32_t quote) {
  std::vector<uint8_t> m(icmp::kHeaderLen + quote, 0);
  m[icmp::kOffType] = 3;  // destination unreachable
  if (quote > 0) m[icmp::kHeaderLen] = first_byte;
  return m;
}

const uint8_t* Quoted(bool v6, const std::vector<uint8_t>& m) {
  return icmp::QuotedIpHeader(v6, m.data(), static_cast<uint32_t>(m.size()));
}

TEST(Icmp, QuotedIpHeaderNeedsAWholeFixedHeaderOfTheErrorsFamily) {
  const auto v4 = Error(0x45, 20);
  EXPECT_EQ(Quoted(false, v4), v4.data() + icmp::kHeaderLen);
  EXPECT_EQ(Quoted(true, v4), nullptr);  // an ICMPv6 error quoting IPv4
  EXPECT_EQ(Quoted(false, Error(0x45, 19)), nullptr);
  EXPECT_EQ(Quoted(false, Error(0x65, 20)), nullptr);  // wrong version nibble

  const auto v6 = Error(0x60, 40);
  EXPECT_EQ(Quoted(true, v6), v6.data() + icmp::kHeaderLen);
  EXPECT_EQ(Quoted(false, v6), nullptr);
  EXPECT_EQ(Quoted(true, Error(0x60, 39)), nullptr);
}

TEST(Icmp, QuotedIpHeaderOfAMessageShorterThanItsHeaderIsNone) {
  for (uint32_t avail = 0; avail < icmp::kHeaderLen; ++avail) {
    const auto m = Error(0x45, 20);
    EXPECT_EQ(icmp::QuotedIpHeader(false, m.data(), avail), nullptr) << avail;
  }
}

}  // namespace
}  // namespace sluice
