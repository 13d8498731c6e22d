// NAPT and IP fragments. A translation that moves the address must move it in every
// fragment of a datagram, yet only the first fragment carries the ports its flow is keyed
// by. As libalias does (its fragment links: FragmentIn / FragmentOut), the translation of a
// first fragment is remembered under the datagram's identity as it arrived — family,
// source, destination and identification (IPv4's 16-bit IP id with the protocol, RFC 791;
// IPv6's 32-bit fragment header id, RFC 8200 §4.5) — with the address the later fragments get on
// the same side, and the translate rule whose edits they get too; they find it there.
//
// Direct-mapped and fixed in size, allocated with the stage: a newer datagram takes an older
// one's slot, and an entry lives kTimeoutNs (the reassembly time limit of Linux's
// ipfrag_time). A later fragment that finds nothing (it overtook its first fragment, or its
// entry was taken) goes to the rules: a translate rule that moves the address gives one
// going out the rule's address, as libalias's FragmentOut does (nat_fragment_ahead), and
// drops one coming in (nat_untranslatable); a port-only one passes it with the rule's edits.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/packet/packet_buffer.h"
#include "engine/rules/ip_addr.h"

namespace sluice {

class NatFragments {
 public:
  static constexpr uint32_t kSlots = 1024;
  static constexpr uint64_t kTimeoutNs = 30'000'000'000ull;
  enum class Side : uint8_t { kNone, kSrc, kDst };  // kNone: the address stays (edits only)

  // A datagram's identity. IPv4 addresses are in the low 32 bits.
  struct Key {
    U128 src = 0, dst = 0;
    uint32_t id = 0;
    uint8_t proto = 0;  // IPv4 only
    L3Type family = L3Type::kNone;
    friend bool operator==(const Key&, const Key&) = default;
  };

  // The identity of `pkt`, a parsed fragment (pkt_flag::kFragment). False when it has none
  // to give: not IP, or an IPv6 extension chain that does not walk to a fragment header.
  static bool KeyOf(const PacketBuffer& pkt, Key* key) noexcept;

  NatFragments() : slots_(std::make_unique<Entry[]>(kSlots)) {}

  // The first fragment `key` was translated by a flow of rule `rule_number`: its later
  // fragments get `addr` as their source or destination (unless kNone), and the rule's edits.
  void Remember(const Key& key, Side side, U128 addr, uint32_t rule_number, uint64_t now) noexcept {
    Entry& e = slots_[SlotOf(key)];
    e.key = key;
    e.side = side;
    e.addr = addr;
    e.rule_number = rule_number;
    e.expires_ns = now + kTimeoutNs;
    any_ = true;
  }

  // Whether anything was ever remembered: until then no packet needs a Find.
  bool any() const noexcept { return any_; }

  // A later fragment's translation, if its first fragment's was remembered.
  bool Find(const Key& key, uint64_t now, Side* side, U128* addr, uint32_t* rule_number) const noexcept {
    if (!any_) return false;
    const Entry& e = slots_[SlotOf(key)];
    if (e.expires_ns <= now || !(e.key == key)) return false;
    *side = e.side;
    *addr = e.addr;
    *rule_number = e.rule_number;
    return true;
  }

 private:
  struct Entry {
    Key key;
    Side side = Side::kNone;
    U128 addr = 0;
    uint32_t rule_number = 0;
    uint64_t expires_ns = 0;  // 0: empty
  };

  static uint32_t SlotOf(const Key& k) noexcept {
    uint64_t h = (High64(k.src) ^ Low64(k.src)) * 0x9e3779b97f4a7c15ull;
    h ^= (High64(k.dst) ^ Low64(k.dst)) * 0xff51afd7ed558ccdull;
    h ^= (uint64_t{k.id} << 8 | k.proto) * 0xc2b2ae3d27d4eb4full;
    return static_cast<uint32_t>(h >> 54) & (kSlots - 1);
  }

  std::unique_ptr<Entry[]> slots_;
  bool any_ = false;  // nothing remembered yet: later fragments cost no lookup
};

}  // namespace sluice
