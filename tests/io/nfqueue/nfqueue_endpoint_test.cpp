// NfqueueEndpoint's Receive and Send over a socketpair that plays the kernel: the real
// recvmmsg/sendmsg code, fed messages built as nfnetlink_queue builds them, with every verdict
// datagram decoded and applied to a model of the kernel's queue list.
#include "engine/io/nfqueue/nfqueue_endpoint.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "engine/graph/pipeline.h"
#include "engine/stats/report.h"
#include "tests/io/nfqueue/nfq_test_kernel.h"
#include "tests/testing/alloc_counter.h"

namespace sluice {
namespace {

using testing::BuildErrorMessage;
using testing::BuildPacketMessage;
using testing::FakeKernel;
using testing::Ipv4Bytes;
using testing::PacketSpec;
using testing::QueueModel;
using C = NfqueueCounter;
using namespace std::chrono_literals;

constexpr uint32_t kMark = 0x100;
constexpr uint32_t kMask = 0x300;

struct Rig {
  explicit Rig(NfqueueOptions o = {}, uint32_t large = 8) {
    pool = std::move(BufferPool::Create({.small_buffers = 4096, .large_buffers = large})).value();
    cache = std::make_unique<PoolCache>(*pool);
    o.verdict_mark = kMark;
    o.verdict_mask = kMask;
    auto ep = NfqueueEndpoint::Adopt(kernel.TakeEndpointFd(), o);
    EXPECT_TRUE(ep.ok()) << ep.status().message();
    endpoint = std::move(ep).value();
  }
  // Delivers packets with consecutive ids starting at `first_id`.
  void Deliver(uint32_t first_id, uint32_t n, uint32_t len = 100) {
    for (uint32_t i = 0; i < n; ++i) {
      PacketSpec s;
      s.id = first_id + i;
      s.payload = Ipv4Bytes(len, static_cast<uint8_t>(first_id + i));
      ASSERT_TRUE(kernel.Deliver(BuildPacketMessage(s)));
      model.Queued(s.id);
    }
  }
  uint32_t Receive(Batch& b, uint32_t max = 64) { return endpoint->Receive(*cache, b, max, 10ms); }
  void Retire(Batch& b) {
    PacketBuffer* bufs[kMaxBatch];
    cache->PutBulk(bufs, b.TakeBuffers(bufs));
  }
  // What the shard node does once the stages have run: verdicts, Send, buffers back.
  void Finish(Batch& b) {
    b.RecordVerdicts();
    endpoint->Send(b);
    for (uint32_t i = 0; i < b.size(); ++i) {
      // What the pipeline will count (AccountVerdicts reads the recorded verdict).
      if (b.packet(i).meta().verdict == Verdict::kDrop) ++dropped[b.reason(i)];
    }
    Retire(b);
  }
  // Delivers n packets from first_id, receives them, accepts them all (every 4th rewritten
  // when asked) and sends the verdicts.
  void AcceptRound(uint32_t first_id, uint32_t n, bool rewrite_fourth = false) {
    Deliver(first_id, n);
    Batch b;
    ASSERT_EQ(Receive(b), n);
    for (uint32_t i = 0; i < n; ++i) {
      b.set_next(i, Next::kAccept);
      if (rewrite_fourth && i % 4 == 3) b.packet(i).meta().flags |= pkt_flag::kModified;
    }
    Finish(b);
  }
  // Sends the kernel side's view of everything the endpoint wrote so far into the model.
  int Settle() {
    int datagrams = 0;
    model.Apply(kernel.ReadAll(&datagrams));
    return datagrams;
  }
  // Settles until the kernel side has `outcomes` packets' verdicts (a pipeline sends them
  // from its own threads), for at most about 2 s.
  void SettleUntil(std::size_t outcomes) {
    for (int i = 0; i < 2000 && model.outcome.size() < outcomes; ++i) {
      Settle();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  uint64_t Count(C c) const { return endpoint->counters().Load(c); }

  FakeKernel kernel;
  std::unique_ptr<BufferPool> pool;
  std::unique_ptr<PoolCache> cache;
  std::unique_ptr<NfqueueEndpoint> endpoint;
  QueueModel model;
  std::map<DropReason, uint64_t> dropped;  // slots Send left dropped, by reason
};

TEST(NfqueueEndpoint, ReceiveFillsMetadataAndPointsIntoTheBufferWithoutACopy) {
  Rig rig({.outside_ifindexes = {3}});
  const struct {
    uint8_t hook;
    Direction dir;
  } cases[] = {{NF_INET_PRE_ROUTING, Direction::kIn},
               {NF_INET_LOCAL_IN, Direction::kIn},
               {NF_INET_FORWARD, Direction::kOut},
               {NF_INET_LOCAL_OUT, Direction::kOut},
               {NF_INET_POST_ROUTING, Direction::kOut}};
  std::vector<std::vector<uint8_t>> payloads;
  for (uint32_t i = 0; i < 5; ++i) {
    PacketSpec s;
    s.id = 40 + i;
    s.hook = cases[i].hook;
    s.mark = i == 1 ? 0x55 : 0;
    s.in_if = 2;
    s.out_if = i == 2 ? 3 : 0;
    s.skb_info = i == 3 ? NFQA_SKB_CSUMNOTREADY : i == 4 ? NFQA_SKB_GSO : 0;
    s.hwaddr = i == 0;
    s.timestamp = i < 2;
    s.payload = Ipv4Bytes(60 + 100 * i, static_cast<uint8_t>(i));
    payloads.push_back(s.payload);
    ASSERT_TRUE(rig.kernel.Deliver(BuildPacketMessage(s)));
  }
  Batch b;
  ASSERT_EQ(rig.Receive(b), 5u);
  for (uint32_t i = 0; i < 5; ++i) {
    const PacketBuffer& p = b.packet(i);
    const PacketMeta& m = p.meta();
    SCOPED_TRACE(i);
    EXPECT_EQ(m.size_class, static_cast<uint8_t>(SizeClass::kSmall));
    // In place: the payload sits where the message put it, right after the netlink headers.
    EXPECT_GE(p.data(), p.room() + 36);
    EXPECT_LT(p.data(), p.room() + kHeadroom);
    EXPECT_EQ(p.headroom() % 4, 0u);
    ASSERT_EQ(m.len, payloads[i].size());
    EXPECT_EQ(0, std::memcmp(p.data(), payloads[i].data(), m.len));
    EXPECT_EQ(m.wire_len, m.len);
    EXPECT_EQ(m.link_type, LinkType::kRaw);
    EXPECT_EQ(m.io_token, 40u + i);
    EXPECT_EQ(m.in_if, 2u);
    EXPECT_EQ(m.out_if, i == 2 ? 3u : 0u);
    EXPECT_EQ(m.mark, i == 1 ? 0x55u : 0u);
    EXPECT_EQ(m.direction, cases[i].dir);
    EXPECT_EQ((m.flags & pkt_flag::kL4CsumNotReady) != 0, i == 3);
    EXPECT_EQ((m.flags & pkt_flag::kGso) != 0, i == 4);
    EXPECT_FALSE(m.flags & pkt_flag::kTruncated);
    EXPECT_EQ(p.owner(), rig.endpoint.get());
    EXPECT_EQ(m.rx_ns, b.packet(0).meta().rx_ns);  // one timestamp per syscall
    const NfqueueToken& t = NfqueueEndpoint::Token(p);
    EXPECT_EQ(t.packet_id, 40u + i);
    EXPECT_EQ(t.ordinal, i);
    EXPECT_EQ(t.received_mark, m.mark);
    EXPECT_EQ(t.hook, cases[i].hook);
  }
  EXPECT_EQ(rig.Count(C::kReceived), 5u);
  EXPECT_EQ(rig.Count(C::kRecvSyscalls), 1u);
  for (uint32_t i = 0; i < b.size(); ++i) b.set_next(i, Next::kAccept);
  rig.Finish(b);
}

// At FORWARD the outside interfaces decide: out through one is "out", in through one is "in";
// between two inside interfaces, or with none configured, there is no direction.
TEST(NfqueueEndpoint, ForwardedPacketsTakeTheirDirectionFromTheOutsideInterfaces) {
  const struct {
    std::vector<uint32_t> outside;
    uint32_t in_if, out_if;
    Direction dir;
  } cases[] = {{{7}, 2, 7, Direction::kOut}, {{7}, 7, 2, Direction::kIn},   {{7, 9}, 2, 9, Direction::kOut},
               {{7}, 2, 3, Direction::kUnknown}, {{}, 2, 7, Direction::kUnknown}};
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.in_if << " -> " << c.out_if);
    Rig rig({.outside_ifindexes = c.outside});
    PacketSpec s;
    s.id = 1;
    s.hook = NF_INET_FORWARD;
    s.in_if = c.in_if;
    s.out_if = c.out_if;
    s.payload = Ipv4Bytes(60, 1);
    ASSERT_TRUE(rig.kernel.Deliver(BuildPacketMessage(s)));
    Batch b;
    ASSERT_EQ(rig.Receive(b), 1u);
    EXPECT_EQ(b.packet(0).meta().direction, c.dir);
    b.set_next(0, Next::kAccept);
    rig.Finish(b);
  }
}

TEST(NfqueueEndpoint, ForwardDirectionDefaultsToUnknownAndNonIpIsUnsupported) {
  Rig rig;
  PacketSpec s;
  s.id = 1;
  s.payload = Ipv4Bytes(60);
  ASSERT_TRUE(rig.kernel.Deliver(BuildPacketMessage(s)));
  s.id = 2;
  s.hw_protocol = ETH_P_ARP;  // a bridge queue can carry these
  ASSERT_TRUE(rig.kernel.Deliver(BuildPacketMessage(s)));
  Batch b;
  ASSERT_EQ(rig.Receive(b), 2u);
  EXPECT_EQ(b.packet(0).meta().direction, Direction::kUnknown);
  EXPECT_EQ(b.packet(0).meta().link_type, LinkType::kRaw);
  EXPECT_EQ(b.packet(1).meta().link_type, LinkType::kUnsupported);
  b.Drop(0, DropReason::kNotIp);
  b.Drop(1, DropReason::kNotIp);
  rig.Finish(b);
}

// A message for packet `id` captured in part: 1,400 of its 90,000 bytes (the kernel's
// NFQA_CAP_LEN says the rest was not copied).
void DeliverPartlyCaptured(Rig& rig, uint32_t id) {
  PacketSpec s;
  s.id = id;
  s.cap_len = 90000;
  s.payload = Ipv4Bytes(1400);
  ASSERT_TRUE(rig.kernel.Deliver(BuildPacketMessage(s)));
  rig.model.Queued(id);
}

TEST(NfqueueEndpoint, APartlyCapturedPacketIsFlaggedAndKeepsItsWireLength) {
  Rig rig;
  DeliverPartlyCaptured(rig, 1);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 1u);
  EXPECT_TRUE(b.packet(0).meta().flags & pkt_flag::kTruncated);
  EXPECT_EQ(b.packet(0).meta().wire_len, 90000u);
  EXPECT_EQ(b.packet(0).meta().len, 1400u);
  // Rewritten, it cannot go back whole: dropped, not cut; and the batch says so, so that the
  // pipeline counts a drop (cannot_return_bytes), not a rewrite.
  b.set_next(0, Next::kAccept);
  b.packet(0).meta().flags |= pkt_flag::kModified;
  b.RecordVerdicts();
  rig.endpoint->Send(b);
  EXPECT_EQ(b.next(0), Next::kDrop);
  EXPECT_EQ(b.reason(0), DropReason::kCannotReturnBytes);
  EXPECT_EQ(b.packet(0).meta().verdict, Verdict::kDrop);
  rig.Retire(b);
  const auto v = rig.kernel.ReadAll();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].verdict, static_cast<uint32_t>(NF_DROP));
  EXPECT_EQ(rig.Count(C::kOversize), 1u);
}

