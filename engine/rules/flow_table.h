// FlowTable: one shard's stateful source-port translations (NAPT), as natd/libalias keeps them.
//
//   outbound  in:p  → out:q          becomes   X:x → out:q      (X = translated address, x = port)
//   reply     out:q → X:x            becomes   out:q → in:p
//
// Each translation (a Flow) is indexed under three keys in one open-addressing table:
//   original  the outbound 5-tuple as the inside host sends it      → translate the source
//   reply     the 5-tuple replies carry (out:q → X:x)               → translate the destination
//   claim     (X, protocol, x): the translated port is taken        → port allocation
// so one probe classifies a packet as "original direction", "reply" or "unknown". The flow
// keys hash with a seeded symmetric hash (both orientations of a tuple hash alike); claims
// with their own seeded hash. ICMP echo travels as a "port" too: the identifier is the source
// port of a request key and the destination port of a reply key (dport / sport 0).
//
// Contracts
// - Per shard, one thread at a time, no locks. Everything is allocated at construction; the
//   data-path calls (Lookup, Touch, Create, Expire) allocate nothing and never throw.
//   The one exception is NatPeers (engine/stages/classify/nat_peers.h): other shards may call
//   Lookup and read a flow's identity (orig, xaddr, xport, rule_number) under a lock the owner
//   holds around Create and Expire (Remove and eviction happen inside those). So Touch, and
//   the wheel filing it may do, must never write the slots or those fields.
// - Time is supplied by the caller (`now`, nanoseconds, monotonic, once per batch): no clock
//   call per packet. Timeouts are idle times per class: TCP transitory (SYN seen, no reply
//   yet), TCP established, TCP closed (FIN both ways, or an RST), UDP, ICMP.
// - Expiry uses one timing wheel per timeout class (kWheelBuckets buckets, each 2^shift ns
//   with the shift chosen so the wheel spans the class's timeout: 4 ms buckets for a 10 s
//   timeout, 2 s ones for 7440 s). A flow waits in the bucket of its due time (last packet +
//   timeout). A packet only stamps last_seen — no list surgery, no misses on other flows —
//   unless it moves the flow to another class (TCP close tracking), which re-files it. When
//   a bucket comes due, each flow in it has either reached its real due time (removed) or
//   has seen packets since (re-filed under its real due time: at most once per timeout per
//   flow). So a flow expires within one bucket (1/4096 of its timeout) of being idle for
//   exactly its timeout, and expiry work is per flow per timeout, not per packet.
// - Capacity is a hard cap. A full table evicts the flow nearest its due time — in practice
//   closed TCP first, then unanswered TCP, whose timeouts are shortest; within one class the
//   least recently used, to within a bucket — or, with
//   NatFullPolicy::kDropNew, refuses. Every creation, expiry, eviction and refusal is
//   reported to the caller, which counts it.
// - Ports: shard s of S allocates only ports p with p % S == s, so shards never hand out the
//   same (address, protocol, port) and a reply's port names its shard (ReplyShard). A port
//   is free when no live flow claims (translated address, protocol, port): uniqueness holds
//   per (translated address, protocol), not merely per 5-tuple. The choice is pseudo-random
//   from the table's seed (deterministic for a given seed): a random start, then a stride
//   coprime with the shard's share of the range (a random prime above 65535), at most
//   kMaxPortProbes probes.
// - Flows own copies of everything they need (addresses, ports): nothing points into a rule
//   set, so reloading rules never leaves a translation dangling.
// - Cost: a lookup hashes 40 bytes and probes a table kept at most half full (~1.5 slots on
//   average); see bench/rules/flow_table_bench.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/core/zeroed_array.h"
#include "engine/packet/packet_buffer.h"
#include "engine/rules/config.h"
#include "engine/rules/ip_addr.h"

namespace sluice {

// An oriented 5-tuple: src → dst. Addresses in IpAddr's convention (IPv4 in the low 32 bits).
struct FlowKey {
  uint64_t src_hi = 0, src_lo = 0, dst_hi = 0, dst_lo = 0;
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint8_t proto = 0;
  L3Type family = L3Type::kNone;
  uint16_t zero = 0;  // padding kept zero: keys compare as bytes

