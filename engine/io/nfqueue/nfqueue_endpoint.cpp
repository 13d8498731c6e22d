#include "engine/io/nfqueue/nfqueue_endpoint.h"

// glibc's socket headers before the kernel's (linux/libc-compat.h then skips its duplicates),
// and the kernel's nfnetlink_queue.h before libnetfilter_queue's copy of it.
// clang-format off
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/if_ether.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
// clang-format on

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/assert.h"
#include "engine/core/clock.h"
#include "engine/io/nfqueue/queue_stats.h"
#include "engine/stats/report.h"

namespace sluice {
namespace {

using C = NfqueueCounter;

constexpr uint32_t kSmallRoom = kHeadroom + kSmallDataCapacity;
constexpr uint32_t kLargeRoom = kHeadroom + kLargeDataCapacity;
// Where a message continues when it is longer than a small buffer's room: together they hold
// anything a large buffer can (the largest message is about 65,531 payload bytes plus a few
// hundred of headers).
constexpr std::size_t kSpillBytes = kLargeRoom - kSmallRoom;
static_assert(kLargeRoom >= kNfqMaxPayload + 1024, "a large buffer must hold the largest message");

constexpr int kSendAttempts = 4;

std::string Errno(int e) { return std::strerror(e); }

using OutsideIndexes = std::span<const std::atomic<uint32_t>>;

// Whether `ifindex` is one of the outside interfaces (0, an unused entry or no interface,
// never is).
bool IsOutside(OutsideIndexes outside, uint32_t ifindex) noexcept {
  if (ifindex == 0) return false;
  for (const std::atomic<uint32_t>& index : outside) {
    if (index.load(std::memory_order_relaxed) == ifindex) return true;
  }
  return false;
}

Direction DirectionOf(uint8_t hook, uint32_t in_if, uint32_t out_if, OutsideIndexes outside) noexcept {
  switch (static_cast<NfHook>(hook)) {
    case NfHook::kPreRouting:
    case NfHook::kLocalIn:
      return Direction::kIn;
    case NfHook::kLocalOut:
    case NfHook::kPostRouting:
      return Direction::kOut;
    case NfHook::kForward:
      if (IsOutside(outside, out_if)) return Direction::kOut;
      if (IsOutside(outside, in_if)) return Direction::kIn;
      return Direction::kUnknown;
  }
  return Direction::kUnknown;
}

// Sets a socket buffer size: the FORCE option (needs CAP_NET_ADMIN, ignores the sysctl cap),
// else the plain one (capped by net.core.{r,w}mem_max). Returns the size in effect.
uint32_t SetBufferSize(int fd, int force_opt, int opt, uint32_t bytes) noexcept {
  int v = static_cast<int>(std::min<uint32_t>(bytes, INT32_MAX / 2));
  if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof v) != 0)
    setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v);
  int got = 0;
  socklen_t len = sizeof got;
  getsockopt(fd, SOL_SOCKET, opt, &got, &len);
  return static_cast<uint32_t>(got);
}

}  // namespace

NfqueueEndpoint::NfqueueEndpoint(int fd, const NfqueueOptions& options)
    : options_(options),
      fd_(fd),
      writer_(options.queue, kMaxItems, 0),
      items_(std::make_unique<VerdictItem[]>(kMaxItems)),
      lost_(std::make_unique<DropReason[]>(kMaxItems)),
      unsent_(std::make_unique<bool[]>(kMaxItems)),
      messages_(std::make_unique<VerdictMessage[]>(kMaxItems)),
      deferred_(std::make_unique<VerdictItem[]>(kMaxDeferred)) {
  SetOutsideInterfaces(options.outside_ifindexes);
}

void NfqueueEndpoint::SetOutsideInterfaces(std::span<const uint32_t> ifindexes) noexcept {
  const std::size_t n = std::min(ifindexes.size(), outside_.size());
  for (std::size_t i = 0; i < outside_.size(); ++i)
    outside_[i].store(i < n ? ifindexes[i] : 0, std::memory_order_relaxed);
  outside_count_.store(static_cast<uint32_t>(n), std::memory_order_relaxed);
}

