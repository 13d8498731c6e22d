#include <cstdio>

#include "tools/sluice/command.h"

namespace sluice::cli {

void RegisterVersion(CLI::App& app, ExitCode& exit_code) {
  auto* cmd = app.add_subcommand("version", "Print the version");
  cmd->callback([&exit_code] {
    std::printf("sluice %s\n", SLUICE_VERSION);
    exit_code.value = 0;
  });
}

}  // namespace sluice::cli
