// ParseStage: the first stage. Validates every header of every packet once and records where
// each one starts, so classify and rewrite read offsets instead of parsing again.
//
// Reads   meta.link_type, the captured bytes [data(), data() + len()).
// Writes  meta.l3_off, l4_off (0 when there is no L4 header: a non-first fragment, next
//         header 59, or an empty payload), l3, l4_proto, flow_hash, and the parse bits of
//         meta.flags (kFragment, kFragmentLater, kL4Valid); len shrinks by the L2 padding
//         (bytes captured past the IP length, e.g. Ethernet's 60-byte minimum or an FCS).
//         Parse outputs are cleared first, so a packet that fails has l3 == kNone.
// Next    kClassify when every header checks out; otherwise the slot carries the reason:
//         kNotIp and kUnsupportedLinkType are always Skip (passed unmodified, never
//         classified); every malformation gets ParseConfig::malformed: Skip or Drop.
//
// What "checks out" means (one DropReason per failure, engine/packet/drop_reason.h):
// - link layer complete (link_truncated), at most link::kMaxVlanTags tags;
// - IPv4: 20 bytes, version, IHL >= 5, IHL*4 captured, total length >= IHL*4 and captured,
//   options well formed, fragment fields sane (ipv4::Validate);
// - IPv6: 40 bytes, version, payload length captured, extension chain well formed and inside
//   the caps (ipv6::WalkChain);
// - TCP header and options, UDP length, 8 bytes of ICMP/ICMPv6, all inside the IP payload;
//   in a first fragment a transport header that does not fit is short_first_fragment.
// Other upper layers (GRE, ESP, SCTP, ...) are not looked into: l4_off points at them,
// kL4Valid stays clear. Checksums are not verified here: a bad one is carried through, and an
// incremental rewrite keeps it detectably bad.
//
// GSO policy: a length field of 0 with bytes behind the header (IPv4 total length 0, IPv6
// payload length 0 with a next header other than 59) is how TSO/GSO captures and BIG TCP show
// a super-packet; its real length is unknown and NFQUEUE cannot take back a payload over
// 65535 bytes anyway, so it is gso_length_zero under the malformed policy. A GSO packet with
// its length filled in (NFQUEUE with NFQA_CFG_F_GSO) parses normally; the source flags it
// kL4CsumNotReady and rewrite recomputes its L4 checksum in full. IPv6 jumbograms (RFC 2675)
// are ipv6_jumbogram, also under the policy.
//
// Flow hash: seeded and symmetric (engine/proto/flow_hash.h) over the address pair, and for
// IPv4 the protocol, without ports — the key the kernel's NFQUEUE --queue-balance hashes
// (hash_v4: addresses and protocol; hash_v6: addresses only), so offline shards hold what
// inline shards would. IPv6 leaves the protocol out because a fragment does not always know
// it: behind options in the fragmentable part, a later fragment sees only the fragment
// header's next header, where the first sees the upper layer. It keeps every fragment of a
// datagram on one shard, and a port translation's replies (addressed to the new port) on
// the shard that made it. An ICMP error takes the key of the packet it quotes, so that the
// offline graph hands it to the shard of that packet's flow (where its NAT translation
// lives); kernel queues steer it by its own addresses.
//
// Cost: no allocation, no lock, no virtual call; counters accumulate in locals and are added
// once per batch. bench/stages/parse_bench.cpp has ns/packet per traffic mix.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "engine/core/counter.h"
#include "engine/core/status.h"
#include "engine/packet/batch.h"
#include "engine/proto/ipv6.h"

namespace sluice {

enum class MalformedPolicy : uint8_t {
  kPass,  // Skip: back to the network unmodified, never classified (the default: fail open)
  kDrop,  // Drop
};

struct ParseConfig {
  MalformedPolicy malformed = MalformedPolicy::kPass;
  ipv6::Limits ipv6;            // caps on the extension-header chain (count, total bytes)
  uint64_t flow_hash_seed = 0;  // pick it at random per process; equal seeds, equal hashes
  bool operator==(const ParseConfig&) const = default;
};

// The largest ipv6.max_bytes accepted: keeps every offset inside PacketMeta's 16 bits.
inline constexpr uint16_t kMaxIpv6ExtBytesCap = 4096;

// Checks a config built from user input; ParseStage's constructor insists on a valid one.
Status Validate(const ParseConfig& config);

// X(Enumerator, "name", "description"). parsed + malformed + not_ip == slots processed.
#define SLUICE_PARSE_COUNTERS(X)                                                                 \
  X(kParsed, "parsed", "packets whose headers all checked out, sent on to classify")             \
  X(kMalformed, "malformed", "packets with a malformation reason (passed or dropped by policy)") \
  X(kNotIp, "not_ip", "frames passed unparsed: not IP, or a link type the parser lacks")         \
  X(kIpv4, "ipv4", "parsed IPv4 packets")                                                        \
  X(kIpv6, "ipv6", "parsed IPv6 packets")                                                        \
  X(kTcp, "tcp", "parsed packets with a validated TCP header")                                   \
  X(kUdp, "udp", "parsed packets with a validated UDP header")                                   \
  X(kIcmp, "icmp", "parsed packets with a validated ICMP header")                                \
  X(kIcmpv6, "icmpv6", "parsed packets with a validated ICMPv6 header")                          \
  X(kOtherL4, "other_l4", "parsed packets with another upper layer, or none, and no fragment")   \
  X(kFragments, "fragments", "parsed fragments, first or later")                                 \
  X(kLaterFragments, "later_fragments", "parsed non-first fragments (no L4 header)")             \
  X(kIpv6ExtHeaders, "ipv6_ext_headers", "IPv6 extension headers walked in parsed packets")      \
  X(kVlanTagged, "vlan_tagged", "parsed frames with 802.1Q/802.1ad tags")                        \
  X(kPaddingTrimmed, "padding_trimmed", "parsed frames whose bytes past the IP length were trimmed")

enum class ParseCounter : uint8_t { SLUICE_PARSE_COUNTERS(SLUICE_COUNTER_ENUMERATOR) };
inline constexpr std::array kParseCounterTable = {SLUICE_PARSE_COUNTERS(SLUICE_COUNTER_INFO)};

inline constexpr std::size_t kNumParseCounters = kParseCounterTable.size();
using ParseCounters = CounterSet<ParseCounter, kNumParseCounters>;
using ParseCounts = BatchCounts<ParseCounter, kNumParseCounters>;

class ParseStage {
 public:
  // `workers`: the graph threads that may run this stage (one counter set each).
  explicit ParseStage(const ParseConfig& config, uint32_t workers = 1);

  // Parses every slot whose next is kParse; see the contract at the top of this file.
  void Process(Batch& batch) noexcept;

  const ParseConfig& config() const noexcept { return config_; }
  ParseCounters counters() const noexcept { return counters_.Sum(); }  // over the workers
  uint32_t workers() const noexcept { return counters_.workers(); }

 private:
  ParseConfig config_;
  WorkerCounterSets<ParseCounter, kNumParseCounters> counters_;
};

// One packet, without a batch: the same validation and meta writes as Process, with the
// counters bumped in counts. Returns kNone or the reason.
DropReason ParsePacket(PacketBuffer& buf, const ParseConfig& config, ParseCounts& counts) noexcept;

}  // namespace sluice
