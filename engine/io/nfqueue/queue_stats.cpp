#include "engine/io/nfqueue/queue_stats.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <utility>

#include "engine/stats/report.h"

namespace sluice {

Result<std::vector<KernelQueueStats>> ParseKernelQueueStats(std::string_view text) {
  std::vector<KernelQueueStats> out;
  uint32_t line_no = 0;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    ++line_no;
    std::array<uint64_t, 9> col{};
    std::size_t n = 0;
    std::size_t pos = 0;
    bool bad = false;
    while (pos < line.size()) {
      if (line[pos] == ' ' || line[pos] == '\t') {
        ++pos;
        continue;
      }
      if (n == col.size()) {
        bad = true;
        break;
      }
      const char* first = line.data() + pos;
      const char* last = line.data() + line.size();
      const auto [end, ec] = std::from_chars(first, last, col[n]);
      if (ec != std::errc() || (end != last && *end != ' ' && *end != '\t') ||
          col[n] > UINT32_MAX) {
        bad = true;
        break;
      }
      pos = static_cast<std::size_t>(end - line.data());
      ++n;
    }
    if (n == 0 && !bad) continue;  // blank line
    if (bad || n != col.size()) {
      return InvalidArgument("nfnetlink_queue line " + std::to_string(line_no) +
                             ": expected 9 unsigned columns, got '" + std::string(line) + "'");
    }
    KernelQueueStats s;
    s.queue = static_cast<uint32_t>(col[0]);
    s.portid = static_cast<uint32_t>(col[1]);
    s.queue_total = static_cast<uint32_t>(col[2]);
    s.copy_mode = static_cast<uint32_t>(col[3]);
    s.copy_range = static_cast<uint32_t>(col[4]);
    s.queue_dropped = static_cast<uint32_t>(col[5]);
    s.queue_user_dropped = static_cast<uint32_t>(col[6]);
    s.id_sequence = static_cast<uint32_t>(col[7]);
    out.push_back(s);
  }
  return out;
}

Result<std::vector<KernelQueueStats>> ReadKernelQueueStats(const std::string& path) {
  auto file = KernelQueueStatsFile::Open(path);
  if (!file.ok()) {
    if (errno == ENOENT) return std::vector<KernelQueueStats>{};
    return file.status();
  }
  return file->Read();
}

Result<KernelQueueStatsFile> KernelQueueStatsFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    Status s = IoError(path + ": " + std::strerror(e));
    errno = e;
    return s;
  }
  KernelQueueStatsFile f;
  f.fd_ = fd;
  f.path_ = path;
  return f;
}

KernelQueueStatsFile::KernelQueueStatsFile(KernelQueueStatsFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

KernelQueueStatsFile& KernelQueueStatsFile::operator=(KernelQueueStatsFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

KernelQueueStatsFile::~KernelQueueStatsFile() {
  if (fd_ >= 0) close(fd_);
}

Result<std::vector<KernelQueueStats>> KernelQueueStatsFile::Read() const {
  if (fd_ < 0) return IoError("the kernel's queue statistics file is not open");
  std::string text;
  char chunk[4096];
  // pread from 0 each time: a seq_file starts over when asked for an offset it is not at.
  for (off_t at = 0;;) {
    const ssize_t n = pread(fd_, chunk, sizeof chunk, at);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(path_ + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
    at += n;
  }
  auto parsed = ParseKernelQueueStats(text);
  if (!parsed.ok()) return IoError(path_ + ": " + parsed.status().message());
  return parsed;
}

std::optional<KernelQueueStats> FindQueue(std::span<const KernelQueueStats> all, uint32_t queue) {
  for (const KernelQueueStats& s : all) {
    if (s.queue == queue) return s;
  }
  return std::nullopt;
}

void AppendKernelQueueStats(std::span<const KernelQueueStats> all, StatsReport& report) {
  for (const KernelQueueStats& k : all) {
    const std::vector<std::pair<std::string, std::string>> labels = {
        {"queue", std::to_string(k.queue)}};
    report.counters.push_back({"nfqueue_kernel_queued",
                               "packets queued and not yet verdicted (kernel)", k.queue_total,
                               labels, /*gauge=*/true});
    report.counters.push_back({"nfqueue_kernel_queue_dropped",
                               "packets dropped because the queue was at its maxlen (kernel)",
                               k.queue_dropped, labels});
    report.counters.push_back(
        {"nfqueue_kernel_queue_user_dropped",
         "packets dropped because the netlink socket buffer was full (kernel)",
         k.queue_user_dropped, labels});
    report.counters.push_back({"nfqueue_kernel_id_sequence", "last packet id the kernel handed out",
                               k.id_sequence, labels, /*gauge=*/true});  // wraps at 2^32
  }
}

}  // namespace sluice
