// `sluice run --user nobody` over NFQUEUE, in a network namespace of its own (unshare --net:
// nothing touches the host's queues), read from /proc/<pid>/task/<tid>/status once it has
// started: every thread — the main one, the I/O threads, oneTBB's workers — runs as nobody
// with CAP_NET_ADMIN alone (effective, permitted, bounding), nothing inheritable or ambient,
// and NoNewPrivs 1. Capabilities are per thread, so checking the process is not enough.
// Then SIGTERM drains and it exits 0. Needs root (CI runs as root); skipped otherwise.
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/external_tool.h"

#ifndef SLUICE_BINARY
#error "SLUICE_BINARY must name the sluice executable"
#endif

namespace sluice {
namespace {

constexpr uint64_t kNetAdmin = uint64_t{1} << CAP_NET_ADMIN;

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "Key:\tvalue" lines of a /proc status file.
std::map<std::string, std::string> Status(const std::string& path) {
  std::map<std::string, std::string> m;
  std::istringstream in(ReadText(path));
  for (std::string line; std::getline(in, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto start = line.find_first_not_of(" \t", colon + 1);
    m[line.substr(0, colon)] = start == std::string::npos ? "" : line.substr(start);
  }
  return m;
}

uint64_t Hex(const std::string& s) { return std::stoull(s, nullptr, 16); }

std::vector<std::string> Tasks(pid_t pid) {
  std::vector<std::string> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') out.push_back(dir + "/" + e->d_name + "/status");
    }
    closedir(d);
  }
  return out;
}

class RunPrivilege : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: sluice run opens NFQUEUE queues, then drops to nobody";
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Starts `unshare --net sluice run ...`; unshare execs, so the pid is sluice's.
  void Start(const std::string& config, const std::string& log) {
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // cleared by the uid change; TearDown kills it then
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDERR_FILENO);
      dup2(fd, STDOUT_FILENO);
      execlp("unshare", "unshare", "--net", SLUICE_BINARY, "run", "-c", config.c_str(), "--user", "nobody",
             "--threads", "2", static_cast<char*>(nullptr));
      _exit(127);
    }
  }

  pid_t pid_ = -1;
};

TEST_F(RunPrivilege, EveryThreadRunsAsNobodyWithNetAdminOnlyAndNoNewPrivs) {
  const passwd* pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr);
  const std::string nobody = std::to_string(pw->pw_uid);
  testing::TempDir tmp;
  const std::string config = tmp.File("run.toml"), log = tmp.File("run.log");
  std::ofstream(config) << "[io]\nbackend = \"nfqueue\"\n[io.nfqueue]\nqueue_first = 7\nqueue_count = 2\n"
                           "[pipeline]\nshards = 2\nrun_to_completion = false\n"
                           "[[rule]]\nnumber = 1\nname = \"mark-all\"\naction = \"mark\"\nmark = 0x10\n";
  Start(config, log);
  ASSERT_GT(pid_, 0);

  // Started: the log says so after the pipeline's threads are up.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (ReadText(log).find("shard(s)") == std::string::npos) {
    int status = 0;
    ASSERT_EQ(waitpid(pid_, &status, WNOHANG), 0) << "sluice run exited early:\n" << ReadText(log);
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "sluice run did not start:\n" << ReadText(log);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  const std::vector<std::string> tasks = Tasks(pid_);
  EXPECT_GE(tasks.size(), 3u) << "the main thread, two I/O threads, the workers";
  for (const std::string& path : tasks) {
    SCOPED_TRACE(path);
    auto s = Status(path);
    ASSERT_FALSE(s.empty());
    EXPECT_EQ(s["Uid"], nobody + "\t" + nobody + "\t" + nobody + "\t" + nobody);
    EXPECT_EQ(s["Groups"], "");
    EXPECT_EQ(Hex(s["CapEff"]), kNetAdmin);
    EXPECT_EQ(Hex(s["CapPrm"]), kNetAdmin);
    EXPECT_EQ(Hex(s["CapBnd"]), kNetAdmin);
    EXPECT_EQ(Hex(s["CapInh"]), 0u);
    EXPECT_EQ(Hex(s["CapAmb"]), 0u);
    EXPECT_EQ(s["NoNewPrivs"], "1");
  }
  const auto main = Status("/proc/" + std::to_string(pid_) + "/status");
  std::printf("sluice run, %zu threads: Uid %s, CapEff %s, CapBnd %s, NoNewPrivs %s, Seccomp %s\n", tasks.size(),
              main.at("Uid").c_str(), main.at("CapEff").c_str(), main.at("CapBnd").c_str(),
              main.at("NoNewPrivs").c_str(), main.at("Seccomp").c_str());

  ASSERT_EQ(kill(pid_, SIGTERM), 0);
  int status = 0;
  bool exited = false;
  for (int i = 0; i < 500 && !exited; ++i) {
    exited = waitpid(pid_, &status, WNOHANG) == pid_;
    if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(exited) << "no exit 10 s after SIGTERM:\n" << ReadText(log);
  pid_ = -1;
  ASSERT_TRUE(WIFEXITED(status)) << ReadText(log);
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadText(log);
  EXPECT_NE(ReadText(log).find("sluice run: stopped"), std::string::npos) << ReadText(log);
}

}  // namespace
}  // namespace sluice
