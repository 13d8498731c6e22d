// Least privilege for the inline daemon: start as root, open the kernel queues, then become
// an unprivileged user that keeps CAP_NET_ADMIN and nothing else.
//
// After DropPrivileges() succeeds, for the calling process:
//   uid  real = effective = saved = filesystem = the user's; gid likewise; no supplementary
//        groups;
//   caps permitted = effective = {CAP_NET_ADMIN} (or {} with keep_net_admin = false);
//        inheritable = ambient = {}; the bounding set holds only what is kept, so no later
//        execve can gain another capability;
//   NoNewPrivs 1: no setuid/setgid binary and no file capability raises anything again;
//   KEEPCAPS cleared; setuid(0) is checked to fail before it returns.
// Why CAP_NET_ADMIN: NFQUEUE's netlink socket checks it on every verdict and config message,
// and SO_RCVBUFFORCE needs it (ARCHITECTURE.md, Backends).
//
// Contract: call it while the process has exactly one thread (before oneTBB or any I/O thread
// starts). Credentials and capabilities are per thread in Linux; glibc broadcasts setresuid
// to every thread, but not capset or the prctl calls, so a thread started earlier would keep
// root's capabilities. DropPrivileges checks /proc/self/status and refuses otherwise.
// Nothing is half-applied silently: any failing step returns a Status naming the system call
// and errno, and the caller must exit (the process may be partly dropped by then).
// Not root to begin with: allowed when the target user is the current one (for example a
// binary given cap_net_admin with setcap); capabilities are trimmed and NoNewPrivs set.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "engine/core/status.h"

namespace sluice {

struct PrivilegeOptions {
  std::string user = "nobody";  // a name or a numeric uid
  std::string group;            // a name or numeric gid; "" = the user's primary group
  bool keep_net_admin = true;
};

Status DropPrivileges(const PrivilegeOptions& options);

// What /proc/<pid>/status says about a process's credentials (pid 0: this process).
struct ProcessPrivileges {
  uid_t uid[4] = {};  // real, effective, saved, filesystem
  gid_t gid[4] = {};
  uint64_t cap_inheritable = 0, cap_permitted = 0, cap_effective = 0, cap_bounding = 0, cap_ambient = 0;
  int no_new_privs = -1;
  int seccomp = -1;  // 0 none, 1 strict, 2 filter
  uint32_t threads = 0;
};

Result<ProcessPrivileges> ReadProcessPrivileges(pid_t pid = 0);

// One line for a start-up log: "uid 65534 gid 65534 CapEff 0x1000 NoNewPrivs 1 Seccomp 2".
std::string ToString(const ProcessPrivileges& p);

}  // namespace sluice
