#include "engine/rules/flow_table.h"

#include <algorithm>
#include <numeric>

#include "engine/core/assert.h"
#include "engine/rules/packet_fields.h"

namespace sluice {
namespace {

constexpr uint64_t kNsPerSecond = 1000000000ull;

inline uint64_t Absorb(uint64_t h, uint64_t w) noexcept {
  h = (h ^ w) * 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 29);
}

inline uint32_t Finish(uint64_t h) noexcept {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return static_cast<uint32_t>(h);
}

inline uint64_t SplitMix(uint64_t* s) noexcept {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline uint32_t Tag(uint32_t h) noexcept { return h == 0 ? 1 : h; }

inline std::size_t Index(TimeoutClass c) noexcept { return static_cast<std::size_t>(c); }

}  // namespace

FlowTableOptions FlowTableOptions::From(const NatConfig& nat, uint64_t seed, uint32_t shard, uint32_t shards) {
  FlowTableOptions o;
  o.capacity = nat.max_flows;
  o.seed = seed == 0 ? 1 : seed;
  o.on_full = nat.on_full;
  o.timeout_ns[Index(TimeoutClass::kTcpTransitory)] = nat.tcp_transitory_s * kNsPerSecond;
  o.timeout_ns[Index(TimeoutClass::kTcpEstablished)] = nat.tcp_established_s * kNsPerSecond;
  o.timeout_ns[Index(TimeoutClass::kTcpClosed)] = nat.tcp_closed_s * kNsPerSecond;
  o.timeout_ns[Index(TimeoutClass::kUdp)] = nat.udp_s * kNsPerSecond;
  o.timeout_ns[Index(TimeoutClass::kIcmp)] = nat.icmp_s * kNsPerSecond;
  o.shard = shard;
  o.shards = shards;
  return o;
}

FlowKey FlowTable::Flow::ReplyKey() const noexcept {
  FlowKey r;
  r.src_hi = orig.dst_hi;
  r.src_lo = orig.dst_lo;
  r.set_dst(xaddr);
  r.sport = orig.dport;
  r.dport = xport;
  r.proto = orig.proto;
  r.family = orig.family;
  return r;
}

FlowTable::FlowTable(const FlowTableOptions& options) : o_(options), capacity_(options.capacity) {
  SLUICE_CHECK(capacity_ >= 1 && capacity_ < (1u << 29));
  SLUICE_CHECK(o_.shards >= 1 && o_.shard < o_.shards);
  flows_.resize(capacity_);
  free_.resize(capacity_);
  for (uint32_t i = 0; i < capacity_; ++i) free_[i] = capacity_ - 1 - i;  // pop gives 0, 1, 2, …
  // Three keys per flow, at most half full.
  uint64_t slots = 1;
  while (slots < uint64_t{capacity_} * 6) slots <<= 1;
  slots_.resize(slots);
  mask_ = static_cast<uint32_t>(slots - 1);
  head_.fill(kNil);
  tail_.fill(kNil);
  uint64_t s = o_.seed;
  seed_flow_ = SplitMix(&s);
  seed_mix_ = SplitMix(&s);
  seed_claim_ = SplitMix(&s);
  rng_ = SplitMix(&s) ^ (uint64_t{o_.shard} << 32);
}

// Symmetric: each endpoint (address, port) hashes alone, and the pair is combined in value
// order, so src → dst and dst → src land in the same slot chain.
uint32_t FlowTable::HashKey(const FlowKey& k) const noexcept {
  uint64_t a = Absorb(Absorb(Absorb(seed_flow_, k.src_hi), k.src_lo), k.sport);
  uint64_t b = Absorb(Absorb(Absorb(seed_flow_, k.dst_hi), k.dst_lo), k.dport);
  if (a > b) std::swap(a, b);
  return Finish(Absorb(Absorb(Absorb(seed_mix_, a), b), k.proto | (uint64_t{static_cast<uint8_t>(k.family)} << 8)));
}

uint32_t FlowTable::HashClaim(U128 address, L3Type family, uint8_t proto, uint16_t port) const noexcept {
  return Finish(Absorb(Absorb(Absorb(seed_claim_, High64(address)), Low64(address)),
                       port | (uint64_t{proto} << 16) | (uint64_t{static_cast<uint8_t>(family)} << 24)));
}

bool FlowTable::Lookup(const FlowKey& k, Hit* hit) const noexcept {
  const uint32_t tag = Tag(HashKey(k));
  for (uint32_t i = tag & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.tag == 0) return false;
    if (s.tag != tag) continue;
    const uint32_t f = s.ref >> 2;
    const uint32_t kind = s.ref & 3;
    if (kind == kOrigKey && flows_[f].orig == k) {
      *hit = {f, Dir::kOriginal};
      return true;
    }
    if (kind == kReplyKey && flows_[f].ReplyKey() == k) {
      *hit = {f, Dir::kReply};
      return true;
    }
  }
}

