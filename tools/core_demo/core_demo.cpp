// sluice-core-demo: an in-memory run of the packet core, labelled as such.
//
// A source thread copies generated frames (IMIX 7:4:1 of 60/590/1514 B) into pool buffers,
// batch by batch; a sink thread gives every packet a verdict, records its latency from
// receive to verdict, and returns the buffers. No stage runs yet: this measures the floor the
// pipeline stands on (pool, batches, hand-off between threads).
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

#include "engine/core/clock.h"
#include "engine/pool/batch_pool.h"
#include "engine/pool/buffer_pool.h"
#include "engine/stats/histogram.h"

namespace sluice {
namespace {

class BatchQueue {
 public:
  void Push(Batch* b) {
    {
      std::lock_guard lock(mu_);
      q_.push_back(b);
    }
    cv_.notify_one();
  }
  Batch* Pop() {  // nullptr once closed and empty
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return nullptr;
    Batch* b = q_.front();
    q_.pop_front();
    return b;
  }
  void Close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch*> q_;
  bool closed_ = false;
};

int Run(uint64_t packets) {
  auto created = BufferPool::Create({.small_buffers = 8192, .large_buffers = 0});
  if (!created.ok()) {
    std::fprintf(stderr, "sluice-core-demo: %s\n", created.status().message().c_str());
    return 1;
  }
  BufferPool& pool = *created.value();
  BatchPool batches(64, kDefaultBatch);
  BatchQueue queue;
  LatencyHistogram latency;
  uint64_t accepted = 0, bytes = 0;

  static constexpr uint32_t kImix[12] = {60, 590, 60, 60, 1514, 60, 590, 60, 60, 590, 60, 590};
  uint8_t frame[1514];
  for (uint32_t i = 0; i < sizeof frame; ++i) frame[i] = static_cast<uint8_t>(i);

  const uint64_t start = NowNs();
  std::thread sink([&] {
    PoolCache cache(pool);
    PacketBuffer* bufs[kMaxBatch];
    while (Batch* b = queue.Pop()) {
      const uint64_t now = NowNs();
      for (uint32_t i = 0; i < b->size(); ++i) {
        b->set_next(i, Next::kAccept);
        latency.Record(now - b->packet(i).meta().rx_ns);
        bytes += b->packet(i).len();
      }
      b->RecordVerdicts();
      accepted += b->size();
      cache.PutBulk(bufs, b->TakeBuffers(bufs));
      batches.Put(b);
    }
  });
  {
    PoolCache cache(pool);
    PacketBuffer* bufs[kMaxBatch];
    uint64_t sent = 0, seq = 0;
    while (sent < packets) {
      Batch* b = batches.Get(std::chrono::milliseconds(100));
      if (b == nullptr) continue;  // every batch in flight: back-pressure
      const auto want = static_cast<uint32_t>(std::min<uint64_t>(b->limit(), packets - sent));
      const uint32_t n = cache.GetBulk(SizeClass::kSmall, bufs, want);
      const uint64_t now = NowNs();
      for (uint32_t i = 0; i < n; ++i) {
        bufs[i]->Assign(frame, kImix[(sent + i) % 12]);
        bufs[i]->meta().rx_ns = now;
        b->Push(PacketRef(bufs[i]));
      }
      b->set_seq(seq++);
      sent += n;
      queue.Push(b);
    }
    queue.Close();
  }
  sink.join();
  const double secs = static_cast<double>(NowNs() - start) / 1e9;
  const auto s = latency.Read();
  const PoolStats ps = pool.Stats();
  std::printf("sluice-core-demo: IN-MEMORY RUN OF THE PACKET CORE ONLY (no parse/classify/rewrite yet)\n");
  std::printf("  packets     %llu accepted of %llu generated (IMIX 7:4:1, batch %u, 2 threads)\n",
              static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(packets),
              kDefaultBatch);
  std::printf("  throughput  %.2f Mpps, %.2f Gbit/s over %.3f s\n",
              static_cast<double>(accepted) / secs / 1e6, static_cast<double>(bytes) * 8 / secs / 1e9,
              secs);
  std::printf("  latency     p50 %llu ns  p90 %llu ns  p99 %llu ns  p99.9 %llu ns  max %llu ns\n",
              static_cast<unsigned long long>(s.Percentile(0.50)),
              static_cast<unsigned long long>(s.Percentile(0.90)),
              static_cast<unsigned long long>(s.Percentile(0.99)),
              static_cast<unsigned long long>(s.Percentile(0.999)),
              static_cast<unsigned long long>(s.max));
  std::printf("  pool        exhausted %llu, orphaned %llu\n",
              static_cast<unsigned long long>(ps.exhausted), static_cast<unsigned long long>(ps.orphaned));
  return accepted == packets && ps.orphaned == 0 ? 0 : 1;
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  const uint64_t packets = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 5'000'000;
  return sluice::Run(packets);
}
