#include "engine/io/divert/divert_endpoint.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <cerrno>
#include <ctime>
#include <string>
#include <system_error>

#include "engine/core/byte_order.h"
#include "engine/core/clock.h"
#include "engine/io/divert/frag_needed.h"

namespace sluice {

namespace {

// FreeBSD's values, for the platforms whose headers lack them: the code compiles everywhere
// (so CI builds it) and only runs where DivertSupported().
#ifdef PF_DIVERT
constexpr int kPfDivert = PF_DIVERT;
#else
constexpr int kPfDivert = 44;
#endif
#ifdef IPPROTO_DIVERT
constexpr int kIpprotoDivert = IPPROTO_DIVERT;
#else
constexpr int kIpprotoDivert = 258;
#endif

constexpr uint32_t kEintrRetries = 3;
constexpr int kShortWrite = -1;  // Write(): sendto wrote fewer bytes than the packet

std::string ErrnoText(int e) { return std::error_code(e, std::system_category()).message(); }

int KernelWaitReadable(void*, int fd, std::chrono::microseconds wait) noexcept {
  pollfd p{};
  p.fd = fd;
  p.events = POLLIN;
  const auto us = wait.count() < 0 ? 0 : wait.count();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(us / 1000000);
  ts.tv_nsec = static_cast<long>((us % 1000000) * 1000);
  return ::ppoll(&p, 1, &ts, nullptr);
}

ssize_t KernelRecvmsg(void*, int fd, msghdr* msg, int flags) noexcept { return ::recvmsg(fd, msg, flags); }

ssize_t KernelSendto(void*, int fd, const void* buf, std::size_t len, const void* addr,
                     uint32_t addr_len) noexcept {
  return ::sendto(fd, buf, len, 0, static_cast<const sockaddr*>(addr), static_cast<socklen_t>(addr_len));
}

void SleepFor(std::chrono::microseconds d) noexcept {
  if (d.count() <= 0) return;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(d.count() / 1000000);
  ts.tv_nsec = static_cast<long>((d.count() % 1000000) * 1000);
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

}  // namespace

DivertSyscalls KernelDivertSyscalls() noexcept {
  DivertSyscalls s;
  s.wait_readable = KernelWaitReadable;
  s.recvmsg = KernelRecvmsg;
  s.sendto = KernelSendto;
  return s;
}

bool DivertSupported() noexcept {
#ifdef __FreeBSD__
  return true;
#else
  return false;
#endif
}

// Per-call tallies, added to the shared counters once per Receive or Send.
struct DivertEndpoint::Tally {
  std::array<uint64_t, kNumDivertCounters> n{};
  void Add(DivertCounter c, uint64_t v = 1) noexcept { n[static_cast<std::size_t>(c)] += v; }
};

Status DivertEndpoint::Validate(const DivertOptions& o) {
  if (o.port == 0) return InvalidArgument("divert port must be 1..65535 (the port of the ipfw `divert PORT` rule)");
  if (o.answer_emsgsize) {
    if (o.icmp_source == 0) {
      return InvalidArgument(
          "answering EMSGSIZE needs icmp_source: an IPv4 address of this host to send the ICMP "
          "fragmentation-needed message from");
    }
    if (o.icmp_mtu < 68) return InvalidArgument("icmp_mtu must be at least 68 (RFC 791), got " + std::to_string(o.icmp_mtu));
  }
  if (o.enobufs_backoff.count() < 0) return InvalidArgument("enobufs_backoff must not be negative");
  return Status::Ok();
}

Result<std::unique_ptr<DivertEndpoint>> DivertEndpoint::Attach(const DivertOptions& options,
                                                               const DivertSyscalls& syscalls, int fd,
                                                               bool owns_fd) {
  if (Status s = Validate(options); !s.ok()) return s;
  if (syscalls.wait_readable == nullptr || syscalls.recvmsg == nullptr || syscalls.sendto == nullptr) {
    return InvalidArgument("divert endpoint: every system call of DivertSyscalls must be set");
  }
  return std::unique_ptr<DivertEndpoint>(new DivertEndpoint(options, syscalls, fd, owns_fd));
}

Result<std::unique_ptr<DivertEndpoint>> DivertEndpoint::Open(const DivertOptions& options) {
  if (Status s = Validate(options); !s.ok()) return s;
  const std::string where = "divert port " + std::to_string(options.port) + ": ";
  if (!DivertSupported()) {
    return Unsupported(where + "divert sockets exist only on FreeBSD; on Linux use the nfqueue backend");
  }
  int fd = ::socket(kPfDivert, SOCK_RAW, 0);  // FreeBSD >= 14
  if (fd < 0 && (errno == EPROTONOSUPPORT || errno == EAFNOSUPPORT)) {
    fd = ::socket(PF_INET, SOCK_RAW, kIpprotoDivert);  // FreeBSD <= 13
  }
  if (fd < 0) {
    const int e = errno;
    if (e == EPERM || e == EACCES) {
      return Status(StatusCode::kPermissionDenied,
                    where + "cannot open a divert socket: " + ErrnoText(e) + " (divert sockets need root)");
    }
    if (e == EPROTONOSUPPORT || e == EAFNOSUPPORT) {
      return Unsupported(where + "the kernel has no divert sockets: load them with `kldload ipfw ipdivert` "
                                 "(or ipdivert_load=\"YES\" in loader.conf)");
    }
    return IoError(where + "socket: " + ErrnoText(e));
  }
  if (options.rcvbuf_bytes != 0) {
    const int size = static_cast<int>(options.rcvbuf_bytes);
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0) {
      const int e = errno;
      ::close(fd);
      if (e == ENOBUFS) {
        return InvalidArgument(where + "SO_RCVBUF of " + std::to_string(options.rcvbuf_bytes) +
                               " bytes exceeds kern.ipc.maxsockbuf: raise it (sysctl kern.ipc.maxsockbuf=" +
                               std::to_string(2 * uint64_t{options.rcvbuf_bytes}) + ") or ask for less");
      }
      return IoError(where + "setsockopt(SO_RCVBUF): " + ErrnoText(e));
    }
  }
  const sockaddr_in bind_addr = MakeDivertAddress(Direction::kOut, 0, 0, {});
  sockaddr_in a = bind_addr;
  a.sin_port = htons(options.port);  // the bind port is in network order, unlike the rule number
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    const int e = errno;
    ::close(fd);
    if (e == EADDRINUSE) {
      return IoError(where + "already bound by another socket (another sluice, a second shard given the "
                             "same port, or natd): one socket per divert port, so every shard needs its own");
    }
    return IoError(where + "bind: " + ErrnoText(e));
  }
  return Attach(options, KernelDivertSyscalls(), fd, true);
}

