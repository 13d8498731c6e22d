#include "engine/rules/flow_table.h"

#include <algorithm>

#include "engine/core/assert.h"
#include "engine/core/random_seed.h"
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
  flows_ = ZeroedArray<Flow>(capacity_);
  free_.resize(capacity_);
  for (uint32_t i = 0; i < capacity_; ++i) free_[i] = capacity_ - 1 - i;  // pop gives 0, 1, 2, …
  // Three keys per flow, at most half full.
  uint64_t slots = 1;
  while (slots < uint64_t{capacity_} * 6) slots <<= 1;
  slots_ = ZeroedArray<Slot>(slots);
  mask_ = static_cast<uint32_t>(slots - 1);
  for (std::size_t c = 0; c < wheel_.size(); ++c) {
    Wheel& w = wheel_[c];
    // The narrowest buckets whose wheel still spans the timeout.
    while ((uint64_t{kWheelBuckets - 2} << w.shift) < o_.timeout_ns[c]) ++w.shift;
    w.head.assign(kWheelBuckets, kNil);
    w.tail.assign(kWheelBuckets, kNil);
    w.occupied.assign(kWheelBuckets / 64, 0);
  }
  uint64_t h = o_.hash_seed != 0 ? o_.hash_seed : RandomSeed();
  seed_flow_ = SplitMix(&h);
  seed_mix_ = SplitMix(&h);
  seed_claim_ = SplitMix(&h);
  uint64_t s = o_.seed;
  // Three draws skipped: the port sequence for a given nat.seed is the one it was before the
  // key hash got its own seed, so reproducible runs (and the gate's counts) did not move.
  for (int i = 0; i < 3; ++i) SplitMix(&s);
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

