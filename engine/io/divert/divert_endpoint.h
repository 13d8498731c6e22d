// DivertEndpoint: one FreeBSD divert(4) socket, bound to one divert port, as one shard of an
// InlinePipeline. ipfw rules `divert PORT` (ipfw_rules.h) send packets to it; it reads them
// into pool buffers and writes back the ones that get an accept verdict.
//
//   ipfw `divert P` ─► socket(PF_DIVERT) bound to P ─► Receive ─► parse/classify/rewrite
//                                                                        │
//   ipfw resumes after the rule ◄── sendto(its own sockaddr) ◄── Send ◄──┘ (accept only)
//
// The kernel contract (divert(4), sys/netinet/ip_divert.c; see divert_address.h):
// - Each packet's sockaddr_in (rule number, direction, interface) lives in its buffer's
//   IoContext::token and is passed back to sendto byte for byte. Nothing per socket.
// - There is no verdict message: a packet that is not written back is gone. Drop = do not
//   send. A packet released without a verdict (OnOrphan) is therefore simply not reinjected,
//   and counted; the kernel forgot it when it queued it on the socket.
// - Checksums: L4 checksums are valid on read (divert completes delayed checksums first).
//   Outbound packets are read with an invalid IPv4 header checksum, and the kernel rewrites
//   it on output: Receive flags them pkt_flag::kIpCsumUntrusted so a rewrite recomputes it in
//   full. Inbound packets are checked on reinjection and dropped silently when their header
//   checksum is wrong: Send verifies every inbound IPv4 header it writes (a 20–60 byte sum,
//   beside a ~1 µs syscall) and rewrites a wrong one, counted as tx_ip_csum_fixed.
// - Inbound fragments are reassembled before they are diverted, so a datagram can be up to
//   64 KiB; outbound TSO super-packets can be too. Receive reads into a small buffer with a
//   large buffer behind it as a second iovec, and keeps the large one only when used.
//
// Receive: recvmsg(MSG_DONTWAIT) until the batch is full or the socket is empty; when nothing
// at all is ready, one poll() for up to `wait` first. Not recvmmsg: FreeBSD implements recvmmsg in libc as this same loop of
// recvmsg calls (lib/libc/gen/recvmmsg.c), so it saves no system call, and a loop lets each
// datagram spill into the one spare large buffer. One recvmsg per packet either way.
//
// Send: one sendto per accepted packet, with its own address. Not sendmmsg: FreeBSD's is a
// libc loop of sendmsg too, and one call per packet gives each packet its own errno. Errors
// are counted per errno and never stop the endpoint:
//   ENOBUFS       interface queue or mbufs exhausted (transient): retried at most
//                 `enobufs_retries` times with backoff enobufs_backoff × 1, 2, 4 …, and at
//                 most `enobufs_retry_budget` retries per Send() call, so a saturated link
//                 costs a batch at most budget × backoff of waiting, then drops are counted.
//   EINTR         retried at once (at most 3 times).
//   EMSGSIZE      larger than the outgoing MTU with DF: not retried; optionally answered with
//                 ICMP "fragmentation needed" (frag_needed.h), sent the same way. The answer
//                 is built in the refused packet's own buffer, which Send then leaves holding
//                 it (the caller only recycles buffers after Send).
//   EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL, EACCES, EINVAL, others: not retried, counted.
//
// Threads: Receive runs on the shard's I/O thread, Send on the shard's serial graph node;
// OnOrphan on whichever thread drops a packet. Counters are single-writer per side (orphans
// use an atomic increment); any thread may read them.
// Allocation: none in Receive or Send (AllocationScope tests hold them to that).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

#include "engine/core/counter.h"
#include "engine/core/status.h"
#include "engine/graph/endpoints.h"
#include "engine/io/divert/divert_address.h"