NfqueueEndpoint::~NfqueueEndpoint() {
  if (Holding()) {
    // Closed while messages wait for a large buffer (the pipeline drains them before it
    // stops; this is teardown without one): drop each by id, give the buffers back.
    PoolCache cache(*slot_pool_);
    NfqueueCounts t;
    for (uint32_t k = held_first_; k < held_end_; ++k) {
      uint32_t id = 0;
      if (PeekNfqPacketId(slot_bufs_[k]->room(), std::min(recv_msgs_[k].msg_len, kSmallRoom), &id)) {
        VerdictNow(id, TakeOrdinal(id, t), OutMark(0), false);
        t.Bump(C::kClosedHolding);
      }
    }
    cache.PutBulk(slot_bufs_.data() + held_first_, held_end_ - held_first_);
    t.AddTo(counters_);
  }
  if (fd_ >= 0) close(fd_);
  if (spill_ != nullptr) munmap(spill_, kMaxBatch * kSpillBytes);
}

Status NfqueueEndpoint::Init() {
  void* spill = mmap(nullptr, kMaxBatch * kSpillBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (spill == MAP_FAILED)
    return IoError("nfqueue: cannot map the receive spill area: " + Errno(errno));
  spill_ = static_cast<uint8_t*>(spill);
  for (uint32_t k = 0; k < kMaxBatch; ++k) {
    recv_iov_[k][0] = iovec{nullptr, kSmallRoom};
    recv_iov_[k][1] = iovec{spill_ + k * kSpillBytes, kSpillBytes};
    recv_msgs_[k].msg_hdr.msg_iov = recv_iov_[k].data();
    recv_msgs_[k].msg_hdr.msg_iovlen = 2;
  }
  rcvbuf_ = SetBufferSize(fd_, SO_RCVBUFFORCE, SO_RCVBUF, options_.rcvbuf_bytes);
  sndbuf_ = SetBufferSize(fd_, SO_SNDBUFFORCE, SO_SNDBUF, options_.sndbuf_bytes);
  // Error reports for our verdicts carry only the header back, not the whole request (a
  // rejected payload verdict would otherwise come back with its 64 KiB). Netlink only.
  int one = 1;
  setsockopt(fd_, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  // A verdict to the kernel never waits (netlink_unicast_kernel runs it inside the call); a
  // socket that can fill up (an adopted one) waits at most this long before a retry.
  timeval send_wait{0, 50000};
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &send_wait, sizeof send_wait);
  // A datagram may not exceed sndbuf - 32 bytes (netlink_sendmsg, unix_dgram_sendmsg).
  const std::size_t limit = sndbuf_ > 1024 ? sndbuf_ - 64 : 0;
  writer_.set_max_chunk_bytes(std::min<std::size_t>(limit, std::size_t{4} << 20));
  if (limit < VerdictWriter::kHeaderBytes) return IoError("nfqueue: socket send buffer too small");
  return Status::Ok();
}

namespace {
Status Validate(const NfqueueOptions& options) {
  if (options.queue_maxlen == 0) return InvalidArgument("nfqueue: queue maxlen must be at least 1");
  if ((options.verdict_mark & ~options.verdict_mask) != 0) {
    return InvalidArgument("nfqueue: verdict mark has bits outside the verdict mask");
  }
  return Status::Ok();
}
}  // namespace

Result<std::unique_ptr<NfqueueEndpoint>> NfqueueEndpoint::Open(const NfqueueOptions& options) {
  if (Status s = Validate(options); !s.ok()) return s;
  const std::string name = "NFQUEUE queue " + std::to_string(options.queue);
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return IoError(name + ": cannot open a netfilter netlink socket: " + Errno(errno));
  std::unique_ptr<NfqueueEndpoint> ep(new NfqueueEndpoint(fd, options));
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  socklen_t sa_len = sizeof sa;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &sa_len) != 0) {
    return IoError(name + ": cannot bind the netlink socket: " + Errno(errno));
  }
  ep->portid_ = sa.nl_pid;
  if (Status s = ep->Init(); !s.ok()) return s;
  if (Status s = ep->Configure(); !s.ok()) return s;
  return ep;
}

