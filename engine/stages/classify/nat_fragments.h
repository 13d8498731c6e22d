// NAPT and IPv4 fragments. A translation that moves the address must move it in every
// fragment of a datagram, yet only the first fragment carries the ports its flow is keyed
// by. As libalias does (its fragment links: FragmentIn / FragmentOut), the translation of a
// first fragment is remembered under the datagram's identity as it arrived — protocol,
// source, destination and IP identification (RFC 791) — with the address the later
// fragments get on the same side, and the translate rule whose edits they get too; they find
// it there.
//
// Direct-mapped and fixed in size, allocated with the stage: a newer datagram takes an older
// one's slot, and an entry lives kTimeoutNs (the reassembly time limit of Linux's
// ipfrag_time). A later fragment that finds nothing (it overtook its first fragment, or its
// entry was taken) is not translated, and the rules decide (a translate rule drops it as
// nat_untranslatable). IPv6 fragments are not remembered.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/core/byte_order.h"
#include "engine/proto/ipv4.h"

namespace sluice {

class NatFragments {
 public:
  static constexpr uint32_t kSlots = 1024;
  static constexpr uint64_t kTimeoutNs = 30'000'000'000ull;
  enum class Side : uint8_t { kNone, kSrc, kDst };  // kNone: the address stays (edits only)

  NatFragments() : slots_(std::make_unique<Entry[]>(kSlots)) {}

  // The first fragment whose IPv4 header is at `ip` (as it arrived) was translated by a flow
  // of rule `rule_number`: its later fragments get `addr` (host order) as their source or
  // destination (unless kNone), and the rule's edits.
  void Remember(const uint8_t* ip, Side side, uint32_t addr, uint32_t rule_number, uint64_t now) noexcept {
    const Key k = KeyOf(ip);
    Entry& e = slots_[SlotOf(k)];
    e.key = k;
    e.side = side;
    e.addr = addr;
    e.rule_number = rule_number;
    e.expires_ns = now + kTimeoutNs;
    any_ = true;
  }

  // Whether anything was ever remembered: until then no packet needs a Find.
  bool any() const noexcept { return any_; }

  // A later fragment's translation, if its first fragment's was remembered.
  bool Find(const uint8_t* ip, uint64_t now, Side* side, uint32_t* addr, uint32_t* rule_number) const noexcept {
    if (!any_) return false;
    const Key k = KeyOf(ip);
    const Entry& e = slots_[SlotOf(k)];
    if (e.expires_ns <= now || !(e.key == k)) return false;
    *side = e.side;
    *addr = e.addr;
    *rule_number = e.rule_number;
    return true;
  }

 private:
  struct Key {
    uint32_t src = 0, dst = 0;
    uint16_t id = 0;
    uint8_t proto = 0;
    friend bool operator==(const Key& a, const Key& b) noexcept {
      return a.src == b.src && a.dst == b.dst && a.id == b.id && a.proto == b.proto;
    }
  };
  struct Entry {
    Key key;
    Side side = Side::kNone;
    uint32_t addr = 0;
    uint32_t rule_number = 0;
    uint64_t expires_ns = 0;  // 0: empty
  };

  static Key KeyOf(const uint8_t* ip) noexcept {
    return {LoadBe32(ip + ipv4::kOffSrc), LoadBe32(ip + ipv4::kOffDst), LoadBe16(ip + 4), ip[9]};
  }
  static uint32_t SlotOf(const Key& k) noexcept {
    uint64_t h = (uint64_t{k.src} << 32 | k.dst) * 0x9e3779b97f4a7c15ull;
    h ^= (uint64_t{k.id} << 8 | k.proto) * 0xc2b2ae3d27d4eb4full;
    return static_cast<uint32_t>(h >> 54) & (kSlots - 1);
  }

  std::unique_ptr<Entry[]> slots_;
  bool any_ = false;  // nothing remembered yet: later fragments cost no lookup
};

}  // namespace sluice