namespace sluice {

struct DivertOptions {
  uint16_t port = 0;                    // the divert port to bind: ipfw's `divert PORT`
  // SO_RCVBUF in bytes; 0 keeps the kernel's default (64 KiB + 100, about 40 full-size
  // packets: a burst overflows it and the kernel drops silently). Must not exceed
  // kern.ipc.maxsockbuf, or Open() fails and says so.
  uint32_t rcvbuf_bytes = 4u << 20;
  // Answer an outbound datagram refused with EMSGSIZE by an ICMP "fragmentation needed" to its
  // source, as natd does, quoting `icmp_mtu` as the next-hop MTU and sent from `icmp_source`
  // (an IPv4 address of this host, host byte order; required when this is on).
  bool answer_emsgsize = false;
  uint16_t icmp_mtu = 1500;
  uint32_t icmp_source = 0;
  uint32_t enobufs_retries = 3;
  std::chrono::microseconds enobufs_backoff{20};
  uint32_t enobufs_retry_budget = 8;
};

// X(Enumerator, "name", "description"): the endpoint's counters, in one documented table.
#define SLUICE_DIVERT_COUNTERS(X)                                                                       \
  X(kRxPackets, "rx_packets", "datagrams read from the divert socket")                                  \
  X(kRxBytes, "rx_bytes", "bytes of the datagrams read")                                                \
  X(kRxInbound, "rx_inbound", "read with an interface address: diverted on the input path")             \
  X(kRxOutbound, "rx_outbound", "read with INADDR_ANY: diverted on the output path")                    \
  X(kRxIpv6, "rx_ipv6", "IPv6 datagrams (they come with the same AF_INET address)")                     \
  X(kRxLarge, "rx_large", "datagrams over the small buffer size, received into a large buffer")         \
  X(kRxTruncated, "rx_truncated",                                                                       \
    "datagrams larger than the buffer behind them (no large buffer free): dropped")                     \
  X(kRxBadAddress, "rx_bad_address", "datagrams without an AF_INET address: dropped, never reinjected") \
  X(kRxPoolEmpty, "rx_pool_empty", "reads cut short because the pool had no buffer (back-pressure)")    \
  X(kRxErrors, "rx_errors", "recvmsg or poll failures other than EAGAIN and EINTR")                     \
  X(kIfTableFull, "if_table_full", "packets whose interface name found the table full")                 \
  X(kTxPackets, "tx_packets", "packets written back (reinjected)")                                      \
  X(kTxBytes, "tx_bytes", "bytes written back")                                                         \
  X(kTxDropped, "tx_dropped", "packets with a drop verdict: not written back, so the kernel forgets")   \
  X(kTxIpCsumFixed, "tx_ip_csum_fixed",                                                                 \
    "inbound IPv4 reinjections whose wrong header checksum was recomputed (else the kernel drops)")     \
  X(kTxEnobufsRetries, "tx_enobufs_retries", "sendto calls repeated after ENOBUFS")                     \
  X(kTxEnobufs, "tx_enobufs", "packets lost to ENOBUFS after their retries: queue or mbufs exhausted")  \
  X(kTxEhostunreach, "tx_ehostunreach", "packets lost to EHOSTUNREACH: no route to the host")           \
  X(kTxEnetunreach, "tx_enetunreach", "packets lost to ENETUNREACH: no route to the network")           \
  X(kTxEmsgsize, "tx_emsgsize", "packets lost to EMSGSIZE: larger than the outgoing MTU with DF set")   \
  X(kTxEaddrnotavail, "tx_eaddrnotavail",                                                               \
    "packets lost to EADDRNOTAVAIL: inbound address names no local interface")                          \
  X(kTxEacces, "tx_eacces", "packets lost to EACCES: denied on output (a later rule, broadcast)")        \
  X(kTxEinval, "tx_einval", "packets lost to EINVAL: header the kernel rejects (length, options)")      \
  X(kTxOtherErrors, "tx_other_errors", "packets lost to any other sendto error, or a short write")      \
  X(kIcmpFragNeededSent, "icmp_frag_needed_sent", "ICMP fragmentation-needed messages sent (EMSGSIZE)") \
  X(kIcmpFragNeededSkipped, "icmp_frag_needed_skipped",                                                 \
    "EMSGSIZE not answered: inbound, IPv6, no DF, later fragment, ICMP error, non-unicast, fits MTU")    \
  X(kIcmpFragNeededFailed, "icmp_frag_needed_failed", "ICMP messages not sent: no headroom or sendto failed") \
  X(kOrphans, "orphans",                                                                                \
    "packets released without a verdict: not reinjected (divert has no verdict; the kernel forgot)")

enum class DivertCounter : uint8_t { SLUICE_DIVERT_COUNTERS(SLUICE_COUNTER_ENUMERATOR) };
inline constexpr std::array kDivertCounterTable = {SLUICE_DIVERT_COUNTERS(SLUICE_COUNTER_INFO)};
inline constexpr std::size_t kNumDivertCounters = kDivertCounterTable.size();

// The three system calls the endpoint makes. Open() uses the kernel's; tests inject their own
// (a fake kernel, a failing sendto) through Attach(). Each returns what the system call would
// and sets errno the same way. An indirect call each, beside a system call.
struct DivertSyscalls {
  void* ctx = nullptr;
  // poll(POLLIN) for at most `wait`: >0 readable, 0 timed out, -1 error (errno).
  int (*wait_readable)(void* ctx, int fd, std::chrono::microseconds wait) noexcept = nullptr;
  ssize_t (*recvmsg)(void* ctx, int fd, msghdr* msg, int flags) noexcept = nullptr;
  ssize_t (*sendto)(void* ctx, int fd, const void* buf, std::size_t len, const void* addr,
                    uint32_t addr_len) noexcept = nullptr;
};
DivertSyscalls KernelDivertSyscalls() noexcept;

// True where divert sockets exist (FreeBSD). Elsewhere the code compiles and Open() says why
// it cannot run.
bool DivertSupported() noexcept;

class DivertEndpoint final : public InlineEndpoint {
 public:
  // socket(PF_DIVERT, SOCK_RAW, 0) (FreeBSD ≥ 14), falling back to
  // socket(PF_INET, SOCK_RAW, IPPROTO_DIVERT) on EPROTONOSUPPORT/EAFNOSUPPORT; SO_RCVBUF;
  // bind to options.port. Every failure names its cause and the fix.
  static Result<std::unique_ptr<DivertEndpoint>> Open(const DivertOptions& options);
  // An endpoint over already-open I/O: `fd` is handed to `syscalls` and closed by the
  // endpoint only when owns_fd. What the Linux tests use with a fake kernel.
  static Result<std::unique_ptr<DivertEndpoint>> Attach(const DivertOptions& options,
                                                        const DivertSyscalls& syscalls, int fd,
                                                        bool owns_fd);
  static Status Validate(const DivertOptions& options);
  ~DivertEndpoint() override;

