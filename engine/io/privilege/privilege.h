// Dropping root after start-up: what `sluice run` does once its sockets are open.
//
// After DropPrivileges(user, {CAP_NET_ADMIN}) the process runs as `user` (its uid and primary
// gid, no supplementary groups), its effective and permitted capability sets hold exactly the
// capabilities kept (NFQUEUE verdicts are checked against CAP_NET_ADMIN on every message),
// the bounding set holds nothing else, and PR_SET_NO_NEW_PRIVS is set, so no exec can gain
// privileges back. /proc/self/status then shows the new Uid, CapEff and NoNewPrivs 1.
//
// Capabilities are per thread: call it before any other thread starts (the I/O threads and
// oneTBB's workers inherit the result). Each step is checked; an error says which step failed
// and the process must not go on as root by mistake (the caller exits).
#pragma once

#include <span>
#include <string>

#include "engine/core/status.h"

namespace sluice {

Status DropPrivileges(const std::string& user, std::span<const int> keep_capabilities);

// The process's current state, as /proc/self/status reports it (for logs and tests).
struct PrivilegeState {
  unsigned uid = 0, gid = 0;
  unsigned long long cap_eff = 0, cap_prm = 0, cap_bnd = 0;
  int no_new_privs = 0;
};
Result<PrivilegeState> ReadPrivilegeState(const std::string& status_path = "/proc/self/status");

}  // namespace sluice
