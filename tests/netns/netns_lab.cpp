#include "tests/netns/netns_lab.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace sluice::testing {
namespace {

// Starts argv with stdout and stderr on a pipe; returns the pid and the pipe's read end.
pid_t SpawnPiped(const std::vector<std::string>& argv, int* out_fd) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (pid < 0) {
    close(p[0]);
    return -1;
  }
  *out_fd = p[0];
  return pid;
}

// A child that sits in a fresh PID namespace as its init, until this process dies. Every
// command the lab runs is started inside it, so when it goes (and with it the namespace) the
// kernel kills them all: nothing outlives the lab, and so no network namespace does either.
// Returns its pid here; *parent is the intermediate process that created it.
pid_t StartReaper(pid_t* parent) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return -1;
  const pid_t self = getpid();
  const pid_t mid = fork();
  if (mid == 0) {
    // Only async-signal-safe calls from here on.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != self || unshare(CLONE_NEWPID) != 0) _exit(1);
    const pid_t init = fork();
    if (init == 0) {
      // getppid() is 0 in here (the parent is outside the namespace), so no check like the
      // one above: the parent is alive, it is blocked writing our pid for the test process.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (;;) {
        if (waitpid(-1, nullptr, 0) < 0) pause();  // init: reap whatever is re-parented here
      }
    }
    if (init < 0 || write(ready[1], &init, sizeof init) != sizeof init) _exit(1);
    for (;;) pause();
  }
  close(ready[1]);
  pid_t init = -1;
  if (mid < 0 || read(ready[0], &init, sizeof init) != sizeof init) init = -1;
  close(ready[0]);
  *parent = mid;
  return init;
}

