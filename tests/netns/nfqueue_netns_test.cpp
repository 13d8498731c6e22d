// NfqueueEndpoint + InlinePipeline in-process against the real kernel, in throwaway network
// namespaces (netns_lab.h): what the daemon never does and so its tests
// (sluice_run_netns_test.cpp) cannot show — stopping the pipeline while its sockets stay
// bound, and starting it again on them. Needs root; skipped otherwise.
//
// The router's rules (reinjection continues at the next hook, so the counting rules sit in
// the filter table, after mangle):
//   mangle FORWARD  -m mark ! --mark 0x100/0x100 -j NFQUEUE --queue-balance 0:1 --queue-bypass
//   filter FORWARD 1: -m mark --mark 0x100/0x100     verdicted by sluice (the loop guard)
//   filter FORWARD 2: -m mark ! --mark 0x100/0x100   passed without sluice (bypass, fail-open)
#include <gtest/gtest.h>

#include <sstream>
#include <thread>

#include "engine/graph/pipeline.h"
#include "engine/io/nfqueue/nfqueue_endpoint.h"
#include "engine/io/nfqueue/queue_stats.h"
#include "tests/netns/netns_lab.h"

namespace sluice {
namespace {

using testing::LabProcess;
using testing::kSanitized;
using testing::NetnsLab;
using testing::Node;
using C = NfqueueCounter;
using namespace std::chrono_literals;

constexpr uint32_t kGuard = 0x100;
constexpr uint32_t kQueues = 2;

using ParseStage = PassStage<Next::kParse, Next::kClassify>;
using ClassifyStage = PassStage<Next::kClassify, Next::kRewrite>;
using RewriteStage = PassStage<Next::kRewrite, Next::kAccept>;

class NfqueueNetns : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!NetnsLab::Root())
      GTEST_SKIP() << "needs root: network namespaces, veth pairs and iptables";
    auto lab = NetnsLab::Create();
    ASSERT_TRUE(lab.ok()) << lab.status().message();
    lab_ = std::move(lab).value();
    ASSERT_TRUE(lab_->Must(Node::kRouter,
                           "iptables -w -t mangle -A FORWARD -m mark ! --mark 0x100/0x100 "
                           "-j NFQUEUE --queue-balance 0:1 --queue-bypass && "
                           "iptables -w -t filter -A FORWARD -m mark --mark 0x100/0x100 && "
                           "iptables -w -t filter -A FORWARD -m mark ! --mark 0x100/0x100")
                    .ok());
    auto pool = BufferPool::Create({.small_buffers = 8192, .large_buffers = 160});
    ASSERT_TRUE(pool.ok()) << pool.status().message();
    pool_ = std::move(pool).value();
  }

  void TearDown() override {
    pipeline_.reset();
    endpoints_.clear();
  }

  void OpenQueues(NfqueueOptions o = {}) {
    NetnsLab::RouterScope in_router(*lab_);
    ASSERT_TRUE(in_router.ok());
    o.verdict_mark = kGuard;
    o.verdict_mask = kGuard;
    for (uint16_t q = 0; q < kQueues; ++q) {
      o.queue = q;
      auto ep = NfqueueEndpoint::Open(o);
      ASSERT_TRUE(ep.ok()) << ep.status().message();
      endpoints_.push_back(std::move(ep).value());
    }
  }

  void StartPipeline() {
    shards_.clear();
    for (uint32_t s = 0; s < endpoints_.size(); ++s) {
      shards_.push_back({endpoints_[s].get(), StageRef::Of(parse_[s]), StageRef::Of(classify_[s]),
                         StageRef::Of(rewrite_[s])});
    }
    pipeline_ = std::make_unique<InlinePipeline>(
        InlineOptions{.threads = 2, .batch_size = 64, .batches_per_shard = 4, .receive_wait = 5ms},
        *pool_, shards_);
    pipeline_->Start();
  }

  std::vector<KernelQueueStats> Kernel() const {
    auto k = ReadKernelQueueStats(lab_->NfqueueProcPath());
    EXPECT_TRUE(k.ok()) << k.status().message();
    return k.ok() ? *k : std::vector<KernelQueueStats>{};
  }

  static uint64_t Verdicted(const NfqueueEndpoint& ep) {
    const auto& c = ep.counters();
    return c.Load(C::kBatchAccepted) + c.Load(C::kSingleAccepted) + c.Load(C::kPayloadAccepted) +
           c.Load(C::kDropped);
  }

  // Waits until every endpoint has verdicted all it received and the kernel holds nothing.
  bool Quiescent(std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      bool done = true;
      for (const auto& ep : endpoints_)
        done = done && Verdicted(*ep) == ep->counters().Load(C::kIdsReceived);
      for (const KernelQueueStats& k : Kernel()) done = done && k.queue_total == 0;
      if (done) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::unique_ptr<LabProcess> StartReceiver(uint64_t expect, uint32_t port = 9000,
                                            uint32_t idle_ms = 3000) {
    auto rx =
        lab_->Spawn(Node::kServer, {SLUICE_NETNS_TRAFFIC, "udp-recv", "--port",
                                    std::to_string(port), "--expect", std::to_string(expect),
                                    "--timeout-ms", "60000", "--idle-ms", std::to_string(idle_ms)});
    EXPECT_TRUE(rx && rx->WaitForLine("ready", 5s));
    return rx;
  }
  static uint64_t Received(LabProcess& rx) {
    EXPECT_EQ(rx.Wait(30s), 0) << rx.output();
    return testing::OutputField(rx.output(), "received");
  }

  // Every non-zero counter of every queue, and the kernel's rows: for failure messages.
  std::string Dump() const {
    std::string out;
    for (const auto& ep : endpoints_) {
      out += "queue " + std::to_string(ep->queue()) + ":";
      for (std::size_t i = 0; i < kNfqueueCounterTable.size(); ++i) {
        if (const uint64_t v = ep->counters().LoadAt(i)) {
          out += " " + std::string(kNfqueueCounterTable[i].name) + "=" + std::to_string(v);
        }
      }
      out += "\n";
    }
    for (const KernelQueueStats& k : Kernel()) {
      out += "kernel queue " + std::to_string(k.queue) +
             ": total=" + std::to_string(k.queue_total) +
             " dropped=" + std::to_string(k.queue_dropped) +
             " user_dropped=" + std::to_string(k.queue_user_dropped) +
             " id_sequence=" + std::to_string(k.id_sequence) + "\n";
    }
    return out;
  }

  // The end of a stream: the server got all `count` the sender sent, sluice went quiet, and the
  // counts reconcile. Stops the pipeline.
  void ExpectDeliveredWhole(LabProcess& rx, uint64_t sent, uint64_t count) {
    const uint64_t received = Received(rx);
    ASSERT_TRUE(Quiescent(5s)) << Dump();
    pipeline_->Stop();
    EXPECT_EQ(sent, count);
    EXPECT_EQ(received, sent);
    ExpectReconciled();
  }

  // Kernel ids versus sluice's counters, queue by queue.
  void ExpectReconciled() const {
    const auto kernel = Kernel();
    for (const auto& ep : endpoints_) {
      SCOPED_TRACE("queue " + std::to_string(ep->queue()));
      const auto k = FindQueue(kernel, ep->queue());
      ASSERT_TRUE(k.has_value());
      const auto& c = ep->counters();
      EXPECT_EQ(k->portid, ep->portid());
      EXPECT_EQ(k->queue_total, 0u);
      const uint32_t trailing = k->id_sequence - ep->last_id();  // lost after the last id received
      EXPECT_EQ(c.Load(C::kIdsReceived) + c.Load(C::kLostIds) + trailing, k->id_sequence);
      EXPECT_EQ(c.Load(C::kLostIds) + trailing, k->queue_user_dropped);
      EXPECT_EQ(Verdicted(*ep), c.Load(C::kIdsReceived)) << "every packet received got a verdict";
      EXPECT_EQ(c.Load(C::kTruncated) + c.Load(C::kNoLargeBuffer) + c.Load(C::kMalformed), 0u);
      EXPECT_EQ(c.Load(C::kSendErrors) + c.Load(C::kSendNoMemory) + c.Load(C::kDeferred), 0u);
      EXPECT_EQ(c.Load(C::kKernelEnoent) + c.Load(C::kKernelEperm) + c.Load(C::kKernelEinval) +
                    c.Load(C::kKernelOther),
                0u);
    }
  }

  std::unique_ptr<NetnsLab> lab_;
  std::unique_ptr<BufferPool> pool_;
  std::vector<std::unique_ptr<NfqueueEndpoint>> endpoints_;
  ParseStage parse_[kQueues];
  ClassifyStage classify_[kQueues];
  RewriteStage rewrite_[kQueues];
  std::vector<InlineShard> shards_;
  std::unique_ptr<InlinePipeline> pipeline_;
};