// A rewritten packet larger than one sendmsg may carry (a socket with a small sndbuf) is
// dropped, never cut, and its batch slot says so: the pipeline counts a drop, not a rewrite.
TEST(NfqueueEndpoint, ARewriteLargerThanASendmsgIsADropTheBatchKnowsOf) {
  Rig rig({.sndbuf_bytes = 2048});
  rig.Deliver(1, 2, 9000);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 2u);
  for (uint32_t i = 0; i < 2; ++i) b.set_next(i, Next::kAccept);
  b.packet(1).meta().flags |= pkt_flag::kModified;
  b.RecordVerdicts();
  rig.endpoint->Send(b);
  EXPECT_EQ(b.packet(0).meta().verdict, Verdict::kAccept);
  EXPECT_EQ(b.packet(1).meta().verdict, Verdict::kDrop);
  EXPECT_EQ(b.reason(1), DropReason::kCannotReturnBytes);
  rig.Retire(b);
  rig.Settle();
  EXPECT_EQ(rig.model.outcome[1].verdict, static_cast<uint32_t>(NF_ACCEPT));
  EXPECT_EQ(rig.model.outcome[2].verdict, static_cast<uint32_t>(NF_DROP));
  EXPECT_FALSE(rig.model.outcome[2].has_payload);
  EXPECT_EQ(rig.Count(C::kOversize), 1u);
  EXPECT_TRUE(rig.model.queue.empty());
}

