#include "bench/common/build_info.h"

#include <gnu/libc-version.h>
#include <oneapi/tbb/version.h>
#include <sys/utsname.h>

#include <cstdio>
#include <memory>

#include "build_info_generated.h"  // SLUICE_BUILD_COMMIT, written at build time

namespace sluice::bench {
namespace {

std::string Compiler() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown";
#endif
}

std::string Kernel() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  return std::string(u.sysname) + " " + u.release + " " + u.machine;
}

// The first line of `tcprewrite -V` ("tcprewrite version: 4.4.3 (build git:v4.4.3)"), the peer
// perf/run measures against. About 5 ms: one fork and exec.
std::string Tcprewrite() {
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen("tcprewrite -V 2>&1", "r"), pclose);
  if (!p) return "missing";
  char line[256] = {};
  if (std::fgets(line, sizeof line, p.get()) == nullptr) return "missing";
  std::string s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  const std::string prefix = "tcprewrite version: ";
  if (s.rfind(prefix, 0) != 0) return "missing";
  return s.substr(prefix.size());
}

}  // namespace

std::vector<std::pair<std::string, std::string>> BuildConditions() {
  return {
      {"sluice_version", SLUICE_VERSION},
      {"sluice_commit", SLUICE_BUILD_COMMIT},
      {"build_type", SLUICE_BUILD_TYPE},
      {"compiler", Compiler()},
      {"kernel", Kernel()},
      {"glibc", gnu_get_libc_version()},
      {"onetbb", std::string(TBB_VERSION_STRING) + " (runtime " + TBB_runtime_version() + ")"},
#if defined(SLUICE_WITH_MIMALLOC)
      {"allocator", "mimalloc"},
#else
      {"allocator", "glibc"},
#endif
      {"tcprewrite", Tcprewrite()},
  };
}

}  // namespace sluice::bench
