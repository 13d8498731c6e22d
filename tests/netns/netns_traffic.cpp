// netns_traffic: deterministic UDP traffic for the network-namespace tests and perf/nfqueue.
//
//   netns_traffic udp-send --dst A --port P --count N --rate PPS [--size B] [--src A1,A2,…]
//   [--first S] [--duration-ms D]
//       Open-loop sender: N datagrams (or as many as D ms allow, whichever ends first) of B
//       bytes (>= 8) at PPS packets per second, in bursts
//       of up to 32 per sendmmsg, round-robin over one socket per source address (so a
//       --queue-balance hash spreads them). Each carries its sequence number (S … S+N-1) in
//       its first 8 bytes and, when B >= 16, the time it was due to leave (CLOCK_REALTIME ns,
//       from the schedule, not from when it actually left: a late sender shows as latency, so
//       there is no coordinated omission) in the next 8. SIGTERM/SIGINT stops it early.
//       Prints "sent <n> <seconds>", then "source <address> <n>" per source address.
//   netns_traffic udp-recv --port P --expect N [--timeout-ms T] [--idle-ms I] [--latency 0|1]
//       Counts distinct sequence numbers until N arrived, nothing came for I ms after the
//       first, or T ms passed. Prints "ready" once bound, then "received <unique>
//       <duplicates>" and "from <address> <n>" per source address. With --latency 1, the
//       one-way latency of every datagram — the kernel's receive timestamp (SO_TIMESTAMPNS)
//       minus the due time it carries; sender and receiver share the machine's clock — kept
//       as samples and printed sorted-exact as
//       "latency_ns n <n> p50 <ns> p90 <ns> p99 <ns> p999 <ns> max <ns>".
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
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

uint64_t ClockNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}
uint64_t NowNs() { return ClockNs(CLOCK_MONOTONIC); }

std::string AddressText(in_addr a) {
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a, text, sizeof text);
  return text;
}

int Usage() {
  std::fprintf(
      stderr,
      "usage: netns_traffic udp-send --dst A --port P --count N --rate PPS [--size B] [--src "
      "A1,A2] [--first S] [--duration-ms D]\n"
      "       netns_traffic udp-recv --port P --expect N [--timeout-ms T] [--idle-ms I] "
      "[--latency 0|1]\n");
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
  const uint64_t duration_ns = Num(f, "--duration-ms", 0) * 1000000u;  // 0: no limit
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
  std::vector<uint64_t> sent_by(sources.size(), 0);
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
  const uint64_t start_real = ClockNs(CLOCK_REALTIME);
  uint64_t sent = 0;
  uint64_t turn = 0;
  while (sent < count && !g_stop.load()) {
    // Open loop: the schedule says how many should be out by now; never catch up in bursts
    // larger than kBurst.
    const uint64_t elapsed = NowNs() - start;
    if (duration_ns != 0 && elapsed >= duration_ns) break;
    const uint64_t due = std::min<uint64_t>(count, elapsed * rate / 1000000000u + 1);
    if (due <= sent) {
      const uint64_t next_ns = start + (sent * 1000000000u) / rate;
      timespec ts{static_cast<time_t>(next_ns / 1000000000u),
                  static_cast<long>(next_ns % 1000000000u)};
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
      continue;
    }
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kBurst, due - sent));
    const std::size_t which = turn++ % socks.size();
    const int fd = socks[which];
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t seq = first + sent + i;
      std::memcpy(payload[i].data(), &seq, sizeof seq);
      if (size >= 16) {
        const uint64_t due = start_real + ((sent + i) * 1000000000u) / rate;
        std::memcpy(payload[i].data() + 8, &due, sizeof due);
      }
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
    sent_by[which] += static_cast<uint64_t>(rc);
  }
  std::printf("sent %llu %.3f\n", static_cast<unsigned long long>(sent), (NowNs() - start) / 1e9);
  for (std::size_t i = 0; i < sources.size(); ++i) {
    if (!sources[i].empty())
      std::printf("source %s %llu\n", sources[i].c_str(), static_cast<unsigned long long>(sent_by[i]));
  }
  return 0;
}

int Recv(const std::map<std::string, std::string>& f) {
  if (!f.count("--port") || !f.count("--expect")) return Usage();
  const uint64_t expect = Num(f, "--expect", 0);
  const uint64_t timeout_ns = Num(f, "--timeout-ms", 30000) * 1000000u;
  const uint64_t idle_ns = Num(f, "--idle-ms", 2000) * 1000000u;
  const bool latency = Num(f, "--latency", 0) != 0;
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return std::perror("socket"), 1;
  int big = 64 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  }
  if (latency) {
    const int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) != 0)
      return std::perror("SO_TIMESTAMPNS"), 1;
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
  std::vector<sockaddr_in> from(kBurst);
  constexpr std::size_t kControl = CMSG_SPACE(sizeof(timespec));
  std::vector<std::array<uint8_t, kControl>> control(kBurst);
  std::vector<bool> seen(expect, false);
  std::map<uint32_t, uint64_t> by_source;  // network-order address → datagrams
  std::vector<int64_t> latencies;
  if (latency) latencies.reserve(expect);
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
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
      if (latency) {
        msgs[i].msg_hdr.msg_control = control[i].data();
        msgs[i].msg_hdr.msg_controllen = kControl;
      }
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
        continue;
      }
      seen[seq] = true;
      ++unique;
      ++by_source[from[i].sin_addr.s_addr];
      uint64_t due = 0;
      if (!latency || msgs[i].msg_len < 16) continue;
      std::memcpy(&due, buf[i].data() + 8, sizeof due);
      for (cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != nullptr;
           c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS) continue;
        timespec ts{};
        std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
        const uint64_t at = static_cast<uint64_t>(ts.tv_sec) * 1000000000u +
                            static_cast<uint64_t>(ts.tv_nsec);
        latencies.push_back(static_cast<int64_t>(at - due));
      }
    }
  }
  std::printf("received %llu %llu\n", static_cast<unsigned long long>(unique),
              static_cast<unsigned long long>(duplicates));
  for (const auto& [addr, n] : by_source) {
    std::printf("from %s %llu\n", AddressText(in_addr{addr}).c_str(),
                static_cast<unsigned long long>(n));
  }
  if (latency && !latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    auto at = [&](double q) {
      const auto k = static_cast<std::size_t>(q * static_cast<double>(latencies.size() - 1) + 0.5);
      return static_cast<long long>(latencies[k]);
    };
    std::printf("latency_ns n %zu p50 %lld p90 %lld p99 %lld p999 %lld max %lld\n",
                latencies.size(), at(0.5), at(0.9), at(0.99), at(0.999), at(1.0));
  }
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
