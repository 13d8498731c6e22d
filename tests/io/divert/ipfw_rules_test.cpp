// The generated ipfw rules, run through an independent ipfw-subset interpreter (ipfw_eval.h):
// both directions of every host pair reach the same divert port, every port is used and
// evenly, a packet sluice writes back is never diverted again, loopback and other interfaces
// are left alone, and the bypass set fails open.
#include "engine/io/divert/ipfw_rules.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "tests/io/divert/ipfw_eval.h"

namespace sluice {
namespace {

using testing::IpfwPacket;
using testing::IpfwSubset;
using testing::IpfwVerdict;

// ---- the interpreter itself, on rules whose outcome is known by hand ------------------------

IpfwPacket V4(uint32_t src, uint32_t dst, bool out, std::string recv = "", std::string xmit = "") {
  IpfwPacket p;
  for (int i = 0; i < 4; ++i) {
    p.src[i] = static_cast<uint8_t>(src >> (24 - 8 * i));
    p.dst[i] = static_cast<uint8_t>(dst >> (24 - 8 * i));
  }
  p.out = out;
  p.recv_if = std::move(recv);
  p.xmit_if = std::move(xmit);
  return p;
}

TEST(IpfwSubset, EvaluatesMasksListsDirectionsInterfacesSetsAndResumption) {
  IpfwSubset fw;
  std::string err;
  ASSERT_TRUE(fw.Load("add 100 set 1 count ip from any to any\n"
                      "add 200 divert 7000 ip from 10.0.0.0:255.0.0.1 to any out xmit em0 not diverted\n"
                      "add 200 divert 7001 ip from any to 0.0.0.1:0.0.0.1,0.0.0.2:0.0.0.3 in\n"
                      "add 300 deny ip from 192.168.0.0/16 to any\n"
                      "add 400 skipto 600 ip from any to any via lo0\n"
                      "add 500 deny ip from any to any\n"
                      "add 600 allow ip from any to any\n",
                      &err))
      << err;
  EXPECT_EQ(fw.size(), 7u);
  // 10.x.x.even going out em0 → 7000; 10.x.x.odd does not match that mask.
  IpfwVerdict v = fw.Evaluate(V4(0x0a010204, 0x08080808, true, "", "em0"));
  EXPECT_EQ(v.kind, IpfwVerdict::kDivert);
  EXPECT_EQ(v.port, 7000);
  EXPECT_EQ(v.rule, 200u);
  EXPECT_EQ(fw.Evaluate(V4(0x0a010205, 0x08080808, true, "", "em0")).kind, IpfwVerdict::kDeny);
  EXPECT_EQ(fw.Evaluate(V4(0x0a010204, 0x08080808, true, "", "em1")).kind, IpfwVerdict::kDeny);
  // Resumed after 200 or marked diverted: not diverted again.
  IpfwPacket back = V4(0x0a010204, 0x08080808, true, "", "em0");
  back.diverted = true;
  EXPECT_EQ(fw.Evaluate(back).kind, IpfwVerdict::kDeny);
  EXPECT_EQ(fw.Evaluate(V4(0x0a010204, 0x08080808, true, "", "em0"), 200).kind, IpfwVerdict::kDeny);
  // Lists: low bits 01 or 10 coming in → 7001.
  EXPECT_EQ(fw.Evaluate(V4(0x08080808, 0x0a000005, false, "em0")).port, 7001);
  EXPECT_EQ(fw.Evaluate(V4(0x08080808, 0x0a000006, false, "em0")).port, 7001);
  EXPECT_EQ(fw.Evaluate(V4(0x08080808, 0x0a000007, false, "em0")).port, 7001);  // odd: first entry
  EXPECT_EQ(fw.Evaluate(V4(0x08080808, 0x0a000004, false, "em0")).kind, IpfwVerdict::kDeny);
  EXPECT_EQ(fw.Evaluate(V4(0xc0a80001, 0x08080808, true)).rule, 300u);
  EXPECT_EQ(fw.Evaluate(V4(0x7f000001, 0x7f000001, true, "", "lo0")).kind, IpfwVerdict::kAllow);
  const uint64_t counted = fw.CountHits(1);
  EXPECT_EQ(counted, 10u);  // 11 packets, one resumed after rule 200, past the count rule
  ASSERT_TRUE(fw.Command("set disable 1", &err)) << err;
  fw.Evaluate(V4(1, 2, true));
  EXPECT_EQ(fw.CountHits(1), counted);
  ASSERT_TRUE(fw.Command("delete set 1", &err)) << err;
  EXPECT_EQ(fw.size(), 6u);
}

TEST(IpfwSubset, RefusesWhatIpfwWouldRefuseOrWhatItDoesNotKnow) {
  IpfwSubset fw;
  std::string err;
  EXPECT_FALSE(fw.Command("add 10 divert 1 ip from ::1/::1,::2/::3,::3/::3,::4/::7,::5/::7,::6/::7,::7/::7,::8/::f "
                          "to any",
                          &err));
  EXPECT_NE(err.find("too long"), std::string::npos) << err;
  EXPECT_FALSE(fw.Command("add 10 divert 1 ip from 1.2.3.4,::1 to any", &err));
  EXPECT_FALSE(fw.Command("add 10 nat 1 ip from any to any", &err));
  EXPECT_FALSE(fw.Command("add 10 allow ip from any to any keep-state", &err));
  EXPECT_FALSE(fw.Command("flush", &err));
}

// ---- the generated rules ---------------------------------------------------------------------

struct Config {
  uint32_t shards;
  std::vector<std::string> interfaces;
};

std::string Describe(const Config& c) {
  std::string s = std::to_string(c.shards) + " port(s), interfaces:";
  for (const auto& i : c.interfaces) s += " " + i;
  if (c.interfaces.empty()) s += " all but lo0";
  return s;
}

IpfwRulesOptions OptionsFor(const Config& c) {
  IpfwRulesOptions o;
  for (uint32_t i = 0; i < c.shards; ++i) o.ports.push_back(static_cast<uint16_t>(8000 + i));
  o.interfaces = c.interfaces;
  return o;
}

void RandomAddress(std::mt19937_64& rng, bool v6, std::array<uint8_t, 16>* a) {
  a->fill(0);
  const uint64_t hi = rng(), lo = rng();
  for (int i = 0; i < 8; ++i) {
    (*a)[i] = static_cast<uint8_t>(hi >> (8 * i));
    (*a)[8 + i] = static_cast<uint8_t>(lo >> (8 * i));
  }
  if (!v6) std::fill(a->begin() + 4, a->end(), 0);
  (*a)[0] = v6 ? 0x20 : static_cast<uint8_t>(1 + rng() % 223);  // a unicast first byte
}

TEST(IpfwRules, BothDirectionsOfEveryHostPairMeetTheSamePortAndAreNotDivertedTwice) {
  const uint64_t seed = std::random_device{}();
  std::printf("ipfw rules flow seed %llu\n", static_cast<unsigned long long>(seed));
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::vector<Config> configs = {
      {1, {}},        {2, {}},      {3, {"em0"}}, {4, {}},          {5, {}}, {6, {"em0", "em1"}},
      {7, {"igb0"}},  {8, {}},      {12, {}},     {16, {"vtnet0"}}, {64, {}},
  };
  for (const Config& c : configs) {
    SCOPED_TRACE(Describe(c));
    const IpfwRulesOptions o = OptionsFor(c);
    const Result<std::string> text = GenerateIpfwRules(o);
    ASSERT_TRUE(text.ok()) << text.status().message();
    IpfwSubset fw;
    std::string err;
    ASSERT_TRUE(fw.Load(text.value(), &err)) << err << "\n" << text.value();
    ASSERT_TRUE(fw.Load(text.value(), &err)) << "reloading must replace, not add: " << err;

    const uint32_t flows = std::max<uint32_t>(4000, 300 * c.shards);
    std::map<uint16_t, uint32_t> per_port;
    for (uint32_t f = 0; f < flows; ++f) {
      const bool v6 = rng() % 2 == 0;
      std::array<uint8_t, 16> inside, remote;
      RandomAddress(rng, v6, &inside);
      RandomAddress(rng, v6, &remote);
      const std::string ifname = c.interfaces.empty() ? "em0" : c.interfaces[rng() % c.interfaces.size()];
      IpfwPacket out;
      out.v6 = v6;
      out.src = inside;
      out.dst = remote;
      out.out = true;
      out.xmit_if = ifname;
      IpfwPacket in;
      in.v6 = v6;
      in.src = remote;
      in.dst = inside;
      in.recv_if = ifname;

      const IpfwVerdict vo = fw.Evaluate(out);
      const IpfwVerdict vi = fw.Evaluate(in);
      ASSERT_EQ(vo.kind, IpfwVerdict::kDivert) << "flow " << f;
      ASSERT_EQ(vi.kind, IpfwVerdict::kDivert) << "flow " << f;
      ASSERT_EQ(vo.port, vi.port) << "flow " << f << ": the two directions split";
      ++per_port[vo.port];
      // The shard's rules carry its number: base + index × step.
      EXPECT_EQ(vo.rule, o.rule_base + (vo.port - 8000u) * o.rule_step);

      // Written back by sluice: resumes after the rule, marked diverted; never diverted again,
      // even if it came back with rule number 0 (the whole rule set).
      for (IpfwPacket back : {out, in}) {
        back.diverted = true;
        ASSERT_EQ(fw.Evaluate(back, vo.rule).kind, IpfwVerdict::kDefault) << "flow " << f << " looped";
        ASSERT_EQ(fw.Evaluate(back, 0).kind, IpfwVerdict::kDefault) << "flow " << f << " looped";
      }
    }
    ASSERT_EQ(per_port.size(), c.shards) << "some port never used";
    const double expected = static_cast<double>(flows) / c.shards;
    for (const auto& [port, n] : per_port) {
      EXPECT_GT(n, 0.6 * expected) << "port " << port << " starved";
      EXPECT_LT(n, 1.4 * expected) << "port " << port << " overloaded";
    }
  }
}

TEST(IpfwRules, NonPowerOfTwoShardCountsStayWithinOneEighth) {
  for (uint32_t n : {3u, 5u, 6u, 7u, 9u, 63u}) {
    const IpfwShardPlan plan = PlanIpfwShards(n);
    std::vector<uint32_t> share(n, 0);
    for (uint32_t s : plan.shard_of_bucket) ++share[s];
    const auto [lo, hi] = std::minmax_element(share.begin(), share.end());
    EXPECT_GE(*lo, 8u) << n;
    EXPECT_LE(static_cast<double>(*hi) / *lo, 9.0 / 8.0) << n;
  }
  for (uint32_t n : {1u, 2u, 4u, 16u, 64u}) EXPECT_EQ(PlanIpfwShards(n).shard_of_bucket.size(), n);
}

TEST(IpfwRules, TheDivertedPortFollowsTheInsideHostsLowBits) {
  const IpfwRulesOptions o = OptionsFor({5, {"em0"}});
  IpfwSubset fw;
  std::string err;
  ASSERT_TRUE(fw.Load(GenerateIpfwRules(o).value(), &err)) << err;
  const IpfwShardPlan plan = PlanIpfwShards(5);
  const uint32_t mask = (1u << plan.bits) - 1;
  for (uint32_t host = 0; host < 4096; host += 7) {
    const uint32_t inside = 0x0a000000 | host;
    const IpfwVerdict v = fw.Evaluate(V4(inside, 0x08080808, true, "", "em0"));
    ASSERT_EQ(v.kind, IpfwVerdict::kDivert);
    EXPECT_EQ(v.port, o.ports[plan.shard_of_bucket[inside & mask]]) << host;
  }
}

TEST(IpfwRules, LoopbackAndOtherInterfacesAreLeftAlone) {
  {
    IpfwSubset fw;
    std::string err;
    ASSERT_TRUE(fw.Load(GenerateIpfwRules(OptionsFor({4, {}})).value(), &err)) << err;
    EXPECT_EQ(fw.Evaluate(V4(0x7f000001, 0x7f000001, true, "", "lo0")).kind, IpfwVerdict::kDefault);
    EXPECT_EQ(fw.Evaluate(V4(0x7f000001, 0x7f000001, false, "lo0")).kind, IpfwVerdict::kDefault);
    EXPECT_EQ(fw.Evaluate(V4(0x0a000001, 0x08080808, true)).kind, IpfwVerdict::kDivert);  // locally sent
  }
  {
    IpfwSubset fw;
    std::string err;
    ASSERT_TRUE(fw.Load(GenerateIpfwRules(OptionsFor({4, {"em0"}})).value(), &err)) << err;
    // The inside interface of a gateway: not diverted in either direction.
    EXPECT_EQ(fw.Evaluate(V4(0x0a000001, 0x08080808, false, "em1")).kind, IpfwVerdict::kDefault);
    EXPECT_EQ(fw.Evaluate(V4(0x08080808, 0x0a000001, true, "em0", "em1")).kind, IpfwVerdict::kDefault);
    // Forwarded out of em0 after arriving on em1: diverted, keyed on the inside source.
    EXPECT_EQ(fw.Evaluate(V4(0x0a000001, 0x08080808, true, "em1", "em0")).kind, IpfwVerdict::kDivert);
  }
}

TEST(IpfwRules, TheBypassSetFailsOpenAndCountsWhatPassedUninspected) {
  const IpfwRulesOptions o = OptionsFor({3, {"em0"}});
  IpfwSubset fw;
  std::string err;
  ASSERT_TRUE(fw.Load(GenerateIpfwRules(o).value(), &err)) << err;
  EXPECT_TRUE(fw.enabled(o.divert_set));
  EXPECT_FALSE(fw.enabled(o.bypass_set)) << "the file leaves the bypass set off";
  const IpfwPacket out = V4(0x0a000001, 0x08080808, true, "", "em0");
  const IpfwPacket in = V4(0x08080808, 0x0a000001, false, "em0");
  ASSERT_EQ(fw.Evaluate(out).kind, IpfwVerdict::kDivert);
  EXPECT_EQ(fw.CountHits(o.bypass_set), 0u);

  // What tools/divert-supervisor runs when sluice dies.
  ASSERT_TRUE(fw.Command("set disable " + std::to_string(o.divert_set) + " enable " + std::to_string(o.bypass_set),
                         &err))
      << err;
  EXPECT_EQ(fw.Evaluate(out).kind, IpfwVerdict::kDefault) << "continues after the rule, as if returned";
  EXPECT_EQ(fw.Evaluate(in).kind, IpfwVerdict::kDefault);
  EXPECT_EQ(fw.CountHits(o.bypass_set), 2u) << "each bypassed packet counted once";

  ASSERT_TRUE(fw.Command("set enable " + std::to_string(o.divert_set) + " disable " + std::to_string(o.bypass_set),
                         &err))
      << err;
  EXPECT_EQ(fw.Evaluate(out).kind, IpfwVerdict::kDivert);
  EXPECT_EQ(fw.CountHits(o.bypass_set), 2u);
}

// `sluice rules --firewall ipfw --remove` once printed the install script again.
TEST(IpfwRules, TheRemoveScriptDeletesEveryRuleTheInstallScriptAdded) {
  IpfwRulesOptions o = OptionsFor({3, {"em0"}});
  IpfwSubset fw;
  std::string err;
  ASSERT_TRUE(fw.Command("add 100 set 0 count ip from any to any", &err)) << err;  // not sluice's
  ASSERT_TRUE(fw.Load(GenerateIpfwRules(o).value(), &err)) << err;
  const IpfwPacket out = V4(0x0a000001, 0x08080808, true, "", "em0");
  ASSERT_EQ(fw.Evaluate(out).kind, IpfwVerdict::kDivert);
  ASSERT_GT(fw.size(), 1u);
  o.remove = true;
  const std::string remove = GenerateIpfwRules(o).value();
  EXPECT_EQ(remove.find("add "), std::string::npos) << remove;
  ASSERT_TRUE(fw.Load(remove, &err)) << err;
  EXPECT_EQ(fw.size(), 1u) << "only the rule sluice did not add is left";
  EXPECT_EQ(fw.Evaluate(out).kind, IpfwVerdict::kDefault);
}

TEST(IpfwRules, OneFamilyOnly) {
  for (uint32_t shards : {1u, 4u}) {
    IpfwRulesOptions o = OptionsFor({shards, {}});
    o.ipv6 = false;
    IpfwSubset fw;
    std::string err;
    ASSERT_TRUE(fw.Load(GenerateIpfwRules(o).value(), &err)) << err;
    IpfwPacket v6;
    v6.v6 = true;
    v6.src[0] = 0x20;
    v6.out = true;
    v6.xmit_if = "em0";
    EXPECT_EQ(fw.Evaluate(v6).kind, IpfwVerdict::kDefault) << shards;
    EXPECT_EQ(fw.Evaluate(V4(0x0a000001, 0x08080808, true, "", "em0")).kind, IpfwVerdict::kDivert) << shards;
  }
}

TEST(IpfwRules, RejectsOptionsItCannotHonour) {
  auto bad = [](IpfwRulesOptions o) { return !GenerateIpfwRules(o).ok(); };
  IpfwRulesOptions o = OptionsFor({2, {}});
  EXPECT_FALSE(bad(o));
  EXPECT_TRUE(bad(OptionsFor({0, {}})));
  EXPECT_TRUE(bad(OptionsFor({65, {}})));
  IpfwRulesOptions dup = o;
  dup.ports = {8000, 8000};
  EXPECT_TRUE(bad(dup));
  IpfwRulesOptions high = o;
  high.rule_base = 65530;
  high.rule_step = 10;
  EXPECT_TRUE(bad(high));
  IpfwRulesOptions sets = o;
  sets.bypass_set = sets.divert_set;
  EXPECT_TRUE(bad(sets));
  IpfwRulesOptions set31 = o;
  set31.divert_set = 31;
  EXPECT_TRUE(bad(set31));
  IpfwRulesOptions iface = o;
  iface.interfaces = {"em0; rm -rf /"};
  EXPECT_TRUE(bad(iface));
  IpfwRulesOptions none = o;
  none.ipv4 = none.ipv6 = false;
  EXPECT_TRUE(bad(none));
}

}  // namespace
}  // namespace sluice