DivertEndpoint::~DivertEndpoint() {
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

uint32_t DivertEndpoint::Receive(PoolCache& cache, Batch& batch, uint32_t max,
                                 std::chrono::microseconds wait) noexcept {
  Tally t;
  const uint32_t first = batch.size();
  const bool has_large = cache.pool().Capacity(SizeClass::kLarge) > 0;
  PacketBuffer* spare = nullptr;  // a large buffer behind the small one, for big datagrams
  bool spare_failed = false;      // none free: do not ask (and take the pool lock) again
  bool waited = false;
  bool failed = false;  // an error other than EAGAIN and EINTR
  uint32_t eintr = 0;
  uint32_t added = 0;
  // Datagrams dropped on read (truncated, bad address) do not fill the batch; this bounds how
  // long a flood of them can keep one call reading.
  uint32_t reads_left = 2 * max + 8;
  while (added < max && !batch.full() && reads_left-- != 0) {
    PacketBuffer* b = cache.Get(SizeClass::kSmall);
    if (b == nullptr) {
      t.Add(DivertCounter::kRxPoolEmpty);
      break;
    }
    if (has_large && spare == nullptr && !spare_failed) {
      spare = cache.Get(SizeClass::kLarge);
      spare_failed = spare == nullptr;
    }
    const uint32_t small_room = b->tailroom();
    iovec iov[2];
    iov[0].iov_base = b->data();
    iov[0].iov_len = small_room;
    msghdr msg{};
    msg.msg_name = DivertToken::AddrBytes(b->io());
    msg.msg_namelen = sizeof(sockaddr_in);
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    if (spare != nullptr) {
      iov[1].iov_base = spare->data() + small_room;
      iov[1].iov_len = spare->tailroom() - small_room;
      msg.msg_iovlen = 2;
    }
    const ssize_t r = sys_.recvmsg(sys_.ctx, fd_, &msg, MSG_DONTWAIT);
    if (r < 0) {
      const int e = errno;
      cache.Put(b);
      if (e == EINTR && eintr++ < kEintrRetries) continue;
      if ((e == EAGAIN || e == EWOULDBLOCK) && added == 0 && !waited) {
        waited = true;
        const int ready = sys_.wait_readable(sys_.ctx, fd_, wait);
        if (ready > 0) continue;
        if (ready < 0 && errno != EINTR) {
          t.Add(DivertCounter::kRxErrors);
          failed = true;
        }
        break;
      }
      if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR) {
        t.Add(DivertCounter::kRxErrors);
        failed = true;
      }
      break;
    }
    if (msg.msg_flags & MSG_TRUNC) {
      t.Add(DivertCounter::kRxTruncated);
      cache.Put(b);
      continue;
    }
    const sockaddr_in addr = DivertToken::Addr(b->io());
    if (msg.msg_namelen < sizeof(sockaddr_in) || addr.sin_family != AF_INET) {
      t.Add(DivertCounter::kRxBadAddress);
      cache.Put(b);
      continue;
    }
    const uint32_t n = static_cast<uint32_t>(r);
    if (n > small_room) {  // spilled into the spare: move the head over and keep the spare
      std::memcpy(spare->data(), b->data(), small_room);
      std::memcpy(spare->io().token, b->io().token, DivertToken::kSize);
      cache.Put(b);
      b = spare;
      spare = nullptr;
      t.Add(DivertCounter::kRxLarge);
    }
    DivertToken::SetLen(b->io(), static_cast<uint32_t>(msg.msg_namelen));
    PacketMeta& m = b->meta();
    m.len = n;
    m.wire_len = n;
    m.link_type = LinkType::kRaw;
    m.io_token = next_token_++;
    const DivertInfo info = DecodeDivertAddress(addr);
    m.direction = info.direction;
    m.in_if = interfaces_.Intern(info.if_key);
    if (m.in_if == InterfaceTable::kOverflowId) t.Add(DivertCounter::kIfTableFull);
    const uint8_t version = n > 0 ? static_cast<uint8_t>(b->data()[0] >> 4) : 0;
    if (info.direction == Direction::kOut) {
      t.Add(DivertCounter::kRxOutbound);
      if (version == 4) m.flags |= pkt_flag::kIpCsumUntrusted;
    } else {
      t.Add(DivertCounter::kRxInbound);
    }
    if (version == 6) t.Add(DivertCounter::kRxIpv6);
    t.Add(DivertCounter::kRxBytes, n);
    b->SetOwner(this);
    batch.Push(PacketRef(b));
    ++added;
  }
  if (spare != nullptr) cache.Put(spare);
  // An error that retrying at once will not cure (a broken socket): wait out the wait, as when
  // nothing arrives, so that the I/O thread does not spin on it.
  if (failed && added == 0) SleepFor(wait);
  if (added != 0) {
    const uint64_t now = NowNs();
    for (uint32_t i = first; i < batch.size(); ++i) batch.packet(i).meta().rx_ns = now;
  }
  t.Add(DivertCounter::kRxPackets, added);
  for (std::size_t i = 0; i < kNumDivertCounters; ++i) {
    if (t.n[i] != 0) counters_.Add(static_cast<DivertCounter>(i), t.n[i]);
  }
  return added;
}

