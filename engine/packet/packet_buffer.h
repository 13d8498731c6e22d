// PacketBuffer: one packet in one contiguous, pool-owned block of memory.
//
//   offset 0         64               128            256 (kDataRoomOffset)
//   +----------------+----------------+--------------+----------------------------------+
//   | PacketMeta     | IoContext      | headroom     | packet data ........ | tailroom  |
//   | hot, 64 B      | cold, 64 B     | 128 B        | data() .. data()+len |           |
//   +----------------+----------------+--------------+----------------------------------+
//                                     ^ room: headroom + data capacity, room() bytes long
//                                       data() = room + data_off
//
// Size classes (BufferPool): kSmall holds any Ethernet-MTU frame (2 KiB of data after the
// headroom) and kLarge a 64 KiB GSO / reassembled packet, so a 64 B packet never costs 64 KiB.
//
// Who writes what (S source, P parse, C classify, R rewrite, K sink; pool = BufferPool):
//   geometry   room, size_class: pool. data_off, len: S, and P (L2 trim), R (Prepend/Trim…)
//   input      link_type, wire_len, io_token, rx_ns, in_if, out_if, direction, flags(S bits): S
//   parse      l3_off, l4_off, l3, l4_proto, flow_hash, flags(P bits): P only; C and R read
//   rules      rule: C.   mark: S (as received), C/R (as to be returned)
//   verdict    verdict, drop_reason: K (or PacketRef when it is destroyed without one)
// The IoContext line belongs to the source that filled the buffer; the engine never reads it.
//
// Geometry operations (Prepend, Adjust, Trim, Append) check their bounds and, when the request
// does not fit, return false and change nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "engine/packet/drop_reason.h"

namespace sluice {

class BufferPool;
class PacketOwner;

inline constexpr std::size_t kCacheLine = 64;
inline constexpr uint32_t kHeadroom = 128;
// How many packets ahead a loop prefetches (PacketBuffer::Prefetch): enough for the work on
// the packets in between to cover a transfer from another core's cache.
inline constexpr uint32_t kPrefetchAhead = 8;

// Link layer of data[0], as the source delivered it.
enum class LinkType : uint8_t {
  kRaw = 0,       // IPv4 or IPv6 header first (NFQUEUE, divert, pcap DLT_RAW)
  kEthernet,      // DLT_EN10MB, with any 802.1Q / QinQ tags
  kLinuxSll,      // DLT_LINUX_SLL
  kLinuxSll2,     // DLT_LINUX_SLL2
  kBsdLoopback,   // DLT_NULL / DLT_LOOP: 4-byte address family
  kIpv4,          // DLT_IPV4
  kIpv6,          // DLT_IPV6
  kUnsupported,   // anything else: skipped and counted
};

enum class L3Type : uint8_t { kNone = 0, kIpv4, kIpv6 };

enum class Direction : uint8_t { kUnknown = 0, kIn, kOut };

// The final record of what happened to the packet; kNone until the sink (or PacketRef) sets it.
enum class Verdict : uint8_t { kNone = 0, kAccept, kDrop };

// Bits of PacketMeta::flags.
namespace pkt_flag {
// Set by the source.
inline constexpr uint16_t kL4CsumNotReady = 1u << 0;  // L4 checksum partial (NFQA_SKB_CSUMNOTREADY): full recompute
inline constexpr uint16_t kIpCsumUntrusted = 1u << 1; // IPv4 header checksum not valid on read (divert outbound)
inline constexpr uint16_t kGso = 1u << 2;             // a GSO super-packet (NFQA_SKB_GSO)
inline constexpr uint16_t kTruncated = 1u << 3;       // captured fewer bytes than the wire carried
inline constexpr uint16_t kHasOwner = 1u << 10;       // io().owner is set (SetOwner)
// Set by parse.
inline constexpr uint16_t kFragment = 1u << 4;        // part of a fragmented datagram
inline constexpr uint16_t kFragmentLater = 1u << 5;   // a non-first fragment: no L4 header
inline constexpr uint16_t kL4Valid = 1u << 6;         // l4_off points at a complete, validated L4 header
// Set by rewrite.
inline constexpr uint16_t kModified = 1u << 8;        // bytes changed: the sink returns the payload
inline constexpr uint16_t kMarkSet = 1u << 9;         // mark changed: the sink returns the mark
}  // namespace pkt_flag

inline constexpr uint16_t kNoRule = 0xffff;
inline constexpr uint16_t kFreeTag = 0xf4ee;

// Hot metadata: exactly one cache line.
struct PacketMeta {
  uint32_t room;          // pool: bytes of the data room (headroom + data capacity)
  uint16_t data_off;      // offset of the first data byte within the room
  uint8_t size_class;     // pool: which size class the buffer came from
  LinkType link_type;     // S
  uint32_t len;           // bytes of packet data in the buffer (the captured bytes)
  uint32_t wire_len;      // S: length on the wire; larger than len when the capture was cut
  uint64_t io_token;      // S: opaque to the engine (NFQUEUE packet id, pcap record number …)
  uint64_t rx_ns;         // S: receive time, NowNs(), for latency through the graph
  uint32_t flow_hash;     // P: symmetric flow hash (both directions equal)
  uint32_t mark;          // S: firewall mark as received; C/R: mark to return
  uint16_t l3_off;        // P: offset of the IP header from data()
  uint16_t l4_off;        // P: offset of the L4 header from data(); 0 when there is none
  uint16_t flags;         // pkt_flag bits
  L3Type l3;              // P
  uint8_t l4_proto;       // P: IP protocol number of the L4 header (after IPv6 extensions)
  uint32_t in_if;         // S: input interface (ifindex, or an interned name id), 0 = none
  uint32_t out_if;        // S: output interface, 0 = none
  Direction direction;    // S
  Verdict verdict;        // K
  DropReason drop_reason; // K: why it was dropped or skipped
  uint16_t rule;          // C: index of the matched rule, kNoRule when none matched
  uint16_t pool_tag;      // pool: kFreeTag while the buffer is free (catches double returns)
};
static_assert(sizeof(PacketMeta) == kCacheLine, "hot metadata must be one cache line");

// Cold line: which pool and which source own the buffer, and the source's reinject token
// (for example a divert sockaddr_in). Touched by the source, the sink and the pool only.
struct IoContext {
  BufferPool* pool;               // pool the buffer returns to
  PacketOwner* owner;             // valid only with pkt_flag::kHasOwner (see SetOwner)
  alignas(8) uint8_t token[48];   // backend-defined bytes carried opaquely with the packet
};
static_assert(sizeof(IoContext) == kCacheLine, "io context must be one cache line");

class alignas(kCacheLine) PacketBuffer {
 public:
  static constexpr std::size_t kDataRoomOffset = 2 * kCacheLine;

