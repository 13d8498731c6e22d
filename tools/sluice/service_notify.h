// systemd's service notification protocol (sd_notify(3)), spoken by hand: one datagram of
// "KEY=value" lines to the unix socket named by $NOTIFY_SOCKET. It is a few lines, and
// libsystemd is not among the project's dependencies. With it, a unit of Type=notify starts
// what depends on sluice only once its queues are bound (READY=1), sees reloads (RELOADING=1
// then READY=1) and the drain (STOPPING=1), and with WatchdogSec= restarts a daemon whose
// queue threads stopped turning; NFQUEUE's --queue-bypass carries the traffic meanwhile.
//
// The socket is opened and connected when the notifier is made, before the daemon drops its
// privileges, so that the notifications still go out as `--user nobody`.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sluice::cli {

class ServiceNotifier {
 public:
  // From the values of NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (null when unset), for
  // process `pid`. No socket: a notifier that sends nothing. A socket that cannot be opened
  // is an error (the service manager would wait for a READY=1 that never comes).
  static Result<ServiceNotifier> Open(const char* socket, const char* watchdog_usec, const char* watchdog_pid,
                                      int64_t pid);
  ServiceNotifier() = default;
  ~ServiceNotifier();
  ServiceNotifier(ServiceNotifier&& other) noexcept;
  ServiceNotifier& operator=(ServiceNotifier&& other) noexcept;
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  bool enabled() const noexcept { return fd_ >= 0; }
  // The watchdog interval the manager asked for (WATCHDOG_USEC, for this process), if any.
  std::optional<std::chrono::microseconds> watchdog() const noexcept { return watchdog_; }
  // Sends `state` ("READY=1", "STATUS=…", several separated by newlines). Ok when disabled.
  Status Send(std::string_view state) const;

 private:
  int fd_ = -1;
  std::optional<std::chrono::microseconds> watchdog_;
};

// When to pet the watchdog: every `every` (half of WatchdogSec), as long as every queue's I/O
// thread has turned (received a batch, or waited out a receive wait) since the last pet. While
// one has not, nothing is sent and the caller keeps looking (every loop pass), so the pet goes
// out as soon as they all turn again; a thread stuck for good stops the pets, and the manager
// restarts the daemon. One turn may legitimately take about a second (a verdict socket's
// back-pressure wait), so WatchdogSec below a few seconds restarts healthy daemons.
class WatchdogPacer {
 public:
  using Clock = std::chrono::steady_clock;
  explicit WatchdogPacer(Clock::duration every) : every_(every) {}

  // Whether to send WATCHDOG=1 now; `turns` are the I/O threads' loop counts now.
  bool ShouldPet(Clock::time_point now, std::span<const uint64_t> turns);
  // How long the caller may wait before it looks again, at most `cap`.
  Clock::duration UntilNextLook(Clock::time_point now, Clock::duration cap) const;
  // The threads that had not turned at the last look that was due (their indexes).
  const std::vector<uint32_t>& stalled() const noexcept { return stalled_; }

 private:
  Clock::duration every_;
  Clock::time_point next_{};  // the earliest next pet
  std::vector<uint64_t> at_last_pet_;
  std::vector<uint32_t> stalled_;
};

}  // namespace sluice::cli
