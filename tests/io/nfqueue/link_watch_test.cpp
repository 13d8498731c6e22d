// LinkWatch in a network namespace of the test's own (root only: skipped otherwise), and
// InterfaceIndexes over a lookup the test controls.
#include "engine/io/nfqueue/link_watch.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

namespace sluice {
namespace {

TEST(InterfaceIndexes, RefreshReportsOnlyTheNamesWhoseIndexChanged) {
  std::map<std::string, uint32_t> system = {{"wan0", 4}, {"ppp0", 7}};
  InterfaceIndexes idx([&](const std::string& name) {
    const auto it = system.find(name);
    return it == system.end() ? 0u : it->second;
  });
  EXPECT_EQ(idx.Resolve("wan0"), 4u);
  EXPECT_EQ(idx.Resolve("ppp0"), 7u);
  EXPECT_EQ(idx.Resolve("tun0"), 0u);  // not there yet: remembered all the same
  EXPECT_TRUE(idx.Refresh().empty());

  system["ppp0"] = 9;   // created again
  system["tun0"] = 11;  // appeared
  system.erase("wan0");  // gone
  const auto changes = idx.Refresh();
  ASSERT_EQ(changes.size(), 3u);  // in name order
  EXPECT_EQ(changes[0].name, "ppp0");
  EXPECT_EQ(changes[0].before, 7u);
  EXPECT_EQ(changes[0].after, 9u);
  EXPECT_EQ(changes[1].name, "tun0");
  EXPECT_EQ(changes[1].before, 0u);
  EXPECT_EQ(changes[1].after, 11u);
  EXPECT_EQ(changes[2].name, "wan0");
  EXPECT_EQ(changes[2].before, 4u);
  EXPECT_EQ(changes[2].after, 0u);
  EXPECT_TRUE(idx.Refresh().empty());  // reported once
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
