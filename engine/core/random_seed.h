// A 64-bit seed from the kernel's random source, never 0 (0 means "draw one" in every option
// that takes a seed). For hash and port-choice seeds, read once at start-up: not a hot path.
#pragma once

#include <sys/random.h>

#include <cstdint>
#include <random>

namespace sluice {

inline uint64_t RandomSeed() {
  uint64_t v = 0;
  while (v == 0) {
    if (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
      std::random_device rd;
      v = (uint64_t{rd()} << 32) | rd();
    }
  }
  return v;
}

}  // namespace sluice