Result<std::unique_ptr<NfqueueEndpoint>> NfqueueEndpoint::Adopt(int fd,
                                                                const NfqueueOptions& options) {
  if (Status s = Validate(options); !s.ok()) {
    close(fd);
    return s;
  }
  std::unique_ptr<NfqueueEndpoint> ep(new NfqueueEndpoint(fd, options));
  if (Status s = ep->Init(); !s.ok()) return s;
  return ep;
}

// One message binds the queue and sets copy mode, maxlen and flags: the kernel applies them
// in one call (nfqnl_recv_config), flags checked before anything changes. It answers with an
// acknowledgement; packets may arrive ahead of it once the queue exists.
Status NfqueueEndpoint::Configure() {
  const std::string name = "NFQUEUE queue " + std::to_string(options_.queue);
  alignas(4) char req[256] = {};
  nlmsghdr* nlh = nfq_nlmsg_put(req, NFQNL_MSG_CONFIG, options_.queue);
  nlh->nlmsg_flags |= NLM_F_ACK;
  const uint32_t seq = static_cast<uint32_t>(NowNs()) | 1u;
  nlh->nlmsg_seq = seq;
  nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, kNfqMaxPayload);
  nfq_nlmsg_cfg_put_qmaxlen(nlh, options_.queue_maxlen);
  const uint32_t flags =
      (options_.gso ? NFQA_CFG_F_GSO : 0) | (options_.fail_open ? NFQA_CFG_F_FAIL_OPEN : 0);
  mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
  mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
  if (send(fd_, req, nlh->nlmsg_len, 0) < 0)
    return IoError(name + ": cannot send the configuration: " + Errno(errno));

  SetRecvTimeout(std::chrono::seconds(2));
  std::vector<uint8_t> buf(kLargeRoom);  // off the data path: Open() only
  last_id_ = 0;                          // a new queue hands out ids from 1
  have_last_id_ = true;
  for (;;) {
    const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR || errno == ENOBUFS) continue;
      return IoError(name + ": no answer from the kernel to the configuration: " + Errno(errno));
    }
    const NfqMessage m = ParseNfqMessage(buf.data(), static_cast<uint32_t>(n));
    if ((m.kind == NfqMessageKind::kPacket || m.kind == NfqMessageKind::kBadPacket) && m.has_id) {
      // Queued before we could receive it properly: drop it (TCP resends), never pass it unseen.
      NfqueueCounts t;
      VerdictNow(m.packet.id, TakeOrdinal(m.packet.id, t), OutMark(m.packet.mark), false);
      t.Bump(C::kStartupDropped);
      t.AddTo(counters_);
      continue;
    }
    if (m.kind != NfqMessageKind::kError || m.seq != seq) continue;
    switch (m.error) {
      case 0:
        return Status::Ok();
      case EPERM: {
        // Two causes share EPERM: no CAP_NET_ADMIN, or the queue is bound by another socket.
        auto queues = ReadKernelQueueStats("/proc/thread-self/net/netfilter/nfnetlink_queue");
        if (queues.ok()) {
          if (auto q = FindQueue(*queues, options_.queue); q && q->portid != portid_) {
            return Status(StatusCode::kResourceExhausted,
                          name + " is already bound by another socket (netlink portid " +
                              std::to_string(q->portid) + "); each queue takes one listener");
          }
        }
        return Status(
            StatusCode::kPermissionDenied,
            "binding " + name + " needs CAP_NET_ADMIN (run as root or grant the capability)");
      }
      case EOPNOTSUPP:
        return Unsupported(
            name + ": the kernel does not support the requested queue flags (GSO, fail-open)");
      default:
        return IoError("binding " + name + ": " + Errno(m.error));
    }
  }
}

Status NfqueueEndpoint::StopAdmitting() noexcept {
  alignas(4) char req[64] = {};
  nlmsghdr* nlh = nfq_nlmsg_put(req, NFQNL_MSG_CONFIG, options_.queue);
  nfq_nlmsg_cfg_put_qmaxlen(nlh, 0);
  if (send(fd_, req, nlh->nlmsg_len, MSG_NOSIGNAL) < 0) {
    return IoError("NFQUEUE queue " + std::to_string(options_.queue) +
                   ": cannot stop the kernel queueing: " + Errno(errno));
  }
  return Status::Ok();
}

