// The CPUs this process may run on, for pinning threads (sched_getaffinity).
#pragma once

#include <sched.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

// Ascending; empty if the kernel would not say.
inline std::vector<uint32_t> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<uint32_t> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (uint32_t c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

// "0 1 2 3", for messages.
inline std::string CpuList(const std::vector<uint32_t>& cpus) {
  std::string list;
  for (const uint32_t c : cpus) list += (list.empty() ? "" : " ") + std::to_string(c);
  return list;
}

}  // namespace sluice