  U128 src() const noexcept { return MakeU128(src_hi, src_lo); }
  U128 dst() const noexcept { return MakeU128(dst_hi, dst_lo); }
  void set_src(U128 v) noexcept { src_hi = High64(v), src_lo = Low64(v); }
  void set_dst(U128 v) noexcept { dst_hi = High64(v), dst_lo = Low64(v); }
  friend bool operator==(const FlowKey& a, const FlowKey& b) noexcept {
    return std::memcmp(&a, &b, sizeof(FlowKey)) == 0;
  }
};
static_assert(sizeof(FlowKey) == 40);

// Where a translation's source goes: a port range, and an address or "keep the source's".
struct NatTarget {
  PortRange ports;
  bool keep_address = true;
  U128 address = 0;          // when !keep_address
  uint32_t rule_number = 0;  // the rule that asks for it (stats)
};

enum class TimeoutClass : uint8_t { kTcpTransitory = 0, kTcpEstablished, kTcpClosed, kUdp, kIcmp, kCount };

struct FlowTableOptions {
  uint32_t capacity = 65536;
  uint64_t seed = 1;  // port choice; never 0 here: the owner turns NatConfig::seed 0 into a random one
  // The keys' hash. 0 (the default, and what a config file gets): drawn at random when the
  // table is built, whatever `seed` is. Anyone who knows it can make every key of a flood
  // probe one cluster of slots (perf/flood/napt_flood measured ~100x slower per packet), so
  // only tests and benchmarks fix it. It decides where keys sit, never what the table
  // answers: with the same `seed`, translations are the same whatever the hash seed.
  uint64_t hash_seed = 0;
  NatFullPolicy on_full = NatFullPolicy::kEvictOldest;
  std::array<uint64_t, static_cast<std::size_t>(TimeoutClass::kCount)> timeout_ns{};
  uint32_t shard = 0;
  uint32_t shards = 1;

  static FlowTableOptions From(const NatConfig& nat, uint64_t seed, uint32_t shard, uint32_t shards);
};

class FlowTable {
 public:
  static constexpr uint32_t kNil = 0xffffffff;
  static constexpr uint32_t kMaxPortProbes = 128;
  static constexpr uint32_t kWheelBuckets = 4096;  // 64 x 64: one summary word covers the bitmap

  enum class Dir : uint8_t { kOriginal = 0, kReply = 1 };

  struct Flow {
    FlowKey orig;               // as the inside host sends it
    U128 xaddr = 0;             // translated source address
    uint16_t xport = 0;         // translated source port / ICMP identifier
    uint8_t tcp = 0;            // tcp_state bits
    TimeoutClass tclass = TimeoutClass::kUdp;
    uint32_t prev = kNil;       // neighbours in its wheel bucket
    uint32_t next = kNil;
    uint32_t bucket = 0;        // the bucket of its class's wheel it is filed in
    uint64_t last_seen_ns = 0;  // the last packet
    uint32_t rule_number = 0;
    std::array<uint32_t, 3> tags{};  // index tags of its original, reply and claim keys
    bool live = false;

    // The key replies carry: orig.dst:orig.dport → xaddr:xport.
    FlowKey ReplyKey() const noexcept;
  };

  // Bits of Flow::tcp.
  struct tcp_state {
    static constexpr uint8_t kSynOut = 1, kReplySeen = 2, kFinOut = 4, kFinIn = 8, kRst = 16;
  };

  struct Hit {
    uint32_t flow = kNil;
    Dir dir = Dir::kOriginal;
  };

  enum class CreateStatus : uint8_t {
    kCreated,
    kNoPort,     // every probed port of the shard's share of the range is taken
    kTableFull,  // at capacity with NatFullPolicy::kDropNew
  };
  struct CreateResult {
    CreateStatus status = CreateStatus::kCreated;
    uint32_t flow = kNil;
    bool evicted = false;  // a live flow was evicted to make room
  };

  struct ExpireResult {
    uint32_t expired = 0;
  };

  explicit FlowTable(const FlowTableOptions& options);
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // The flow whose original or reply key is k.
  bool Lookup(const FlowKey& k, Hit* hit) const noexcept { return Lookup(k, HashKey(k), hit); }

  // The same in two steps, for a batch (classify): hash every key and prefetch its first slot,
  // then look each up with its hash, so the slot misses of a batch overlap instead of
  // following one another. `hash` must be KeyHash(k).
  void Prefetch(uint32_t hash) const noexcept { __builtin_prefetch(&slots_[SlotOf(hash)]); }
  bool Lookup(const FlowKey& k, uint32_t hash, Hit* hit) const noexcept;

  // Records a packet of `flow` seen at `now` in direction `dir`; for TCP, `tcp_flags` (byte 13)
  // drives close tracking, which may move the flow to another timeout class.
  void Touch(uint32_t flow, Dir dir, uint8_t tcp_flags, uint64_t now) noexcept;

  // A new translation for the original-direction key k towards `target`. k's protocol must be
  // TCP, UDP, ICMP or ICMPv6 (ports: TCP/UDP ports, ICMP echo id as sport with dport 0).
  // Precondition: Lookup(k) found nothing.
  CreateResult Create(const FlowKey& k, const NatTarget& target, uint8_t tcp_flags, uint64_t now) noexcept;