void NfqueueEndpoint::SetRecvTimeout(std::chrono::microseconds wait) noexcept {
  const int64_t us = wait.count();
  if (us == rcvtimeo_us_) return;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(us / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0) rcvtimeo_us_ = us;
}

uint64_t NfqueueEndpoint::TakeOrdinal(uint32_t id, NfqueueCounts& t) noexcept {
  if (have_last_id_) {
    // Ids are consecutive per queue; a gap is messages the kernel could not deliver. An id
    // behind the last one (a replayed test message) is not a loss.
    const uint32_t gap = id - last_id_ - 1;
    if (gap != 0 && gap < 0x80000000u) t.Bump(C::kLostIds, gap);
  }
  last_id_ = id;
  have_last_id_ = true;
  last_id_seen_.store(id, std::memory_order_relaxed);
  t.Bump(C::kIdsReceived);
  return next_ordinal_++;
}

int NfqueueEndpoint::RecvBurst(uint32_t slots, std::chrono::microseconds wait,
                               NfqueueCounts& t) noexcept {
  int flags = MSG_DONTWAIT;
  if (wait.count() > 0) {
    SetRecvTimeout(wait);
    flags = MSG_WAITFORONE;  // block (up to SO_RCVTIMEO) for the first, then take what is there
  }
  for (int attempt = 0; attempt < 8; ++attempt) {
    t.Bump(C::kRecvSyscalls);
    const int rc = recvmmsg(fd_, recv_msgs_.data(), slots, flags, nullptr);
    if (rc >= 0) return rc;
    switch (errno) {
      case EINTR:
        continue;
      case ENOBUFS:
        // The kernel dropped messages (lost_ids counts them); what it queued is still there.
        t.Bump(C::kEnobufs);
        continue;
      case EAGAIN:
        t.Bump(C::kRecvIdle);
        return 0;
      default:
        t.Bump(C::kRecvErrors);
        return -1;
    }
  }
  return 0;
}

void NfqueueEndpoint::Fill(PacketBuffer& buf, const NfqPacketFields& f, uint64_t now,
                           NfqueueCounts& c) noexcept {
  PacketMeta& m = buf.meta();
  m.data_off = static_cast<uint16_t>(f.payload_off);
  m.len = f.payload_len;
  m.wire_len = std::max(f.cap_len, f.payload_len);
  m.link_type = (f.hw_protocol == ETH_P_IP || f.hw_protocol == ETH_P_IPV6) ? LinkType::kRaw
                                                                           : LinkType::kUnsupported;
  m.io_token = f.id;
  m.rx_ns = now;
  m.in_if = f.in_if;
  m.out_if = f.out_if;
  m.mark = f.mark;
  const OutsideIndexes outside = std::span(outside_).first(outside_count_.load(std::memory_order_relaxed));
  m.direction = DirectionOf(f.hook, f.in_if, f.out_if, outside);
  uint16_t flags = 0;
  if (f.skb_info & NFQA_SKB_CSUMNOTREADY) flags |= pkt_flag::kL4CsumNotReady;
  if (f.skb_info & NFQA_SKB_GSO) flags |= pkt_flag::kGso;
  if (f.cap_len > f.payload_len) flags |= pkt_flag::kTruncated;
  m.flags |= flags;
  buf.SetOwner(this);
  auto* t = reinterpret_cast<NfqueueToken*>(buf.io().token);
  t->packet_id = f.id;
  t->received_mark = f.mark;
  t->hw_protocol = f.hw_protocol;
  t->hook = f.hook;
  t->ordinal = TakeOrdinal(f.id, c);
}

