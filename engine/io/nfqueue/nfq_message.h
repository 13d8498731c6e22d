// NFQUEUE netlink messages, both ways, without a socket: reading what the kernel sends
// (packets, error reports) and writing verdicts. The endpoint does the I/O; tests feed these
// functions crafted bytes.
//
// A packet message, as nfnetlink_queue builds it (attributes in this order, optional ones
// absent when zero or not requested):
//   nlmsghdr (16) | nfgenmsg (4, res_id = queue) | NFQA_PACKET_HDR {id, hw_protocol, hook}
//   | NFQA_IFINDEX_INDEV | NFQA_IFINDEX_OUTDEV | NFQA_MARK | NFQA_PRIORITY | NFQA_HWADDR
//   | NFQA_TIMESTAMP | … | NFQA_CAP_LEN (when cut) | NFQA_SKB_INFO (GSO flag set) | NFQA_PAYLOAD
// The payload comes last and starts 4-byte aligned; it is at most 65,531 bytes (the
// attribute length is 16 bits and counts its own 4-byte header).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/io/nfqueue/verdict_plan.h"

namespace sluice {

// Largest payload a verdict can carry (and the largest copy range): 0xffff - attribute header.
inline constexpr uint32_t kNfqMaxPayload = 0xffff - 4;

// Netfilter hook numbers (NF_INET_*), as carried in NFQA_PACKET_HDR.
enum class NfHook : uint8_t {
  kPreRouting = 0,
  kLocalIn = 1,
  kForward = 2,
  kLocalOut = 3,
  kPostRouting = 4
};

// What a packet message says, with the payload as an offset into the message.
struct NfqPacketFields {
  uint32_t id = 0;
  uint16_t hw_protocol = 0;  // host order: ETH_P_IP, ETH_P_IPV6 …
  uint8_t hook = 0;
  uint32_t mark = 0;
  uint32_t in_if = 0;
  uint32_t out_if = 0;
  uint32_t skb_info = 0;     // NFQA_SKB_* bits
  uint32_t cap_len = 0;      // original length when the payload was cut (NFQA_CAP_LEN), else 0
  uint32_t payload_off = 0;  // from the start of the message
  uint32_t payload_len = 0;
};

enum class NfqMessageKind : uint8_t {
  kPacket,     // a packet: every field valid
  kBadPacket,  // a packet message that does not parse; `has_id` says whether its id could be read
  kError,      // NLMSG_ERROR: `error` is the errno (0 for an acknowledgement), `seq` its sequence
  kOther,      // anything else (or too short to say): ignored
};

struct NfqMessage {
  NfqMessageKind kind = NfqMessageKind::kOther;
  bool has_id = false;
  int error = 0;
  uint32_t seq = 0;
  NfqPacketFields packet;
};

// Reads one message of `len` bytes at `msg` (4-byte aligned). Never reads past `len`; a length
// field that claims more is kBadPacket or kOther.
NfqMessage ParseNfqMessage(const uint8_t* msg, uint32_t len) noexcept;

// The id of a packet message from its first bytes only (the kernel puts NFQA_PACKET_HDR first);
// for a message that did not fit the receive area. False when the bytes do not show one.
bool PeekNfqPacketId(const uint8_t* msg, uint32_t avail, uint32_t* id) noexcept;

// Builds the verdict messages of a plan as an iovec list for sendmsg, in chunks that fit a
// byte limit (the socket's sndbuf) and the kernel's iovec limit. Messages without a payload
// are written back to back into one arena and share iovecs; a payload is its own iovec
// pointing at the packet's bytes (no copy in user space), followed by up to 3 bytes of
// padding. All storage is allocated at construction.
class VerdictWriter {
 public:
  // Bytes of a verdict message before any payload bytes: nlmsghdr, nfgenmsg, verdict header
  // and mark attributes, and the payload attribute's header.
  static constexpr uint32_t kHeaderBytes = 16 + 4 + 12 + 8 + 4;
  static constexpr uint32_t kMaxIov = 1024;  // UIO_MAXIOV

  VerdictWriter(uint16_t queue, uint32_t max_messages, std::size_t max_chunk_bytes);

  // Starts an empty chunk.
  void Clear() noexcept;
  // Appends one message to the chunk; false (and nothing appended) when it does not fit.
  bool Append(const VerdictMessage& m) noexcept;
  // Whether `m` fits an empty chunk at all.
  bool FitsAlone(const VerdictMessage& m) const noexcept { return Bytes(m) <= max_chunk_bytes_; }

  const iovec* iov() const noexcept { return iov_.get(); }
  uint32_t iov_count() const noexcept { return iov_count_; }
  std::size_t bytes() const noexcept { return bytes_; }
  uint32_t messages() const noexcept { return messages_; }
  std::size_t max_chunk_bytes() const noexcept { return max_chunk_bytes_; }
  void set_max_chunk_bytes(std::size_t n) noexcept { max_chunk_bytes_ = n; }

  // Wire bytes of one message (with padding).
  static std::size_t Bytes(const VerdictMessage& m) noexcept;

 private:
  uint16_t queue_;
  uint32_t max_messages_;
  std::size_t max_chunk_bytes_;
  std::unique_ptr<uint8_t[]> arena_;  // max_messages × kHeaderBytes, 4-byte aligned
  std::unique_ptr<iovec[]> iov_;
  uint32_t arena_used_ = 0;
  uint32_t iov_count_ = 0;
  uint32_t messages_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace sluice
