// Interfaces that come and go under a running daemon. NFQUEUE names interfaces by index
// (NFQA_IFINDEX_*), and an index belongs to one incarnation of an interface: a tunnel, PPP
// link or VLAN that is deleted and created again comes back under a new index, and a rename
// moves a name to another index. Resolved once, a rule naming such an interface silently
// stops matching. natd's -dynamic answers the same problem for its alias address by watching
// the routing socket; sluice watches rtnetlink's link group and looks the names up again.
//
//   LinkWatch         a non-blocking rtnetlink socket on RTMGRP_LINK; the daemon's main loop
//                     polls it (Changed) between signals
//   InterfaceFollower the names the running config uses and the indexes the rules and the
//                     endpoints hold; says which went stale
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

// The interface names a running config uses, and the indexes its two users hold: the compiled
// rules (in_interface, out_interface) and the endpoints (outside_interfaces). What the rules
// hold is recorded while they compile (ForRules, their interface_id) and kept only if the
// compile succeeds (EndRulesCompile), so a SIGHUP that picked up a new index is not taken
// for a change still to make, and a compile that failed is tried again.
class InterfaceFollower {
 public:
  using Lookup = std::function<uint32_t(const std::string&)>;
  // `outside`: io.nfqueue.outside_interfaces. `lookup`: a name's index now, 0 if there is
  // none (default: if_nametoindex).
  explicit InterfaceFollower(std::vector<std::string> outside = {}, Lookup lookup = {});

  // The rules' interface_id: the name's index now, recorded for the compile under way.
  uint32_t ForRules(std::string_view name);
  // The compile under way is over: if it succeeded its indexes are the running rules'.
  void EndRulesCompile(bool succeeded);

  struct Change {
    std::string name;
    uint32_t before;  // 0: it did not exist
    uint32_t after;   // 0: it no longer exists
  };
  // The names whose index now differs from the one the running rules were compiled with.
  std::vector<Change> RulesStale() const;

  // The outside interfaces' indexes now, one per name in config order (0: no such
  // interface), so that each entry belongs to one name.
  std::vector<uint32_t> Outside() const;
  const std::vector<std::string>& outside_names() const noexcept { return outside_; }

 private:
  Lookup lookup_;
  std::vector<std::string> outside_;
  std::map<std::string, uint32_t, std::less<>> rules_;      // what the running rules hold
  std::map<std::string, uint32_t, std::less<>> compiling_;  // what the compile under way holds
};

}  // namespace sluice
