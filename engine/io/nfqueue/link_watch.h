// Interfaces that come and go under a running daemon. NFQUEUE names interfaces by index
// (NFQA_IFINDEX_*), and an index belongs to one incarnation of an interface: a tunnel, PPP
// link or VLAN that is deleted and created again comes back under a new index, and a rename
// moves a name to another index. Resolved once, a rule naming such an interface silently
// stops matching. natd's -dynamic answers the same problem for its alias address by watching
// the routing socket; sluice watches rtnetlink's link group and looks the names up again.
//
//   LinkWatch         a non-blocking rtnetlink socket on RTMGRP_LINK; the daemon's main loop
//                     polls it (Changed) between signals
//   InterfaceIndexes  the names the running config uses and the index each had when last
//                     looked up; Refresh says which changed
//
// Neither is used on the data path.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sluice {

class LinkWatch {
 public:
  // Opens the socket in the calling thread's network namespace.
  static Result<std::unique_ptr<LinkWatch>> Open();
  ~LinkWatch();
  LinkWatch(const LinkWatch&) = delete;
  LinkWatch& operator=(const LinkWatch&) = delete;

  // Reads every notification waiting, without blocking. True if any said that a link was
  // created, deleted or changed (renames are changes), or if notifications were lost (the
  // socket overran: ENOBUFS), so that the caller looks every name up again.
  bool Changed() noexcept;

 private:
  explicit LinkWatch(int fd) : fd_(fd) {}
  int fd_;
};

class InterfaceIndexes {
 public:
  using Lookup = std::function<uint32_t(const std::string&)>;
  // `lookup`: a name's index now, 0 if there is none (default: if_nametoindex).
  explicit InterfaceIndexes(Lookup lookup = {});

  // The name's index now (0: no such interface); remembered for Refresh.
  uint32_t Resolve(std::string_view name);

  struct Change {
    std::string name;
    uint32_t before;  // 0: it did not exist
    uint32_t after;   // 0: it no longer exists
  };
  // Looks every remembered name up again; returns those whose index changed.
  std::vector<Change> Refresh();

 private:
  Lookup lookup_;
  std::map<std::string, uint32_t, std::less<>> known_;
};

}  // namespace sluice