uint32_t NfqueueEndpoint::Receive(PoolCache& cache, Batch& batch, uint32_t max,
                                  std::chrono::microseconds wait) noexcept {
  const uint32_t space = batch.limit() > batch.size() ? batch.limit() - batch.size() : 0;
  const uint32_t want = std::min({max, space, kMaxBatch});
  if (want == 0) return 0;
  if (Holding()) {
    // Messages held back for a large buffer go first, before anything newer is read: their
    // slots and spill areas stay as recvmmsg left them, and ids stay in receive order.
    NfqueueCounts t;
    const uint32_t pushed = TakeSlots(cache, batch, want, t);
    t.AddTo(counters_);
    if (pushed == 0 && Holding())
      std::this_thread::sleep_for(std::min<std::chrono::microseconds>(wait, std::chrono::milliseconds(1)));
    return pushed;
  }
  const uint32_t slots = cache.GetBulk(SizeClass::kSmall, slot_bufs_.data(), want);
  if (slots == 0) {
    counters_.Add(C::kPoolEmpty);
    std::this_thread::sleep_for(
        std::min<std::chrono::microseconds>(wait, std::chrono::milliseconds(1)));
    return 0;
  }
  for (uint32_t k = 0; k < slots; ++k) recv_iov_[k][0].iov_base = slot_bufs_[k]->room();
  slot_pool_ = &cache.pool();
  NfqueueCounts t;
  const int got = RecvBurst(slots, wait, t);
  const uint32_t filled = got > 0 ? static_cast<uint32_t>(got) : 0;
  cache.PutBulk(slot_bufs_.data() + filled, slots - filled);
  if (got < 0) {
    // An error that retrying at once will not cure (the socket is broken): wait out the wait,
    // as when nothing arrives, so that the I/O thread does not spin on it.
    t.AddTo(counters_);
    std::this_thread::sleep_for(wait);
    return 0;
  }
  held_first_ = 0;
  held_end_ = filled;
  held_rx_ns_ = NowNs();
  const uint32_t pushed = TakeSlots(cache, batch, want, t);
  t.AddTo(counters_);
  return pushed;
}

// Hands slots [held_first_, held_end_) to `batch` in order, up to `want` packets. A long
// message copies into a large buffer; with none free it and every slot after it stay held
// until a later call finds one (back-pressure: nothing more is read meanwhile, so the socket
// buffer and then the kernel queue absorb the excess; beyond them the kernel drops, or with
// fail-open passes packets unqueued, as when the pool's small class runs dry). A pool with no
// large class drops such a message by id at once. A wait longer than kLargeBufferWait means
// the pool is not giving large buffers back (all in other shards' caches, or the class far
// too small): that message, and every later long one of the same burst that finds none, is
// dropped by id and counted, so a queue never stalls for good.
uint32_t NfqueueEndpoint::TakeSlots(PoolCache& cache, Batch& batch, uint32_t want,
                                    NfqueueCounts& t) noexcept {
  uint32_t spare = 0, pushed = 0;
  uint32_t k = held_first_;
  for (; k < held_end_ && pushed < want; ++k) {
    PacketBuffer* buf = slot_bufs_[k];
    const uint32_t len = recv_msgs_[k].msg_len;
    const bool cut = recv_msgs_[k].msg_hdr.msg_flags & MSG_TRUNC;
    if (len > kSmallRoom || cut) {
      PacketBuffer* big = cut ? nullptr : cache.Get(SizeClass::kLarge);
      if (big == nullptr && !cut && cache.pool().Capacity(SizeClass::kLarge) != 0) {
        const uint64_t now = NowNs();
        if (hold_since_ns_ == 0) {
          hold_since_ns_ = now;
          t.Bump(C::kLargeWaits);
        }
        if (now - hold_since_ns_ < static_cast<uint64_t>(kLargeBufferWait.count())) break;
      }
      if (big == nullptr) {
        // What arrived still shows the id: drop it by id, never leave it queued.
        uint32_t id = 0;
        if (PeekNfqPacketId(buf->room(), kSmallRoom, &id))
          VerdictNow(id, TakeOrdinal(id, t), OutMark(0), false);
        t.Bump(cut ? C::kTruncated : C::kNoLargeBuffer);
        spare_bufs_[spare++] = buf;
        continue;
      }
      hold_since_ns_ = 0;
      std::memcpy(big->room(), buf->room(), kSmallRoom);
      std::memcpy(big->room() + kSmallRoom, recv_iov_[k][1].iov_base, len - kSmallRoom);
      spare_bufs_[spare++] = buf;
      buf = big;
      t.Bump(C::kLargeCopies);
    }
    const NfqMessage m = ParseNfqMessage(buf->room(), len);
    switch (m.kind) {
      case NfqMessageKind::kPacket:
        Fill(*buf, m.packet, held_rx_ns_, t);
        batch.Push(PacketRef(buf));
        ++pushed;
        continue;
      case NfqMessageKind::kBadPacket:
        if (m.has_id) VerdictNow(m.packet.id, TakeOrdinal(m.packet.id, t), OutMark(0), false);
        t.Bump(C::kMalformed);
        break;
      case NfqMessageKind::kError:
        CountKernelError(m.error, t);
        break;
      case NfqMessageKind::kOther:
        t.Bump(C::kOtherMessages);
        break;
    }
    spare_bufs_[spare++] = buf;
  }
  held_first_ = k;
  if (!Holding()) hold_since_ns_ = 0;
  cache.PutBulk(spare_bufs_.data(), spare);
  t.Bump(C::kReceived, pushed);
  return pushed;
}