// Through the inline pipeline: what it counts is what the kernel was told.
TEST(NfqueueEndpoint, ThePipelineCountsABytesTooBigToReturnAsADrop) {
  Rig rig;
  DeliverPartlyCaptured(rig, 1);
  rig.Deliver(2, 1);
  struct Modify {  // "rewrites" every packet
    void Process(Batch& b) noexcept {
      for (uint32_t i = 0; i < b.size(); ++i) {
        if (b.next(i) != Next::kRewrite) continue;
        b.packet(i).meta().flags |= pkt_flag::kModified;
        b.set_next(i, Next::kAccept);
      }
    }
  } rewrite;
  PassStage<Next::kParse, Next::kClassify> parse;
  PassStage<Next::kClassify, Next::kRewrite> classify;
  const InlineShard shard{rig.endpoint.get(), StageRef::Of(parse), StageRef::Of(classify), StageRef::Of(rewrite)};
  InlinePipeline pipeline({.threads = 1, .batch_size = 64, .receive_wait = std::chrono::microseconds(1000)}, *rig.pool,
                          std::span(&shard, 1));
  pipeline.Start();
  rig.SettleUntil(2);
  pipeline.Stop();
  rig.Settle();
  ASSERT_EQ(rig.model.outcome.size(), 2u);
  EXPECT_EQ(rig.model.outcome[1].verdict, static_cast<uint32_t>(NF_DROP));
  EXPECT_EQ(rig.model.outcome[2].verdict, static_cast<uint32_t>(NF_ACCEPT));
  const RunStats& run = pipeline.run_stats(0);
  EXPECT_EQ(run.rewritten.Load(), 1u);
  EXPECT_EQ(run.dropped[static_cast<std::size_t>(DropReason::kCannotReturnBytes)].Load(), 1u);
  EXPECT_EQ(run.packets_in.Load(), run.accepted.Load() + run.rewritten.Load() + run.Dropped());
}

TEST(NfqueueEndpoint, AGsoSizedMessageArrivesWholeInALargeBuffer) {
  Rig rig;
  PacketSpec s;
  s.id = 9;
  s.skb_info = NFQA_SKB_GSO | NFQA_SKB_CSUMNOTREADY;
  s.payload = Ipv4Bytes(kNfqMaxPayload, 3);
  ASSERT_TRUE(rig.kernel.Deliver(BuildPacketMessage(s)));
  rig.model.Queued(9);
  rig.Deliver(10, 2);  // small ones around it stay in small buffers
  Batch b;
  ASSERT_EQ(rig.Receive(b), 3u);
  const PacketBuffer& big = b.packet(0);
  EXPECT_EQ(big.meta().size_class, static_cast<uint8_t>(SizeClass::kLarge));
  ASSERT_EQ(big.len(), kNfqMaxPayload);
  EXPECT_EQ(0, std::memcmp(big.data(), s.payload.data(), s.payload.size()));
  EXPECT_TRUE(big.meta().flags & pkt_flag::kGso);
  EXPECT_EQ(b.packet(1).meta().size_class, static_cast<uint8_t>(SizeClass::kSmall));
  EXPECT_EQ(rig.Count(C::kLargeCopies), 1u);

  // Rewritten at full size, its bytes go back whole.
  b.packet(0).data()[100] ^= 0xff;
  b.packet(0).meta().flags |= pkt_flag::kModified;
  for (uint32_t i = 0; i < 3; ++i) b.set_next(i, Next::kAccept);
  const std::vector<uint8_t> expected(big.data(), big.data() + big.len());
  rig.Finish(b);
  EXPECT_EQ(rig.Settle(), 1);
  ASSERT_TRUE(rig.model.outcome[9].has_payload);
  EXPECT_EQ(rig.model.outcome[9].payload, expected);
  EXPECT_EQ(rig.model.enoent, 0);
  EXPECT_TRUE(rig.model.queue.empty());
}

TEST(NfqueueEndpoint, AMessageThatFitsNowhereIsDroppedByIdNotLost) {
  Rig rig;
  PacketSpec s;
  s.id = 1;
  s.secctx_bytes = 4000;  // with a maximal payload, more than a large buffer holds
  s.payload = Ipv4Bytes(kNfqMaxPayload);
  ASSERT_TRUE(rig.kernel.Deliver(BuildPacketMessage(s)));
  rig.model.Queued(1);
  rig.Deliver(2, 1);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 1u);
  EXPECT_EQ(b.packet(0).meta().io_token, 2u);
  EXPECT_EQ(rig.Count(C::kTruncated), 1u);
  EXPECT_EQ(rig.Count(C::kIdsReceived), 2u);
  b.set_next(0, Next::kAccept);
  rig.Finish(b);
  rig.Settle();
  EXPECT_EQ(rig.model.outcome[1].verdict, static_cast<uint32_t>(NF_DROP));
  EXPECT_EQ(rig.model.outcome[2].verdict, static_cast<uint32_t>(NF_ACCEPT));
  EXPECT_TRUE(rig.model.queue.empty());
}

// Delivers one message of `payload_len` payload bytes with id `id`.
void DeliverLong(Rig& rig, uint32_t id, uint32_t payload_len) {
  PacketSpec s;
  s.id = id;
  s.payload = Ipv4Bytes(payload_len, static_cast<uint8_t>(id));
  ASSERT_TRUE(rig.kernel.Deliver(BuildPacketMessage(s)));
  rig.model.Queued(id);
}

// With no large buffer free, a long message waits with everything received after it, and
// nothing newer is read, until a buffer returns: back-pressure, not loss, and ids stay in order.
TEST(NfqueueEndpoint, ALongMessageWaitsForALargeBufferWithWhatCameAfterIt) {
  Rig rig({}, /*large=*/1);
  DeliverLong(rig, 1, 30000);
  DeliverLong(rig, 2, 20000);
  rig.Deliver(3, 1);
  Batch first;
  ASSERT_EQ(rig.Receive(first), 1u);  // the one large buffer goes to id 1
  EXPECT_EQ(first.packet(0).meta().io_token, 1u);
  EXPECT_TRUE(rig.endpoint->Holding());
  EXPECT_EQ(rig.Count(C::kLargeWaits), 1u);

  rig.Deliver(4, 1);  // arrives while 2 and 3 wait: not read before them
  Batch none;
  EXPECT_EQ(rig.Receive(none), 0u);  // id 1 still holds the buffer
  EXPECT_TRUE(rig.endpoint->Holding());

  for (uint32_t i = 0; i < first.size(); ++i) first.set_next(i, Next::kAccept);
  rig.Finish(first);  // the large buffer comes back
  Batch second;
  ASSERT_EQ(rig.Receive(second), 2u);
  EXPECT_EQ(second.packet(0).meta().io_token, 2u);
  const std::vector<uint8_t> want = Ipv4Bytes(20000, 2);  // its spill area kept while it waited
  ASSERT_EQ(second.packet(0).len(), want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), second.packet(0).data()));
  EXPECT_EQ(second.packet(1).meta().io_token, 3u);
  EXPECT_FALSE(rig.endpoint->Holding());
  Batch third;
  ASSERT_EQ(rig.Receive(third), 1u);
  EXPECT_EQ(third.packet(0).meta().io_token, 4u);

  for (Batch* b : {&second, &third}) {
    for (uint32_t i = 0; i < b->size(); ++i) b->set_next(i, Next::kAccept);
    rig.Finish(*b);
  }
  rig.Settle();
  for (uint32_t id = 1; id <= 4; ++id) EXPECT_EQ(rig.model.outcome[id].verdict, static_cast<uint32_t>(NF_ACCEPT)) << id;
  EXPECT_TRUE(rig.model.queue.empty());
  EXPECT_EQ(rig.Count(C::kNoLargeBuffer), 0u);
  EXPECT_EQ(rig.Count(C::kLargeCopies), 2u);
  EXPECT_EQ(rig.Count(C::kIdsReceived), 4u);
}