// argv under nsenter, in `holder`'s network namespace and (when reaper > 0) in the reaper's
// PID namespace.
std::vector<std::string> InNode(pid_t holder, pid_t reaper, const std::vector<std::string>& argv) {
  std::vector<std::string> full = {"nsenter", "--net=/proc/" + std::to_string(holder) + "/ns/net"};
  if (reaper > 0) full.push_back("--pid=/proc/" + std::to_string(reaper) + "/ns/pid");
  full.push_back("--");
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

// A child that sits in a fresh network namespace until this process dies.
pid_t StartHolder() {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return -1;
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls from here on.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    if (unshare(CLONE_NEWNET) != 0) _exit(1);
    const char ok = 'k';
    if (write(ready[1], &ok, 1) != 1) _exit(1);
    for (;;) pause();
  }
  close(ready[1]);
  char c = 0;
  const bool up = pid > 0 && read(ready[0], &c, 1) == 1;
  close(ready[0]);
  if (!up && pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

}  // namespace

int RunCommand(const std::vector<std::string>& argv, std::string* out) {
  int fd = -1;
  const pid_t pid = SpawnPiped(argv, &fd);
  if (pid < 0) {
    if (out) *out = "cannot start " + argv[0];
    return -1;
  }
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (out) *out = std::move(text);
  return WIFEXITED(status) ? WEXITSTATUS(status)
                           : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

LabProcess::~LabProcess() {
  if (!exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  close(out_fd_);
}

void LabProcess::Drain(int timeout_ms) {
  pollfd p{out_fd_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return;
  char buf[4096];
  const ssize_t n = read(out_fd_, buf, sizeof buf);
  if (n > 0) out_.append(buf, static_cast<std::size_t>(n));
}

bool LabProcess::WaitForLine(const std::string& line, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::istringstream lines(out_);
    for (std::string l; std::getline(lines, l);) {
      if (l == line) return true;
    }
    if (!exited_ && waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
    Drain(20);
    if (exited_) {
      Drain(0);
      std::istringstream again(out_);
      for (std::string l; std::getline(again, l);) {
        if (l == line) return true;
      }
      return false;
    }
  }
  return false;
}

bool LabProcess::WaitForText(const std::string& text, std::chrono::milliseconds timeout,
                             std::size_t from) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto seen = [&] { return out_.size() > from && out_.find(text, from) != std::string::npos; };
  while (!seen()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (!exited_ && waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
    if (exited_) {
      for (std::size_t before = SIZE_MAX; before != out_.size();) {  // the rest of its output
        before = out_.size();
        Drain(0);
      }
      return seen();
    }
    Drain(20);
  }
  return true;
}

pid_t LabProcess::ProgramPid() const {
  const std::string path =
      "/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children";
  for (int attempt = 0; attempt < 500; ++attempt) {  // nsenter forks right after it starts
    std::ifstream children(path);
    if (!children) return -1;  // nsenter is gone, and the program with it
    pid_t child = -1;
    if (children >> child) return child;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return -1;
}

int LabProcess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exited_) {
    if (waitpid(pid_, &status_, WNOHANG) == pid_) {
      exited_ = true;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status_, 0);
      exited_ = true;
      Drain(0);
      return -1;
    }
    Drain(20);
  }
  for (int i = 0; i < 100; ++i) {  // the rest of its output
    const std::size_t before = out_.size();
    Drain(0);
    if (out_.size() == before) break;
  }
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
}

const std::string& LabProcess::output() {
  Drain(0);
  return out_;
}

bool NetnsLab::Root() { return geteuid() == 0; }

Result<std::unique_ptr<NetnsLab>> NetnsLab::Create() {
  std::unique_ptr<NetnsLab> lab(new NetnsLab());
  lab->reaper_ = StartReaper(&lab->reaper_parent_);
  if (lab->reaper_ < 0)
    return IoError("netns lab: cannot create a PID namespace: " +
                   std::string(std::strerror(errno)));
  for (pid_t& h : lab->holders_) {
    h = StartHolder();
    if (h < 0)
      return IoError("netns lab: cannot create a network namespace: " +
                     std::string(std::strerror(errno)));
  }
  const std::string c = std::to_string(lab->pid(Node::kClient));
  const std::string s = std::to_string(lab->pid(Node::kServer));
  const std::string no_v6 =
      "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; ";
  const struct {
    Node node;
    std::string cmd;
  } steps[] = {
      {Node::kRouter, no_v6 +
                          "ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 && "
                          "ip link add r0 type veth peer name c0 netns " +
                          c +
                          " && "
                          "ip link add r1 type veth peer name s0 netns " +
                          s +
                          " && "
                          "ip addr add 198.18.1.1/24 dev r0 && ip addr add 198.18.2.1/24 dev r1 && "
                          "ip link set r0 up && ip link set r1 up"},
      {Node::kClient,
       no_v6 + "ip link set lo up && ip addr add 198.18.1.2/24 dev c0 && "
               "for i in 3 4 5 6 7 8 9; do ip addr add 198.18.1.$i/24 dev c0 || exit 1; done && "
               "ip link set c0 up && ip route add default via 198.18.1.1"},
      {Node::kServer,
       no_v6 + "ip link set lo up && ip addr add 198.18.2.2/24 dev s0 && ip link set s0 up && "
               "ip route add default via 198.18.2.1"},
  };
  for (const auto& step : steps) {
    // Outside the reaper's PID namespace: `ip link … netns <pid>` names pids as seen here.
    std::string out;
    if (RunCommand(InNode(lab->pid(step.node), 0, {"sh", "-c", step.cmd}), &out) != 0) {
      return IoError("netns lab: '" + step.cmd + "' failed: " + out);
    }
  }
  // Permanent neighbour entries: no ARP, so the first packets of a stream are not held (and
  // past unres_qlen_bytes dropped) while an address resolves.
  auto mac = [&](Node n, const char* dev) {
    std::string out;
    // Not /sys/class/net: sysfs there is the host's (nsenter enters the network namespace only).
    lab->Run(n,
             std::string("ip -o link show dev ") + dev +
                 " | sed -n 's|.*link/ether \\([0-9a-f:]*\\).*|\\1|p'",
             &out);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  };
  const std::string c0 = mac(Node::kClient, "c0"), r0 = mac(Node::kRouter, "r0");
  const std::string r1 = mac(Node::kRouter, "r1"), s0 = mac(Node::kServer, "s0");
  const struct {
    Node node;
    std::string cmd;
  } neigh[] = {
      {Node::kClient, "ip neigh replace 198.18.1.1 lladdr " + r0 + " dev c0 nud permanent"},
      {Node::kRouter,
       "for i in 2 3 4 5 6 7 8 9; do ip neigh replace 198.18.1.$i lladdr " + c0 +
           " dev r0 nud permanent || exit 1; done && ip neigh replace 198.18.2.2 lladdr " + s0 +
           " dev r1 nud permanent"},
      {Node::kServer, "ip neigh replace 198.18.2.1 lladdr " + r1 + " dev s0 nud permanent"},
  };
  for (const auto& step : neigh) {
    if (Status st = lab->Must(step.node, step.cmd); !st.ok()) return st;
  }
  return lab;
}

NetnsLab::~NetnsLab() {
  // The reaper's parent first: the reaper follows it, and every command started in its PID
  // namespace follows the reaper.
  if (reaper_parent_ > 0) {
    kill(reaper_parent_, SIGKILL);
    waitpid(reaper_parent_, nullptr, 0);
  }
  for (pid_t h : holders_) {
    if (h > 0) {
      kill(h, SIGKILL);
      waitpid(h, nullptr, 0);
    }
  }
}

int NetnsLab::Run(Node node, const std::string& cmd, std::string* out) const {
  return RunCommand(InNode(pid(node), reaper_, {"sh", "-c", cmd}), out);
}

Status NetnsLab::Must(Node node, const std::string& cmd) const {
  std::string out;
  const int rc = Run(node, cmd, &out);
  if (rc != 0) return IoError("netns lab: '" + cmd + "' exited " + std::to_string(rc) + ": " + out);
  return Status::Ok();
}

std::unique_ptr<LabProcess> NetnsLab::Spawn(Node node, const std::vector<std::string>& argv) const {
  int fd = -1;
  const pid_t p = SpawnPiped(InNode(pid(node), reaper_, argv), &fd);
  if (p < 0) return nullptr;
  return std::make_unique<LabProcess>(p, fd);
}

uint64_t NetnsLab::IptablesPackets(const std::string& table, const std::string& chain,
                                   int rule) const {
  std::string out;
  if (Run(Node::kRouter, "iptables -w -t " + table + " -L " + chain + " -v -x -n --line-numbers",
          &out) != 0)
    return UINT64_MAX;
  std::istringstream lines(out);
  for (std::string l; std::getline(lines, l);) {
    std::istringstream f(l);
    int num = 0;
    uint64_t pkts = 0;
    if (f >> num >> pkts && num == rule) return pkts;
  }
  return UINT64_MAX;
}

uint64_t NetnsLab::IptablesPackets(const std::string& table, const std::string& chain,
                                   const std::string& comment) const {
  std::string out;
  if (Run(Node::kRouter, "iptables -w -t " + table + " -L " + chain + " -v -x -n", &out) != 0)
    return UINT64_MAX;
  std::istringstream lines(out);
  for (std::string l; std::getline(lines, l);) {
    if (l.find("/* " + comment + " */") == std::string::npos) continue;
    std::istringstream f(l);
    uint64_t pkts = 0;
    if (f >> pkts) return pkts;
  }
  return UINT64_MAX;
}

NetnsLab::RouterScope::RouterScope(const NetnsLab& lab) {
  home_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  const int target = open(("/proc/" + std::to_string(lab.pid(Node::kRouter)) + "/ns/net").c_str(),
                          O_RDONLY | O_CLOEXEC);
  ok_ = home_ >= 0 && target >= 0 && setns(target, CLONE_NEWNET) == 0;
  if (target >= 0) close(target);
}

NetnsLab::RouterScope::~RouterScope() {
  if (home_ >= 0) {
    setns(home_, CLONE_NEWNET);
    close(home_);
  }
}

uint64_t OutputField(const std::string& out, const std::string& key) {
  std::istringstream lines(out);
  for (std::string l; std::getline(lines, l);) {
    std::istringstream f(l);
    std::string k;
    uint64_t v = 0;
    if (f >> k >> v && k == key) return v;
  }
  return UINT64_MAX;
}

}  // namespace sluice::testing