void NfqueueEndpoint::CountKernelError(int error, NfqueueCounts& t) noexcept {
  switch (error) {
    case 0:
      return;  // an acknowledgement (only Configure asks for one)
    case ENOENT:
      t.Bump(C::kKernelEnoent);
      return;
    case EPERM:
      t.Bump(C::kKernelEperm);
      return;
    case EINVAL:
      t.Bump(C::kKernelEinval);
      return;
    default:
      t.Bump(C::kKernelOther);
      return;
  }
}

uint32_t NfqueueEndpoint::deferred() const noexcept {
  std::lock_guard lock(mu_);
  return deferred_count_;
}

void NfqueueEndpoint::Idle() noexcept {
  std::lock_guard lock(mu_);
  if (deferred_count_ != 0) FlushLocked(BeginItemsLocked());
}

uint32_t NfqueueEndpoint::BeginItemsLocked() noexcept {
  const uint32_t n = deferred_count_;
  std::copy_n(deferred_.get(), n, items_.get());
  deferred_count_ = 0;
  return n;
}

void NfqueueEndpoint::Send(Batch& batch) noexcept {
  std::lock_guard lock(mu_);
  uint32_t n = BeginItemsLocked();
  const uint32_t first = n;  // items_[first + i] is slot i's
  std::fill_n(lost_.get() + first, batch.size(), DropReason::kNone);
  uint64_t oversize = 0;
  for (uint32_t i = 0; i < batch.size(); ++i) {
    const PacketBuffer& p = batch.packet(i);
    const PacketMeta& m = p.meta();
    SLUICE_DCHECK(p.owner() == this);
    const NfqueueToken& t = Token(p);
    VerdictItem& it = items_[n++];
    it = VerdictItem{.ordinal = t.ordinal,
                     .id = t.packet_id,
                     .mark = OutMark((m.flags & pkt_flag::kMarkSet) ? m.mark : t.received_mark),
                     .kind = VerdictKind::kDrop,
                     .payload = nullptr,
                     .payload_len = 0};
    if (m.verdict != Verdict::kAccept) continue;
    if (!(m.flags & pkt_flag::kModified)) {
      it.kind = VerdictKind::kAccept;
    } else if (m.len <= kNfqMaxPayload && !(m.flags & pkt_flag::kTruncated)) {
      it.kind = VerdictKind::kAcceptPayload;
      it.payload = p.data();
      it.payload_len = m.len;
    } else {
      ++oversize;  // bytes that cannot go back whole: dropped, never cut
      batch.DropRecorded(i, DropReason::kCannotReturnBytes);  // and counted as what it is
    }
  }
  if (oversize) counters_.Add(C::kOversize, oversize);
  FlushLocked(n);
  for (uint32_t i = 0; i < batch.size(); ++i) {
    if (lost_[first + i] != DropReason::kNone) batch.DropRecorded(i, lost_[first + i]);
  }
}

void NfqueueEndpoint::OnOrphan(PacketBuffer& buf) noexcept {
  const NfqueueToken& t = Token(buf);
  std::lock_guard lock(mu_);
  counters_.Add(C::kOrphans);
  VerdictNowLocked(t.packet_id, t.ordinal, OutMark(t.received_mark), false);
}