// Held in the middle of a burst, and handed out in order as far as the batch has room.
TEST(NfqueueEndpoint, HeldMessagesGoOutInOrderAsFarAsTheBatchHasRoom) {
  Rig rig({}, /*large=*/1);
  DeliverLong(rig, 1, 30000);
  DeliverLong(rig, 2, 30000);
  rig.Deliver(3, 2);
  Batch first;
  ASSERT_EQ(rig.Receive(first), 1u);
  rig.Retire(first);  // id 1's large buffer back (its verdict does not matter here)
  Batch second;
  ASSERT_EQ(rig.endpoint->Receive(*rig.cache, second, 2, 10ms), 2u);
  EXPECT_EQ(second.packet(0).meta().io_token, 2u);
  EXPECT_EQ(second.packet(1).meta().io_token, 3u);
  EXPECT_TRUE(rig.endpoint->Holding()) << "id 4 is still held: the batch had room for two";
  Batch third;
  ASSERT_EQ(rig.Receive(third), 1u);
  EXPECT_EQ(third.packet(0).meta().io_token, 4u);
  EXPECT_FALSE(rig.endpoint->Holding());
  rig.Retire(second);
  rig.Retire(third);
}

// With no large class at all there is nothing to wait for: a long message is dropped by id
// at once and what came after it goes on.
TEST(NfqueueEndpoint, WithNoLargeClassALongMessageIsDroppedByIdAtOnce) {
  Rig rig({}, /*large=*/0);
  DeliverLong(rig, 1, 30000);
  rig.Deliver(2, 1);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 1u);
  EXPECT_EQ(b.packet(0).meta().io_token, 2u);
  EXPECT_FALSE(rig.endpoint->Holding());
  EXPECT_EQ(rig.Count(C::kNoLargeBuffer), 1u);
  EXPECT_EQ(rig.Count(C::kLargeWaits), 0u);
  b.set_next(0, Next::kAccept);
  rig.Finish(b);
  rig.Settle();
  EXPECT_EQ(rig.model.outcome[1].verdict, static_cast<uint32_t>(NF_DROP));
  EXPECT_EQ(rig.model.outcome[2].verdict, static_cast<uint32_t>(NF_ACCEPT));
}

// The pool's one large buffer held by id 1 (in `holder`, not retired), long ids 2 and 3
// received and waiting for one, short id 4 behind them.
void HoldLongMessages(Rig& rig, Batch& holder) {
  DeliverLong(rig, 1, 30000);
  DeliverLong(rig, 2, 30000);
  DeliverLong(rig, 3, 30000);
  rig.Deliver(4, 1);
  ASSERT_EQ(rig.Receive(holder), 1u);
  Batch b;
  EXPECT_EQ(rig.Receive(b), 0u);
  EXPECT_TRUE(rig.endpoint->Holding());
}

// A wait that outlasts kLargeBufferWait means the pool is not giving large buffers back:
// the message is dropped by id and counted, so is the next long one of the burst (no second
// wait), and what came after them goes on.
TEST(NfqueueEndpoint, ALongMessageThatWaitsTooLongIsDroppedByIdAndCounted) {
  Rig rig({}, /*large=*/1);
  Batch holder;
  HoldLongMessages(rig, holder);
  EXPECT_EQ(rig.Count(C::kNoLargeBuffer), 0u);
  std::this_thread::sleep_for(NfqueueEndpoint::kLargeBufferWait + 5ms);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 1u);
  EXPECT_EQ(b.packet(0).meta().io_token, 4u);
  EXPECT_FALSE(rig.endpoint->Holding());
  EXPECT_EQ(rig.Count(C::kNoLargeBuffer), 2u);
  EXPECT_EQ(rig.Count(C::kLargeWaits), 1u);
  EXPECT_EQ(rig.Count(C::kTruncated), 0u);
  for (Batch* x : {&holder, &b}) {
    x->set_next(0, Next::kAccept);
    rig.Finish(*x);
  }
  rig.Settle();
  EXPECT_EQ(rig.model.outcome[1].verdict, static_cast<uint32_t>(NF_ACCEPT));
  EXPECT_EQ(rig.model.outcome[2].verdict, static_cast<uint32_t>(NF_DROP));
  EXPECT_EQ(rig.model.outcome[3].verdict, static_cast<uint32_t>(NF_DROP));
  EXPECT_EQ(rig.model.outcome[4].verdict, static_cast<uint32_t>(NF_ACCEPT));
  EXPECT_TRUE(rig.model.queue.empty());
}

// The inline graph over this endpoint with a batch timer longer than kLargeBufferWait. The
// first batch holds the only large buffer, and the long message behind it waits for that
// buffer, which returns only when the batch is sent. A batch that waited out its timer would
// make that message wait past kLargeBufferWait and be dropped by id: the batch must leave as
// soon as the endpoint holds messages back.
TEST(NfqueueEndpoint, ABatchTimerDoesNotKeepTheBufferAHeldMessageWaitsFor) {
  Rig rig({}, /*large=*/1);
  DeliverLong(rig, 1, 30000);
  DeliverLong(rig, 2, 20000);
  rig.Deliver(3, 1);
  PassStage<Next::kParse, Next::kClassify> parse;
  PassStage<Next::kClassify, Next::kAccept> classify;
  PassStage<Next::kRewrite, Next::kAccept> rewrite;
  const InlineShard shard{rig.endpoint.get(), StageRef::Of(parse), StageRef::Of(classify), StageRef::Of(rewrite)};
  const InlineOptions o{.threads = 1, .batch_size = 64, .receive_wait = std::chrono::microseconds(1000),
                        .batch_timeout = std::chrono::duration_cast<std::chrono::microseconds>(4 * NfqueueEndpoint::kLargeBufferWait)};
  InlinePipeline pipeline(o, *rig.pool, std::span(&shard, 1));
  pipeline.Start();
  rig.SettleUntil(3);
  pipeline.Stop();
  rig.Settle();
  for (uint32_t id = 1; id <= 3; ++id) {
    ASSERT_EQ(rig.model.outcome.count(id), 1u) << id;
    EXPECT_EQ(rig.model.outcome[id].verdict, static_cast<uint32_t>(NF_ACCEPT)) << id;
  }
  EXPECT_TRUE(rig.model.queue.empty());
  EXPECT_EQ(rig.Count(C::kLargeWaits), 1u);
  EXPECT_EQ(rig.Count(C::kNoLargeBuffer), 0u);
}

