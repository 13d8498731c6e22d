// NatPeers: every shard's flow table, for the one lookup that crosses shards.
//
// Kernel queues steer a packet by its own addresses and protocol (--queue-balance hashes
// source, destination and protocol), so both directions of a port-only translation reach one
// queue, but an ICMP error about it does not: "fragmentation needed" or "time exceeded" from
// a router, or an inside host's "port unreachable" about a reply, is an ICMP packet, and often
// between other addresses. It lands on whichever shard its own header hashes to. That shard
// asks its peers when its own table knows nothing of the quoted packet (ClassifyStage), as
// one NAT table would answer it, so path-MTU discovery and traceroute work through the
// translation with any number of queues. The offline graph steers errors to their flow's
// shard itself (parse) and has no peers.
//
// Contracts
// - A table's owner changes its index and its flows' identities only under its peer lock:
//   FlowTable::Create (eviction included) and Expire, at most twice per batch (expiry, then
//   the batch's creations), never per packet. Its own lookups and Touch take no lock: Touch
//   writes only what a peer never reads (last packet time, TCP state, timeout class, wheel
//   links).
// - A peer looks up under the owner's lock and copies out what a translation needs (the
//   original key, translated address and port, rule number): fixed while the flow lives.
// - Which tables are asked: an error coming in quotes the translated packet, whose port
//   names the one shard that can hold it (FlowTable::ReplyShard). An error an inside host
//   sends about a reply has no such port; for it a shard asks every other table, one at a
//   time, until one knows it. The caller decides when that scan is allowed (ClassifyStage:
//   not for a packet known to come in, and at most kPeerScansPerBatch per batch), so errors
//   from outside cannot make a shard take every other shard's lock.
// - Attach every table before the stages run (tables are not detached); the object outlives
//   every stage that points at it. Each peer's lock has its own cache line: owners lock their
//   own every batch, and must not share a line with a neighbour's.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "engine/rules/flow_table.h"

namespace sluice {

class NatPeers {
 public:
  explicit NatPeers(uint32_t shards) : shards_(shards), peers_(std::make_unique<Peer[]>(shards)) {}
  NatPeers(const NatPeers&) = delete;
  NatPeers& operator=(const NatPeers&) = delete;

  uint32_t shards() const noexcept { return shards_; }
  void Attach(uint32_t shard, const FlowTable* table) noexcept { peers_[shard].table = table; }

  // The owner's lock on its own table, held while it changes what peers read.
  std::mutex& lock(uint32_t shard) noexcept { return peers_[shard].mu; }

  // Whether any table has flows. An owner says so when its table becomes empty or not (rare);
  // a shard looks when it would otherwise not key its packets at all (no translate rule after
  // a reload, its own table empty), so errors about the flows that outlived the rules still
  // find them.
  void TableHasFlows(bool has) noexcept {
    if (has) tables_with_flows_.fetch_add(1, std::memory_order_relaxed);
    else tables_with_flows_.fetch_sub(1, std::memory_order_relaxed);
  }
  bool AnyFlows() const noexcept { return tables_with_flows_.load(std::memory_order_relaxed) != 0; }

  // The flow of another shard than `asking` whose original or reply key is `key`: its
  // identity (orig, xaddr, xport, rule_number) copied to *flow, with the direction the key
  // hit. The port's owner is asked; with `scan`, then every other shard (an error about a
  // reply, which any shard may hold).
  bool Find(uint32_t asking, const FlowKey& key, bool scan, FlowTable::Flow* flow,
            FlowTable::Dir* dir) const noexcept;

 private:
  struct alignas(64) Peer {
    mutable std::mutex mu;
    const FlowTable* table = nullptr;
  };
  // Looks key up in shard s's table under its lock.
  bool FindIn(uint32_t s, const FlowKey& key, FlowTable::Flow* flow, FlowTable::Dir* dir) const noexcept;

  uint32_t shards_;
  std::unique_ptr<Peer[]> peers_;
  alignas(64) std::atomic<uint32_t> tables_with_flows_{0};
};

}  // namespace sluice