void NfqueueEndpoint::VerdictNow(uint32_t id, uint64_t ordinal, uint32_t mark,
                                 bool accept) noexcept {
  std::lock_guard lock(mu_);
  VerdictNowLocked(id, ordinal, mark, accept);
}

void NfqueueEndpoint::VerdictNowLocked(uint32_t id, uint64_t ordinal, uint32_t mark,
                                       bool accept) noexcept {
  uint32_t n = BeginItemsLocked();
  items_[n++] = VerdictItem{.ordinal = ordinal,
                            .id = id,
                            .mark = mark,
                            .kind = accept ? VerdictKind::kAccept : VerdictKind::kDrop,
                            .payload = nullptr,
                            .payload_len = 0};
  FlushLocked(n);
}

void NfqueueEndpoint::FlushLocked(uint32_t n) noexcept {
  NfqueueCounts t;
  PlanCounts pc;
  const uint32_t count =
      PlanVerdicts(std::span<const VerdictItem>(items_.get(), n), tracker_, messages_.get(), &pc);
  t.Bump(C::kUnbatched, pc.unbatched);
  uint32_t sent = SendMessagesLocked(0, count, t);
  if (sent < count && ToDeferLocked(sent, count) > kMaxDeferred) {
    // The socket has refused verdicts for a while and the deferred list cannot take these: wait
    // for it (back-pressure: this shard stops, the kernel queue absorbs) rather than lose one.
    // A lost verdict leaves its packet queued until the socket closes, and batch verdicts
    // off for as long (its ordinal never resolves).
    counters_.Add(C::kDeferredFullWaits);  // at once, not with the rest: it says Send waits
    auto pause = std::chrono::milliseconds(1);
    for (auto waited = pause; waited <= kDeferredFullWait; waited += pause) {
      std::this_thread::sleep_for(pause);
      sent = SendMessagesLocked(sent, count, t);
      if (sent == count || ToDeferLocked(sent, count) <= kMaxDeferred) break;
      pause = std::min(2 * pause, std::chrono::milliseconds(64));
    }
  }
  // Verdicts that did not reach the kernel: kept for the next flush, oldest first. By item,
  // not by message: a batch's drops go out ahead of the batch message that covers older
  // accepts, and should the list run out, the newest must be the ones lost (this batch's,
  // which Send can still mark).
  if (sent < count) {
    std::fill_n(unsent_.get(), n, false);
    for (uint32_t k = sent; k < count; ++k) {
      const VerdictMessage& m = messages_[k];
      for (uint32_t i = m.first; i < m.first + m.count; ++i) {
        if (!m.batch || items_[i].kind == VerdictKind::kAccept) unsent_[i] = true;
      }
    }
    for (uint32_t i = 0; i < n; ++i) {
      if (unsent_[i]) DeferLocked(i, t);
    }
  }
  if (const uint64_t over = tracker_.overflows(); over > counters_.Load(C::kTrackerOverflows)) {
    t.Bump(C::kTrackerOverflows, over - counters_.Load(C::kTrackerOverflows));
  }
  t.AddTo(counters_);
}

uint32_t NfqueueEndpoint::SendMessagesLocked(uint32_t from, uint32_t count, NfqueueCounts& t) noexcept {
  writer_.Clear();
  chunk_first_ = chunk_end_ = from;
  for (uint32_t k = from; k < count; ++k) {
    VerdictMessage& m = messages_[k];
    if (!writer_.FitsAlone(m)) {
      // A payload larger than one sendmsg may carry (a small sndbuf): dropped, never cut.
      m.payload = nullptr;
      m.payload_len = 0;
      m.accept = false;
      items_[m.first].kind = VerdictKind::kDrop;  // as a deferred item too, should it come to that
      items_[m.first].payload = nullptr;
      items_[m.first].payload_len = 0;
      lost_[m.first] = DropReason::kCannotReturnBytes;
      t.Bump(C::kOversize);
    }
    if (!writer_.Append(m)) {
      if (!SendChunkLocked(t)) return chunk_first_;
      writer_.Clear();
      chunk_first_ = k;
      const bool appended = writer_.Append(m);
      SLUICE_CHECK(appended);
    }
    chunk_end_ = k + 1;
  }
  if (writer_.messages() > 0 && !SendChunkLocked(t)) return chunk_first_;
  return count;
}