// Closed while messages wait (teardown without a pipeline to drain them): each is dropped by
// id, and every buffer goes back to the pool.
TEST(NfqueueEndpoint, ClosingWhileMessagesWaitDropsThemByIdAndReturnsTheBuffers) {
  Rig rig({}, /*large=*/1);
  Batch holder;
  HoldLongMessages(rig, holder);
  holder.set_next(0, Next::kAccept);
  rig.Finish(holder);
  rig.endpoint.reset();
  rig.cache.reset();
  rig.Settle();
  for (uint32_t id = 2; id <= 4; ++id) EXPECT_EQ(rig.model.outcome[id].verdict, static_cast<uint32_t>(NF_DROP)) << id;
  EXPECT_TRUE(rig.model.queue.empty());
  EXPECT_EQ(rig.pool->Stats().free_central[static_cast<std::size_t>(SizeClass::kSmall)], 4096u);
  EXPECT_EQ(rig.pool->Stats().free_central[static_cast<std::size_t>(SizeClass::kLarge)], 1u);
}

TEST(NfqueueEndpoint, ErrorReportsAreCountedAndIdGapsAreLoss) {
  Rig rig;
  rig.Deliver(1, 2);
  ASSERT_TRUE(rig.kernel.Deliver(BuildErrorMessage(ENOENT)));
  ASSERT_TRUE(rig.kernel.Deliver(BuildErrorMessage(EPERM)));
  ASSERT_TRUE(rig.kernel.Deliver(BuildErrorMessage(EINVAL)));
  ASSERT_TRUE(rig.kernel.Deliver(BuildErrorMessage(EBADMSG)));
  rig.Deliver(7, 1);  // ids 3..6 were never delivered
  rig.Deliver(8, 1);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 4u);
  EXPECT_EQ(rig.Count(C::kKernelEnoent), 1u);
  EXPECT_EQ(rig.Count(C::kKernelEperm), 1u);
  EXPECT_EQ(rig.Count(C::kKernelEinval), 1u);
  EXPECT_EQ(rig.Count(C::kKernelOther), 1u);
  EXPECT_EQ(rig.Count(C::kLostIds),
            4u);  // the first id is not judged: Adopt() does not know where ids start
  EXPECT_EQ(rig.endpoint->last_id(), 8u);
  for (uint32_t i = 0; i < b.size(); ++i) b.set_next(i, Next::kAccept);
  rig.Finish(b);
  EXPECT_EQ(rig.Settle(), 1);
  EXPECT_TRUE(rig.model.queue.empty());
  EXPECT_EQ(rig.model.enoent, 0);
}

// A socket whose every receive fails at once (here an unconnected TCP socket: ENOTCONN) must
// not turn the I/O thread into a busy loop: Receive waits out its wait, as when nothing comes.
TEST(NfqueueEndpoint, AReceiveErrorWaitsOutTheWaitInsteadOfSpinning) {
  auto pool = std::move(BufferPool::Create({.small_buffers = 256, .large_buffers = 0})).value();
  PoolCache cache(*pool);
  auto ep = NfqueueEndpoint::Adopt(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), {});
  ASSERT_TRUE(ep.ok()) << ep.status().message();
  Batch b;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ((*ep)->Receive(cache, b, 64, 30ms), 0u);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);  // sleep_for waits at least that long
  EXPECT_EQ((*ep)->counters().Load(C::kRecvErrors), 1u);
  EXPECT_EQ((*ep)->counters().Load(C::kRecvSyscalls), 1u);
  EXPECT_TRUE(b.empty());
}

TEST(NfqueueEndpoint, SendPacksTheWholeBatchIntoOneSendmsgWithTheRightVerdictsAndMarks) {
  Rig rig;
  rig.Deliver(100, 12);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 12u);
  // 0-2 accept; 3 drop; 4-5 accept; 6 rewritten; 7 accept with a rule mark; 8-9 accept;
  // 10 rewritten and marked; 11 skipped (passes unmodified).
  for (uint32_t i = 0; i < 12; ++i) b.set_next(i, Next::kAccept);
  b.Drop(3, DropReason::kNotIp);
  b.packet(6).data()[30] = 0xee;
  b.packet(6).meta().flags |= pkt_flag::kModified;
  b.packet(7).meta().mark = 0x2a;
  b.packet(7).meta().flags |= pkt_flag::kMarkSet;
  b.packet(10).meta().mark = 0xfff;
  b.packet(10).meta().flags |= pkt_flag::kMarkSet | pkt_flag::kModified;
  b.packet(9).meta().mark = 0x77;  // changed without kMarkSet: not returned
  b.Skip(11, DropReason::kNotIp);
  const std::vector<uint8_t> p6(b.packet(6).data(), b.packet(6).data() + b.packet(6).len());
  rig.Finish(b);

  auto d = rig.kernel.ReadDatagram();
  ASSERT_TRUE(d.has_value());
  EXPECT_FALSE(rig.kernel.ReadDatagram().has_value()) << "one sendmsg per batch";
  std::string plan;
  for (const auto& v : *d) {
    plan += (plan.empty() ? "" : " ") +
            std::string(v.batch                ? "B"
                        : v.verdict == NF_DROP ? "D"
                        : v.has_payload        ? "P"
                                               : "A") +
            std::to_string(v.id);
  }
  EXPECT_EQ(plan, "D103 B105 P106 A107 B109 P110 A111");
  rig.model.Apply(*d);
  EXPECT_TRUE(rig.model.queue.empty());
  EXPECT_EQ(rig.model.enoent, 0);
  const uint32_t guard = kMark;  // (0 & ~mask) | mark
  for (uint32_t id = 100; id < 112; ++id) {
    SCOPED_TRACE(id);
    const auto& o = rig.model.outcome[id];
    EXPECT_EQ(o.times, 1);
    EXPECT_EQ(o.verdict, static_cast<uint32_t>(id == 103 ? NF_DROP : NF_ACCEPT));
    ASSERT_TRUE(o.mark.has_value()) << "every verdict carries the mark";
    if (id == 107) {
      EXPECT_EQ(*o.mark, 0x2au | kMark);
    } else if (id == 110) {
      EXPECT_EQ(*o.mark, (0xfffu & ~kMask) | kMark);
    } else {
      EXPECT_EQ(*o.mark, guard);
    }
  }
  EXPECT_EQ(rig.model.outcome[106].payload, p6);
  // Wire order: accepted packets leave in the order they came.
  EXPECT_TRUE(std::is_sorted(rig.model.accepted_order.begin(), rig.model.accepted_order.end()));
  EXPECT_EQ(rig.Count(C::kSendmsgCalls), 1u);
  EXPECT_EQ(rig.Count(C::kBatchVerdicts), 2u);
  EXPECT_EQ(rig.Count(C::kBatchAccepted), 7u);
  EXPECT_EQ(rig.Count(C::kSingleAccepted), 2u);
  EXPECT_EQ(rig.Count(C::kPayloadAccepted), 2u);
  EXPECT_EQ(rig.Count(C::kDropped), 1u);
  EXPECT_EQ(rig.Count(C::kVerdictMessages), 7u);
}

