// The iptables (and ip6tables) commands that send traffic to sluice's NFQUEUE queues.
//
//   mangle <chain>:  packets without sluice's mark → NFQUEUE --queue-balance first:last
//                    [--queue-bypass when fail-open: no listener, traffic still flows]
//   filter <chain>:  packets still without sluice's mark are counted (rule "sluice-unmarked"):
//                    the ones that passed unseen — bypassed, failed open, or never queued.
//
// The mangle table's hook runs before the filter table's on the same chain, and a verdict
// resumes at the next hook, so the counter sees every packet the queue rule let through.
// The kernel hashes --queue-balance over (saddr, daddr, proto): both directions of a flow
// reach the same queue, which is the shard that holds its translation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace sluice {

struct IptablesRulesOptions {
  uint16_t queue_first = 0;
  uint16_t queue_count = 1;
  bool bypass = true;                          // --queue-bypass (fail-open when no listener)
  uint32_t verdict_mark = 0x40000000;          // the loop guard
  uint32_t verdict_mask = 0x40000000;
  std::vector<std::string> chains = {"FORWARD"};  // FORWARD for a router; INPUT/OUTPUT for a host
  bool ipv4 = true;
  bool ipv6 = true;
  bool remove = false;                         // -D instead of -A: undo what an install added
};

// A POSIX shell script (one command per line) that installs or removes the rules.
Result<std::string> GenerateIptablesRules(const IptablesRulesOptions& options);

}  // namespace sluice
