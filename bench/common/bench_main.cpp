// The main of every bench/ executable: Google Benchmark's, plus the conditions of the run in
// the JSON "context" (and the console header): sluice version and commit, build type, compiler,
// kernel, glibc, oneTBB, allocator and the tcprewrite version perf/run compares against.
#include <benchmark/benchmark.h>

#include "bench/common/build_info.h"

int main(int argc, char** argv) {
  for (const auto& [key, value] : sluice::bench::BuildConditions()) benchmark::AddCustomContext(key, value);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
