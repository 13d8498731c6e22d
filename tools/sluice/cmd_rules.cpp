// sluice rules -c CONFIG --firewall iptables|ipfw: the firewall rules that divert traffic to
// the queues or divert ports the config names, sharded by flow, with sluice's loop guard.
// Prints a script to review and run (`sh`, or `ipfw -q FILE`); changes nothing itself.
#include <cstdio>

#include "engine/io/divert/ipfw_rules.h"
#include "engine/io/nfqueue/iptables_rules.h"
#include "engine/rules/config_loader.h"
#include "tools/sluice/command.h"

namespace sluice::cli {
namespace {

struct RulesArgs {
  std::vector<std::string> iptables_only, ipfw_only;  // options given that belong to one firewall
  std::string config;
  std::string firewall;
  std::vector<std::string> chains;
  std::vector<std::string> interfaces;
  bool remove = false;
  bool no_ipv4 = false, no_ipv6 = false;
  uint32_t rule_base = 10000, rule_step = 10, divert_set = 20, bypass_set = 21;
};

int Rules(const RulesArgs& a) {
  ConfigLoad load = LoadConfigFile(a.config);
  if (!load.ok()) {
    for (const ConfigError& e : load.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    return 1;
  }
  const Config& c = *load.config;
  // An option of the other firewall would be silently ignored: refuse it instead.
  const std::vector<std::string>& foreign = a.firewall == "iptables" ? a.ipfw_only : a.iptables_only;
  if (!foreign.empty()) {
    std::fprintf(stderr, "sluice rules: %s applies to --firewall %s only\n", foreign[0].c_str(),
                 a.firewall == "iptables" ? "ipfw" : "iptables");
    return 1;
  }
  Result<std::string> script = std::string();
  if (a.firewall == "iptables") {
    IptablesRulesOptions o;
    o.queue_first = c.io.nfqueue.queue_first;
    o.queue_count = c.io.nfqueue.queue_count;
    o.bypass = c.io.nfqueue.fail_open;
    o.verdict_mark = c.io.nfqueue.verdict_mark;
    o.verdict_mask = c.io.nfqueue.verdict_mask;
    if (!a.chains.empty()) o.chains = a.chains;
    o.ipv4 = !a.no_ipv4;
    o.ipv6 = !a.no_ipv6;
    o.remove = a.remove;
    script = GenerateIptablesRules(o);
  } else {
    IpfwRulesOptions o;
    o.ports = c.io.divert.ports;
    o.rule_base = a.rule_base;
    o.rule_step = a.rule_step;
    o.divert_set = a.divert_set;
    o.bypass_set = a.bypass_set;
    o.interfaces = a.interfaces;
    o.ipv4 = !a.no_ipv4;
    o.ipv6 = !a.no_ipv6;
    o.remove = a.remove;
    script = GenerateIpfwRules(o);
  }
  if (!script.ok()) {
    std::fprintf(stderr, "sluice rules: %s\n", script.status().message().c_str());
    return 1;
  }
  std::fputs(script->c_str(), stdout);
  return 0;
}

}  // namespace

void RegisterRules(CLI::App& app, ExitCode& exit_code) {
  auto a = std::make_shared<RulesArgs>();
  auto* cmd = app.add_subcommand("rules", "Print the firewall rules that divert traffic to sluice, sharded by flow");
  cmd->add_option("-c,--config", a->config, "Config file (its [io] section names the queues or ports)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--firewall", a->firewall, "iptables (Linux NFQUEUE) or ipfw (FreeBSD divert)")
      ->required()
      ->check(CLI::IsMember({"iptables", "ipfw"}));
  CLI::Option* chain =
      cmd->add_option("--chain", a->chains, "iptables: chains to queue from (default FORWARD; INPUT/OUTPUT on a host)");
  cmd->add_flag("--remove", a->remove, "Print the commands that remove the rules instead");
  CLI::Option* ipfw[] = {
      cmd->add_option("--interface", a->interfaces, "ipfw: divert only traffic crossing these interfaces"),
      cmd->add_option("--rule-base", a->rule_base, "ipfw: number of the first rule"),
      cmd->add_option("--rule-step", a->rule_step, "ipfw: step between rule numbers"),
      cmd->add_option("--divert-set", a->divert_set, "ipfw: the set holding the divert rules"),
      cmd->add_option("--bypass-set", a->bypass_set, "ipfw: the set holding the fail-open pass rules"),
  };
  cmd->add_flag("--no-ipv4", a->no_ipv4, "No IPv4 rules");
  cmd->add_flag("--no-ipv6", a->no_ipv6, "No IPv6 rules");
  cmd->callback([a, chain, ipfw, &exit_code] {
    a->iptables_only.clear();
    a->ipfw_only.clear();
    if (chain->count() != 0) a->iptables_only.push_back(chain->get_name());
    for (CLI::Option* o : ipfw) {
      if (o->count() != 0) a->ipfw_only.push_back(o->get_name());
    }
    exit_code.value = Rules(*a);
  });
}

}  // namespace sluice::cli
