// Dropping root keeps CAP_NET_ADMIN only, sets NoNewPrivs, and cannot be undone. Runs in a
// forked child (the drop is for good); needs root, skipped otherwise.
#include "engine/io/privilege/privilege.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <thread>

namespace sluice {
namespace {

// Runs `body` in a child; its stdout comes back as a string, its exit code in *code.
template <typename Body>
std::string InChild(Body body, int* code) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], STDOUT_FILENO);
    _exit(body());
  }
  close(fds[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return out;
}

TEST(DropPrivileges, KeepsNetAdminOnlyAndSetsNoNewPrivs) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  ASSERT_NE(getpwnam("nobody"), nullptr);
  int code = -1;
  const std::string out = InChild(
      [] {
        const std::array keep = {CAP_NET_ADMIN};
        const Status s = DropPrivileges("nobody", keep);
        if (!s.ok()) {
          std::printf("drop failed: %s\n", s.message().c_str());
          return 1;
        }
        auto st = ReadPrivilegeState();
        if (!st.ok()) return 2;
        std::printf("uid=%u eff=%llx prm=%llx bnd=%llx nnp=%d root_again=%d\n", st->uid, st->cap_eff, st->cap_prm,
                    st->cap_bnd, st->no_new_privs, setuid(0) == 0);
        std::fflush(stdout);
        return 0;
      },
      &code);
  ASSERT_EQ(code, 0) << out;
  const unsigned nobody = getpwnam("nobody")->pw_uid;
  char want[160];
  std::snprintf(want, sizeof want, "uid=%u eff=%llx prm=%llx bnd=%llx nnp=1 root_again=0\n", nobody,
                1ull << CAP_NET_ADMIN, 1ull << CAP_NET_ADMIN, 1ull << CAP_NET_ADMIN);
  EXPECT_EQ(out, want);
}

TEST(DropPrivileges, UnknownUserIsAClearErrorAndChangesNothing) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  int code = -1;
  const std::string out = InChild(
      [] {
        const std::array keep = {CAP_NET_ADMIN};
        const Status s = DropPrivileges("no-such-user-sluice", keep);
        std::printf("%s|%u\n", s.message().c_str(), geteuid());
        std::fflush(stdout);
        return s.ok() ? 1 : 0;
      },
      &code);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "drop privileges: no such user 'no-such-user-sluice'|0\n");
}

// The lookup `sluice run` makes before binding its queues changes nothing, needs no root, and
// refuses what the drop would refuse.
TEST(LookUpUser, FindsAUserAndRefusesUnknownNamesAndRoot) {
  Result<UserIds> nobody = LookUpUser("nobody");
  ASSERT_TRUE(nobody.ok()) << nobody.status().message();
  EXPECT_EQ(nobody->name, "nobody");
  EXPECT_EQ(nobody->uid, getpwnam("nobody")->pw_uid);
  EXPECT_EQ(nobody->gid, getpwnam("nobody")->pw_gid);
  const Result<UserIds> unknown = LookUpUser("no-such-user-sluice");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().message(), "drop privileges: no such user 'no-such-user-sluice'");
  const Result<UserIds> root = LookUpUser("root");
  ASSERT_FALSE(root.ok());
  EXPECT_EQ(root.status().message(), "drop privileges: user 'root' is root");
}

// Capabilities are per thread: a drop with another thread running would leave that thread
// with root's capabilities, so it is refused before anything changes.
TEST(DropPrivileges, RefusedWhileAnotherThreadRuns) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  int code = -1;
  const std::string out = InChild(
      [] {
        std::thread([] { pause(); }).detach();  // the child _exits with it still there
        const std::array keep = {CAP_NET_ADMIN};
        const Status s = DropPrivileges("nobody", keep);
        auto st = ReadPrivilegeState();
        std::printf("%s|%u|%d\n", s.message().c_str(), st.ok() ? st->uid : 999u, st.ok() ? st->no_new_privs : -1);
        std::fflush(stdout);
        return s.ok() ? 1 : 0;
      },
      &code);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out,
            "drop privileges: the process has 2 threads; drop before any other thread starts (capabilities are "
            "per thread)|0|0\n");
}

TEST(PrivilegeState, ParsesProcStatus) {
  auto st = ReadPrivilegeState();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->uid, getuid());
}

}  // namespace
}  // namespace sluice
