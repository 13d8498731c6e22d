// Dropping root after start-up: what `sluice run` does once its sockets are open.
//
// After DropPrivileges(user, {CAP_NET_ADMIN}) the process runs as `user` (its uid and primary
// gid, no supplementary groups), its effective and permitted capability sets hold exactly the
// capabilities kept (NFQUEUE verdicts are checked against CAP_NET_ADMIN on every message),
// the bounding set holds nothing else, and PR_SET_NO_NEW_PRIVS is set, so no exec can gain
// privileges back. /proc/self/status then shows the new Uid, CapEff and NoNewPrivs 1.
//
// Capabilities are per thread: call it before any other thread starts (the I/O threads and
// oneTBB's workers inherit the result). With more than one thread it refuses and changes
// nothing. Each step is checked; an error says which step failed
// and the process must not go on as root by mistake (the caller exits).
#pragma once

#include <sys/types.h>

#include <span>
#include <string>

#include "engine/core/status.h"

namespace sluice {

// Who to become. `sluice run` looks the user up before it binds its queues: the lookup may be
// slow (NSS), and a mistyped name must end the start-up before any queue fills.
struct UserIds {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};
// An unknown user, or root, is an error.
Result<UserIds> LookUpUser(const std::string& user);

Status DropPrivileges(const UserIds& user, std::span<const int> keep_capabilities);
// LookUpUser, then the above.
Status DropPrivileges(const std::string& user, std::span<const int> keep_capabilities);

// The process's current state, as /proc/self/status reports it (for logs and tests).
struct PrivilegeState {
  unsigned uid = 0, gid = 0;
  unsigned long long cap_eff = 0, cap_prm = 0, cap_bnd = 0;
  int no_new_privs = 0;
};
Result<PrivilegeState> ReadPrivilegeState(const std::string& status_path = "/proc/self/status");

}  // namespace sluice