bool FlowTable::PortTaken(U128 address, L3Type family, uint8_t proto, uint16_t port) const noexcept {
  const uint32_t tag = Tag(HashClaim(address, family, proto, port));
  for (uint32_t i = tag & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.tag == 0) return false;
    if (s.tag != tag || (s.ref & 3) != kClaimKey) continue;
    const Flow& f = flows_[s.ref >> 2];
    if (f.xaddr == address && f.xport == port && f.orig.proto == proto && f.orig.family == family) return true;
  }
}

void FlowTable::Insert(uint32_t tag, uint32_t ref) noexcept {
  uint32_t i = tag & mask_;
  while (slots_[i].tag != 0) i = (i + 1) & mask_;
  slots_[i] = {tag, ref};
}

// Linear probing with backward-shift deletion: no tombstones, so chains never silt up.
void FlowTable::Erase(uint32_t tag, uint32_t ref) noexcept {
  uint32_t i = tag & mask_;
  while (!(slots_[i].tag == tag && slots_[i].ref == ref)) {
    SLUICE_DCHECK(slots_[i].tag != 0);
    i = (i + 1) & mask_;
  }
  for (uint32_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
    if (slots_[j].tag == 0) break;
    const uint32_t home = slots_[j].tag & mask_;
    // Move j back into the hole at i unless its home lies cyclically in (i, j].
    const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i] = {};
}

TimeoutClass FlowTable::ClassOf(uint8_t proto, uint8_t tcp) noexcept {
  if (proto == ip_proto::kTcp) {
    if ((tcp & tcp_state::kRst) != 0 || (tcp & (tcp_state::kFinOut | tcp_state::kFinIn)) ==
                                            (tcp_state::kFinOut | tcp_state::kFinIn)) {
      return TimeoutClass::kTcpClosed;
    }
    return (tcp & tcp_state::kReplySeen) != 0 ? TimeoutClass::kTcpEstablished : TimeoutClass::kTcpTransitory;
  }
  if (proto == ip_proto::kUdp) return TimeoutClass::kUdp;
  return TimeoutClass::kIcmp;
}

void FlowTable::LinkTail(uint32_t f) noexcept {
  Flow& fl = flows_[f];
  const std::size_t c = Index(fl.tclass);
  fl.prev = tail_[c];
  fl.next = kNil;
  if (tail_[c] != kNil) flows_[tail_[c]].next = f;
  else head_[c] = f;
  tail_[c] = f;
}

void FlowTable::Unlink(uint32_t f) noexcept {
  Flow& fl = flows_[f];
  const std::size_t c = Index(fl.tclass);
  if (fl.prev != kNil) flows_[fl.prev].next = fl.next;
  else head_[c] = fl.next;
  if (fl.next != kNil) flows_[fl.next].prev = fl.prev;
  else tail_[c] = fl.prev;
  fl.prev = fl.next = kNil;
}

void FlowTable::Touch(uint32_t f, Dir dir, uint8_t tcp_flags, uint64_t now) noexcept {
  Flow& fl = flows_[f];
  uint8_t tcp = fl.tcp;
  if (fl.orig.proto == ip_proto::kTcp) {
    constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRstFlag = 0x04, kAck = 0x10;
    const bool closed = ClassOf(ip_proto::kTcp, tcp) == TimeoutClass::kTcpClosed;
    if (dir == Dir::kOriginal && closed && (tcp_flags & (kSyn | kAck)) == kSyn) {
      tcp = tcp_state::kSynOut;  // the same 5-tuple opens anew (RFC 5382: reuse the mapping)
    } else {
      if ((tcp_flags & kRstFlag) != 0) tcp |= tcp_state::kRst;
      if ((tcp_flags & kFin) != 0) tcp |= dir == Dir::kOriginal ? tcp_state::kFinOut : tcp_state::kFinIn;
      if (dir == Dir::kOriginal && (tcp_flags & kSyn) != 0) tcp |= tcp_state::kSynOut;
      if (dir == Dir::kReply && (tcp_flags & kRstFlag) == 0) tcp |= tcp_state::kReplySeen;
    }
  }
  const TimeoutClass c = ClassOf(fl.orig.proto, tcp);
  fl.tcp = tcp;
  fl.last_seen_ns = now;
  Unlink(f);
  fl.tclass = c;
  LinkTail(f);
}

