// NfqueueEndpoint: one Linux NFQUEUE queue as an InlineEndpoint — packets in from the kernel,
// verdicts (with marks, and new bytes where rewritten) back to it. One netlink socket per
// queue; the InlinePipeline runs one per shard.
//
//   kernel queue N ──recvmmsg──► Receive (I/O thread) ──Batch──► stages ──► Send (shard node)
//         ▲                       one syscall per burst                       one sendmsg per batch
//         └──────────── VERDICT_BATCH / VERDICT (+payload) ◄──────────────────────┘
//
// Receive. recvmmsg(MSG_WAITFORONE) with SO_RCVTIMEO = the wait: one syscall blocks for the
// first message and takes every message already queued, up to `max`. Each message lands in a
// small pool buffer's data room at offset 0, so the netlink and nfqueue headers fill the
// headroom and data() points at NFQA_PAYLOAD in place: no copy. headroom() is then the
// header's length (about 60–100 bytes), not kHeadroom. A message longer than a small buffer
// (GSO super-packets, jumbo or loopback MTUs) continues into a per-slot spill area (a second
// iovec) and is copied into a large buffer: one copy, for those packets only, and nothing is
// ever cut or lost silently. A message that finds no large buffer free (the pool's large
// class bounds the GSO packets in flight) is held back with everything received after it:
// Receive reads nothing new until a buffer returns (back-pressure: the socket buffer, then
// the kernel queue, absorb the excess, as when the pool's small class runs dry). Held past
// kLargeBufferWait (the pool is not giving large buffers back), or with no large class at
// all, it is dropped by its id and counted (no_large_buffer), as is one that outgrows even a
// large buffer (truncated).
//
// Per packet: link_type kRaw (kUnsupported when the kernel says it is neither IPv4 nor IPv6),
// io_token = the kernel's packet id, rx_ns (one NowNs() per syscall), in_if/out_if (ifindex),
// mark as received, direction from the hook (PREROUTING/INPUT in, OUTPUT/POSTROUTING out,
// FORWARD: from NfqueueOptions::outside_ifindexes), flags kL4CsumNotReady, kGso, kTruncated
// (wire_len is then the original length), and SetOwner(this). NfqueueToken (IoContext::token)
// carries what Send needs.
//
// Send. Plans the batch's verdicts (verdict_plan.h: batch verdicts for in-order runs of
// unmodified accepts with one mark, single verdicts for drops and for modified packets with
// their bytes) and writes every message of the batch into one sendmsg (split only when the
// socket's sndbuf cannot take them at once). Every verdict carries the mark
//   (mark & ~verdict_mask) | verdict_mark,  mark = meta().mark if kMarkSet else as received
// so verdicted packets can be told from ones that bypassed the queue (the loop guard).
// A modified packet whose bytes cannot go back (over 65,531 bytes, or captured in part) is
// dropped and counted. A sendmsg that fails is retried a few times at once; if it still fails,
// its verdicts are kept (deferred) and sent ahead of the next batch's, payloads turned into
// drops because the bytes are gone by then. When the deferred list (kMaxDeferred) cannot take
// them, Send waits for the socket, retrying for up to kDeferredFullWait (back-pressure), and
// only then loses the rest (verdicts_lost). Every packet of the batch that will not go back as
// its verdict said is marked dropped in the batch with its reason before Send returns
// (cannot_return_bytes, verdict_not_sent: a rewrite's bytes; verdict_lost), so the pipeline
// counts it as what it became.
//
// Threads. Receive is called by one thread at a time (the shard's I/O thread). Send and
// OnOrphan may run on any threads: they serialise on one mutex, taken once per call (a call
// is a batch, or one orphan: the rare path), never per packet. Counters have one writer each
// at any time: the receive-side ones are written by Receive, the rest under the mutex.
//
// Lifetime. The endpoint must outlive every packet it received (stop the pipeline first).
// Destroying it closes the socket: the kernel drops what is still queued and unbinds the
// queue; with `--queue-bypass` new packets then pass the rule unqueued.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "engine/core/counter.h"
#include "engine/core/status.h"
#include "engine/graph/endpoints.h"
#include "engine/io/nfqueue/nfq_message.h"
#include "engine/io/nfqueue/verdict_plan.h"

