// LinkWatch in a network namespace of the test's own (root only: skipped otherwise), and
// InterfaceFollower over a lookup the test controls.
#include "engine/io/nfqueue/link_watch.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <thread>

namespace sluice {
namespace {

// A system whose interfaces the test moves, and a follower over it.
struct FakeSystem {
  std::map<std::string, uint32_t> ifs = {{"wan0", 4}, {"ppp0", 7}};
  InterfaceFollower::Lookup lookup() {
    return [this](const std::string& name) {
      const auto it = ifs.find(name);
      return it == ifs.end() ? 0u : it->second;
    };
  }
};

// Compiles "rules" naming `names` through the follower, as RuleSet::Compile asks interface_id.
void Compile(InterfaceFollower& f, std::initializer_list<const char*> names, bool succeeds = true) {
  for (const char* n : names) f.ForRules(n);
  f.EndRulesCompile(succeeds);
}

TEST(InterfaceFollower, SaysWhichNamesTheRunningRulesHoldStaleIndexesFor) {
  FakeSystem sys;
  InterfaceFollower f({}, sys.lookup());
  Compile(f, {"wan0", "ppp0", "tun0"});  // tun0 not there yet: remembered as 0
  EXPECT_TRUE(f.RulesStale().empty());

  sys.ifs["ppp0"] = 9;   // created again
  sys.ifs["tun0"] = 11;  // appeared
  sys.ifs.erase("wan0");  // gone
  const auto stale = f.RulesStale();
  ASSERT_EQ(stale.size(), 3u);  // in name order
  EXPECT_EQ(stale[0].name, "ppp0");
  EXPECT_EQ(stale[0].before, 7u);
  EXPECT_EQ(stale[0].after, 9u);
  EXPECT_EQ(stale[1].name, "tun0");
  EXPECT_EQ(stale[1].before, 0u);
  EXPECT_EQ(stale[1].after, 11u);
  EXPECT_EQ(stale[2].name, "wan0");
  EXPECT_EQ(stale[2].before, 4u);
  EXPECT_EQ(stale[2].after, 0u);
  EXPECT_EQ(f.RulesStale().size(), 3u) << "asking does not fix anything";

  Compile(f, {"wan0", "ppp0", "tun0"}, /*succeeds=*/false);
  EXPECT_EQ(f.RulesStale().size(), 3u) << "a failed compile leaves them stale, to be tried again";
  Compile(f, {"wan0", "ppp0", "tun0"});
  EXPECT_TRUE(f.RulesStale().empty());
}

// A SIGHUP compiled after the link changed: its rules hold the new index already, so nothing
// is stale for them, while the endpoints still hold the old one until given Outside().
TEST(InterfaceFollower, ACompileThatPickedUpANewIndexLeavesNothingStale) {
  FakeSystem sys;
  InterfaceFollower f({"ppp0", "nosuch0", "wan0"}, sys.lookup());
  Compile(f, {"ppp0"});
  const std::vector<uint32_t> given = f.Outside();
  EXPECT_EQ(given, (std::vector<uint32_t>{7, 0, 4})) << "one entry per name, 0 for a missing one";

  sys.ifs["ppp0"] = 9;
  Compile(f, {"ppp0"});  // the SIGHUP's reload
  EXPECT_TRUE(f.RulesStale().empty());
  EXPECT_EQ(f.Outside(), (std::vector<uint32_t>{9, 0, 4}));
  EXPECT_NE(f.Outside(), given);
}

// Runs `body` on a thread of its own in a new network namespace (unshare affects only the
// calling thread; the namespace goes when the thread ends), so commands it runs change
// nothing outside.
template <typename F>
void InOwnNetns(F body) {
  std::thread t([&] {
    ASSERT_EQ(unshare(CLONE_NEWNET), 0);
    body();
  });
  t.join();
}

TEST(LinkWatch, SaysWhenALinkIsCreatedRenamedOrDeletedAndOnlyThen) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: a network namespace and a veth pair";
  InOwnNetns([] {
    auto watch = LinkWatch::Open();
    ASSERT_TRUE(watch.ok()) << watch.status().message();
    LinkWatch& w = **watch;
    EXPECT_FALSE(w.Changed());
    ASSERT_EQ(std::system("ip link add sltest0 type veth peer name sltest9"), 0);
    EXPECT_TRUE(w.Changed());
    EXPECT_FALSE(w.Changed());  // each notification is read once
    ASSERT_EQ(std::system("ip link set sltest0 name sltest1"), 0);
    EXPECT_TRUE(w.Changed());
    ASSERT_EQ(std::system("ip link del sltest1"), 0);  // and its peer with it
    EXPECT_TRUE(w.Changed());
    EXPECT_FALSE(w.Changed());
  });
}

}  // namespace
}  // namespace sluice
