#include "engine/proto/options.h"

#include <gtest/gtest.h>

#include <vector>

#include "engine/proto/tcp.h"

namespace sluice {
namespace {

bool Valid(std::vector<uint8_t> o) {
  return ValidKlvOptions(o.data(), static_cast<uint32_t>(o.size()));
}

TEST(KlvOptions, WellFormedLists) {
  EXPECT_TRUE(Valid({}));
  EXPECT_TRUE(Valid({1, 1, 1, 1}));
  EXPECT_TRUE(Valid({2, 4, 5, 0xb4}));
  EXPECT_TRUE(Valid({1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}));
  EXPECT_TRUE(Valid({0, 0xff, 0xff, 0xff}));  // after End: padding, not parsed
  EXPECT_TRUE(Valid({2, 4, 5, 0xb4, 0}));
}

TEST(KlvOptions, MalformedLists) {
  EXPECT_FALSE(Valid({2}));           // length byte missing
  EXPECT_FALSE(Valid({2, 0, 0, 0}));  // length 0 would loop
  EXPECT_FALSE(Valid({2, 1, 0, 0}));  // length 1 is shorter than kind + length
  EXPECT_FALSE(Valid({2, 5, 0, 0}));  // past the end
  EXPECT_FALSE(Valid({1, 1, 8, 10, 0}));
}

TEST(KlvOptions, FindMssAtAnyOffsetAndNeverPastTheEnd) {
  // A TCP header with NOP, then MSS at an odd offset (21).
  std::vector<uint8_t> t(28, 0);
  t[12] = 7 << 4;
  t[20] = 1;
  t[21] = 2;
  t[22] = 4;
  t[23] = 0x05;
  t[24] = 0xb4;
  EXPECT_EQ(tcp::FindMss(t.data(), 28), 21);
  EXPECT_EQ(tcp::FindMss(t.data(), 28, 25), -1) << "none after the first";
  // Cut inside the option: not found (the walk stays inside the 24 bytes).
  EXPECT_EQ(tcp::FindMss(t.data(), 24), -1);
  // A wrong length is not an MSS option.
  t[22] = 3;
  EXPECT_EQ(tcp::FindMss(t.data(), 28), -1);
  // After a malformed option the walk stops.
  std::vector<uint8_t> u = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8 << 4, 0, 0, 0,
                            0, 0, 0, 0, 3, 0, 2, 4, 1, 2, 0, 0, 0,      0, 0, 0};
  EXPECT_EQ(tcp::FindMss(u.data(), 32), -1);
}

}  // namespace
}  // namespace sluice
