#include "engine/io/nfqueue/link_watch.h"

// glibc's socket headers before the kernel's, as in nfqueue_endpoint.cpp.
// clang-format off
#include <net/if.h>
#include <sys/socket.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
// clang-format on

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace sluice {

Result<std::unique_ptr<LinkWatch>> LinkWatch::Open() {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) return IoError(std::string("cannot open an rtnetlink socket: ") + std::strerror(errno));
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = RTMGRP_LINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    const int e = errno;
    close(fd);
    return IoError(std::string("cannot join rtnetlink's link group: ") + std::strerror(e));
  }
  return std::unique_ptr<LinkWatch>(new LinkWatch(fd));
}

LinkWatch::~LinkWatch() { close(fd_); }

bool LinkWatch::Changed() noexcept {
  // A notification carries the link's attributes (a few hundred bytes to a few KiB).
  alignas(nlmsghdr) std::array<char, 32768> buf;
  bool changed = false;
  for (;;) {
    const ssize_t n = recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {  // the socket overran: some notifications are gone
        changed = true;
        continue;
      }
      return changed;  // EAGAIN: nothing more waiting
    }
    int left = static_cast<int>(n);
    for (const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, left);
         nlh = mnl_nlmsg_next(nlh, &left)) {
      if (nlh->nlmsg_type == RTM_NEWLINK || nlh->nlmsg_type == RTM_DELLINK) changed = true;
    }
  }
}

InterfaceFollower::InterfaceFollower(std::vector<std::string> outside, Lookup lookup)
    : lookup_(std::move(lookup)), outside_(std::move(outside)) {
  if (!lookup_) lookup_ = [](const std::string& name) { return if_nametoindex(name.c_str()); };
}

uint32_t InterfaceFollower::ForRules(std::string_view name) {
  std::string key(name);
  const uint32_t id = lookup_(key);
  compiling_[std::move(key)] = id;
  return id;
}

void InterfaceFollower::EndRulesCompile(bool succeeded) {
  if (succeeded) rules_ = std::move(compiling_);
  compiling_.clear();
}

std::vector<InterfaceFollower::Change> InterfaceFollower::RulesStale() const {
  std::vector<Change> stale;
  for (const auto& [name, id] : rules_) {
    const uint32_t now = lookup_(name);
    if (now != id) stale.push_back({name, id, now});
  }
  return stale;
}

std::vector<uint32_t> InterfaceFollower::Outside() const {
  std::vector<uint32_t> ids;
  ids.reserve(outside_.size());
  for (const std::string& name : outside_) ids.push_back(lookup_(name));
  return ids;
}

}  // namespace sluice
