// NetnsLab: three network namespaces joined by veth pairs, for tests that need the kernel.
//
//   client 198.18.1.2/24 (+ .3–.9) ── c0 ═ r0 ── router ── r1 ═ s0 ── server 198.18.2.2/24
//                                         198.18.1.1   198.18.2.1     (forwarding on)
//
// Cleanup cannot be forgotten: each namespace is held by a child process (unshare + pause)
// that dies with the test process (PR_SET_PDEATHSIG), nothing is ever named in
// /var/run/netns, and every command runs inside a PID namespace whose init also dies with the
// test process — taking every command with it (a server left running would keep its network
// namespace alive). So whatever ends the test — destructor, failed assertion, crash, timeout
// kill — the kernel deletes the namespaces with their veths and iptables rules. Nothing
// touches the host's namespace, so tests of several worktrees can run at once.
//
// Needs root (CAP_SYS_ADMIN for unshare and setns, CAP_NET_ADMIN inside); callers check
// Root() first and skip. Commands run through nsenter(1) and sh -c.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace sluice::testing {

// Sanitized builds run several times slower: traffic-heavy tests scale their counts by this.
#ifdef SLUICE_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

enum class Node { kClient = 0, kRouter = 1, kServer = 2 };

// A command running in the background with its stdout (and stderr) captured.
class LabProcess {
 public:
  LabProcess(pid_t pid, int out_fd) : pid_(pid), out_fd_(out_fd) {}
  ~LabProcess();  // kills it if still running
  LabProcess(const LabProcess&) = delete;
  LabProcess& operator=(const LabProcess&) = delete;

  // Waits until its output has a line equal to `line`; false on timeout or exit.
  bool WaitForLine(const std::string& line, std::chrono::milliseconds timeout);
  // Waits until its output contains `text` after byte `from` (search from where an earlier
  // output() ended to see only what came since); false on timeout or exit.
  bool WaitForText(const std::string& text, std::chrono::milliseconds timeout,
                   std::size_t from = 0);
  // Waits for it to exit; returns its exit status (-1 on timeout, after which it is killed).
  int Wait(std::chrono::milliseconds timeout);
  // Everything it printed so far.
  const std::string& output();
  // The pid of nsenter, which started the program (Spawn runs argv through it).
  pid_t pid() const { return pid_; }
  // The program's own pid as this process sees it: nsenter forks it into the lab's PID
  // namespace, so it is nsenter's only child. For signals and /proc/PID; -1 once it is gone.
  pid_t ProgramPid() const;

 private:
  void Drain(int timeout_ms);
  pid_t pid_;
  int out_fd_;
  std::string out_;
  bool exited_ = false;
  int status_ = -1;
};

class NetnsLab {
 public:
  static bool Root();
  // Builds the namespaces, links, addresses and routes.
  static Result<std::unique_ptr<NetnsLab>> Create();
  ~NetnsLab();
  NetnsLab(const NetnsLab&) = delete;
  NetnsLab& operator=(const NetnsLab&) = delete;

  // Runs `cmd` with sh -c in a node; returns its exit status, output (stdout + stderr) in *out.
  int Run(Node node, const std::string& cmd, std::string* out = nullptr) const;
  // Like Run, but a non-zero exit is an error that shows the command and its output.
  Status Must(Node node, const std::string& cmd) const;
  // Starts argv in a node in the background.
  std::unique_ptr<LabProcess> Spawn(Node node, const std::vector<std::string>& argv) const;

  pid_t pid(Node node) const { return holders_[static_cast<int>(node)]; }
  std::string NetnsPath(Node node) const { return "/proc/" + std::to_string(pid(node)) + "/net"; }
  // The router's /proc/net/netfilter/nfnetlink_queue.
  std::string NfqueueProcPath() const {
    return NetnsPath(Node::kRouter) + "/netfilter/nfnetlink_queue";
  }
  // The packet count of rule `rule` (1-based) of an iptables chain in the router.
  uint64_t IptablesPackets(const std::string& table, const std::string& chain, int rule) const;
  // The packet count of the rule of an iptables chain in the router whose comment is
  // `comment` (-m comment --comment); UINT64_MAX when there is none.
  uint64_t IptablesPackets(const std::string& table, const std::string& chain,
                           const std::string& comment) const;

  // For its lifetime, the calling thread is in the router's namespace (sockets opened now
  // belong to it and stay there).
  class RouterScope {
   public:
    explicit RouterScope(const NetnsLab& lab);
    ~RouterScope();
    bool ok() const { return ok_; }

   private:
    int home_ = -1;
    bool ok_ = false;
  };

  static constexpr const char* kServerAddr = "198.18.2.2";
  static constexpr const char* kClientSources =
      "198.18.1.2,198.18.1.3,198.18.1.4,198.18.1.5,198.18.1.6,198.18.1.7,198.18.1.8,198.18.1.9";

 private:
  NetnsLab() = default;
  pid_t holders_[3] = {-1, -1, -1};
  pid_t reaper_ = -1;  // init of the PID namespace commands run in
  pid_t reaper_parent_ = -1;
};

// Runs argv (no shell) and returns its exit status; output in *out.
int RunCommand(const std::vector<std::string>& argv, std::string* out);

// The first number after `key` on a line of a tool's output ("key N" lines, as netns_traffic
// prints them); UINT64_MAX when there is none.
uint64_t OutputField(const std::string& out, const std::string& key);

}  // namespace sluice::testing
