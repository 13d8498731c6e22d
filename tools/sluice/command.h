// The `sluice` command line: one file per subcommand, each adding itself to the app here.
//
// A subcommand parses its options with CLI11, runs, and returns the process exit code:
// 0 success, 1 the work failed (bad input, I/O error), 2 a usage error (CLI11 reports those).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace sluice::cli {

// Set by a subcommand's callback; main() returns it.
struct ExitCode {
  int value = 0;
};

// Each subcommand: adds itself to `app`; on run, stores its exit code in `exit_code`.
using Register = void (*)(CLI::App& app, ExitCode& exit_code);

}  // namespace sluice::cli