namespace sluice {

struct StatsReport;

struct NfqueueOptions {
  uint16_t queue = 0;
  uint32_t queue_maxlen =
      8192;  // NFQA_CFG_QUEUE_MAXLEN (the kernel's default 1024 overflows easily)
  uint32_t rcvbuf_bytes =
      16u << 20;  // SO_RCVBUFFORCE, falling back to SO_RCVBUF (capped by rmem_max)
  uint32_t sndbuf_bytes = 1u << 20;  // SO_SNDBUFFORCE / SO_SNDBUF: bounds the bytes of one sendmsg
  bool fail_open = false;            // NFQA_CFG_F_FAIL_OPEN: a full queue passes packets unqueued
  bool gso = true;  // NFQA_CFG_F_GSO: GSO packets arrive whole (else the kernel segments them)
  uint32_t verdict_mark = 0;  // the loop guard: every verdict sets
  uint32_t verdict_mask = 0;  //   mark = (mark & ~verdict_mask) | verdict_mark
  // A forwarded packet is inbound on in_if and outbound on out_if, so the hook alone cannot
  // say which way it goes. As natd's -interface: a FORWARD packet leaving through one of these
  // interfaces (ifindexes) is kOut, one that came in through one is kIn, any other kUnknown.
  // PREROUTING and INPUT are always kIn, OUTPUT and POSTROUTING kOut. At most
  // kMaxOutsideInterfaces; SetOutsideInterfaces replaces them while running.
  std::vector<uint32_t> outside_ifindexes{};
  // The copy range is always the maximum (65,531 bytes): a rewriter needs the whole packet.
};

// What Receive keeps in IoContext::token for Send.
struct NfqueueToken {
  uint64_t ordinal;        // receive order on this socket (0, 1, 2 …): see verdict_plan.h
  uint32_t packet_id;      // the kernel's id (also meta().io_token)
  uint32_t received_mark;  // the mark the packet arrived with
  uint16_t hw_protocol;    // host order (ETH_P_IP, ETH_P_IPV6)
  uint8_t hook;            // NfHook
};
static_assert(sizeof(NfqueueToken) <= sizeof(IoContext::token));

// X(Enumerator, "name", "description"): the endpoint's counters, exported as
// sluice_nfqueue_<name>{queue="N"}. Reconciliation with the kernel
// (/proc/net/netfilter/nfnetlink_queue, see queue_stats.h), when the endpoint is at rest:
//   ids_received + lost_ids + (id_sequence - last_id()) == id_sequence
//   lost_ids + (id_sequence - last_id()) == queue_user_dropped   (without fail-open)
//   ids_received == batch_accepted + single_accepted + payload_accepted + dropped
#define SLUICE_NFQUEUE_COUNTERS(X)                                                                 \
  X(kIdsReceived, "ids_received",                                                                  \
    "packet ids received: handed to the graph, or dropped at once as truncated or malformed")      \
  X(kReceived, "received", "packets handed to the graph")                                          \
  X(kRecvSyscalls, "recv_syscalls", "recvmmsg calls")                                              \
  X(kRecvIdle, "recv_idle", "recvmmsg calls that found nothing within the wait")                   \
  X(kEnobufs, "enobufs",                                                                           \
    "ENOBUFS from recvmmsg: the kernel dropped messages for lack of socket buffer (see lost_ids)") \
  X(kLostIds, "lost_ids",                                                                          \
    "packet ids never delivered (gaps): the kernel's queue_user_dropped, or with fail-open the "   \
    "packets that bypassed")                                                                       \
  X(kRecvErrors, "recv_errors",                                                                    \
    "recvmmsg errors other than EAGAIN, EINTR and ENOBUFS (each waits out the receive wait)")      \
  X(kLargeCopies, "large_copies",                                                                  \
    "messages longer than a small buffer, copied from the spill area into a large buffer")         \
  X(kTruncated, "truncated", "messages longer than the largest buffer: dropped by id")             \
  X(kLargeWaits, "large_buffer_waits",                                                             \
    "times a long message (GSO) found no large buffer free and was held back, with what came "     \
    "after it, until one returned (back-pressure: nothing new is read meanwhile)")                 \
  X(kNoLargeBuffer, "no_large_buffer",                                                             \
    "long messages (GSO) that found no large buffer free (none in the pool, or the wait ran out: " \
    "then for the rest of that burst too): dropped by id; size the pool's large class")            \
  X(kClosedHolding, "closed_holding",                                                              \
    "messages still held back for a large buffer when the endpoint closed: dropped by id")         \
  X(kMalformed, "malformed",                                                                       \
    "packet messages that do not parse: dropped by id when it can be read")                        \
  X(kOtherMessages, "other_messages",                                                              \
    "messages that are neither packets nor error reports: ignored")                                \
  X(kPoolEmpty, "pool_empty",                                                                      \
    "Receive calls that got no buffer from the pool (back-pressure: the kernel queue absorbs)")    \
  X(kVerdictMessages, "verdict_messages", "verdict messages sent (batch and single)")              \
  X(kBatchVerdicts, "batch_verdicts", "NFQNL_MSG_VERDICT_BATCH messages sent")                     \
  X(kBatchAccepted, "batch_accepted", "packets accepted by batch verdicts")                        \
  X(kSingleAccepted, "single_accepted", "unmodified packets accepted by a verdict of their own")   \
  X(kPayloadAccepted, "payload_accepted", "modified packets accepted with their new bytes")        \
  X(kDropped, "dropped",                                                                           \
    "packets dropped by verdict (rules, no_verdict, oversize, orphans, malformed)")                \
  X(kUnbatched, "unbatched",                                                                       \
    "unmodified accepts verdicted alone because an earlier packet was unresolved")                 \
  X(kSendmsgCalls, "sendmsg_calls",                                                                \
    "sendmsg calls (one per batch unless split by the socket's sndbuf)")                           \
  X(kSendNoMemory, "send_enobufs",                                                                 \
    "sendmsg failures with ENOBUFS, ENOMEM or EAGAIN (retried, then deferred)")                    \
  X(kSendErrors, "send_errors", "other sendmsg failures (deferred)")                               \
  X(kDeferred, "deferred", "verdicts whose sendmsg failed, kept to go ahead of the next batch's")  \
  X(kPayloadLost, "payload_lost",                                                                  \
    "deferred payload verdicts turned into drops (the bytes were gone)")                           \
  X(kDeferredFullWaits, "deferred_full_waits",                                                    \
    "flushes whose failed verdicts did not fit in the deferred list, so Send waited for the "      \
    "socket (back-pressure) instead of losing them")                                               \
  X(kVerdictsLost, "verdicts_lost",                                                                \
    "verdicts that found the deferred list full after a second's wait: the packets stay queued "   \
    "until the socket closes, and batch verdicts stay off")                                        \
  X(kOversize, "oversize_payload",                                                                 \
    "modified packets whose bytes cannot be returned (over 65,531 bytes, or captured in part): "   \
    "dropped")                                                                                     \
  X(kOrphans, "orphans", "packets destroyed without a verdict: a DROP sent at once")               \
  X(kKernelEnoent, "kernel_enoent",                                                                \
    "verdicts the kernel rejected with ENOENT: no such id (flushed when an interface went down, "  \
    "or verdicted twice)")                                                                         \
  X(kKernelEperm, "kernel_eperm",                                                                  \
    "verdicts the kernel rejected with EPERM (CAP_NET_ADMIN lost, or the queue is another "        \
    "socket's)")                                                                                   \
  X(kKernelEinval, "kernel_einval", "verdicts the kernel rejected as malformed (EINVAL)")          \
  X(kKernelOther, "kernel_other", "other errors the kernel reported for our messages")             \
  X(kStartupDropped, "startup_dropped",                                                            \
    "packets that reached the socket while Open() waited for the kernel's answer: dropped (never " \
    "passed unprocessed)")                                                                         \
  X(kTrackerOverflows, "tracker_overflows",                                                        \
    "resolutions too far ahead of the oldest unresolved packet to record: batching stays off "     \
    "past it")

enum class NfqueueCounter : uint8_t { SLUICE_NFQUEUE_COUNTERS(SLUICE_COUNTER_ENUMERATOR) };
inline constexpr std::array kNfqueueCounterTable = {SLUICE_NFQUEUE_COUNTERS(SLUICE_COUNTER_INFO)};
inline constexpr std::size_t kNumNfqueueCounters = kNfqueueCounterTable.size();
using NfqueueCounters = CounterSet<NfqueueCounter, kNumNfqueueCounters>;
// Bumped per packet or message in locals, added to the endpoint's counters once per call.
using NfqueueCounts = BatchCounts<NfqueueCounter, kNumNfqueueCounters>;

class NfqueueEndpoint final : public InlineEndpoint {
 public:
  // Opens a netlink socket, binds queue `options.queue` (copy mode packet, range 65,531,
  // maxlen, flags) and sizes its buffers. Errors name the queue and say what to fix:
  // CAP_NET_ADMIN missing, the queue bound by another process, an unsupported flag.
  static Result<std::unique_ptr<NfqueueEndpoint>> Open(const NfqueueOptions& options);

