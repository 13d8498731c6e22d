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
//   names the one shard that can hold it (FlowTable::ReplyShard); only an error an inside
//   host sends about a reply (its source is the quoted destination) makes a shard ask every
//   other table, one at a time, until one knows it.
// - Attach every table before the stages run (tables are not detached); the object outlives
//   every stage that points at it. Each peer's lock has its own cache line: owners lock their
//   own every batch, and must not share a line with a neighbour's.
#pragma once

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

  // The flow of another shard than `asking` whose original or reply key is `key`: its
  // identity (orig, xaddr, xport, rule_number) copied to *flow, with the direction the key
  // hit. `from_inside`: the error's source is the quoted packet's destination (key.src), so
  // it may be about a reply, whose flow any shard may hold; otherwise only the port's owner
  // is asked.
  bool Find(uint32_t asking, const FlowKey& key, bool from_inside, FlowTable::Flow* flow,
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
};

}  // namespace sluice
