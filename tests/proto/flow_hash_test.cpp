#include "engine/proto/flow_hash.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace sluice {
namespace {

TEST(FlowHash, SymmetricForBothFamilies) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 100000; ++i) {
    uint8_t a[16], b[16];
    for (auto& x : a) x = static_cast<uint8_t>(rng());
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    if (i % 7 == 0) std::copy(a, a + 16, b);  // same address both ends: ports decide
    const auto pa = static_cast<uint16_t>(rng()), pb = static_cast<uint16_t>(rng());
    const uint64_t seed = rng();
    ASSERT_EQ(FlowHashIpv4(seed, a, b, pa, pb, 6), FlowHashIpv4(seed, b, a, pb, pa, 6));
    ASSERT_EQ(FlowHashIpv6(seed, a, b, pa, pb, 17), FlowHashIpv6(seed, b, a, pb, pa, 17));
  }
}

TEST(FlowHash, EveryFieldAndTheSeedMatter) {
  const uint8_t a[16] = {198, 18, 0, 1}, b[16] = {198, 18, 0, 2};
  const uint32_t h = FlowHashIpv4(1, a, b, 1000, 80, 6);
  EXPECT_NE(h, FlowHashIpv4(2, a, b, 1000, 80, 6));
  EXPECT_NE(h, FlowHashIpv4(1, a, b, 1001, 80, 6));
  EXPECT_NE(h, FlowHashIpv4(1, a, b, 1000, 81, 6));
  EXPECT_NE(h, FlowHashIpv4(1, a, b, 1000, 80, 17));
  EXPECT_NE(h, FlowHashIpv4(1, a, a, 1000, 80, 6));
  // Swapping only the ports is another flow.
  EXPECT_NE(h, FlowHashIpv4(1, a, b, 80, 1000, 6));
  const uint32_t h6 = FlowHashIpv6(1, a, b, 1000, 80, 6);
  EXPECT_NE(h6, FlowHashIpv6(1, a, b, 80, 1000, 6));
  EXPECT_NE(h6, FlowHashIpv6(9, a, b, 1000, 80, 6));
}

TEST(FlowHash, SpreadsSequentialFlows) {
  // 65536 flows differing in the client port only: buckets of a 256-way shard split stay
  // within 25% of the mean.
  uint8_t a[4] = {198, 18, 0, 1}, b[4] = {198, 19, 0, 1};
  std::vector<int> bucket(256);
  for (uint32_t p = 0; p < 65536; ++p) {
    ++bucket[FlowHashIpv4(12345, a, b, static_cast<uint16_t>(p), 443, 6) & 255];
  }
  for (int n : bucket) {
    EXPECT_GT(n, 192);
    EXPECT_LT(n, 320);
  }
}

}  // namespace
}  // namespace sluice