TEST(NfqueueEndpoint, AReceivedMarkOutsideTheMaskIsKept) {
  Rig rig;
  PacketSpec s;
  s.id = 1;
  s.mark = 0x1201;  // 0x200 inside the mask is replaced, the rest stays
  s.payload = Ipv4Bytes(60);
  ASSERT_TRUE(rig.kernel.Deliver(BuildPacketMessage(s)));
  rig.model.Queued(1);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 1u);
  b.set_next(0, Next::kAccept);
  rig.Finish(b);
  rig.Settle();
  EXPECT_EQ(rig.model.outcome[1].mark, 0x1101u);
}

TEST(NfqueueEndpoint, ABatchTooBigForOneSendmsgIsSplitInOrder) {
  Rig rig({.sndbuf_bytes = 4096});  // 8 KiB in effect: a few 1,400-byte payloads per sendmsg
  rig.Deliver(1, 40, 1400);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 40u);
  for (uint32_t i = 0; i < 40; ++i) {
    b.set_next(i, Next::kAccept);
    if (i % 2) b.packet(i).meta().flags |= pkt_flag::kModified;
  }
  b.RecordVerdicts();
  // The kernel reads as the endpoint writes (a socketpair holds only one sndbuf's worth).
  std::vector<std::vector<testing::DecodedVerdict>> seen;
  std::thread reader([&] {
    for (int idle = 0; idle < 50;) {
      if (auto d = rig.kernel.ReadDatagram()) {
        seen.push_back(std::move(*d));
        idle = 0;
      } else {
        ++idle;
        std::this_thread::sleep_for(2ms);
      }
    }
  });
  rig.endpoint->Send(b);
  reader.join();
  rig.Retire(b);
  const int datagrams = static_cast<int>(seen.size());
  for (const auto& d : seen) rig.model.Apply(d);
  EXPECT_GE(datagrams, 3);  // 20 payloads of 1,400 bytes do not fit one 8 KiB sendmsg
  EXPECT_EQ(static_cast<uint64_t>(datagrams), rig.Count(C::kSendmsgCalls));
  EXPECT_TRUE(rig.model.queue.empty());
  EXPECT_EQ(rig.model.enoent, 0);
  EXPECT_TRUE(std::is_sorted(rig.model.accepted_order.begin(), rig.model.accepted_order.end()));
  EXPECT_EQ(rig.Count(C::kPayloadAccepted), 20u);
}

TEST(NfqueueEndpoint, AnOrphanIsDroppedAtOnceAndBatchingResumesAfterIt) {
  Rig rig;
  rig.Deliver(1, 8);
  Batch received;
  ASSERT_EQ(rig.Receive(received), 8u);
  // Packet id 3 leaves its batch (a stage kept it); the rest go on.
  Batch rest;
  PacketRef kept;
  for (uint32_t i = 0; i < 8; ++i) {
    if (i == 2) {
      kept = std::move(received.ref(i));
    } else {
      rest.MoveSlotFrom(received, i);
    }
  }
  received.Clear();
  for (uint32_t i = 0; i < rest.size(); ++i) rest.set_next(i, Next::kAccept);
  // While it is out there, no batch verdict may cover it: 1-2 batch, then singles after it.
  rig.Finish(rest);
  auto first = rig.kernel.ReadAll();
  rig.model.Apply(first);
  EXPECT_EQ(rig.model.queue.size(), 1u);
  EXPECT_EQ(rig.model.queue.front(), 3u);
  EXPECT_EQ(rig.Count(C::kUnbatched), 5u);
  // It dies without a verdict: a DROP goes out at once.
  kept = PacketRef();
  rig.Settle();
  EXPECT_EQ(rig.model.outcome[3].verdict, static_cast<uint32_t>(NF_DROP));
  EXPECT_TRUE(rig.model.queue.empty());
  EXPECT_EQ(rig.Count(C::kOrphans), 1u);
  EXPECT_EQ(rig.pool->Stats().orphaned, 1u);
  // Batching is back for what follows.
  rig.AcceptRound(9, 4);
  const auto last = rig.kernel.ReadAll();
  ASSERT_EQ(last.size(), 1u);
  EXPECT_TRUE(last[0].batch);
  rig.model.Apply(last);
  EXPECT_TRUE(rig.model.queue.empty());
  EXPECT_EQ(rig.model.enoent, 0);
}

TEST(NfqueueEndpoint, VerdictsWhoseSendmsgFailsAreSentAheadOfTheNextBatch) {
  Rig rig({.sndbuf_bytes = 2048});  // the peer does not read: our send buffer fills up
  uint32_t id = 1;
  for (int rounds = 0; rig.endpoint->deferred() == 0 && rounds < 2000; ++rounds, id += 4) {
    rig.AcceptRound(id, 4, /*rewrite_fourth=*/true);
  }
  ASSERT_GT(rig.endpoint->deferred(), 0u) << "the send buffer never filled";
  EXPECT_GT(rig.Count(C::kSendNoMemory), 0u);
  EXPECT_GT(rig.Count(C::kPayloadLost), 0u);
  // Each of them is marked dropped in its batch, so the pipeline counts no rewrite for it.
  EXPECT_EQ(rig.dropped[DropReason::kVerdictNotSent], rig.Count(C::kPayloadLost));
  // The kernel catches up; the next batch carries the deferred verdicts first.
  rig.Settle();
  rig.AcceptRound(id, 4, /*rewrite_fourth=*/true);
  rig.Settle();
  EXPECT_EQ(rig.endpoint->deferred(), 0u);
  EXPECT_TRUE(rig.model.queue.empty())
      << rig.model.queue.size() << " packets left without a verdict";
  EXPECT_EQ(rig.model.enoent, 0);
  uint64_t rewritten_dropped = 0;
  for (const auto& [pid, o] : rig.model.outcome) {
    EXPECT_EQ(o.times, 1) << pid;
    // A rewritten packet whose verdict had to wait lost its bytes: dropped, never sent unmodified.
    if (o.verdict == NF_ACCEPT && (pid % 4) == 0) {
      EXPECT_TRUE(o.has_payload) << pid;
    }
    rewritten_dropped += o.verdict == NF_DROP && (pid % 4) == 0;
  }
  EXPECT_EQ(rewritten_dropped, rig.dropped[DropReason::kVerdictNotSent])
      << "the kernel dropped exactly the packets the batches said";
  EXPECT_TRUE(std::is_sorted(rig.model.accepted_order.begin(), rig.model.accepted_order.end()));
  EXPECT_EQ(rig.Count(C::kVerdictsLost), 0u);
}

