// Reading a sluice config: TOML text → a validated Config, or every error found.
//
// Contract: the result has a Config exactly when no error was found. Each error names the
// file, the 1-based line and column of the offending value (or key, or table header), the
// dotted key (`rule[2].match.dst_port`, rules counted from 0 in file order) and what was
// expected. Errors are sorted by position. Nothing here touches the data path or any running
// state: callers apply a Config only after it loaded cleanly (RuleSetHandle::Reload).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "engine/rules/config.h"

namespace sluice {

struct ConfigError {
  std::string file;
  uint32_t line = 0;
  uint32_t column = 0;
  std::string key;      // dotted path; "" for a TOML syntax error with no key
  std::string message;  // what was wrong and what is expected

  // "file:line:column: key: message"
  std::string ToString() const;
};

struct ConfigLoad {
  std::optional<Config> config;       // set if and only if errors is empty
  std::vector<ConfigError> errors;

  bool ok() const noexcept { return config.has_value(); }
  // kInvalidArgument with one error per line, or Ok.
  Status ToStatus() const;
};

// `source_name` is used in messages (normally the file path).
ConfigLoad LoadConfigText(std::string_view text, std::string source_name = "<text>");
ConfigLoad LoadConfigFile(const std::string& path);

// The rule checks that depend on the shard count, for a count other than the file's (replay's
// --shards): each error names the rule's [[rule]] header and its key; `shards_from` says in
// the message where the count came from.
std::vector<ConfigError> CheckRulesForShards(const Config& config, uint32_t shards, std::string_view shards_from);

// pipeline.cpus against the CPUs this process may run on (`allowed`, AllowedCpus()): one
// error per CPU it may not, at its place in the file. Only the host that pins threads asks.
std::vector<ConfigError> CheckCpusForThisHost(const Config& config, std::span<const uint32_t> allowed);

// What a reload (SIGHUP) of `next` over the running `current` cannot apply. start_only: the
// sections read only at start that differ ("io", "pipeline", "parse", "nat"); they apply at the
// next start. guard_changed: io.nfqueue's verdict_mark or verdict_mask differ; the endpoints
// keep setting the running guard and rule marks are checked against it, so such a reload must
// be refused.
struct ReloadCheck {
  std::vector<std::string> start_only;
  bool guard_changed = false;
};
ReloadCheck CompareForReload(const Config& current, const Config& next);

// A valid config that probably does not do what it says: NFQUEUE rules that match on
// `direction` while io.nfqueue.outside_interfaces is empty, so forwarded packets (the FORWARD
// hook, `sluice rules`' default) have none and those rules never match them. "" when not.
std::string DirectionNote(const Config& config);

}  // namespace sluice
