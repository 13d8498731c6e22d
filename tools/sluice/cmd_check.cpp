// sluice check -c FILE: validates a config completely, as a start or a reload would.
//
// Exit 0 and a short summary when the file is good; exit 1 and every error, one per line as
// file:line:column: key: message (on stderr), when it is not. Checking changes nothing: it
// reads the file, compiles the rules in memory and throws them away.
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "engine/rules/config_loader.h"
#include "engine/rules/rule_set.h"
#include "tools/sluice/command.h"

namespace sluice::cli {
namespace {

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

void PrintSummary(const Config& c, const RuleSet& rs) {
  std::printf("%s: OK\n", c.source.c_str());
  switch (c.io.backend) {
    case Backend::kPcap:
      std::printf("  io        pcap%s%s\n", c.io.pcap.input.empty() ? "" : (" in " + c.io.pcap.input).c_str(),
                  c.io.pcap.output.empty() ? "" : (", out " + c.io.pcap.output).c_str());
      break;
    case Backend::kNfqueue: {
      const NfqueueIoConfig& q = c.io.nfqueue;
      std::printf("  io        nfqueue %u-%u, maxlen %u, rcvbuf %u, %s, loop guard mark %s/%s\n", q.queue_first,
                  q.queue_first + q.queue_count - 1u, q.queue_maxlen, q.rcvbuf_bytes,
                  q.fail_open ? "fail-open" : "fail-closed", Hex(q.verdict_mark).c_str(), Hex(q.verdict_mask).c_str());
      std::string outside;
      for (const std::string& name : q.outside_interfaces) outside += (outside.empty() ? "" : ", ") + name;
      std::printf("  outside   %s\n", outside.empty() ? "(none: forwarded packets have no direction)" : outside.c_str());
      if (const std::string note = DirectionNote(c); !note.empty()) std::printf("  note      %s\n", note.c_str());
      break;
    }
    case Backend::kDivert: {
      std::string ports;
      for (uint16_t p : c.io.divert.ports) ports += (ports.empty() ? "" : ",") + std::to_string(p);
      std::printf("  io        divert ports %s\n", ports.c_str());
      break;
    }
  }
  const PipelineConfig& p = c.pipeline;
  std::printf("  pipeline  %u shard%s, batch %u, %s threads, pool %u+%u buffers\n", p.shards, p.shards == 1 ? "" : "s",
              p.batch_size, p.threads == 0 ? "auto" : std::to_string(p.threads).c_str(), p.pool.small_buffers,
              p.pool.large_buffers);
  std::map<RuleAction, int> by_action;
  for (const RuleConfig& r : c.rules) by_action[r.action]++;
  std::string actions;
  for (const auto& [a, n] : by_action) actions += (actions.empty() ? "" : ", ") + std::to_string(n) + " " + std::string(Name(a));
  std::printf("  rules     %zu%s%s; default %s\n", c.rules.size(), actions.empty() ? "" : ": ", actions.c_str(),
              c.classify.default_action == DefaultAction::kDrop ? "drop" : "accept");
  if (by_action.count(RuleAction::kTranslateSourcePort) != 0) {
    std::printf("  nat       %u flows per shard, %s when full\n", c.nat.max_flows,
                c.nat.on_full == NatFullPolicy::kDropNew ? "drop new" : "evict oldest");
  }
  const ClassifierStats& s = rs.classifier_stats();
  std::printf("  compiled  %u match records, trees %u, nodes %u, leaves %u (largest %u), %llu KiB\n", s.records, s.trees,
              s.nodes, s.leaves, s.max_leaf, static_cast<unsigned long long>(s.bytes / 1024));
}

}  // namespace

void RegisterCheck(CLI::App& app, ExitCode& exit_code) {
  auto path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("check", "Validate a config file (exit 0 if good, 1 with every error if not)");
  cmd->add_option("-c,--config", *path, "The TOML config to check")->required();
  cmd->callback([path, &exit_code] {
    const ConfigLoad load = LoadConfigFile(*path);
    if (!load.ok()) {
      for (const ConfigError& e : load.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
      std::fprintf(stderr, "%s: %zu error%s\n", path->c_str(), load.errors.size(), load.errors.size() == 1 ? "" : "s");
      exit_code.value = 1;
      return;
    }
    RuleSetOptions options;
    options.shards = load.config->pipeline.shards;
    auto rs = RuleSet::Compile(*load.config, options);
    if (!rs.ok()) {
      std::fprintf(stderr, "%s: %s\n", path->c_str(), rs.status().message().c_str());
      exit_code.value = 1;
      return;
    }
    PrintSummary(*load.config, *rs.value());
    exit_code.value = 0;
  });
}

}  // namespace sluice::cli
