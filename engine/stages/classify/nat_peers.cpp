#include "engine/stages/classify/nat_peers.h"

namespace sluice {

bool NatPeers::FindIn(uint32_t s, const FlowKey& key, FlowTable::Flow* flow, FlowTable::Dir* dir) const noexcept {
  const Peer& p = peers_[s];
  if (p.table == nullptr) return false;
  std::lock_guard lock(p.mu);
  FlowTable::Hit hit;
  if (!p.table->Lookup(key, &hit)) return false;
  // Only what never changes while the flow lives: Touch writes the rest without the lock.
  const FlowTable::Flow& f = p.table->flow(hit.flow);
  *flow = FlowTable::Flow{};
  flow->orig = f.orig;
  flow->xaddr = f.xaddr;
  flow->xport = f.xport;
  flow->rule_number = f.rule_number;
  *dir = hit.dir;
  return true;
}

bool NatPeers::Find(uint32_t asking, const FlowKey& key, bool scan, FlowTable::Flow* flow,
                    FlowTable::Dir* dir) const noexcept {
  // A reply key's destination port is the translated one, which names its shard.
  const uint32_t owner = FlowTable::ReplyShard(key.dport, shards_);
  if (owner != asking && FindIn(owner, key, flow, dir)) return true;
  if (!scan) return false;
  for (uint32_t s = 0; s < shards_; ++s) {
    if (s != asking && s != owner && FindIn(s, key, flow, dir)) return true;
  }
  return false;
}

}  // namespace sluice
