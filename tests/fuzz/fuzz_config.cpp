// libFuzzer target: LoadConfigText on any text, then, when it loads, RuleSet::Compile as a
// start would (sluice check does the same).
// Invariants: no crash, no sanitizer report, no exception escapes; a Config exactly when
// there is no error; every error names the source, a line and column inside the text (1-based;
// one past the end for "missing" errors at the end of the file), a non-empty message; errors
// come sorted by position; a config the loader accepts compiles.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/rules/config_loader.h"
#include "engine/rules/rule_set.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

void Check(std::string_view text) {
  const sluice::ConfigLoad load = sluice::LoadConfigText(text, "fuzz.toml");
  SLUICE_FUZZ_CHECK(load.ok() == load.errors.empty());
  const auto lines = static_cast<uint32_t>(std::count(text.begin(), text.end(), '\n') + 1);
  for (std::size_t i = 0; i < load.errors.size(); ++i) {
    const sluice::ConfigError& e = load.errors[i];
    if (e.line == 0 || e.column == 0 || e.line > lines || e.message.empty() || e.file != "fuzz.toml") {
      std::printf("bad error: %s (the text has %u lines)\n", e.ToString().c_str(), lines);
      std::abort();
    }
    if (i > 0) {
      const sluice::ConfigError& p = load.errors[i - 1];
      SLUICE_FUZZ_CHECK(p.line < e.line || (p.line == e.line && p.column <= e.column));
    }
  }
  if (!load.ok()) return;
  sluice::RuleSetOptions options;
  options.shards = load.config->pipeline.shards;
  auto rules = sluice::RuleSet::Compile(*load.config, options);
  if (!rules.ok()) {
    std::printf("loaded but does not compile: %s\n", rules.status().message().c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  Check(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
