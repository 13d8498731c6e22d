#include "engine/io/privilege/privilege.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

namespace sluice {
namespace {

Status Errno(const std::string& step) { return Status(StatusCode::kPermissionDenied, step + ": " + std::strerror(errno)); }

// Threads of this process, from /proc/self/status; nullopt if it cannot be read.
std::optional<unsigned long> Threads() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("Threads:", 0) != 0) continue;
    char* end = nullptr;
    const unsigned long n = std::strtoul(line.c_str() + 8, &end, 10);
    if (end == line.c_str() + 8) return std::nullopt;
    return n;
  }
  return std::nullopt;
}

int LastCap() {
  std::ifstream f("/proc/sys/kernel/cap_last_cap");
  int last = 40;
  f >> last;
  return last;
}

}  // namespace

Result<UserIds> LookUpUser(const std::string& user) {
  errno = 0;
  const passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) {
    return InvalidArgument("drop privileges: no such user '" + user + "'" + (errno ? std::string(": ") + std::strerror(errno) : ""));
  }
  if (pw->pw_uid == 0) return InvalidArgument("drop privileges: user '" + user + "' is root");
  return UserIds{user, pw->pw_uid, pw->pw_gid};
}

Status DropPrivileges(const std::string& user, std::span<const int> keep) {
  Result<UserIds> ids = LookUpUser(user);
  if (!ids.ok()) return ids.status();
  return DropPrivileges(*ids, keep);
}

Status DropPrivileges(const UserIds& user, std::span<const int> keep) {
  // glibc's setresuid reaches every thread, capset and prctl only the caller: a thread
  // started earlier would keep root's capabilities. Refuse rather than half-drop.
  const std::optional<unsigned long> threads = Threads();
  if (!threads) return InvalidArgument("drop privileges: cannot count this process's threads in /proc/self/status");
  if (*threads != 1) {
    return InvalidArgument("drop privileges: the process has " + std::to_string(*threads) +
                           " threads; drop before any other thread starts (capabilities are per thread)");
  }
  const uid_t uid = user.uid;
  const gid_t gid = user.gid;
  if (uid == 0) return InvalidArgument("drop privileges: user '" + user.name + "' is root");

  uint64_t keep_mask = 0;
  for (int c : keep) keep_mask |= uint64_t{1} << c;

  // The bounding set first: dropping from it needs CAP_SETPCAP, which goes with the uid.
  const int last = LastCap();
  for (int c = 0; c <= last; ++c) {
    if ((keep_mask >> c) & 1) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) return Errno("PR_CAPBSET_DROP " + std::to_string(c));
  }
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return Errno("PR_SET_KEEPCAPS");
  if (setgroups(0, nullptr) != 0) return Errno("setgroups");
  if (setresgid(gid, gid, gid) != 0) return Errno("setresgid");
  if (setresuid(uid, uid, uid) != 0) return Errno("setresuid");

  // The uid change cleared the effective set; the permitted set kept everything (KEEPCAPS).
  // Keep exactly the requested capabilities, effective and permitted; nothing inheritable.
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int i = 0; i < 2; ++i) {
    const auto word = static_cast<uint32_t>(keep_mask >> (32 * i));
    data[i].effective = word;
    data[i].permitted = word;
    data[i].inheritable = 0;
  }
  if (syscall(SYS_capset, &header, data) != 0) return Errno("capset");
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return Errno("PR_SET_KEEPCAPS 0");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return Errno("PR_CAP_AMBIENT");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Errno("PR_SET_NO_NEW_PRIVS");

  // Trust, but verify: root must really be gone.
  if (setresuid(0, 0, 0) == 0) return Status(StatusCode::kPermissionDenied, "drop privileges: could become root again");
  return Status::Ok();
}

Result<PrivilegeState> ReadPrivilegeState(const std::string& path) {
  std::ifstream f(path);
  if (!f) return IoError(path + ": cannot read");
  PrivilegeState s;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string key;
    in >> key;
    if (key == "Uid:") in >> s.uid;
    else if (key == "Gid:") in >> s.gid;
    else if (key == "CapEff:") in >> std::hex >> s.cap_eff;
    else if (key == "CapPrm:") in >> std::hex >> s.cap_prm;
    else if (key == "CapBnd:") in >> std::hex >> s.cap_bnd;
    else if (key == "NoNewPrivs:") in >> s.no_new_privs;
  }
  return s;
}

}  // namespace sluice
