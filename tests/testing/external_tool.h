// Running the external tools that tests compare against (tshark, tcprewrite). They are
// installed by tools/bootstrap; a test that needs one FAILS when it is missing, never skips.
#pragma once

#include <string>

namespace sluice::testing {

// True when `name` is an executable on PATH.
bool HaveTool(const std::string& name);

struct ToolRun {
  int exit_code = -1;  // the command's exit status; -1 when it could not be run
  std::string output;  // its standard output (standard error goes to `errors`)
  std::string errors;
};

// Runs a shell command line; captures stdout and stderr.
ToolRun RunTool(const std::string& command);

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction
// (kept, and its path printed, when SLUICE_KEEP_TEMP is set).
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace sluice::testing
