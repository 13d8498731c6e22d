#include "tools/sluice/stats_file.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace sluice::cli {
namespace {

// Where a path that does not resolve yet leads: `path`, or what its chain of symbolic links
// names (a dangling link's target is created, the link kept).
std::string FollowLinks(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p = path;
  std::error_code ec;
  for (int hops = 0; hops < 40 && fs::is_symlink(fs::symlink_status(p, ec)); ++hops) {
    const fs::path target = fs::read_symlink(p, ec);
    if (ec) break;
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
  return p.string();
}

// A FIFO, a terminal or a socket: written in place, never stalling the caller (the daemon's
// main thread also takes its signals): a FIFO with no reader is an error at once
// (O_NONBLOCK), and a reader that stops reading one after kInPlaceWaitMs.
constexpr int kInPlaceWaitMs = 1000;

Status WriteInPlace(const std::string& path, const std::string& contents) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return IoError(path + ": " + std::strerror(errno));
  std::size_t done = 0;
  int error = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      const int ready = ::poll(&p, 1, kInPlaceWaitMs);
      if (ready > 0) continue;
      error = ready == 0 ? ETIMEDOUT : errno;
      break;
    }
    error = n < 0 ? errno : EIO;
    break;
  }
  ::close(fd);
  if (error != 0) return IoError(path + ": write failed: " + std::strerror(error));
  return Status::Ok();
}

}  // namespace

Status WriteFileAtomically(const std::string& path_given, const std::string& contents) {
  std::string path;
  struct stat st {};
  if (::stat(path_given.c_str(), &st) == 0) {  // follows every link, /proc's fd links too
    if (S_ISDIR(st.st_mode)) return IoError(path_given + ": is a directory");
    if (!S_ISREG(st.st_mode)) return WriteInPlace(path_given, contents);
    char* real = ::realpath(path_given.c_str(), nullptr);
    path = real != nullptr ? real : path_given;
    std::free(real);
  } else {
    path = FollowLinks(path_given);  // a new file, or one a dangling link names
  }
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return IoError(tmp + ": " + std::strerror(errno));
  const bool wrote = std::fwrite(contents.data(), 1, contents.size(), f) == contents.size();
  // No fsync: running readers see the old file or the new one whole, which is what the
  // rename is for. A crash may leave it empty or short (the next write replaces it): it is a
  // report of counters, not state anything is rebuilt from, and an fsync per write cost
  // 13-32 ms here (a journal commit), at the end of every replay and on every interval of
  // the daemon's textfile.
  const bool flushed = std::fflush(f) == 0;
  const int flush_error = errno;
  const bool closed = std::fclose(f) == 0;
  if (!wrote || !flushed || !closed) {
    const int e = !closed ? errno : flush_error;
    std::remove(tmp.c_str());
    return IoError(tmp + ": write failed: " + std::strerror(e));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    return IoError(path + ": " + std::strerror(e));
  }
  return Status::Ok();
}

}  // namespace sluice::cli
