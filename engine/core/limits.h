// Limits shared by the config loader and the graphs, so that a config the loader accepts is one
// the pipelines can run: a value past them is refused at load with file:line:column, never
// found out after the queues are bound.
#pragma once

#include <cstdint>

namespace sluice {

inline constexpr uint32_t kMaxShards = 64;    // shards: kernel queues or divert ports
inline constexpr uint32_t kMaxThreads = 256;  // threads of one task_arena
inline constexpr uint32_t kMaxCpu = 65535;    // the highest CPU number pipeline.cpus may name

}  // namespace sluice
