#include "engine/io/nfqueue/iptables_rules.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(IptablesRules, BalancedQueuesWithBypassGuardAndUnmarkedCounter) {
  auto r = GenerateIptablesRules({.queue_first = 4, .queue_count = 2, .bypass = true,
                                  .verdict_mark = 0x100, .verdict_mask = 0x100});
  ASSERT_TRUE(r.ok()) << r.status().message();
  const std::string& s = *r;
  EXPECT_NE(s.find("iptables -w -t mangle -A FORWARD -m mark ! --mark 0x100/0x100 -m comment --comment sluice-queue "
                   "-j NFQUEUE --queue-balance 4:5 --queue-bypass\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("iptables -w -t filter -A FORWARD -m mark ! --mark 0x100/0x100 -m comment --comment sluice-unmarked\n"),
            std::string::npos);
  EXPECT_NE(s.find("ip6tables -w -t mangle -A FORWARD"), std::string::npos);
  EXPECT_NE(s.find("ip6tables -w -t filter -A FORWARD"), std::string::npos);
}

TEST(IptablesRules, OneQueueFailClosedRemoval) {
  auto r = GenerateIptablesRules({.queue_first = 7, .queue_count = 1, .bypass = false, .verdict_mark = 0x40000000,
                                  .verdict_mask = 0x40000000, .chains = {"INPUT", "OUTPUT"}, .ipv6 = false,
                                  .remove = true});
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->find("-D INPUT -m mark ! --mark 0x40000000/0x40000000 -m comment --comment sluice-queue -j NFQUEUE --queue-num 7\n"),
            std::string::npos)
      << *r;
  EXPECT_NE(r->find("-t mangle -D OUTPUT"), std::string::npos);
  EXPECT_EQ(r->find("--queue-bypass"), std::string::npos);
  EXPECT_EQ(r->find("ip6tables"), std::string::npos);
  EXPECT_EQ(r->find(" -A "), std::string::npos);
}

TEST(IptablesRules, PreroutingIsQueuedButCountedNowhereInFilter) {
  auto r = GenerateIptablesRules({.chains = {"PREROUTING"}});
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->find("-t mangle -A PREROUTING"), std::string::npos);
  EXPECT_EQ(r->find("-t filter -A PREROUTING"), std::string::npos);
}

TEST(IptablesRules, RejectsWhatIptablesWould) {
  EXPECT_FALSE(GenerateIptablesRules({.queue_first = 65535, .queue_count = 2}).ok());
  EXPECT_FALSE(GenerateIptablesRules({.queue_count = 0}).ok());
  EXPECT_FALSE(GenerateIptablesRules({.verdict_mark = 0x3, .verdict_mask = 0x1}).ok());
  EXPECT_FALSE(GenerateIptablesRules({.verdict_mark = 0}).ok());
  EXPECT_FALSE(GenerateIptablesRules({.chains = {"forward"}}).ok());
  EXPECT_FALSE(GenerateIptablesRules({.ipv4 = false, .ipv6 = false}).ok());
}

}  // namespace
}  // namespace sluice