  // Removes flows idle past their class's timeout, from the wheel buckets due by `now`;
  // looks at most at `budget` flows.
  ExpireResult Expire(uint64_t now, uint32_t budget) noexcept;

  // Removes a flow (tests, and eviction).
  void Remove(uint32_t flow) noexcept;

  const Flow& flow(uint32_t i) const noexcept { return flows_[i]; }
  // Faults the table's memory in now, so that no translation pays a page fault later: for
  // owners whose rules translate from the start. Contents are unchanged; call it before the
  // table is shared (NatPeers::Attach).
  void Prefault() noexcept {
    flows_.Prefault();
    slots_.Prefault();
  }
  uint32_t size() const noexcept { return size_; }
  uint32_t capacity() const noexcept { return capacity_; }
  const FlowTableOptions& options() const noexcept { return o_; }

  // Whether (address, proto, port) is claimed by a live flow of this table.
  bool PortTaken(U128 address, L3Type family, uint8_t proto, uint16_t port) const noexcept;

  // The seeded symmetric hash of a key (exposed for tests and benchmarks); its low bits pick
  // the slot.
  uint32_t KeyHash(const FlowKey& k) const noexcept { return HashKey(k); }

  // The shard that owns translated port `port` among `shards`.
  static uint32_t ReplyShard(uint16_t port, uint32_t shards) noexcept { return port % shards; }

 private:
  enum Kind : uint32_t { kOrigKey = 0, kReplyKey = 1, kClaimKey = 2 };
  struct Slot {
    uint32_t tag = 0;  // 0: empty; else the key's 32-bit hash with 0 mapped to 1
    uint32_t ref = 0;  // flow * 4 + Kind
  };

  static TimeoutClass ClassOf(uint8_t proto, uint8_t tcp) noexcept;
  static uint32_t TagOf(uint32_t hash) noexcept { return hash == 0 ? 1 : hash; }  // 0 marks empty
  uint32_t SlotOf(uint32_t hash) const noexcept { return TagOf(hash) & mask_; }
  uint32_t HashKey(const FlowKey& k) const noexcept;
  uint32_t HashClaim(U128 address, L3Type family, uint8_t proto, uint16_t port) const noexcept;
  void Insert(uint32_t tag, uint32_t ref) noexcept;
  void Erase(uint32_t tag, uint32_t ref) noexcept;
  struct Wheel {
    uint32_t shift = 0;              // bucket width 2^shift ns
    uint64_t cursor = 0;             // absolute bucket number (time >> shift) to look at next
    std::vector<uint32_t> head;      // kWheelBuckets lists, oldest first (kNil: empty)
    std::vector<uint32_t> tail;
    std::vector<uint64_t> occupied;  // one bit per bucket (kWheelBuckets / 64 words)
    uint64_t summary = 0;            // bit k: occupied[k] != 0
    uint32_t filed = 0;              // flows in this wheel
  };
  uint64_t DueNs(const Flow& f) const noexcept { return f.last_seen_ns + o_.timeout_ns[static_cast<std::size_t>(f.tclass)]; }
  Wheel& WheelOf(const Flow& f) noexcept { return wheel_[static_cast<std::size_t>(f.tclass)]; }
  // Files the flow in its class's wheel under `due` (clamped into the wheel's span).
  void File(uint32_t flow, uint64_t due) noexcept;
  void Unfile(uint32_t flow) noexcept;
  // The first bucket at or after `from` (circular) with flows in it, or kNil.
  static uint32_t NextFiled(const Wheel& w, uint32_t from) noexcept;
  void ExpireWheel(Wheel& w, uint64_t now, uint32_t budget, uint32_t* work, ExpireResult* out) noexcept;
  uint32_t EvictionVictim() noexcept;
  bool ChoosePort(const NatTarget& t, U128 xaddr, const FlowKey& k, uint16_t* port) noexcept;
  uint64_t NextRandom() noexcept;

  FlowTableOptions o_;
  uint32_t capacity_;
  uint32_t size_ = 0;
  // The two large arrays start as zero pages (ZeroedArray): a table no rule fills costs no
  // memory and no start-up time. A zero Slot is empty; a Flow's bytes matter only once Create
  // has written it.
  ZeroedArray<Flow> flows_;
  std::vector<uint32_t> free_;  // free flow indices (a stack)
  ZeroedArray<Slot> slots_;
  uint32_t mask_;
  std::array<Wheel, static_cast<std::size_t>(TimeoutClass::kCount)> wheel_;
  uint64_t seed_flow_, seed_mix_, seed_claim_;
  uint64_t rng_;
};

}  // namespace sluice
