// NfqueueEndpoint + InlinePipeline against the real kernel, in throwaway network namespaces
// (netns_lab.h): client → router (iptables NFQUEUE, sluice) → server. Needs root; skipped
// otherwise. Every count is reconciled three ways: the traffic tool's, sluice's counters, and
// the kernel's (/proc/net/netfilter/nfnetlink_queue, iptables rule counters).
//
// The router's rules (reinjection continues at the next hook, so the counting rules sit in
// the filter table, after mangle):
//   mangle FORWARD  -m mark ! --mark 0x100/0x100 -j NFQUEUE --queue-balance 0:1 --queue-bypass
//   filter FORWARD 1: -m mark --mark 0x100/0x100     verdicted by sluice (the loop guard)
//   filter FORWARD 2: -m mark ! --mark 0x100/0x100   passed without sluice (bypass, fail-open)
//   filter FORWARD 3: -m mark --mark 0x2/0x2         carrying a mark a stage set
#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <sstream>
#include <thread>

#include "engine/core/byte_order.h"
#include "engine/graph/pipeline.h"
#include "engine/io/nfqueue/nfqueue_endpoint.h"
#include "engine/io/nfqueue/queue_stats.h"
#include "tests/netns/netns_lab.h"

namespace sluice {
namespace {

using testing::LabProcess;
using testing::NetnsLab;
using testing::Node;
using C = NfqueueCounter;
using namespace std::chrono_literals;

constexpr uint32_t kGuard = 0x100;
constexpr uint32_t kRuleMark = 0x2;
constexpr uint32_t kQueues = 2;

#ifdef SLUICE_SANITIZED
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

using ParseStage = PassStage<Next::kParse, Next::kClassify>;
using ClassifyStage = PassStage<Next::kClassify, Next::kRewrite>;

// Rewrite stand-in: every 3rd packet gets rule mark 0x2; every 5th whole IPv4 TCP packet is
// returned as a payload verdict with its TCP checksum computed in full (the bytes are the
// same, but the kernel now trusts nothing: a CHECKSUM_PARTIAL packet would otherwise leave
// with half a checksum). GSO super-packets are left alone.
struct TouchStage {
  void Process(Batch& b) noexcept {
    for (uint32_t i = 0; i < b.size(); ++i) {
      if (b.next(i) != Next::kRewrite) continue;
      b.set_next(i, Next::kAccept);
      if (!touch) continue;
      PacketBuffer& p = b.packet(i);
      PacketMeta& m = p.meta();
      ++seen;
      if (seen % 3 == 0) {
        m.mark |= kRuleMark;
        m.flags |= pkt_flag::kMarkSet;
        ++marked;
      }
      if (seen % 5 == 0 && !(m.flags & (pkt_flag::kGso | pkt_flag::kTruncated)) &&
          FixTcpChecksum(p)) {
        m.flags |= pkt_flag::kModified;
        ++modified;
      }
    }
  }
  static bool FixTcpChecksum(PacketBuffer& p) noexcept {
    uint8_t* ip = p.data();
    if (p.len() < 40 || (ip[0] >> 4) != 4 || ip[9] != 6) return false;
    const uint32_t ihl = (ip[0] & 0xfu) * 4;
    const uint32_t total = LoadBe16(ip + 2);
    if (total > p.len() || total < ihl + 20) return false;
    uint8_t* tcp = ip + ihl;
    const uint32_t tcp_len = total - ihl;
    StoreBe16(tcp + 16, 0);
    uint64_t sum =
        LoadBe16(ip + 12) + LoadBe16(ip + 14) + LoadBe16(ip + 16) + LoadBe16(ip + 18) + 6 + tcp_len;
    for (uint32_t k = 0; k + 1 < tcp_len; k += 2) sum += LoadBe16(tcp + k);
    if (tcp_len & 1) sum += uint32_t{tcp[tcp_len - 1]} << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    StoreBe16(tcp + 16, static_cast<uint16_t>(~sum));
    return true;
  }
  bool touch = false;
  uint64_t seen = 0, marked = 0, modified = 0;
};

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
                           "iptables -w -t filter -A FORWARD -m mark ! --mark 0x100/0x100 && "
                           "iptables -w -t filter -A FORWARD -m mark --mark 0x2/0x2")
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