  // Takes over `fd`, a datagram socket already bound and configured for options.queue (for
  // example by a supervisor), or — in tests — one end of a socketpair that plays the kernel.
  // Ids are not assumed to start at 1, so the first gap cannot be counted.
  static Result<std::unique_ptr<NfqueueEndpoint>> Adopt(int fd, const NfqueueOptions& options);

  ~NfqueueEndpoint() override;
  NfqueueEndpoint(const NfqueueEndpoint&) = delete;
  NfqueueEndpoint& operator=(const NfqueueEndpoint&) = delete;

  uint32_t Receive(PoolCache& cache, Batch& batch, uint32_t max,
                   std::chrono::microseconds wait) noexcept override;
  void Send(Batch& batch) noexcept override;
  // A packet destroyed without a verdict: its DROP goes to the kernel at once.
  void OnOrphan(PacketBuffer& buf) noexcept override;

  static constexpr std::size_t kMaxOutsideInterfaces = 16;
  // Replaces the outside interfaces (NfqueueOptions::outside_ifindexes; the first
  // kMaxOutsideInterfaces) while packets flow, from any thread: an interface created again
  // under a new index. Each index is updated on its own, so a packet received meanwhile may
  // see some old ones and some new ones.
  void SetOutsideInterfaces(std::span<const uint32_t> ifindexes) noexcept;