void DivertEndpoint::Send(Batch& batch) noexcept {
  Tally t;
  uint32_t retry_budget = options_.enobufs_retry_budget;
  for (uint32_t i = 0; i < batch.size(); ++i) {
    PacketBuffer& p = batch.packet(i);
    if (p.meta().verdict != Verdict::kAccept) {
      t.Add(DivertCounter::kTxDropped);
      continue;
    }
    // A packet the kernel would not take back is lost: the batch says so, so that the
    // pipeline counts a drop, not an accept or a rewrite.
    if (!SendOne(p, t, retry_budget)) batch.DropRecorded(i, DropReason::kReinjectFailed);
  }
  for (std::size_t i = 0; i < kNumDivertCounters; ++i) {
    if (t.n[i] != 0) counters_.Add(static_cast<DivertCounter>(i), t.n[i]);
  }
}

bool DivertEndpoint::SendOne(PacketBuffer& p, Tally& t, uint32_t& retry_budget) noexcept {
  const bool inbound = DivertToken::Addr(p.io()).sin_addr.s_addr != htonl(INADDR_ANY);
  uint8_t* ip = p.data();
  if (inbound && p.len() >= 20 && (ip[0] >> 4) == 4) {
    const uint32_t hlen = (ip[0] & 0x0fu) * 4u;
    if (hlen >= 20 && hlen <= p.len() && !divert_detail::Ipv4HeaderChecksumOk(ip, hlen)) {
      divert_detail::SetIpv4HeaderChecksum(ip, hlen);
      t.Add(DivertCounter::kTxIpCsumFixed);
    }
  }
  const int e = Write(p, t, retry_budget);
  switch (e) {
    case 0: return true;
    case ENOBUFS: t.Add(DivertCounter::kTxEnobufs); break;
    case EHOSTUNREACH: t.Add(DivertCounter::kTxEhostunreach); break;
    case ENETUNREACH: t.Add(DivertCounter::kTxEnetunreach); break;
    case EADDRNOTAVAIL: t.Add(DivertCounter::kTxEaddrnotavail); break;
    case EACCES: t.Add(DivertCounter::kTxEacces); break;
    case EINVAL: t.Add(DivertCounter::kTxEinval); break;
    case EMSGSIZE:
      t.Add(DivertCounter::kTxEmsgsize);
      AnswerEmsgsize(p, t);
      break;
    default: t.Add(DivertCounter::kTxOtherErrors); break;
  }
  return false;
}