// With no next batch to carry them (the queue went quiet, or the daemon is stopping), the
// deferred verdicts go out when the I/O loop finds the queue idle.
TEST(NfqueueEndpoint, DeferredVerdictsGoOutWhenTheQueueIsIdle) {
  Rig rig({.sndbuf_bytes = 2048});
  uint32_t id = 1;
  for (int rounds = 0; rig.endpoint->deferred() == 0 && rounds < 2000; ++rounds, id += 4) {
    rig.AcceptRound(id, 4);
  }
  ASSERT_GT(rig.endpoint->deferred(), 0u) << "the send buffer never filled";
  rig.Settle();  // the kernel catches up; no packet arrives
  rig.endpoint->Idle();
  rig.Settle();
  EXPECT_EQ(rig.endpoint->deferred(), 0u);
  EXPECT_TRUE(rig.model.queue.empty()) << rig.model.queue.size() << " packets left without a verdict";
  EXPECT_EQ(rig.model.enoent, 0);
  EXPECT_EQ(rig.Count(C::kVerdictsLost), 0u);
  rig.endpoint->Idle();  // nothing held back: sends nothing
  EXPECT_TRUE(rig.kernel.ReadAll().empty());
}

// The socket refuses verdicts until more are deferred than the list holds: Send waits for it
// (back-pressure) instead of losing verdicts, which would leave packets queued for good and
// batch verdicts off for the life of the socket.
TEST(NfqueueEndpoint, AFullDeferredListWaitsForTheSocketInsteadOfLosingVerdicts) {
  Rig rig({.sndbuf_bytes = 2048});  // the peer does not read: our send buffer fills up
  uint32_t id = 1;
  for (int rounds = 0; rig.endpoint->deferred() + 64 <= 1024 && rounds < 200; ++rounds, id += 64) {
    rig.AcceptRound(id, 64);
  }
  ASSERT_GT(rig.endpoint->deferred() + 64, 1024u) << "the deferred list never filled";
  // The kernel catches up only once Send has begun to wait: one more round overflows the list.
  std::atomic<bool> done{false};
  std::vector<testing::DecodedVerdict> read;
  std::thread kernel([&] {
    while (rig.Count(C::kDeferredFullWaits) == 0 && !done.load()) std::this_thread::sleep_for(1ms);
    while (!done.load()) {
      for (auto& v : rig.kernel.ReadAll()) read.push_back(std::move(v));
      std::this_thread::sleep_for(1ms);
    }
  });
  rig.AcceptRound(id, 64);
  id += 64;
  done.store(true);
  kernel.join();
  EXPECT_EQ(rig.Count(C::kDeferredFullWaits), 1u);
  EXPECT_EQ(rig.Count(C::kVerdictsLost), 0u);
  rig.model.Apply(read);
  rig.Settle();
  // Everything is verdicted, and batch verdicts work again: the next round is one message.
  const uint64_t batches = rig.Count(C::kBatchVerdicts);
  rig.AcceptRound(id, 64);
  EXPECT_EQ(rig.Count(C::kBatchVerdicts), batches + 1);
  EXPECT_EQ(rig.Settle(), 1);
  EXPECT_EQ(rig.endpoint->deferred(), 0u);
  EXPECT_TRUE(rig.model.queue.empty()) << rig.model.queue.size() << " packets left without a verdict";
  EXPECT_EQ(rig.model.enoent, 0);
  for (const auto& [pid, o] : rig.model.outcome) EXPECT_EQ(o.times, 1) << pid;
  EXPECT_EQ(rig.model.outcome.size(), id + 64 - 1);
}

// When the socket takes nothing for a second and the deferred list is full, the verdicts that
// fit nowhere are lost: their packets stay queued until the socket closes, then the kernel
// drops them. The batch says so, so the pipeline counts them dropped (verdict_lost), not
// accepted.
TEST(NfqueueEndpoint, AVerdictLostAfterTheWaitIsADropTheBatchKnowsOf) {
  Rig rig({.sndbuf_bytes = 2048});  // the peer does not read, ever
  uint32_t id = 1;
  for (int rounds = 0; rig.endpoint->deferred() + 64 <= 1024 && rounds < 200; ++rounds, id += 64) {
    rig.AcceptRound(id, 64);
  }
  ASSERT_GT(rig.endpoint->deferred() + 64, 1024u) << "the deferred list never filled";
  EXPECT_EQ(rig.dropped[DropReason::kVerdictLost], 0u);
  rig.AcceptRound(id, 64);  // waits its second, then loses what does not fit
  EXPECT_EQ(rig.Count(C::kDeferredFullWaits), 1u);
  EXPECT_GT(rig.Count(C::kVerdictsLost), 0u);
  EXPECT_EQ(rig.dropped[DropReason::kVerdictLost], rig.Count(C::kVerdictsLost));
}

// The verdicts lost are the newest: a batch's drops do not take the deferred list's last room
// from older accepts (which no batch could mark any more). 1,000 accepts wait; a batch of 64,
// every other one a drop, overflows it by 40: those are the batch's last 40 slots, and the
// accepts among them are the ones marked verdict_lost (the drops stay rule drops).
TEST(NfqueueEndpoint, TheVerdictsLostAreTheNewestAndTheirBatchSaysSo) {
  Rig rig({.sndbuf_bytes = 2048});  // the peer does not read, ever
  uint32_t id = 1;
  for (int rounds = 0; rig.endpoint->deferred() + 64 <= 1000 && rounds < 200; ++rounds, id += 64) {
    rig.AcceptRound(id, 64);
  }
  const uint32_t top_up = 1000 - rig.endpoint->deferred();
  if (top_up != 0) rig.AcceptRound(id, top_up);
  id += top_up;
  ASSERT_EQ(rig.endpoint->deferred(), 1000u);
  rig.Deliver(id, 64);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 64u);
  for (uint32_t i = 0; i < 64; ++i) {
    if (i % 2 == 0) b.Drop(i, DropReason::kRuleDrop);
    else b.set_next(i, Next::kAccept);
  }
  rig.Finish(b);
  const uint64_t lost = rig.Count(C::kVerdictsLost);
  ASSERT_EQ(lost, 40u);
  EXPECT_EQ(rig.endpoint->deferred(), 1024u);
  EXPECT_EQ(rig.dropped[DropReason::kVerdictLost], 20u) << "the odd slots among the last 40";
  EXPECT_EQ(rig.dropped[DropReason::kRuleDrop], 32u);
}

