// DropPrivileges in a forked child (the test process itself stays root): the parent reads
// the child's /proc/<pid>/status while it waits, and the child checks what the kernel now
// lets it do. Needs root (CI runs as root); skipped otherwise, saying so.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "engine/io/privilege.h"

namespace sluice {
namespace {

constexpr uint64_t kNetAdmin = uint64_t{1} << CAP_NET_ADMIN;

uid_t NobodyUid() {
  const passwd* pw = getpwnam("nobody");
  return pw != nullptr ? pw->pw_uid : 65534;
}

// Runs body in a forked child. The child writes its findings (one line each, "" when all is
// well) to a pipe, then waits for the parent to read its /proc status before it exits.
struct ChildRun {
  std::string report;              // what the child wrote
  ProcessPrivileges seen;          // the parent's read of /proc/<child>/status
  bool exited_cleanly = false;
};

ChildRun InChild(const std::function<std::string()>& body) {
  int to_parent[2], to_child[2];
  EXPECT_EQ(pipe(to_parent), 0);
  EXPECT_EQ(pipe(to_child), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(to_parent[0]);
    close(to_child[1]);
    const std::string r = body() + "\n";  // the newline says the body finished
    (void)!write(to_parent[1], r.data(), r.size());
    close(to_parent[1]);
    char c;
    (void)!read(to_child[0], &c, 1);
    _exit(0);
  }
  close(to_parent[1]);
  close(to_child[0]);
  ChildRun run;
  char buf[4096];
  ssize_t n;
  while ((n = read(to_parent[0], buf, sizeof buf)) > 0) run.report.append(buf, static_cast<std::size_t>(n));
  close(to_parent[0]);
  auto seen = ReadProcessPrivileges(pid);  // the child is still alive: it waits on to_child
  if (seen.ok()) run.seen = *seen;
  (void)!write(to_child[1], "x", 1);
  close(to_child[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  run.exited_cleanly = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!run.report.empty() && run.report.back() == '\n') run.report.pop_back();
  return run;
}

PrivilegeOptions As(std::string user, std::string group = "", bool keep_net_admin = true) {
  PrivilegeOptions o;
  o.user = std::move(user);
  o.group = std::move(group);
  o.keep_net_admin = keep_net_admin;
  return o;
}

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno) + "; "; }

class Privilege : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CI runs as root): DropPrivileges starts from root";
  }
};

TEST_F(Privilege, DropsToNobodyKeepingOnlyNetAdminWithNoNewPrivs) {
  const uid_t nobody = NobodyUid();
  const ChildRun run = InChild([] {
    const Status s = DropPrivileges(As("nobody"));
    if (!s.ok()) return "DropPrivileges: " + s.message();
    std::string bad;
    // CAP_NET_ADMIN works: SO_RCVBUFFORCE is refused without it.
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    const int size = 1 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) bad += Errno("SO_RCVBUFFORCE");
    // Nothing else does: binding a port below 1024 (CAP_NET_BIND_SERVICE), reading a file
    // only root may read (CAP_DAC_OVERRIDE), becoming root again (CAP_SETUID).
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(1);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) bad += "bound port 1; ";
    close(fd);
    if (open("/proc/1/environ", O_RDONLY) >= 0 || errno != EACCES) bad += Errno("/proc/1/environ opened or odd errno");
    if (setuid(0) == 0 || errno != EPERM) bad += Errno("setuid(0) did not fail with EPERM");
    if (getgroups(0, nullptr) != 0) bad += "supplementary groups kept; ";
    return bad;
  });
  EXPECT_TRUE(run.exited_cleanly);
  EXPECT_EQ(run.report, "");
  const ProcessPrivileges& p = run.seen;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(p.uid[i], nobody) << "uid field " << i;
  EXPECT_NE(p.gid[0], 0u);
  EXPECT_EQ(p.cap_effective, kNetAdmin);
  EXPECT_EQ(p.cap_permitted, kNetAdmin);
  EXPECT_EQ(p.cap_inheritable, 0u);
  EXPECT_EQ(p.cap_ambient, 0u);
  EXPECT_EQ(p.cap_bounding, kNetAdmin);
  EXPECT_EQ(p.no_new_privs, 1);
  std::printf("after the drop, /proc/<pid>/status: %s\n", ToString(p).c_str());
}

TEST_F(Privilege, WithoutNetAdminNoCapabilityIsLeft) {
  const ChildRun run = InChild([] {
    const Status s = DropPrivileges(As("nobody", "", false));
    if (!s.ok()) return "DropPrivileges: " + s.message();
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    const int size = 1 << 20;
    std::string bad;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) == 0) bad = "SO_RCVBUFFORCE allowed";
    close(fd);
    return bad;
  });
  EXPECT_TRUE(run.exited_cleanly);
  EXPECT_EQ(run.report, "");
  EXPECT_EQ(run.seen.cap_effective, 0u);
  EXPECT_EQ(run.seen.cap_permitted, 0u);
  EXPECT_EQ(run.seen.cap_bounding, 0u);
  EXPECT_EQ(run.seen.no_new_privs, 1);
}

TEST_F(Privilege, NumericUserAndGroup) {
  const ChildRun run = InChild([] {
    const Status s = DropPrivileges(As("54321", "54322"));
    return s.ok() ? std::string() : s.message();
  });
  EXPECT_EQ(run.report, "");
  EXPECT_EQ(run.seen.uid[0], 54321u);
  EXPECT_EQ(run.seen.gid[0], 54322u);
  EXPECT_EQ(run.seen.cap_effective, kNetAdmin);
}

TEST_F(Privilege, RefusesWhenAnotherThreadIsRunning) {
  const ChildRun run = InChild([] {
    std::thread t([] { pause(); });  // never joined: the child _exits
    t.detach();
    const Status s = DropPrivileges(As("nobody"));
    return s.ok() ? std::string("dropped with two threads") : s.message();
  });
  EXPECT_NE(run.report.find("2 threads"), std::string::npos) << run.report;
  EXPECT_EQ(run.seen.uid[0], 0u) << "nothing was changed";
  EXPECT_EQ(run.seen.no_new_privs, 0);
}

TEST_F(Privilege, ClearErrorsForBadUsers) {
  const ChildRun run = InChild([] {
    std::string out;
    out += DropPrivileges(As("no-such-user-sluice")).message() + "|";
    out += DropPrivileges(As("root")).message() + "|";
    out += DropPrivileges(As("nobody", "no-such-group-sluice")).message() + "|";
    out += DropPrivileges(As("4000000")).message();
    return out;
  });
  EXPECT_EQ(run.report,
            "drop privileges: no user \"no-such-user-sluice\"|"
            "drop privileges: the target user is root|"
            "drop privileges: no group \"no-such-group-sluice\"|"
            "drop privileges: uid 4000000 has no passwd entry; give a group as well");
  EXPECT_EQ(run.seen.uid[0], 0u) << "a failed look-up changes nothing";
}

}  // namespace
}  // namespace sluice