  PacketMeta& meta() noexcept { return meta_; }
  const PacketMeta& meta() const noexcept { return meta_; }
  IoContext& io() noexcept { return io_; }
  const IoContext& io() const noexcept { return io_; }

  uint8_t* room() noexcept { return reinterpret_cast<uint8_t*>(this) + kDataRoomOffset; }
  const uint8_t* room() const noexcept {
    return reinterpret_cast<const uint8_t*>(this) + kDataRoomOffset;
  }
  uint8_t* data() noexcept { return room() + meta_.data_off; }
  const uint8_t* data() const noexcept { return room() + meta_.data_off; }
  uint32_t len() const noexcept { return meta_.len; }
  uint32_t headroom() const noexcept { return meta_.data_off; }
  uint32_t tailroom() const noexcept { return meta_.room - meta_.data_off - meta_.len; }

  // Starts the buffer over as empty with the standard headroom; keeps the pool geometry.
  // Writes the hot line only.
  void Reset() noexcept {
    const uint32_t room_size = meta_.room;
    const uint8_t size_class = meta_.size_class;
    meta_ = PacketMeta{};
    meta_.room = room_size;
    meta_.size_class = size_class;
    meta_.data_off = static_cast<uint16_t>(kHeadroom < room_size ? kHeadroom : 0);
    meta_.rule = kNoRule;
  }

  // The source that must hear of this packet if it dies without a verdict. Reset() clears it
  // through the flag alone, so recycling a buffer never touches the cold line.
  void SetOwner(PacketOwner* owner) noexcept {
    io_.owner = owner;
    meta_.flags |= pkt_flag::kHasOwner;
  }
  PacketOwner* owner() const noexcept {
    return (meta_.flags & pkt_flag::kHasOwner) ? io_.owner : nullptr;
  }

  // Makes room for n bytes in front of the data; returns the new data() or nullptr.
  uint8_t* Prepend(uint32_t n) noexcept {
    if (n > meta_.data_off) return nullptr;
    meta_.data_off = static_cast<uint16_t>(meta_.data_off - n);
    meta_.len += n;
    return data();
  }
  // Removes n bytes from the front of the data (for example an L2 header).
  bool Adjust(uint32_t n) noexcept {
    if (n > meta_.len || meta_.data_off + n > 0xffffu) return false;
    meta_.data_off = static_cast<uint16_t>(meta_.data_off + n);
    meta_.len -= n;
    return true;
  }
  // Removes n bytes from the end of the data (for example L2 padding).
  bool Trim(uint32_t n) noexcept {
    if (n > meta_.len) return false;
    meta_.len -= n;
    return true;
  }
  // Extends the data by n bytes at the end; returns a pointer to the first new byte or nullptr.
  uint8_t* Append(uint32_t n) noexcept {
    if (n > tailroom()) return nullptr;
    uint8_t* tail = data() + meta_.len;
    meta_.len += n;
    return tail;
  }
  // Asks for the lines a stage touches first: the metadata and the first line of data at the
  // standard headroom. A packet crossing a graph edge was last written on another core; a loop
  // that prefetches a few packets ahead overlaps those transfers instead of waiting for each in
  // turn (as VPP's nodes do). `kWrite` fetches them ready to be written.
  template <bool kWrite = false>
  void Prefetch() const noexcept {
    __builtin_prefetch(&meta_, kWrite ? 1 : 0);
    __builtin_prefetch(room() + kHeadroom, kWrite ? 1 : 0);
  }

  // Replaces the contents with a copy of bytes; false (and no change) when it does not fit.
  bool Assign(const uint8_t* bytes, uint32_t n) noexcept {
    if (n > meta_.room - meta_.data_off) return false;
    std::memcpy(data(), bytes, n);
    meta_.len = n;
    return true;
  }

 private:
  friend class BufferPool;
  PacketMeta meta_;
  IoContext io_;
};
static_assert(sizeof(PacketBuffer) == PacketBuffer::kDataRoomOffset);
static_assert(std::is_standard_layout_v<PacketBuffer>);

// Implemented by a source whose packets need a verdict from it (NFQUEUE, divert). When a
// PacketRef dies without a verdict, the owner is told so it can return a DROP to the kernel.
// Rare path: a virtual call is fine here.
class PacketOwner {
 public:
  virtual void OnOrphan(PacketBuffer& buf) noexcept = 0;

 protected:
  ~PacketOwner() = default;
};

}  // namespace sluice
