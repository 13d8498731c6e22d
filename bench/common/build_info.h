// What a measurement ran on: the conditions every bench and gate result records (MEASURE.md:
// "every harness prints the conditions"). Gathered once at start, off any measured path.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace sluice::bench {

// Key/value pairs, in a fixed order: sluice_version, sluice_commit, build_type, compiler,
// kernel, glibc, onetbb, allocator, tcprewrite. A value that cannot be found is "unknown"
// (tcprewrite: "missing"), never an error.
std::vector<std::pair<std::string, std::string>> BuildConditions();

}  // namespace sluice::bench