  uint32_t Receive(PoolCache& cache, Batch& batch, uint32_t max,
                   std::chrono::microseconds wait) noexcept override;
  void Send(Batch& batch) noexcept override;
  void OnOrphan(PacketBuffer& buf) noexcept override;

  uint64_t counter(DivertCounter c) const noexcept;
  // The interface behind a PacketMeta::in_if this endpoint wrote ("" for none).
  std::string_view InterfaceName(uint32_t id) const noexcept { return interfaces_.Name(id); }
  // Gives `name` the next interface id now, before any packet arrives, so that every endpoint
  // that interns the same names in the same order agrees on their ids (what rules that match
  // on interfaces are compiled with). Names are cut to 7 characters, as divert(4) cuts them.
  // Before Receive runs only: the table has one writer.
  uint32_t InternInterface(std::string_view name) noexcept;
  const InterfaceTable& interfaces() const noexcept { return interfaces_; }
  const DivertOptions& options() const noexcept { return options_; }
  int fd() const noexcept { return fd_; }

 private:
  DivertEndpoint(const DivertOptions& options, const DivertSyscalls& syscalls, int fd, bool owns_fd)
      : options_(options), sys_(syscalls), fd_(fd), owns_fd_(owns_fd) {}

  struct Tally;
  // Sends p back; false when the kernel would not take it (the packet is lost).
  bool SendOne(PacketBuffer& p, Tally& t, uint32_t& retry_budget) noexcept;
  // Writes p with its own address; 0 on success, else the errno of the last attempt.
  int Write(const PacketBuffer& p, Tally& t, uint32_t& retry_budget) noexcept;
  void AnswerEmsgsize(PacketBuffer& p, Tally& t) noexcept;

  DivertOptions options_;
  DivertSyscalls sys_;
  int fd_;
  bool owns_fd_;
  InterfaceTable interfaces_;
  uint64_t next_token_ = 1;  // I/O thread: PacketMeta::io_token, a receive ordinal
  uint16_t icmp_id_ = 0;     // Send side: IP id of the ICMP messages built
  CounterSet<DivertCounter, kNumDivertCounters> counters_;
  std::atomic<uint64_t> orphans_{0};
};

}  // namespace sluice