  void StartPipeline(bool touch = false) {
    shards_.clear();
    for (uint32_t s = 0; s < endpoints_.size(); ++s) {
      rewrite_[s].touch = touch;
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

  uint64_t Sum(C c) const {
    uint64_t n = 0;
    for (const auto& ep : endpoints_) n += ep->counters().Load(c);
    return n;
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
  // Runs the sender to completion; returns how many it sent.
  uint64_t Send(uint64_t count, uint64_t rate, uint64_t first = 0, uint32_t size = 64,
                uint32_t port = 9000) {
    std::string out;
    const int rc =
        lab_->Run(Node::kClient,
                  std::string(SLUICE_NETNS_TRAFFIC) + " udp-send --dst " + NetnsLab::kServerAddr +
                      " --port " + std::to_string(port) + " --count " + std::to_string(count) +
                      " --rate " + std::to_string(rate) + " --size " + std::to_string(size) +
                      " --first " + std::to_string(first) + " --src " + NetnsLab::kClientSources,
                  &out);
    EXPECT_EQ(rc, 0) << out;
    return Field(out, "sent");
  }
  // The first number after `key` in a tool's output.
  static uint64_t Field(const std::string& out, const std::string& key) {
    std::istringstream lines(out);
    for (std::string l; std::getline(lines, l);) {
      std::istringstream f(l);
      std::string k;
      uint64_t v = 0;
      if (f >> k >> v && k == key) return v;
    }
    return UINT64_MAX;
  }
  static uint64_t Received(LabProcess& rx) {
    EXPECT_EQ(rx.Wait(30s), 0) << rx.output();
    return Field(rx.output(), "received");
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
  TouchStage rewrite_[kQueues];
  std::vector<InlineShard> shards_;
  std::unique_ptr<InlinePipeline> pipeline_;
};

// (a) A UDP stream through both queues: nothing lost anywhere, every packet verdicted once,
// and sluice's counts equal the kernel's.
TEST_F(NfqueueNetns, UdpStreamIsVerdictedWholeAndCountsReconcileWithTheKernel) {
  const uint64_t count = kSanitized ? 60000 : 200000;
  const uint64_t rate = kSanitized ? 20000 : 50000;
  OpenQueues();
  StartPipeline();
  auto rx = StartReceiver(count);
  const uint64_t sent = Send(count, rate);
  ExpectDeliveredWhole(*rx, sent, count);
  uint64_t id_sequence = 0;
  for (const KernelQueueStats& k : Kernel()) {
    EXPECT_EQ(k.queue_dropped, 0u);
    EXPECT_EQ(k.queue_user_dropped, 0u);
    id_sequence += k.id_sequence;
  }
  EXPECT_EQ(id_sequence, sent) << "every datagram went through a queue exactly once";
  EXPECT_EQ(Sum(C::kReceived), sent);
  EXPECT_EQ(Sum(C::kEnobufs), 0u);
  EXPECT_EQ(lab_->IptablesPackets("mangle", "FORWARD", 1), sent);
  EXPECT_EQ(lab_->IptablesPackets("filter", "FORWARD", 1), sent)
      << "every verdict carried the guard mark";
  EXPECT_EQ(lab_->IptablesPackets("filter", "FORWARD", 2), 0u) << "nothing passed around sluice";
  uint64_t in = 0;
  for (uint32_t s = 0; s < kQueues; ++s) {
    EXPECT_TRUE(pipeline_->run_stats(s).Balanced());
    in += pipeline_->run_stats(s).packets_in.Load();
  }
  EXPECT_EQ(in, sent);
  // At a rate well below capacity most bursts are a packet or two (the endpoint returns as soon
  // as the socket is empty); syscalls per packet fall as load rises (perf/nfqueue measures it).
  RecordProperty("syscalls_per_packet",
                 std::to_string(static_cast<double>(Sum(C::kSendmsgCalls) + Sum(C::kRecvSyscalls)) /
                                static_cast<double>(sent)));
}

// (b) A 10 MB HTTP transfer through the queues, with some packets re-marked and some returned
// as payload verdicts: the file arrives intact, and the kernel saw every mark.
TEST_F(NfqueueNetns, TcpTransferArrivesIntactThroughBatchAndPayloadVerdicts) {
  OpenQueues();
  StartPipeline(/*touch=*/true);
  ASSERT_TRUE(lab_->Must(Node::kServer,
                         "mkdir -p /tmp/sluice-netns-$PPID && cd /tmp/sluice-netns-$PPID && "
                         "head -c 10000000 /dev/urandom > blob && sha256sum blob > blob.sha")
                  .ok());
  std::string dir;
  lab_->Run(Node::kServer, "echo /tmp/sluice-netns-$PPID", &dir);
  while (!dir.empty() && dir.back() == '\n') dir.pop_back();
  auto server = lab_->Spawn(Node::kServer, {"python3", "-m", "http.server", "8080", "--bind",
                                            NetnsLab::kServerAddr, "--directory", dir});
  ASSERT_TRUE(server != nullptr);
  int up = -1;
  for (int attempt = 0; attempt < 50 && up != 0; ++attempt) {  // until the server listens
    std::this_thread::sleep_for(100ms);
    up = lab_->Run(Node::kServer, "curl -sf --max-time 2 -o /dev/null http://198.18.2.2:8080/");
  }
  ASSERT_EQ(up, 0) << "the HTTP server did not come up: " << server->output();
  std::string got;
  const int rc = lab_->Run(Node::kClient,
                           "curl -sf --max-time 30 -o " + dir +
                               "/got http://198.18.2.2:8080/blob && sha256sum < " + dir + "/got",
                           &got);
  std::string want;
  lab_->Run(Node::kServer, "cat " + dir + "/blob.sha && rm -rf " + dir, &want);
  ASSERT_EQ(rc, 0) << got << Dump();
  ASSERT_GE(want.size(), 64u);
  EXPECT_EQ(got.substr(0, 64), want.substr(0, 64)) << "the transfer was corrupted";
  ASSERT_TRUE(Quiescent(5s));
  pipeline_->Stop();

  ExpectReconciled();
  uint64_t marked = 0, modified = 0;
  for (const TouchStage& t : rewrite_) {
    marked += t.marked;
    modified += t.modified;
  }
  EXPECT_GT(modified, 0u);
  EXPECT_EQ(Sum(C::kPayloadAccepted), modified);
  EXPECT_EQ(lab_->IptablesPackets("filter", "FORWARD", 3), marked) << "rule marks reach the kernel";
  EXPECT_EQ(lab_->IptablesPackets("filter", "FORWARD", 1), Sum(C::kIdsReceived));
  EXPECT_EQ(lab_->IptablesPackets("filter", "FORWARD", 2), 0u);
  EXPECT_GT(Sum(C::kLargeCopies), 0u) << "GSO super-packets should have come through whole";
  EXPECT_EQ(Sum(C::kDropped), 0u);
}

// (c) A tiny socket buffer makes the kernel drop messages (ENOBUFS): the endpoint keeps
// going, and the loss it reports is exactly the kernel's queue_user_dropped.
TEST_F(NfqueueNetns, EnobufsIsSurvivedAndTheLossReportedEqualsTheKernels) {
  OpenQueues({.rcvbuf_bytes = 1});  // the kernel's minimum: a few messages
  StartPipeline();
  const uint64_t flood = kSanitized ? 20000 : 50000;
  const uint64_t trickle = 200;
  auto rx = StartReceiver(flood + trickle);
  const uint64_t sent_flood = Send(flood, 1000000, 0, 512);
  // Slow traffic afterwards: received whole, and it puts the last lost ids between delivered ones.
  const uint64_t sent_trickle = Send(trickle, 1000, flood);
  const uint64_t received = Received(*rx);
  ASSERT_TRUE(Quiescent(5s));
  pipeline_->Stop();

  uint64_t user_dropped = 0;
  for (const KernelQueueStats& k : Kernel()) {
    EXPECT_EQ(k.queue_dropped, 0u);
    user_dropped += k.queue_user_dropped;
  }
  ASSERT_GT(user_dropped, 0u) << "the flood did not overrun the socket buffer";
  EXPECT_GT(Sum(C::kEnobufs), 0u);
  uint64_t reported = Sum(C::kLostIds);
  for (const auto& ep : endpoints_) {
    if (const auto k = FindQueue(Kernel(), ep->queue())) reported += k->id_sequence - ep->last_id();
  }
  EXPECT_EQ(reported, user_dropped) << Dump();
  EXPECT_EQ(received, sent_flood + sent_trickle - user_dropped);
  EXPECT_GE(Sum(C::kReceived), sent_trickle) << "the endpoint kept receiving after the overrun";
  ExpectReconciled();
}

// (d) Stop in the middle of a stream: everything received is verdicted by the time Stop()
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
  ExpectDeliveredWhole(*rx, Field(tx->output(), "sent"), count);
  for (const KernelQueueStats& k : Kernel()) {
    EXPECT_EQ(k.queue_total, 0u);
    EXPECT_EQ(k.queue_dropped, 0u);
  }
}

// (e) --queue-bypass with nobody listening: traffic flows around the queue, unmarked; with a
// listener it is verdicted and marked; after the listener closes it flows around again.
TEST_F(NfqueueNetns, WithQueueBypassTrafficFlowsWhileNoListenerIsBound) {
  auto rx = StartReceiver(3000);
  EXPECT_EQ(Send(1000, 20000, 0), 1000u);
  EXPECT_TRUE(Kernel().empty()) << "no queue is bound";
  EXPECT_EQ(lab_->IptablesPackets("filter", "FORWARD", 2), 1000u);

  OpenQueues();
  StartPipeline();
  EXPECT_EQ(Send(1000, 20000, 1000), 1000u);
  ASSERT_TRUE(Quiescent(5s));
  pipeline_->Stop();
  EXPECT_EQ(lab_->IptablesPackets("filter", "FORWARD", 1), 1000u);
  ExpectReconciled();
  pipeline_.reset();
  endpoints_.clear();  // closing the sockets unbinds the queues

  EXPECT_EQ(Send(1000, 20000, 2000), 1000u);
  EXPECT_EQ(Received(*rx), 3000u);
  EXPECT_EQ(lab_->IptablesPackets("filter", "FORWARD", 2), 2000u);
  EXPECT_TRUE(Kernel().empty());
}

// Open() on a queue another socket holds says who holds it; closing frees it.
TEST_F(NfqueueNetns, OpenNamesTheQueueAndItsHolderWhenTheQueueIsTaken) {
  NetnsLab::RouterScope in_router(*lab_);
  ASSERT_TRUE(in_router.ok());
  auto first = NfqueueEndpoint::Open({.queue = 7});
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto second = NfqueueEndpoint::Open({.queue = 7});
  ASSERT_FALSE(second.ok());
  const std::string msg = second.status().message();
  EXPECT_NE(msg.find("queue 7"), std::string::npos) << msg;
  EXPECT_NE(msg.find("already bound"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string((*first)->portid())), std::string::npos) << msg;
  auto k = ReadKernelQueueStats("/proc/thread-self/net/netfilter/nfnetlink_queue");
  ASSERT_TRUE(k.ok());
  const auto q7 = FindQueue(*k, 7);
  ASSERT_TRUE(q7.has_value());
  EXPECT_EQ(q7->copy_mode, 2u);  // NFQNL_COPY_PACKET
  EXPECT_EQ(q7->copy_range, kNfqMaxPayload);
  first.value().reset();
  auto again = NfqueueEndpoint::Open({.queue = 7});
  EXPECT_TRUE(again.ok()) << again.status().message();
}

}  // namespace
}  // namespace sluice