// Stop in the middle of a stream: everything received is verdicted by the time Stop()
// returns; the kernel holds the rest, and a restart drains it to queue_total 0, losing nothing.
TEST_F(NfqueueNetns, StopMidStreamVerdictsEverythingReceivedAndRestartDrainsTheQueue) {
  const uint64_t count = kSanitized ? 40000 : 120000;
  const uint64_t rate = kSanitized ? 10000 : 30000;
  OpenQueues();
  StartPipeline();
  auto rx = StartReceiver(count);
  auto tx =
      lab_->Spawn(Node::kClient, {SLUICE_NETNS_TRAFFIC, "udp-send", "--dst", NetnsLab::kServerAddr,
                                  "--port", "9000", "--count", std::to_string(count), "--rate",
                                  std::to_string(rate), "--src", NetnsLab::kClientSources});
  std::this_thread::sleep_for(1500ms);
  pipeline_->Stop();
  for (const auto& ep : endpoints_) {
    EXPECT_GT(ep->counters().Load(C::kIdsReceived), 0u);
    EXPECT_EQ(Verdicted(*ep), ep->counters().Load(C::kIdsReceived)) << "queue " << ep->queue();
  }
  std::this_thread::sleep_for(200ms);
  uint64_t held = 0;
  for (const KernelQueueStats& k : Kernel()) held += k.queue_total;
  EXPECT_GT(held, 0u) << "while stopped, the kernel holds what keeps arriving";

  StartPipeline();
  ASSERT_EQ(tx->Wait(60s), 0) << tx->output();
  ExpectDeliveredWhole(*rx, testing::OutputField(tx->output(), "sent"), count);
  for (const KernelQueueStats& k : Kernel()) {
    EXPECT_EQ(k.queue_total, 0u);
    EXPECT_EQ(k.queue_dropped, 0u);
  }
}

}  // namespace
}  // namespace sluice