uint32_t NfqueueEndpoint::ToDeferLocked(uint32_t from, uint32_t count) const noexcept {
  uint32_t items = 0;
  for (uint32_t k = from; k < count; ++k) {
    const VerdictMessage& m = messages_[k];
    for (uint32_t i = m.first; i < m.first + m.count; ++i) {
      items += !m.batch || items_[i].kind == VerdictKind::kAccept;
    }
  }
  return items;
}

bool NfqueueEndpoint::SendChunkLocked(NfqueueCounts& t) noexcept {
  msghdr mh{};
  mh.msg_iov = const_cast<iovec*>(writer_.iov());
  mh.msg_iovlen = writer_.iov_count();
  for (int attempt = 1;; ++attempt) {
    t.Bump(C::kSendmsgCalls);
    if (sendmsg(fd_, &mh, MSG_NOSIGNAL) >= 0) break;
    const int e = errno;
    if (e == EINTR) continue;
    const bool transient = e == ENOBUFS || e == ENOMEM || e == EAGAIN;
    t.Bump(transient ? C::kSendNoMemory : C::kSendErrors);
    if (!transient || attempt == kSendAttempts) return false;
    std::this_thread::yield();
  }
  for (uint32_t k = chunk_first_; k < chunk_end_; ++k) ResolveLocked(messages_[k], t);
  return true;
}

void NfqueueEndpoint::ResolveLocked(const VerdictMessage& m, NfqueueCounts& t) noexcept {
  t.Bump(C::kVerdictMessages);
  if (m.batch) {
    for (uint32_t i = m.first; i < m.first + m.count; ++i) {
      if (items_[i].kind != VerdictKind::kAccept) continue;  // a drop with its own message
      tracker_.Resolve(items_[i].ordinal);
      t.Bump(C::kBatchAccepted);
    }
    t.Bump(C::kBatchVerdicts);
    return;
  }
  tracker_.Resolve(items_[m.first].ordinal);
  t.Bump(!m.accept ? C::kDropped : m.payload != nullptr ? C::kPayloadAccepted : C::kSingleAccepted);
}

void NfqueueEndpoint::DeferLocked(uint32_t i, NfqueueCounts& t) noexcept {
  VerdictItem& item = items_[i];
  if (item.kind == VerdictKind::kAcceptPayload) {
    // The bytes go back to the pool when Send returns: all a later flush can say is drop.
    item.kind = VerdictKind::kDrop;
    item.payload = nullptr;
    item.payload_len = 0;
    lost_[i] = DropReason::kVerdictNotSent;
    t.Bump(C::kPayloadLost);
  }
  if (deferred_count_ == kMaxDeferred) {
    // Not sent and not kept: the kernel holds the packet until the socket closes, then drops
    // it. An accept becomes a drop; a drop stays one, with its own reason.
    if (item.kind == VerdictKind::kAccept) lost_[i] = DropReason::kVerdictLost;
    t.Bump(C::kVerdictsLost);
    return;
  }
  deferred_[deferred_count_++] = item;
  t.Bump(C::kDeferred);
}

void AppendNfqueueCounters(const NfqueueEndpoint& endpoint, StatsReport& report) {
  const std::string queue = std::to_string(endpoint.queue());
  for (std::size_t i = 0; i < kNfqueueCounterTable.size(); ++i) {
    report.counters.push_back(NamedCounter{"nfqueue_" + std::string(kNfqueueCounterTable[i].name),
                                           std::string(kNfqueueCounterTable[i].description),
                                           endpoint.counters().LoadAt(i),
                                           {{"queue", queue}}});
  }
  report.counters.push_back(NamedCounter{
      "nfqueue_last_id",
      "the last packet id received (a gauge): the kernel's id_sequence minus it is the loss after "
      "it, which no gap shows yet",
      endpoint.last_id(),
      {{"queue", queue}},
      /*gauge=*/true});
}

}  // namespace sluice