TEST(NfqueueEndpoint, ReceiveAndSendAllocateNothingPerPacket) {
  Rig rig;
  std::vector<std::vector<uint8_t>> msgs;
  for (uint32_t i = 0; i < 64; ++i) {
    PacketSpec s;
    s.id = i + 1;
    s.payload = Ipv4Bytes(200);
    msgs.push_back(BuildPacketMessage(s));
  }
  std::vector<uint8_t> sink(1 << 20);
  auto round = [&](uint32_t base) {
    for (uint32_t i = 0; i < 64; ++i) {
      auto* nlh = reinterpret_cast<nlmsghdr*>(msgs[i].data());
      auto* ph = static_cast<nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(
          static_cast<nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)))));
      ph->packet_id = htonl(base + i);
      send(rig.kernel.kernel_fd(), msgs[i].data(), msgs[i].size(), 0);
    }
    Batch b;
    uint32_t got = 0;
    for (int tries = 0; got < 64 && tries < 100; ++tries) got += rig.Receive(b, 64 - got);
    for (uint32_t i = 0; i < b.size(); ++i) {
      b.set_next(i, i % 8 == 0 ? Next::kDrop : Next::kAccept);
      if (i % 8 == 4) b.packet(i).meta().flags |= pkt_flag::kModified;
    }
    rig.Finish(b);
    while (recv(rig.kernel.kernel_fd(), sink.data(), sink.size(), MSG_DONTWAIT) > 0) {
    }
  };
  uint32_t base = 1;
  for (int i = 0; i < 20; ++i, base += 64) round(base);
  testing::AllocationScope allocs;
  for (int i = 0; i < 500; ++i, base += 64) round(base);
  EXPECT_EQ(allocs.count(), 0u);
  EXPECT_EQ(rig.Count(C::kReceived), 520u * 64);
  EXPECT_EQ(rig.Count(C::kBatchAccepted) + rig.Count(C::kSingleAccepted) +
                rig.Count(C::kPayloadAccepted) + rig.Count(C::kDropped),
            520u * 64);
}

TEST(NfqueueEndpoint, CountersExportWithTheirNamesAndQueue) {
  Rig rig({.queue = 3});
  rig.Deliver(1, 2);
  Batch b;
  ASSERT_EQ(rig.Receive(b), 2u);
  b.set_next(0, Next::kAccept);
  b.set_next(1, Next::kAccept);
  rig.Finish(b);
  StatsReport report;
  AppendNfqueueCounters(*rig.endpoint, report);
  ASSERT_EQ(report.counters.size(), kNfqueueCounterTable.size() + 1);  // and last_id
  std::set<std::string> names;
  for (const NamedCounter& c : report.counters) {
    EXPECT_FALSE(c.help.empty());
    ASSERT_EQ(c.labels.size(), 1u);
    EXPECT_EQ(c.labels[0], (std::pair<std::string, std::string>{"queue", "3"}));
    names.insert(c.name);
    if (c.name == "nfqueue_received" || c.name == "nfqueue_batch_accepted" ||
        c.name == "nfqueue_last_id") {
      EXPECT_EQ(c.value, 2u) << c.name;
    }
  }
  EXPECT_EQ(names.size(), kNfqueueCounterTable.size() + 1) << "counter names must be unique";
}

// Open() as a user without CAP_NET_ADMIN: the error says what is missing and names the queue.
TEST(NfqueueEndpoint, OpenWithoutCapNetAdminSaysSo) {
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pipefd[0]);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(2);
    auto ep = NfqueueEndpoint::Open({.queue = 4321});
    const std::string msg = ep.ok() ? "opened" : ep.status().message();
    if (write(pipefd[1], msg.data(), msg.size()) < 0) _exit(3);
    _exit(0);
  }
  close(pipefd[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = read(pipefd[0], buf, sizeof buf)) > 0;)
    msg.append(buf, static_cast<std::size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(msg.find("CAP_NET_ADMIN"), std::string::npos) << msg;
  EXPECT_NE(msg.find("queue 4321"), std::string::npos) << msg;
}

// The graceful stop's first step is one config message for this queue carrying maxlen 0 and
// nothing else: no command (which could unbind the queue), no flags (fail-open stays as set).
TEST(NfqueueEndpoint, StopAdmittingSetsTheQueueMaxlenToZeroAndNothingElse) {
  Rig rig({.queue = 5});
  ASSERT_TRUE(rig.endpoint->StopAdmitting().ok());
  uint8_t buf[256];
  const ssize_t n = recv(rig.kernel.kernel_fd(), buf, sizeof buf, MSG_DONTWAIT);
  ASSERT_GT(n, 0);
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf);
  ASSERT_TRUE(mnl_nlmsg_ok(nlh, static_cast<int>(n)));
  EXPECT_EQ(nlh->nlmsg_len, static_cast<uint32_t>(n)) << "one message";
  EXPECT_EQ(nlh->nlmsg_type, (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG);
  EXPECT_TRUE(nlh->nlmsg_flags & NLM_F_REQUEST);
  const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
  EXPECT_EQ(ntohs(nfg->res_id), 5);
  std::vector<uint16_t> types;
  uint32_t maxlen = 1;
  const auto* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  for (auto* a = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)));
       mnl_attr_ok(a, static_cast<int>(tail - reinterpret_cast<const char*>(a)));
       a = mnl_attr_next(a)) {
    types.push_back(mnl_attr_get_type(a));
    if (mnl_attr_get_type(a) == NFQA_CFG_QUEUE_MAXLEN) maxlen = ntohl(mnl_attr_get_u32(a));
  }
  EXPECT_EQ(types, std::vector<uint16_t>{NFQA_CFG_QUEUE_MAXLEN});
  EXPECT_EQ(maxlen, 0u);
  EXPECT_EQ(rig.Settle(), 0) << "no verdict went with it";
}

TEST(NfqueueEndpoint, OpenRejectsAMarkOutsideItsMask) {
  auto ep = NfqueueEndpoint::Open({.verdict_mark = 0x3, .verdict_mask = 0x1});
  ASSERT_FALSE(ep.ok());
  EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sluice