  // The first step of a graceful stop: the kernel queues nothing more here, so that what it
  // already queued can be received and verdicted (queue_total falls to 0) before the socket
  // closes — closing drops whatever is still queued. Sets the queue's maxlen to 0: a packet
  // that then meets the queue is treated as meeting a full one, which with fail-open accepts
  // it unqueued (what --queue-bypass does once the socket is gone) and without it drops it
  // (queue_dropped). Packets already queued still arrive through Receive. One sendmsg; the
  // kernel applies the change inside it (an error comes back through Receive, counted).
  // Any thread. Not undone: the next step is closing the socket.
  Status StopAdmitting() noexcept;

  const NfqueueCounters& counters() const noexcept { return counters_; }
  const NfqueueOptions& options() const noexcept { return options_; }
  uint16_t queue() const noexcept { return options_.queue; }
  uint32_t portid() const noexcept { return portid_; }
  int fd() const noexcept { return fd_; }
  // Socket buffer sizes in effect (as the kernel accounts them: twice what was asked).
  uint32_t rcvbuf_bytes() const noexcept { return rcvbuf_; }
  uint32_t sndbuf_bytes() const noexcept { return sndbuf_; }
  // Verdicts waiting for a retry (see Send above).
  uint32_t deferred() const noexcept;
  // Sends the deferred verdicts, if any (InlineEndpoint::Idle).
  void Idle() noexcept override;
  // Messages received but held back for a large buffer (InlineEndpoint::Holding).
  bool Holding() const noexcept override { return held_first_ < held_end_; }
  // How long a long message waits for a large buffer before it is dropped by id.
  static constexpr std::chrono::nanoseconds kLargeBufferWait = std::chrono::milliseconds(50);
  // The last packet id received (0 before any). The kernel's id_sequence minus this is what
  // it lost after that id, which no gap can show yet: the loss sluice can account for is
  //   lost_ids + (id_sequence - last_id)  ==  queue_user_dropped   (without fail-open).
  uint32_t last_id() const noexcept { return last_id_seen_.load(std::memory_order_relaxed); }

  static const NfqueueToken& Token(const PacketBuffer& buf) noexcept {
    return *reinterpret_cast<const NfqueueToken*>(buf.io().token);
  }

 private:
  static constexpr uint32_t kMaxDeferred = 1024;
  // How long a flush whose failed verdicts do not fit in the deferred list keeps retrying
  // before it loses them (verdicts_lost).
  static constexpr std::chrono::milliseconds kDeferredFullWait{1000};
  static constexpr uint32_t kMaxItems = kMaxBatch + kMaxDeferred;

