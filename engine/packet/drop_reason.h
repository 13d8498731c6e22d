// DropReason: the closed table of reasons a packet did not take the normal path.
//
// A packet whose disposition is kDrop carries the reason it was dropped; a packet whose
// disposition is kSkip (passed unmodified without classification) carries the reason it was
// skipped. Every reason has a stable snake_case name (used in stats, JSON and Prometheus
// labels) and a one-line description for people. Stages extend the table here, in one place,
// so names stay unique and the set stays closed.
//
// Value 0 is kNone. Keep values dense: counters are arrays indexed by the reason.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice {

// X(Enumerator, "name", "description")
#define SLUICE_DROP_REASONS(X)                                                                    \
  X(kNone, "none", "not dropped")                                                                 \
  /* packet core */                                                                               \
  X(kNoVerdict, "no_verdict",                                                                     \
    "released without a verdict (a bug upstream); dropped so no kernel queue id leaks")           \
  X(kTooBig, "too_big", "larger than the largest pool buffer")                                    \
  /* sources */                                                                                   \
  X(kUnsupportedLinkType, "unsupported_link_type", "link layer the parser does not decode")       \
  X(kNotIp, "not_ip", "link-layer frame that does not carry IPv4 or IPv6")                       \
  /* parse: every malformation has its own reason; the parse policy passes or drops them */      \
  X(kLinkTruncated, "link_truncated", "frame shorter than its link-layer header (or empty)")      \
  X(kTooManyVlanTags, "too_many_vlan_tags",                                                      \
    "more stacked 802.1Q/802.1ad tags than the parser walks")                                     \
  X(kBadIpVersion, "bad_ip_version",                                                              \
    "IP version nibble is not 4 or 6, or not the version the link layer announced")               \
  X(kIpv4HeaderTruncated, "ipv4_header_truncated",                                                \
    "fewer captured bytes than 20 or than the header length (IHL) says")                          \
  X(kIpv4BadIhl, "ipv4_bad_ihl", "IPv4 header length (IHL) below 5 words")                        \
  X(kIpv4BadTotalLength, "ipv4_bad_total_length", "IPv4 total length shorter than its header")    \
  X(kIpv4LengthExceedsCapture, "ipv4_length_exceeds_capture",                                     \
    "IPv4 total length runs past the captured bytes (truncated capture or bad length)")           \
  X(kIpv4BadOption, "ipv4_bad_option", "IPv4 option length zero, one, or past the header")        \
  X(kIpv4BadFragment, "ipv4_bad_fragment",                                                        \
    "IPv4 fragment past 65535 bytes, with MF and a length not a multiple of 8, "                  \
    "or a TCP fragment at offset 8 (RFC 1858)")                                                   \
  X(kIpv6HeaderTruncated, "ipv6_header_truncated", "fewer than 40 captured bytes of IPv6 header") \
  X(kIpv6LengthExceedsCapture, "ipv6_length_exceeds_capture",                                     \
    "IPv6 payload length runs past the captured bytes (truncated capture or bad length)")         \
  X(kIpv6ExtHeaderTruncated, "ipv6_ext_header_truncated",                                         \
    "an IPv6 extension header runs past the payload length")                                      \
  X(kIpv6BadExtHeader, "ipv6_bad_ext_header",                                                     \
    "hop-by-hop options not first, or a second fragment header")                                  \
  X(kIpv6BadOption, "ipv6_bad_option", "an IPv6 option runs past its extension header")           \
  X(kIpv6TooManyExtHeaders, "ipv6_too_many_ext_headers",                                          \
    "more IPv6 extension headers than the configured cap")                                        \
  X(kIpv6ExtHeadersTooLong, "ipv6_ext_headers_too_long",                                          \
    "IPv6 extension headers longer in total than the configured cap")                             \
  X(kIpv6BadFragment, "ipv6_bad_fragment",                                                        \
    "IPv6 fragment past 65535 bytes, or with M set and a length not a multiple of 8")             \
  X(kIpv6Jumbogram, "ipv6_jumbogram", "IPv6 jumbogram (RFC 2675): not supported")                 \
  X(kGsoLengthZero, "gso_length_zero",                                                            \
    "IP length field 0 with bytes behind it: a TSO/GSO super-packet whose length is unknown")     \
  X(kShortFirstFragment, "short_first_fragment",                                                  \
    "first fragment too short to hold the whole transport header")                                \
  X(kTcpTruncated, "tcp_truncated", "fewer than 20 bytes of TCP header")                          \
  X(kTcpBadDataOffset, "tcp_bad_data_offset", "TCP data offset below 5 words or past the segment") \
  X(kTcpBadOption, "tcp_bad_option", "TCP option length zero, one, or past the header")           \
  X(kUdpTruncated, "udp_truncated", "fewer than 8 bytes of UDP header")                           \
  X(kUdpBadLength, "udp_bad_length", "UDP length below 8 or past the IP payload")                 \
  X(kIcmpTruncated, "icmp_truncated", "fewer than 8 bytes of ICMP or ICMPv6 header")              \
  /* rewrite */                                                                                   \
  X(kTtlExpired, "ttl_expired", "TTL or hop limit would reach 0 on a decrement")                  \
  X(kRewriteNoPlan, "rewrite_no_plan", "sent to rewrite without a plan (a bug upstream)")        \
  /* rules */                                                                                     \
  X(kRuleDrop, "rule_drop", "a rule with action drop matched")                                    \
  X(kNoRuleMatch, "no_rule_match", "no rule matched and classify.default_action is drop")         \
  X(kNatExhausted, "nat_exhausted",                                                               \
    "translate-source-port: no free port in this shard's share of the rule's range")              \
  X(kNatTableFull, "nat_table_full", "translate-source-port: flow table full, nat.on_full = drop-new") \
  X(kNatUntranslatable, "nat_untranslatable",                                                     \
    "translate-source-port matched a packet without TCP/UDP ports that is no ICMP echo request")  \
  /* inline sinks */                                                                              \
  X(kCannotReturnBytes, "cannot_return_bytes",                                                    \
    "rewritten, but the kernel cannot take its new bytes back (NFQUEUE: over 65,531 bytes, or "   \
    "captured in part): dropped, never sent cut or unmodified")                                   \
  X(kVerdictNotSent, "verdict_not_sent",                                                          \
    "rewritten, but the socket refused its verdict with the new bytes past the retries: the "    \
    "bytes are released, so it is verdicted drop once the socket takes verdicts again")           \
  X(kVerdictLost, "verdict_lost",                                                                 \
    "its verdict found the socket refusing verdicts and the deferred list full after a second's " \
    "wait: the kernel holds the packet until the socket closes, then drops it")                   \
  X(kReinjectFailed, "reinject_failed",                                                           \
    "the kernel would not take the packet back (divert: sendto failed after its retries, e.g. "  \
    "ENOBUFS, EHOSTUNREACH, EMSGSIZE): lost, and counted by the endpoint's tx_* error counters")

enum class DropReason : uint16_t {
#define SLUICE_X(e, name, desc) e,
  SLUICE_DROP_REASONS(SLUICE_X)
#undef SLUICE_X
};

struct DropReasonInfo {
  std::string_view name;
  std::string_view description;
};

inline constexpr std::array kDropReasonTable = {
#define SLUICE_X(e, name, desc) DropReasonInfo{name, desc},
    SLUICE_DROP_REASONS(SLUICE_X)
#undef SLUICE_X
};

inline constexpr std::size_t kNumDropReasons = kDropReasonTable.size();

constexpr std::string_view Name(DropReason r) noexcept {
  return kDropReasonTable[static_cast<std::size_t>(r)].name;
}

constexpr std::string_view Description(DropReason r) noexcept {
  return kDropReasonTable[static_cast<std::size_t>(r)].description;
}

}  // namespace sluice