int DivertEndpoint::Write(const PacketBuffer& p, Tally& t, uint32_t& retry_budget) noexcept {
  const void* addr = DivertToken::AddrBytes(p.io());
  const uint32_t addr_len = DivertToken::Len(p.io());
  uint32_t eintr = 0;
  uint32_t enobufs = 0;
  for (;;) {
    const ssize_t r = sys_.sendto(sys_.ctx, fd_, p.data(), p.len(), addr, addr_len);
    if (r == static_cast<ssize_t>(p.len())) {
      t.Add(DivertCounter::kTxPackets);
      t.Add(DivertCounter::kTxBytes, p.len());
      return 0;
    }
    if (r >= 0) return kShortWrite;
    const int e = errno;
    if (e == EINTR && eintr++ < kEintrRetries) continue;
    if (e == ENOBUFS && enobufs < options_.enobufs_retries && retry_budget > 0) {
      --retry_budget;
      t.Add(DivertCounter::kTxEnobufsRetries);
      SleepFor(options_.enobufs_backoff * (int64_t{1} << std::min<uint32_t>(enobufs, 20)));
      ++enobufs;
      continue;
    }
    return e;
  }
}

void DivertEndpoint::AnswerEmsgsize(PacketBuffer& p, Tally& t) noexcept {
  if (!options_.answer_emsgsize) return;
  // Only the output path refuses a datagram as too big; an inbound reinjection is queued.
  if (DivertToken::Addr(p.io()).sin_addr.s_addr != htonl(INADDR_ANY)) {
    t.Add(DivertCounter::kIcmpFragNeededSkipped);
    return;
  }
  const FragNeededResult r = BuildFragNeeded(p, options_.icmp_mtu, options_.icmp_source, icmp_id_++);
  if (r == FragNeededResult::kNoHeadroom) {
    t.Add(DivertCounter::kIcmpFragNeededFailed);
    return;
  }
  if (r != FragNeededResult::kBuilt) {
    t.Add(DivertCounter::kIcmpFragNeededSkipped);
    return;
  }
  // Out the same way, after the same rule: toward the source, not diverted again.
  const ssize_t w = sys_.sendto(sys_.ctx, fd_, p.data(), p.len(), DivertToken::AddrBytes(p.io()),
                                DivertToken::Len(p.io()));
  t.Add(w == static_cast<ssize_t>(p.len()) ? DivertCounter::kIcmpFragNeededSent
                                           : DivertCounter::kIcmpFragNeededFailed);
}

void DivertEndpoint::OnOrphan(PacketBuffer&) noexcept {
  // Nothing to tell the kernel: a divert packet that is not written back is dropped.
  orphans_.fetch_add(1, std::memory_order_relaxed);
}

uint64_t DivertEndpoint::counter(DivertCounter c) const noexcept {
  if (c == DivertCounter::kOrphans) return orphans_.load(std::memory_order_relaxed);
  return counters_.Load(c);
}

uint32_t DivertEndpoint::InternInterface(std::string_view name) noexcept {
  char bytes[8] = {};
  std::memcpy(bytes, name.data(), std::min<std::size_t>(name.size(), 7));
  uint64_t key;
  std::memcpy(&key, bytes, sizeof key);
  return interfaces_.Intern(key);
}

}  // namespace sluice