  NfqueueEndpoint(int fd, const NfqueueOptions& options);
  Status Init();
  Status Configure();
  // Messages received into the first `slots` slots; 0 when none came within `wait`; -1 on an
  // error that retrying at once would not cure.
  int RecvBurst(uint32_t slots, std::chrono::microseconds wait, NfqueueCounts& t) noexcept;
  uint32_t TakeSlots(PoolCache& cache, Batch& batch, uint32_t want, NfqueueCounts& t) noexcept;
  void Fill(PacketBuffer& buf, const NfqPacketFields& f, uint64_t now, NfqueueCounts& t) noexcept;
  void SetRecvTimeout(std::chrono::microseconds wait) noexcept;
  uint64_t TakeOrdinal(uint32_t id, NfqueueCounts& t) noexcept;
  uint32_t OutMark(uint32_t base) const noexcept {
    return (base & ~options_.verdict_mask) | options_.verdict_mark;
  }
  // Sends one verdict outside any batch (orphans, malformed and oversized messages).
  void VerdictNow(uint32_t id, uint64_t ordinal, uint32_t mark, bool accept) noexcept;
  void VerdictNowLocked(uint32_t id, uint64_t ordinal, uint32_t mark, bool accept) noexcept;
  // Plans, writes and sends items_[0, n) (deferred ones first); resolves or defers each.
  uint32_t BeginItemsLocked() noexcept;
  void FlushLocked(uint32_t n) noexcept;
  // Sends messages_[from, count) in as few sendmsg calls as fit; returns the first not sent
  // (count when all were).
  uint32_t SendMessagesLocked(uint32_t from, uint32_t count, NfqueueCounts& t) noexcept;
  // How many items deferring messages_[from, count) would keep.
  uint32_t ToDeferLocked(uint32_t from, uint32_t count) const noexcept;
  bool SendChunkLocked(NfqueueCounts& t) noexcept;
  void ResolveLocked(const VerdictMessage& m, NfqueueCounts& t) noexcept;
  // Keeps items_[i] for the next flush (a payload becomes a drop: lost_[i] says so).
  void DeferLocked(uint32_t i, NfqueueCounts& t) noexcept;
  static void CountKernelError(int error, NfqueueCounts& t) noexcept;

  NfqueueOptions options_;
  int fd_;
  // The outside interfaces' indexes as the receive path reads them (0: an unused entry).
  std::array<std::atomic<uint32_t>, kMaxOutsideInterfaces> outside_{};
  std::atomic<uint32_t> outside_count_{0};  // how many of them are in use
  uint32_t portid_ = 0;
  uint32_t rcvbuf_ = 0;
  uint32_t sndbuf_ = 0;
  NfqueueCounters counters_;

  // Receive side (one thread at a time).
  std::array<mmsghdr, kMaxBatch> recv_msgs_{};
  std::array<std::array<iovec, 2>, kMaxBatch> recv_iov_{};
  std::array<PacketBuffer*, kMaxBatch> slot_bufs_{};
  std::array<PacketBuffer*, 2 * kMaxBatch>
      spare_bufs_{};          // a long message may spare a small and a large one
  uint8_t* spill_ = nullptr;  // kMaxBatch × kSpillBytes, mapped once, touched only by long messages
  // Slots [held_first_, held_end_) of the last recvmmsg are not handed out yet (TakeSlots).
  uint32_t held_first_ = 0;
  uint32_t held_end_ = 0;
  uint64_t held_rx_ns_ = 0;     // when they were received
  uint64_t hold_since_ns_ = 0;  // when the first of them found no large buffer (0: none did)
  BufferPool* slot_pool_ = nullptr;  // where held slots' buffers go back if the endpoint closes
  uint64_t next_ordinal_ = 0;
  uint32_t last_id_ = 0;
  bool have_last_id_ = false;
  std::atomic<uint32_t> last_id_seen_{0};  // last_id_, for readers on other threads
  int64_t rcvtimeo_us_ = -1;               // SO_RCVTIMEO in effect

  // Send side (under mu_).
  mutable std::mutex mu_;
  VerdictTracker tracker_;
  VerdictWriter writer_;
  std::unique_ptr<VerdictItem[]> items_;        // kMaxItems: deferred ones, then the batch's
  // kMaxItems, beside items_: why an item will not go back as its verdict said (kNone: it
  // will). Send reads it back for its batch's items.
  std::unique_ptr<DropReason[]> lost_;
  std::unique_ptr<bool[]> unsent_;  // kMaxItems: FlushLocked's, the items its sendmsg missed
  std::unique_ptr<VerdictMessage[]> messages_;  // kMaxItems
  std::unique_ptr<VerdictItem[]> deferred_;     // kMaxDeferred
  uint32_t deferred_count_ = 0;
  // The chunk being written: messages_[chunk_first_, chunk_end_).
  uint32_t chunk_first_ = 0;
  uint32_t chunk_end_ = 0;
};

// Appends the endpoint's counters to a stats report as sluice_nfqueue_<name>{queue="N"}, and
// last_id() as sluice_nfqueue_last_id{queue="N"}.
void AppendNfqueueCounters(const NfqueueEndpoint& endpoint, StatsReport& report);

}  // namespace sluice
