// sluice: run, replay, gen, rules, check, stats — see README.md.
#include <CLI/CLI.hpp>

#include "tools/sluice/command.h"

namespace sluice::cli {
// One line per subcommand (each defined in tools/sluice/cmd_<name>.cpp).
void RegisterVersion(CLI::App& app, ExitCode& exit_code);
void RegisterGen(CLI::App& app, ExitCode& exit_code);
void RegisterCheck(CLI::App& app, ExitCode& exit_code);
void RegisterReplay(CLI::App& app, ExitCode& exit_code);
void RegisterRules(CLI::App& app, ExitCode& exit_code);
void RegisterRun(CLI::App& app, ExitCode& exit_code);
}  // namespace sluice::cli

int main(int argc, char** argv) {
  CLI::App app{"sluice: inline packet rewriting over NFQUEUE, divert sockets and pcap files"};
  app.require_subcommand(1);
  sluice::cli::ExitCode exit_code;
  for (sluice::cli::Register reg : {&sluice::cli::RegisterCheck, &sluice::cli::RegisterGen, &sluice::cli::RegisterReplay, &sluice::cli::RegisterRules, &sluice::cli::RegisterRun, &sluice::cli::RegisterVersion}) reg(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help exits 0; any usage error exits 2
  }
  return exit_code.value;
}
