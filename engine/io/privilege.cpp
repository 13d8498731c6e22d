#include "engine/io/privilege.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace sluice {
namespace {

Status SysError(const std::string& what) {
  return {StatusCode::kPermissionDenied, "drop privileges: " + what + ": " + std::strerror(errno)};
}

bool ParseId(const std::string& s, unsigned long* out) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return false;
  errno = 0;
  *out = std::strtoul(s.c_str(), nullptr, 10);
  return errno == 0 && *out < 0xffffffffUL;
}

Status ResolveUser(const PrivilegeOptions& o, uid_t* uid, gid_t* gid) {
  unsigned long id = 0;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (ParseId(o.user, &id)) {
    getpwuid_r(static_cast<uid_t>(id), &pw, buf.data(), buf.size(), &found);
    *uid = static_cast<uid_t>(id);
    if (found == nullptr && o.group.empty()) {
      return InvalidArgument("drop privileges: uid " + o.user + " has no passwd entry; give a group as well");
    }
  } else {
    if (getpwnam_r(o.user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
      return NotFound("drop privileges: no user \"" + o.user + "\"");
    }
    *uid = pw.pw_uid;
  }
  if (found != nullptr) *gid = pw.pw_gid;
  if (!o.group.empty()) {
    if (ParseId(o.group, &id)) {
      *gid = static_cast<gid_t>(id);
    } else {
      group gr{};
      group* g = nullptr;
      if (getgrnam_r(o.group.c_str(), &gr, buf.data(), buf.size(), &g) != 0 || g == nullptr) {
        return NotFound("drop privileges: no group \"" + o.group + "\"");
      }
      *gid = gr.gr_gid;
    }
  }
  if (*uid == 0) return InvalidArgument("drop privileges: the target user is root");
  return Status::Ok();
}

int LastCap() {
  std::ifstream f("/proc/sys/kernel/cap_last_cap");
  int last = CAP_LAST_CAP;
  if (!(f >> last)) last = CAP_LAST_CAP;
  return last;
}

// Sets the capability sets of the calling thread, v3 ABI (two 32-bit words per set).
int SetCaps(uint64_t permitted, uint64_t effective, uint64_t inheritable) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int w = 0; w < 2; ++w) {
    data[w].permitted = static_cast<uint32_t>(permitted >> (32 * w));
    data[w].effective = static_cast<uint32_t>(effective >> (32 * w));
    data[w].inheritable = static_cast<uint32_t>(inheritable >> (32 * w));
  }
  return static_cast<int>(syscall(SYS_capset, &hdr, data));
}

uint64_t ParseHex(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 16); }

}  // namespace

Result<ProcessPrivileges> ReadProcessPrivileges(pid_t pid) {
  const std::string path = pid == 0 ? "/proc/self/status" : "/proc/" + std::to_string(pid) + "/status";
  std::ifstream f(path);
  if (!f) return IoError(path + ": cannot read");
  ProcessPrivileges p;
  std::string line;
  while (std::getline(f, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon);
    std::istringstream v(line.substr(colon + 1));
    if (key == "Uid") {
      for (uid_t& u : p.uid) v >> u;
    } else if (key == "Gid") {
      for (gid_t& g : p.gid) v >> g;
    } else if (key == "Threads") {
      v >> p.threads;
    } else if (key == "NoNewPrivs") {
      v >> p.no_new_privs;
    } else if (key == "Seccomp") {
      v >> p.seccomp;
    } else if (key.rfind("Cap", 0) == 0) {
      std::string hex;
      v >> hex;
      const uint64_t bits = ParseHex(hex);
      if (key == "CapInh") p.cap_inheritable = bits;
      else if (key == "CapPrm") p.cap_permitted = bits;
      else if (key == "CapEff") p.cap_effective = bits;
      else if (key == "CapBnd") p.cap_bounding = bits;
      else if (key == "CapAmb") p.cap_ambient = bits;
    }
  }
  return p;
}

std::string ToString(const ProcessPrivileges& p) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "uid %u gid %u CapEff 0x%" PRIx64 " CapPrm 0x%" PRIx64 " CapBnd 0x%" PRIx64
                " NoNewPrivs %d Seccomp %d",
                p.uid[1], p.gid[1], p.cap_effective, p.cap_permitted, p.cap_bounding, p.no_new_privs, p.seccomp);
  return buf;
}

Status DropPrivileges(const PrivilegeOptions& o) {
  auto before = ReadProcessPrivileges();
  if (!before.ok()) return before.status();
  if (before->threads != 1) {
    return {StatusCode::kInvalidArgument,
            "drop privileges: the process has " + std::to_string(before->threads) +
                " threads; drop before any thread starts (capabilities are per thread)"};
  }
  uid_t uid = 0;
  gid_t gid = 0;
  if (Status s = ResolveUser(o, &uid, &gid); !s.ok()) return s;
  const bool root = geteuid() == 0;
  if (!root && uid != geteuid()) {
    return {StatusCode::kPermissionDenied,
            "drop privileges: running as uid " + std::to_string(geteuid()) + ", cannot become " + o.user};
  }
  const uint64_t keep = o.keep_net_admin ? (uint64_t{1} << CAP_NET_ADMIN) : 0;
  if (o.keep_net_admin && (before->cap_permitted & keep) == 0) {
    return {StatusCode::kPermissionDenied, "drop privileges: CAP_NET_ADMIN is not in the permitted set to keep"};
  }

  // The bounding set first: dropping from it needs CAP_SETPCAP, which goes with root below.
  for (int cap = 0; cap <= LastCap(); ++cap) {
    if ((keep >> cap) & 1) continue;
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return SysError("PR_CAPBSET_DROP " + std::to_string(cap));
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return SysError("PR_CAP_AMBIENT_CLEAR_ALL");
  }
  if (root) {
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return SysError("PR_SET_KEEPCAPS");
    if (setgroups(0, nullptr) != 0) return SysError("setgroups(0)");
    if (setresgid(gid, gid, gid) != 0) return SysError("setresgid(" + std::to_string(gid) + ")");
    if (setresuid(uid, uid, uid) != 0) return SysError("setresuid(" + std::to_string(uid) + ")");
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return SysError("PR_SET_KEEPCAPS 0");
  }
  // setresuid away from 0 cleared the effective set and kept (KEEPCAPS) the permitted one:
  // narrow both to what is kept.
  if (SetCaps(keep, keep, 0) != 0) return SysError("capset");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return SysError("PR_SET_NO_NEW_PRIVS");

  // Verify rather than trust: root must be out of reach, and the kernel must agree.
  if (root && (setuid(0) == 0 || seteuid(0) == 0)) {
    return {StatusCode::kPermissionDenied, "drop privileges: setuid(0) still succeeds after the drop"};
  }
  auto after = ReadProcessPrivileges();
  if (!after.ok()) return after.status();
  const ProcessPrivileges& a = *after;
  for (int i = 0; i < 4; ++i) {
    if (a.uid[i] != uid || a.gid[i] != gid) {
      return {StatusCode::kPermissionDenied, "drop privileges: credentials not as asked: " + ToString(a)};
    }
  }
  if (a.cap_effective != keep || a.cap_permitted != keep || a.cap_inheritable != 0 || a.cap_ambient != 0 ||
      (a.cap_bounding & ~keep) != 0 || a.no_new_privs != 1) {
    return {StatusCode::kPermissionDenied, "drop privileges: capabilities not as asked: " + ToString(a)};
  }
  return Status::Ok();
}

}  // namespace sluice
