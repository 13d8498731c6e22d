// CPUs: which this process may run on, and pinning a thread to one (sched_getaffinity and
// pthread_setaffinity_np with dynamically sized sets, so hosts past CPU_SETSIZE work too).
#pragma once

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/limits.h"

namespace sluice {

// Ascending; empty if the kernel would not say.
inline std::vector<uint32_t> AllowedCpus() {
  std::vector<uint32_t> cpus;
  for (int n = CPU_SETSIZE; n <= (1 << 16); n *= 2) {  // EINVAL: the kernel's mask is wider
    cpu_set_t* set = CPU_ALLOC(n);
    if (set == nullptr) return cpus;
    const std::size_t size = CPU_ALLOC_SIZE(n);
    CPU_ZERO_S(size, set);
    if (sched_getaffinity(0, size, set) == 0) {
      for (int c = 0; c < n; ++c) {
        if (CPU_ISSET_S(c, size, set)) cpus.push_back(static_cast<uint32_t>(c));
      }
      CPU_FREE(set);
      return cpus;
    }
    const int e = errno;
    CPU_FREE(set);
    if (e != EINVAL) return cpus;
  }
  return cpus;
}

// The thread count `pipeline.threads = 0` means: one per CPU this process may run on (taskset,
// a cgroup's cpuset), not every online one; 1..kMaxThreads.
inline uint32_t DefaultThreads() {
  const std::size_t allowed = AllowedCpus().size();
  const uint32_t cpus = allowed != 0 ? static_cast<uint32_t>(allowed) : std::thread::hardware_concurrency();
  return std::clamp(cpus, 1u, kMaxThreads);
}

// Runs `thread` on the given CPUs (none: an error); 0, or the error.
inline int SetThreadCpus(pthread_t thread, const std::vector<uint32_t>& cpus) {
  if (cpus.empty()) return EINVAL;
  uint32_t highest = 0;
  for (const uint32_t c : cpus) highest = c > highest ? c : highest;
  cpu_set_t* set = CPU_ALLOC(highest + 1);
  if (set == nullptr) return ENOMEM;
  const std::size_t size = CPU_ALLOC_SIZE(highest + 1);
  CPU_ZERO_S(size, set);
  for (const uint32_t c : cpus) CPU_SET_S(c, size, set);
  const int e = pthread_setaffinity_np(thread, size, set);
  CPU_FREE(set);
  return e;
}

// Runs `thread` on `cpu` alone; 0, or the error.
inline int PinThread(pthread_t thread, uint32_t cpu) { return SetThreadCpus(thread, {cpu}); }

// "0 1 2 3", for messages.
inline std::string CpuList(const std::vector<uint32_t>& cpus) {
  std::string list;
  for (const uint32_t c : cpus) list += (list.empty() ? "" : " ") + std::to_string(c);
  return list;
}

}  // namespace sluice
