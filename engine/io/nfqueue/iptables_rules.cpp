#include "engine/io/nfqueue/iptables_rules.h"

#include <cstdio>

namespace sluice {
namespace {

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

bool ValidChain(const std::string& c) {
  return c == "PREROUTING" || c == "INPUT" || c == "FORWARD" || c == "OUTPUT" || c == "POSTROUTING";
}

}  // namespace

Result<std::string> GenerateIptablesRules(const IptablesRulesOptions& o) {
  if (o.queue_count == 0 || uint32_t{o.queue_first} + o.queue_count > 65536) {
    return InvalidArgument("queues " + std::to_string(o.queue_first) + " + " + std::to_string(o.queue_count) +
                           " do not fit 0..65535");
  }
  if (o.verdict_mark == 0 || (o.verdict_mark & ~o.verdict_mask) != 0) {
    return InvalidArgument("the verdict mark must be non-zero and inside its mask");
  }
  if (o.chains.empty()) return InvalidArgument("no chain to queue from");
  for (const std::string& c : o.chains) {
    if (!ValidChain(c)) return InvalidArgument("'" + c + "' is not a built-in chain (PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING)");
    // filter has no PREROUTING/POSTROUTING: count those in mangle's next hook instead.
  }
  if (!o.ipv4 && !o.ipv6) return InvalidArgument("neither IPv4 nor IPv6 asked for");

  const std::string guard = Hex(o.verdict_mark) + "/" + Hex(o.verdict_mask);
  const std::string last = std::to_string(o.queue_first + o.queue_count - 1);
  const std::string queue = o.queue_count == 1 ? "--queue-num " + std::to_string(o.queue_first)
                                               : "--queue-balance " + std::to_string(o.queue_first) + ":" + last;
  const std::string op = o.remove ? "-D" : "-A";

  std::string out = "#!/bin/sh\n";
  out += "# sluice: " + std::string(o.remove ? "remove" : "install") + " NFQUEUE rules for queues " +
         std::to_string(o.queue_first) + ".." + last + (o.bypass ? ", fail-open (--queue-bypass)" : ", fail-closed") +
         ", loop guard mark " + guard + ".\n";
  out += "# Packets sluice has verdicted carry the mark and are not queued again; the\n";
  out += "# 'sluice-unmarked' counter (iptables -t filter -L -v) counts packets that passed unseen.\n";
  out += "set -e\n";
  for (const char* tool : {"iptables", "ip6tables"}) {
    if ((tool[2] == '6' && !o.ipv6) || (tool[2] != '6' && !o.ipv4)) continue;
    for (const std::string& chain : o.chains) {
      out += std::string(tool) + " -w -t mangle " + op + " " + chain + " -m mark ! --mark " + guard +
             " -m comment --comment sluice-queue -j NFQUEUE " + queue + (o.bypass ? " --queue-bypass" : "") + "\n";
      const bool filter_has_chain = chain == "INPUT" || chain == "FORWARD" || chain == "OUTPUT";
      if (filter_has_chain) {
        out += std::string(tool) + " -w -t filter " + op + " " + chain + " -m mark ! --mark " + guard +
               " -m comment --comment sluice-unmarked\n";
      }
    }
  }
  return out;
}

}  // namespace sluice
