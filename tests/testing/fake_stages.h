// Stand-in stages for testing the graphs on their own. They read a tiny test header instead of
// real protocol headers: bytes [0,4) flow id, [4,8) sequence number within the flow, [8] an
// Action saying what the packet should meet.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include <oneapi/tbb/info.h>

#include "engine/core/byte_order.h"
#include "engine/packet/batch.h"

namespace sluice::testing {

enum Action : uint8_t { kAcceptIt = 0, kRewriteIt = 1, kDropIt = 2, kSkipIt = 3 };

struct FakeParse {
  void Process(Batch& b) noexcept {
    for (uint32_t i = 0; i < b.size(); ++i) {
      if (b.next(i) != Next::kParse) continue;
      PacketBuffer& p = b.packet(i);
      const uint32_t flow = LoadBe32(p.data());
      p.meta().flow_hash = flow * 2654435761u;  // any well-spread function of the flow
      if (p.data()[8] == kSkipIt) {
        b.Skip(i, DropReason::kNotIp);
      } else {
        b.set_next(i, Next::kClassify);
      }
    }
  }
};

struct FakeClassify {
  void Process(Batch& b) noexcept {
    for (uint32_t i = 0; i < b.size(); ++i) {
      if (b.next(i) != Next::kClassify) continue;
      switch (b.packet(i).data()[8]) {
        case kDropIt: b.Drop(i, DropReason::kUnsupportedLinkType); break;
        case kRewriteIt: b.set_next(i, Next::kRewrite); break;
        default: b.set_next(i, Next::kAccept); break;
      }
    }
  }
};

// The threads that have arrived in a shard's first batch, by id. A shard's first batch waits
// there (up to 20 s, a bound for loaded sanitizer runs that a passing run never nears) until
// `want` different threads have arrived: only a graph that really has that many threads gets
// there, as each waiting thread holds its batch.
struct Rendezvous {
  explicit Rendezvous(std::size_t want) : want(want) {}
  void Arrive() {
    std::unique_lock lock(mu);
    ids.insert(std::this_thread::get_id());
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(20), [&] { return ids.size() >= want; });
  }
  std::size_t Met() {
    std::lock_guard lock(mu);
    return ids.size();
  }
  const std::size_t want;
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::thread::id> ids;
};

// A thread count above the machine's CPUs (CPUs + 2, at most 8), for tests of running on more
// threads than oneTBB would allow by itself; 0 where that cap leaves none above the CPUs (8 or
// more of them), as such a test proves nothing at or under the CPU count.
inline uint32_t ThreadsAboveCpus() {
  const int cpus = tbb::info::default_concurrency();
  const int threads = std::min(cpus + 2, 8);
  return threads > cpus ? static_cast<uint32_t>(threads) : 0;
}

struct RendezvousClassify {
  void Process(Batch& b) noexcept {
    if (!arrived) rendezvous->Arrive();
    arrived = true;
    classify.Process(b);
  }
  Rendezvous* rendezvous = nullptr;
  bool arrived = false;
  FakeClassify classify;
};

// Rewrites byte 9 and checks that each flow's packets arrive in sequence.
struct FakeRewrite {
  void Process(Batch& b) noexcept {
    for (uint32_t i = 0; i < b.size(); ++i) {
      PacketBuffer& p = b.packet(i);
      const uint32_t flow = LoadBe32(p.data());
      const uint32_t seq = LoadBe32(p.data() + 4);
      if (!IsTerminal(b.next(i)) || b.next(i) == Next::kAccept || b.next(i) == Next::kDrop) {
        auto it = last_seq.find(flow);
        if (it != last_seq.end() && seq <= it->second) ++order_violations;
        last_seq[flow] = seq;  // allocation on first sight of a flow only
      }
      if (b.next(i) != Next::kRewrite) continue;
      p.data()[9] ^= 0xff;
      p.meta().flags |= pkt_flag::kModified;
      b.set_next(i, Next::kAccept);
    }
  }
  std::map<uint32_t, uint32_t> last_seq;
  uint64_t order_violations = 0;
};

// `flows` flows, `per_flow` packets each, interleaved at random (seeded); a mix of actions.
inline std::vector<std::vector<uint8_t>> MakeTraffic(uint32_t flows, uint32_t per_flow, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint32_t> next_seq(flows, 0);
  std::vector<uint32_t> order;
  for (uint32_t f = 0; f < flows; ++f) order.insert(order.end(), per_flow, f);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::vector<uint8_t>> packets;
  for (uint32_t f : order) {
    std::vector<uint8_t> p(60 + rng() % 200);
    StoreBe32(p.data(), f);
    StoreBe32(p.data() + 4, next_seq[f]++);
    p[8] = static_cast<uint8_t>(rng() % 4);
    for (std::size_t k = 9; k < p.size(); ++k) p[k] = static_cast<uint8_t>(rng());
    packets.push_back(std::move(p));
  }
  return packets;
}

}  // namespace sluice::testing
