// NAPT's packet side: the flow key of a packet, and the header edits of a translation.
//
// The flow table (engine/rules/flow_table.h) decides; these functions read and write the
// packet, with the rewrite stage's primitives (engine/stages/rewrite/rewrite_ops.h) so every
// checksum that covers an edited field is fixed incrementally, and FinishChecksums handles
// packets whose L4 checksum the kernel left partial.
#pragma once

#include "engine/packet/packet_buffer.h"
#include "engine/rules/flow_table.h"
#include "engine/rules/packet_fields.h"
#include "engine/stages/rewrite/rewrite_ops.h"

namespace sluice {

// What a packet can be to NAPT.
enum class KeyKind : uint8_t {
  kNone,       // nothing to translate: no TCP/UDP ports, no ICMP echo
  kAny,        // TCP or UDP with ports: may belong to a translation or start one
  kEchoRequest,  // may belong to a translation or start one
  kEchoReply,  // may only belong to one (a reply starts nothing)
  kIcmpError,  // an ICMP error quoting a packet that may belong to one (it starts nothing)
};

// The packet's oriented key: TCP or UDP with ports (a complete header, never a non-first
// fragment), or an ICMP / ICMPv6 echo — a request as (id, 0), a reply as (0, id), matching
// how FlowTable keys ICMP. An ICMP error (destination unreachable, packet too big, time
// exceeded, parameter problem) that quotes a TCP, UDP or echo packet of its own family is
// keyed by the quoted packet's tuple reversed: the key of its flow in the error's direction.
// *key is meaningful unless the result is kNone.
KeyKind TranslationKey(const PacketBuffer& pkt, const PacketFields& f, FlowKey* key) noexcept;

// Sets the packet's source or destination address (of `family`, IPv4 in the low 32 bits),
// with incremental checksum updates. Returns whether a byte changed.
bool SetAddress(PacketBuffer& pkt, Side side, L3Type family, U128 value) noexcept;

// A later fragment's side of a translation: its address only (its ports are in the first
// fragment), the IPv4 header checksum updated, kModified set when a byte changed. Returns that.
bool ApplyFragmentAddress(PacketBuffer& pkt, Side side, U128 value) noexcept;

// Rewrites the packet for `flow` in direction `dir`: original → source address (when the
// translation changes it) and source port / echo id; reply → destination address and port /
// echo id back to the inside host's. Sets kModified when a byte changed. Returns that.
bool ApplyTranslation(PacketBuffer& pkt, const FlowTable::Flow& flow, FlowTable::Dir dir) noexcept;

// An ICMP error about a packet of `flow` (TranslationKey said kIcmpError; `dir` is the
// direction its key hit), translated as natd and Linux's NAT do, so that path-MTU discovery
// and traceroute work through the translation. Coming in (kReply): the outer destination and
// the quoted source address and port (or echo id) go back to the inside host's. Going out
// (kOriginal): the outer source and the quoted destination become the translated ones. The
// outer IPv4 header, ICMP / ICMPv6 (pseudo-header too), quoted IPv4 header and quoted
// transport checksums (where the quote reaches them) are updated incrementally. False, with
// nothing changed, when the error's own address on our side is not the quoted packet's (it
// is not about this flow).
bool ApplyIcmpErrorTranslation(PacketBuffer& pkt, const FlowTable::Flow& flow, FlowTable::Dir dir) noexcept;

}  // namespace sluice
