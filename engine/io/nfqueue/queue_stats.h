// The kernel's own view of its NFQUEUE queues: /proc/net/netfilter/nfnetlink_queue.
//
// One line per bound queue in the reading process's network namespace (the file is per
// namespace), nine columns printed by the kernel's seq_show():
//   queue  portid  queue_total  copy_mode  copy_range  queue_dropped  queue_user_dropped
//   id_sequence  1
// - queue_total: packets queued and not yet verdicted (in the socket buffer or in sluice).
// - queue_dropped: dropped because queue_total reached the queue's maxlen (no fail-open).
// - queue_user_dropped: dropped because the netlink socket buffer was full (ENOBUFS).
// - id_sequence: the last packet id handed out; ids are given to every packet delivered or
//   user-dropped, so id_sequence == delivered + queue_user_dropped (without fail-open).
// The counters are the kernel's 32-bit values (they wrap) and reset when the queue is
// re-bound. Reading costs one open/read/close; call it off the data path (stats export).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sluice {

struct StatsReport;

inline constexpr const char* kNfqueueProcPath = "/proc/net/netfilter/nfnetlink_queue";

struct KernelQueueStats {
  uint32_t queue = 0;
  uint32_t portid = 0;  // netlink port id of the bound socket
  uint32_t queue_total = 0;
  uint32_t copy_mode = 0;  // 0 none, 1 meta, 2 packet
  uint32_t copy_range = 0;
  uint32_t queue_dropped = 0;
  uint32_t queue_user_dropped = 0;
  uint32_t id_sequence = 0;
};

// Parses the file's text. A line that does not have nine unsigned columns is an error that
// names the line; empty text (no queue bound) is an empty vector.
Result<std::vector<KernelQueueStats>> ParseKernelQueueStats(std::string_view text);

// Reads and parses `path` (normally kNfqueueProcPath, or /proc/<pid>/net/netfilter/… to see
// another process's namespace). A missing file means the nfnetlink_queue module is not
// loaded: reported as no queues, not as an error.
Result<std::vector<KernelQueueStats>> ReadKernelQueueStats(
    const std::string& path = kNfqueueProcPath);

// The entry for `queue`, if it is bound.
std::optional<KernelQueueStats> FindQueue(std::span<const KernelQueueStats> all, uint32_t queue);

// Appends the kernel's figures to a stats report as sluice_nfqueue_kernel_<column>{queue="N"}
// (queue_total, queue_dropped, queue_user_dropped, id_sequence).
void AppendKernelQueueStats(std::span<const KernelQueueStats> all, StatsReport& report);

}  // namespace sluice
