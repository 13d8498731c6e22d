// tools/sluice/service_notify: systemd's notify protocol as sd_notify(3) speaks it (a datagram
// to a path or an abstract socket), the watchdog's interval and owner, and the gate that
// withholds the watchdog while an I/O thread is stuck.
#include "tools/sluice/service_notify.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace sluice::cli {
namespace {

// A datagram socket bound where the service manager's would be: a path, or "@name".
class ManagerSocket {
 public:
  explicit ManagerSocket(const std::string& name) : name_(name) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name.data(), name.size());
    if (name[0] == '@') addr.sun_path[0] = '\0';
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    bound_ = bind(fd_, reinterpret_cast<const sockaddr*>(&addr), len) == 0;
    timeval tv{2, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~ManagerSocket() {
    close(fd_);
    if (name_[0] == '/') unlink(name_.c_str());
  }
  bool bound() const { return bound_; }
  std::string Next() {
    char buf[512];
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    return n < 0 ? "<nothing>" : std::string(buf, static_cast<std::size_t>(n));
  }

 private:
  std::string name_;
  int fd_ = -1;
  bool bound_ = false;
};

std::string TempSocketPath() {
  char dir[] = "/tmp/sluice-notify-XXXXXX";
  if (mkdtemp(dir) == nullptr) return "";
  return std::string(dir) + "/notify";
}

TEST(ServiceNotifier, WithoutNotifySocketItSendsNothingAndSucceeds) {
  auto n = ServiceNotifier::Open(nullptr, "5000000", nullptr, 42);
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE(n->enabled());
  EXPECT_FALSE(n->watchdog()) << "no watchdog without a socket to pet it through";
  EXPECT_TRUE(n->Send("READY=1").ok());
}

TEST(ServiceNotifier, SendsEachStateAsOneDatagramToAPathOrAnAbstractSocket) {
  const std::string path = TempSocketPath();
  const std::string abstract = "@sluice-notify-test-" + std::to_string(getpid());
  for (const std::string& name : {path, abstract}) {
    SCOPED_TRACE(name);
    ManagerSocket manager(name);
    ASSERT_TRUE(manager.bound());
    auto n = ServiceNotifier::Open(name.c_str(), nullptr, nullptr, 42);
    ASSERT_TRUE(n.ok()) << n.status().message();
    EXPECT_TRUE(n->enabled());
    ASSERT_TRUE(n->Send("READY=1\nSTATUS=nfqueue: 2 shard(s), 5 rule(s)").ok());
    ASSERT_TRUE(n->Send("STOPPING=1").ok());
    EXPECT_EQ(manager.Next(), "READY=1\nSTATUS=nfqueue: 2 shard(s), 5 rule(s)");
    EXPECT_EQ(manager.Next(), "STOPPING=1");
  }
  rmdir(path.substr(0, path.rfind('/')).c_str());
}

TEST(ServiceNotifier, TheWatchdogIsThisProcesssOnlyWhenWatchdogPidSaysSoOrIsUnset) {
  const std::string path = TempSocketPath();
  ManagerSocket manager(path);
  ASSERT_TRUE(manager.bound());
  auto mine = ServiceNotifier::Open(path.c_str(), "10000000", "42", 42);
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine->watchdog(), std::chrono::microseconds(10'000'000));
  EXPECT_EQ(ServiceNotifier::Open(path.c_str(), "10000000", nullptr, 42)->watchdog(),
            std::chrono::microseconds(10'000'000));
  EXPECT_FALSE(ServiceNotifier::Open(path.c_str(), "10000000", "7", 42)->watchdog()) << "another process's";
  EXPECT_FALSE(ServiceNotifier::Open(path.c_str(), "0", nullptr, 42)->watchdog());
  EXPECT_FALSE(ServiceNotifier::Open(path.c_str(), "ten", nullptr, 42)->watchdog());
  rmdir(path.substr(0, path.rfind('/')).c_str());
}

TEST(ServiceNotifier, ASocketThatCannotBeReachedIsAnErrorNotASilentWait) {
  const auto missing = ServiceNotifier::Open("/nonexistent-dir/notify", nullptr, nullptr, 42);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("NOTIFY_SOCKET /nonexistent-dir/notify"), std::string::npos)
      << missing.status().message();
  const auto relative = ServiceNotifier::Open("run/notify", nullptr, nullptr, 42);
  ASSERT_FALSE(relative.ok());
  EXPECT_NE(relative.status().message().find("absolute path or @name"), std::string::npos);
}

// Pets every `every` while every I/O thread turns; none while one stands still, looking again
// each loop pass meanwhile, and one as soon as it turns again. Times are made up.
TEST(WatchdogPacer, PetsEveryHalfIntervalOnlyWhileEveryThreadTurns) {
  using namespace std::chrono_literals;
  using Clock = WatchdogPacer::Clock;
  const Clock::time_point t0{};
  WatchdogPacer pacer(5s);
  auto pet = [&](Clock::duration at, std::vector<uint64_t> turns) { return pacer.ShouldPet(t0 + at, turns); };
  EXPECT_TRUE(pet(0s, {1, 1})) << "the first look pets";
  EXPECT_FALSE(pet(1s, {2, 2})) << "not due yet";
  EXPECT_EQ(pacer.UntilNextLook(t0 + 1s, 200ms), 200ms);
  EXPECT_EQ(pacer.UntilNextLook(t0 + 4900ms, 200ms), 100ms) << "wakes when the pet is due";
  EXPECT_TRUE(pet(5s, {3, 3}));
  EXPECT_FALSE(pet(10s, {4, 3})) << "shard 1 stood still since the last pet";
  EXPECT_EQ(pacer.stalled(), std::vector<uint32_t>{1});
  EXPECT_EQ(pacer.UntilNextLook(t0 + 10s, 200ms), 200ms) << "overdue: keep looking each pass";
  EXPECT_FALSE(pet(10200ms, {5, 3}));
  EXPECT_TRUE(pet(10400ms, {6, 4})) << "it turned: pet at once";
  EXPECT_TRUE(pacer.stalled().empty());
  EXPECT_FALSE(pet(12s, {7, 5})) << "the next one is due 5 s after that pet";
  EXPECT_TRUE(pet(15400ms, {8, 6}));
  // A thread that turned once between pets counts; one that did not, however far the other
  // went, does not.
  EXPECT_FALSE(pet(20400ms, {100, 6}));
  EXPECT_EQ(pacer.stalled(), std::vector<uint32_t>{1});
}

}  // namespace
}  // namespace sluice::cli