uint64_t FlowTable::NextRandom() noexcept { return SplitMix(&rng_); }

bool FlowTable::ChoosePort(const NatTarget& t, U128 xaddr, const FlowKey& k, uint16_t* port) noexcept {
  // This shard's share: lo <= p <= hi with p % shards == shard, n of them from `first`.
  const uint32_t shards = o_.shards;
  const uint32_t lo = t.ports.lo, hi = t.ports.hi;
  const uint32_t first = lo + (o_.shard + shards - lo % shards) % shards;
  if (first > hi) return false;
  const uint32_t n = (hi - first) / shards + 1;
  const uint64_t r = NextRandom();
  const uint32_t start = static_cast<uint32_t>(r % n);
  uint32_t stride = static_cast<uint32_t>((r >> 32) % n) | 1;
  while (std::gcd(stride, n) != 1) stride += 2;  // visits every port before repeating
  stride %= n;
  if (stride == 0) stride = 1;
  uint32_t idx = start;
  for (uint32_t probe = 0; probe < std::min(n, kMaxPortProbes); ++probe) {
    const auto p = static_cast<uint16_t>(first + idx * shards);
    if (!PortTaken(xaddr, k.family, k.proto, p)) {
      *port = p;
      return true;
    }
    idx += stride;
    if (idx >= n) idx -= n;
  }
  return false;
}

uint32_t FlowTable::EvictionVictim() const noexcept {
  for (TimeoutClass c : {TimeoutClass::kTcpClosed, TimeoutClass::kTcpTransitory}) {
    if (head_[Index(c)] != kNil) return head_[Index(c)];
  }
  uint32_t victim = kNil;
  for (TimeoutClass c : {TimeoutClass::kUdp, TimeoutClass::kIcmp, TimeoutClass::kTcpEstablished}) {
    const uint32_t h = head_[Index(c)];
    if (h != kNil && (victim == kNil || flows_[h].last_seen_ns < flows_[victim].last_seen_ns)) victim = h;
  }
  return victim;
}

FlowTable::CreateResult FlowTable::Create(const FlowKey& k, const NatTarget& target, uint8_t tcp_flags,
                                          uint64_t now) noexcept {
  CreateResult out;
  const U128 xaddr = target.keep_address ? k.src() : target.address;
  uint16_t port = 0;
  if (!ChoosePort(target, xaddr, k, &port)) {
    out.status = CreateStatus::kNoPort;
    return out;
  }
  if (free_.empty()) {
    if (o_.on_full == NatFullPolicy::kDropNew) {
      out.status = CreateStatus::kTableFull;
      return out;
    }
    Remove(EvictionVictim());
    out.evicted = true;
  }
  const uint32_t f = free_.back();
  free_.pop_back();
  Flow& fl = flows_[f];
  fl = Flow{};
  fl.orig = k;
  fl.xaddr = xaddr;
  fl.xport = port;
  fl.rule_number = target.rule_number;
  fl.live = true;
  fl.tclass = ClassOf(k.proto, 0);
  fl.last_seen_ns = now;
  LinkTail(f);
  Insert(Tag(HashKey(k)), f << 2 | kOrigKey);
  Insert(Tag(HashKey(fl.ReplyKey())), f << 2 | kReplyKey);
  Insert(Tag(HashClaim(xaddr, k.family, k.proto, port)), f << 2 | kClaimKey);
  ++size_;
  Touch(f, Dir::kOriginal, tcp_flags, now);
  out.flow = f;
  return out;
}

void FlowTable::Remove(uint32_t f) noexcept {
  Flow& fl = flows_[f];
  SLUICE_DCHECK(fl.live);
  Erase(Tag(HashKey(fl.orig)), f << 2 | kOrigKey);
  Erase(Tag(HashKey(fl.ReplyKey())), f << 2 | kReplyKey);
  Erase(Tag(HashClaim(fl.xaddr, fl.orig.family, fl.orig.proto, fl.xport)), f << 2 | kClaimKey);
  Unlink(f);
  fl.live = false;
  free_.push_back(f);
  --size_;
}

FlowTable::ExpireResult FlowTable::Expire(uint64_t now, uint32_t budget) noexcept {
  ExpireResult out;
  for (std::size_t c = 0; c < head_.size() && out.expired < budget; ++c) {
    const uint64_t timeout = o_.timeout_ns[c];
    while (out.expired < budget && head_[c] != kNil) {
      const uint32_t f = head_[c];
      if (now < flows_[f].last_seen_ns || now - flows_[f].last_seen_ns < timeout) break;
      Remove(f);
      ++out.expired;
    }
  }
  return out;
}

}  // namespace sluice
