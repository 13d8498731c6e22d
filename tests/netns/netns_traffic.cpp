// netns_traffic: deterministic UDP traffic for the network-namespace tests and perf/nfqueue.
//
//   netns_traffic udp-send --dst A --port P --count N --rate PPS [--size B] [--src A1,A2,…]
//   [--first S]
//       Open-loop sender: N datagrams of B bytes (>= 8) at PPS packets per second, in bursts
//       of up to 32 per sendmmsg, round-robin over one socket per source address (so a
//       --queue-balance hash spreads them). Each carries its sequence number (S … S+N-1) in
//       its first 8 bytes. SIGTERM/SIGINT stops it early. Prints "sent <n> <seconds>".
//   netns_traffic udp-recv --port P --expect N [--timeout-ms T] [--idle-ms I]
//       Counts distinct sequence numbers until N arrived, nothing came for I ms after the
//       first, or T ms passed. Prints "ready" once bound, then "received <unique> <duplicates>".
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <vector>

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

uint64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

int Usage() {
  std::fprintf(
      stderr,
      "usage: netns_traffic udp-send --dst A --port P --count N --rate PPS [--size B] [--src "
      "A1,A2] [--first S]\n"
      "       netns_traffic udp-recv --port P --expect N [--timeout-ms T] [--idle-ms I]\n");
  return 2;
}

std::map<std::string, std::string> Flags(int argc, char** argv) {
  std::map<std::string, std::string> f;
  for (int i = 2; i + 1 < argc; i += 2) f[argv[i]] = argv[i + 1];
  return f;
}

uint64_t Num(const std::map<std::string, std::string>& f, const char* k, uint64_t def) {
  auto it = f.find(k);
  return it == f.end() ? def : std::strtoull(it->second.c_str(), nullptr, 10);
}

int Send(const std::map<std::string, std::string>& f) {
  if (!f.count("--dst") || !f.count("--port") || !f.count("--count") || !f.count("--rate"))
    return Usage();
  const uint64_t count = Num(f, "--count", 0);
  const uint64_t rate = std::max<uint64_t>(1, Num(f, "--rate", 1));
  const uint32_t size = static_cast<uint32_t>(std::max<uint64_t>(8, Num(f, "--size", 64)));
  const uint64_t first = Num(f, "--first", 0);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(Num(f, "--port", 0)));
  if (inet_pton(AF_INET, f.at("--dst").c_str(), &dst.sin_addr) != 1) return Usage();

  std::vector<std::string> sources;
  if (auto it = f.find("--src"); it != f.end()) {
    std::string s = it->second;
    for (std::size_t pos = 0; pos != std::string::npos;) {
      const std::size_t comma = s.find(',', pos);
      sources.push_back(
          s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
      pos = comma == std::string::npos ? comma : comma + 1;
    }
  } else {
    sources.emplace_back();
  }
  std::vector<int> socks;
  for (const std::string& src : sources) {
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return std::perror("socket"), 1;
    int big = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
    if (!src.empty()) {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      if (inet_pton(AF_INET, src.c_str(), &a.sin_addr) != 1) return Usage();
      if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return std::perror("bind"), 1;
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0)
      return std::perror("connect"), 1;
    socks.push_back(fd);
  }

  constexpr uint32_t kBurst = 32;
  std::vector<std::vector<uint8_t>> payload(kBurst, std::vector<uint8_t>(size, 0x5a));
  std::vector<iovec> iov(kBurst);
  std::vector<mmsghdr> msgs(kBurst);
  const uint64_t start = NowNs();
  uint64_t sent = 0;
  uint64_t turn = 0;
  while (sent < count && !g_stop.load()) {
    // Open loop: the schedule says how many should be out by now; never catch up in bursts
    // larger than kBurst.
    const uint64_t due = std::min<uint64_t>(count, (NowNs() - start) * rate / 1000000000u + 1);
    if (due <= sent) {
      const uint64_t next_ns = start + (sent * 1000000000u) / rate;
      timespec ts{static_cast<time_t>(next_ns / 1000000000u),
                  static_cast<long>(next_ns % 1000000000u)};
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
      continue;
    }
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kBurst, due - sent));
    const int fd = socks[turn++ % socks.size()];
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t seq = first + sent + i;
      std::memcpy(payload[i].data(), &seq, sizeof seq);
      iov[i] = iovec{payload[i].data(), size};
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int rc = sendmmsg(fd, msgs.data(), n, 0);
    if (rc < 0) {
      if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN) continue;
      return std::perror("sendmmsg"), 1;
    }
    sent += static_cast<uint64_t>(rc);
  }
  std::printf("sent %llu %.3f\n", static_cast<unsigned long long>(sent), (NowNs() - start) / 1e9);
  return 0;
}

int Recv(const std::map<std::string, std::string>& f) {
  if (!f.count("--port") || !f.count("--expect")) return Usage();
  const uint64_t expect = Num(f, "--expect", 0);
  const uint64_t timeout_ns = Num(f, "--timeout-ms", 30000) * 1000000u;
  const uint64_t idle_ns = Num(f, "--idle-ms", 2000) * 1000000u;
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return std::perror("socket"), 1;
  int big = 64 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(Num(f, "--port", 0)));
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return std::perror("bind"), 1;
  std::printf("ready\n");
  std::fflush(stdout);

  constexpr uint32_t kBurst = 64;
  std::vector<std::vector<uint8_t>> buf(kBurst, std::vector<uint8_t>(65536));
  std::vector<iovec> iov(kBurst);
  std::vector<mmsghdr> msgs(kBurst);
  std::vector<bool> seen(expect, false);
  uint64_t unique = 0, duplicates = 0;
  const uint64_t start = NowNs();
  uint64_t last = 0;
  while (unique < expect && !g_stop.load()) {
    const uint64_t now = NowNs();
    if (now - start > timeout_ns || (last != 0 && now - last > idle_ns)) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    for (uint32_t i = 0; i < kBurst; ++i) {
      iov[i] = iovec{buf[i].data(), buf[i].size()};
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int rc = recvmmsg(fd, msgs.data(), kBurst, MSG_DONTWAIT, nullptr);
    if (rc <= 0) continue;
    last = NowNs();
    for (int i = 0; i < rc; ++i) {
      uint64_t seq = UINT64_MAX;
      if (msgs[i].msg_len >= sizeof seq) std::memcpy(&seq, buf[i].data(), sizeof seq);
      if (seq >= expect) continue;
      if (seen[seq]) {
        ++duplicates;
      } else {
        seen[seq] = true;
        ++unique;
      }
    }
  }
  std::printf("received %llu %llu\n", static_cast<unsigned long long>(unique),
              static_cast<unsigned long long>(duplicates));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  const std::string mode = argv[1];
  const auto flags = Flags(argc, argv);
  if (mode == "udp-send") return Send(flags);
  if (mode == "udp-recv") return Recv(flags);
  return Usage();
}
