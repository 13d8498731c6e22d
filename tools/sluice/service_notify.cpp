#include "tools/sluice/service_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

namespace sluice::cli {

namespace {

std::optional<int64_t> ParseInt(const char* s) {
  if (s == nullptr || *s == '\0') return std::nullopt;
  int64_t v = 0;
  const char* end = s + std::strlen(s);
  const auto [p, ec] = std::from_chars(s, end, v);
  if (ec != std::errc() || p != end) return std::nullopt;
  return v;
}

}  // namespace

Result<ServiceNotifier> ServiceNotifier::Open(const char* socket_path, const char* watchdog_usec,
                                              const char* watchdog_pid, int64_t pid) {
  ServiceNotifier n;
  if (socket_path == nullptr || *socket_path == '\0') return n;
  const std::string_view path(socket_path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // A path (with its NUL), or "@name" for an abstract socket (a leading NUL byte instead of
  // the @, no NUL after).
  const bool abstract = path[0] == '@';
  if ((path[0] != '/' && !abstract) || path.size() + (abstract ? 0 : 1) > sizeof addr.sun_path) {
    return InvalidArgument("NOTIFY_SOCKET: expected an absolute path or @name under " +
                           std::to_string(sizeof addr.sun_path) + " bytes, got \"" + std::string(path) + "\"");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (abstract) addr.sun_path[0] = '\0';
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return IoError(std::string("NOTIFY_SOCKET: socket: ") + std::strerror(errno));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    const int e = errno;
    close(fd);
    return IoError("NOTIFY_SOCKET " + std::string(path) + ": " + std::strerror(e));
  }
  n.fd_ = fd;
  // The watchdog is this process's when WATCHDOG_PID is unset or names it (sd_watchdog_enabled).
  const std::optional<int64_t> usec = ParseInt(watchdog_usec);
  const std::optional<int64_t> for_pid = ParseInt(watchdog_pid);
  if (usec && *usec > 0 && (!for_pid || *for_pid == pid)) n.watchdog_ = std::chrono::microseconds(*usec);
  return n;
}

ServiceNotifier::~ServiceNotifier() {
  if (fd_ >= 0) close(fd_);
}

ServiceNotifier::ServiceNotifier(ServiceNotifier&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), watchdog_(other.watchdog_) {}

ServiceNotifier& ServiceNotifier::operator=(ServiceNotifier&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    watchdog_ = other.watchdog_;
  }
  return *this;
}

Status ServiceNotifier::Send(std::string_view state) const {
  if (fd_ < 0) return Status::Ok();
  for (;;) {
    // Never blocks the daemon's main loop (and its drain) on a busy manager: a full socket is an
    // error, reported, and the next state goes out.
    if (send(fd_, state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT) == static_cast<ssize_t>(state.size())) {
      return Status::Ok();
    }
    if (errno != EINTR) return IoError(std::string("NOTIFY_SOCKET: send: ") + std::strerror(errno));
  }
}

bool WatchdogPacer::ShouldPet(Clock::time_point now, std::span<const uint64_t> turns) {
  if (now < next_) return false;
  stalled_.clear();
  if (at_last_pet_.size() == turns.size()) {
    for (std::size_t i = 0; i < turns.size(); ++i) {
      if (turns[i] == at_last_pet_[i]) stalled_.push_back(static_cast<uint32_t>(i));
    }
  }
  if (!stalled_.empty()) return false;
  at_last_pet_.assign(turns.begin(), turns.end());
  next_ = now + every_;
  return true;
}

WatchdogPacer::Clock::duration WatchdogPacer::UntilNextLook(Clock::time_point now, Clock::duration cap) const {
  return now >= next_ ? cap : std::min(cap, next_ - now);
}

}  // namespace sluice::cli