bool FlowTable::Lookup(const FlowKey& k, uint32_t hash, Hit* hit) const noexcept {
  const uint32_t tag = TagOf(hash);
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
  const uint32_t tag = TagOf(HashClaim(address, family, proto, port));
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

void FlowTable::File(uint32_t f, uint64_t due) noexcept {
  Flow& fl = flows_[f];
  Wheel& w = WheelOf(fl);
  const uint64_t abs = std::clamp(due >> w.shift, w.cursor, w.cursor + kWheelBuckets - 1);
  const auto b = static_cast<uint32_t>(abs % kWheelBuckets);
  fl.bucket = b;
  fl.next = kNil;
  fl.prev = w.tail[b];
  if (fl.prev != kNil) flows_[fl.prev].next = f;
  else w.head[b] = f;
  w.tail[b] = f;
  w.occupied[b / 64] |= uint64_t{1} << (b % 64);
  w.summary |= uint64_t{1} << (b / 64);
  ++w.filed;
}

void FlowTable::Unfile(uint32_t f) noexcept {
  Flow& fl = flows_[f];
  Wheel& w = WheelOf(fl);
  if (fl.prev != kNil) flows_[fl.prev].next = fl.next;
  else w.head[fl.bucket] = fl.next;
  if (fl.next != kNil) flows_[fl.next].prev = fl.prev;
  else w.tail[fl.bucket] = fl.prev;
  if (w.head[fl.bucket] == kNil) {
    uint64_t& word = w.occupied[fl.bucket / 64];
    word &= ~(uint64_t{1} << (fl.bucket % 64));
    if (word == 0) w.summary &= ~(uint64_t{1} << (fl.bucket / 64));
  }
  fl.prev = fl.next = kNil;
  --w.filed;
}

uint32_t FlowTable::NextFiled(const Wheel& w, uint32_t from) noexcept {
  static_assert(kWheelBuckets == 64 * 64);
  if (w.filed == 0) return kNil;
  const uint32_t word = from / 64;
  // The rest of from's own word, then later words (summary), then around from the start.
  const uint64_t same = w.occupied[word] & (~uint64_t{0} << (from % 64));
  if (same != 0) return word * 64 + static_cast<uint32_t>(__builtin_ctzll(same));
  const uint64_t later = word == 63 ? 0 : w.summary & (~uint64_t{0} << (word + 1));
  const uint64_t words = later != 0 ? later : w.summary;  // summary != 0: something is filed
  const uint32_t k = static_cast<uint32_t>(__builtin_ctzll(words));
  return k * 64 + static_cast<uint32_t>(__builtin_ctzll(w.occupied[k]));
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
  if (c != fl.tclass) {  // a new timeout (close tracking): re-file; otherwise the wheel catches up
    Unfile(f);
    fl.tclass = c;
    File(f, DueNs(fl));
  }
}

uint64_t FlowTable::NextRandom() noexcept { return SplitMix(&rng_); }

bool FlowTable::ChoosePort(const NatTarget& t, U128 xaddr, const FlowKey& k, uint16_t* port) noexcept {
  // This shard's share: lo <= p <= hi with p % shards == shard, n of them from `first`.
  const uint32_t shards = o_.shards;
  const uint32_t lo = t.ports.lo, hi = t.ports.hi;
  const uint32_t first = lo + (o_.shard + shards - lo % shards) % shards;
  if (first > hi) return false;
  const uint32_t n = (hi - first) / shards + 1;
  // Primes above 65535 are coprime with every share size n <= 65535: the stride visits every
  // port of the share before repeating.
  static constexpr uint32_t kPrimes[16] = {65537, 65539, 65543, 65551, 65557, 65563, 65579, 65581,
                                           65587, 65599, 65609, 65617, 65629, 65633, 65647, 65651};
  const uint64_t r = NextRandom();
  const uint32_t start = static_cast<uint32_t>(r % n);
  const uint32_t stride = n == 1 ? 0 : kPrimes[(r >> 40) & 15] % n;
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

// Of each wheel's first filed bucket from its cursor on, the one due soonest, and its oldest
// flow — unless that flow was seen since it was filed: then it is re-filed under its real due
// time and the search goes on (a few rounds at most; the last candidate is taken regardless).
uint32_t FlowTable::EvictionVictim() noexcept {
  uint32_t victim = kNil;
  for (int round = 0; round < 8; ++round) {
    Wheel* from = nullptr;
    uint64_t soonest = ~uint64_t{0};
    for (Wheel& w : wheel_) {
      const uint32_t b = NextFiled(w, static_cast<uint32_t>(w.cursor % kWheelBuckets));
      if (b == kNil) continue;
      const uint64_t abs = w.cursor + (b + kWheelBuckets - w.cursor % kWheelBuckets) % kWheelBuckets;
      if ((abs << w.shift) < soonest) {
        soonest = abs << w.shift;
        victim = w.head[b];
        from = &w;
      }
    }
    if (victim == kNil) return kNil;
    const uint64_t due = DueNs(flows_[victim]);
    if ((due >> from->shift) <= (soonest >> from->shift)) return victim;
    Unfile(victim);
    File(victim, due);
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
  Wheel& w = WheelOf(fl);
  if (w.filed == 0) w.cursor = std::max(w.cursor, now >> w.shift);  // an empty wheel jumps to now
  File(f, DueNs(fl));
  fl.tags = {TagOf(HashKey(k)), TagOf(HashKey(fl.ReplyKey())), TagOf(HashClaim(xaddr, k.family, k.proto, port))};
  Insert(fl.tags[kOrigKey], f << 2 | kOrigKey);
  Insert(fl.tags[kReplyKey], f << 2 | kReplyKey);
  Insert(fl.tags[kClaimKey], f << 2 | kClaimKey);
  ++size_;
  Touch(f, Dir::kOriginal, tcp_flags, now);
  out.flow = f;
  return out;
}

void FlowTable::Remove(uint32_t f) noexcept {
  Flow& fl = flows_[f];
  SLUICE_DCHECK(fl.live);
  Erase(fl.tags[kOrigKey], f << 2 | kOrigKey);
  Erase(fl.tags[kReplyKey], f << 2 | kReplyKey);
  Erase(fl.tags[kClaimKey], f << 2 | kClaimKey);
  Unfile(f);
  fl.live = false;
  free_.push_back(f);
  --size_;
}

FlowTable::ExpireResult FlowTable::Expire(uint64_t now, uint32_t budget) noexcept {
  ExpireResult out;
  uint32_t work = 0;
  for (Wheel& w : wheel_) ExpireWheel(w, now, budget, &work, &out);
  return out;
}

// Walks the buckets from the cursor up to now's. Every flow in a walked bucket is either due
// (removed) or seen since it was filed (re-filed, later). The cursor passes a bucket once it
// is empty; it stays while the bucket holds flows due later within its slice of time, or when
// the budget ran out inside it. Re-filed flows go to later buckets, so a walk never meets the
// same flow twice and cannot spin.
void FlowTable::ExpireWheel(Wheel& w, uint64_t now, uint32_t budget, uint32_t* work, ExpireResult* out) noexcept {
  const uint64_t target = now >> w.shift;
  while (w.cursor <= target && *work < budget) {
    const auto here = static_cast<uint32_t>(w.cursor % kWheelBuckets);
    const uint32_t b = NextFiled(w, here);
    if (b == kNil) {  // an empty wheel: nothing to do until something is filed
      w.cursor = target + 1;
      return;
    }
    const uint64_t ahead = (b + kWheelBuckets - here) % kWheelBuckets;
    if (w.cursor + ahead > target) {  // nothing filed before now's bucket
      w.cursor = target + 1;
      return;
    }
    w.cursor += ahead;
    for (uint32_t f = w.head[b]; f != kNil && *work < budget;) {
      Flow& fl = flows_[f];
      const uint32_t next = fl.next;
      ++*work;
      const uint64_t due = DueNs(fl);
      if (due <= now) {
        Remove(f);
        ++out->expired;
      } else if ((due >> w.shift) > w.cursor) {
        Unfile(f);
        File(f, due);
      }
      f = next;
    }
    if (w.head[b] != kNil) return;  // flows due later in this slice, or out of budget: next time
    ++w.cursor;
  }
}

}  // namespace sluice
