// A fuzz-target invariant: on failure, print it and abort, so libFuzzer keeps the input as a
// crash (tools/fuzz reports it; replay with the target and the file).
#pragma once

#include <cstdlib>

#define SLUICE_FUZZ_CHECK(cond)                                                       \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      __builtin_printf("%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);  \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)
