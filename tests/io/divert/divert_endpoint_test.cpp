// DivertEndpoint on Linux over a fake divert kernel: what Receive makes of each datagram and
// its address, what Send writes back (and with which address), every sendto error, the ICMP
// answer to EMSGSIZE, orphans, allocation, and the whole Receive → InlinePipeline → Send path.
#include "engine/io/divert/divert_endpoint.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <thread>

#include "engine/graph/pipeline.h"
#include "engine/graph/stage.h"
#include "tests/io/divert/divert_test_util.h"
#include "tests/testing/alloc_counter.h"

namespace sluice {
namespace {

using testing::FakeDatagram;
using testing::FakeDivertKernel;
using testing::Ip4;
using testing::Ipv4Packet;
using testing::Ipv4Spec;
using testing::SentDatagram;
using namespace std::chrono_literals;

std::unique_ptr<DivertEndpoint> AttachTo(FakeDivertKernel& k, DivertOptions o = {}) {
  if (o.port == 0) o.port = 8000;
  o.enobufs_backoff = 0us;  // tests need no real waiting
  auto r = DivertEndpoint::Attach(o, k.syscalls(), -1, false);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return std::move(r).value();
}

FakeDatagram Datagram(std::vector<uint8_t> bytes, Direction dir, uint16_t rule, const char* ifname,
                      uint32_t if_addr = Ip4(10, 0, 0, 1)) {
  FakeDatagram d;
  d.bytes = std::move(bytes);
  d.addr = MakeDivertAddress(dir, rule, if_addr, ifname);
  return d;
}

struct Env {
  explicit Env(uint32_t large = 4) {
    pool = std::move(BufferPool::Create({.small_buffers = 4096, .large_buffers = large})).value();
    cache = std::make_unique<PoolCache>(*pool, 64);
  }
  ~Env() {
    batch.Clear();
    cache.reset();
  }
  // Receives once and gives every packet the verdict `v`, as the pipeline's last node does.
  uint32_t ReceiveAll(DivertEndpoint& ep, uint32_t max = 64) {
    batch.set_limit(std::min<uint32_t>(max, kMaxBatch));
    return ep.Receive(*cache, batch, max, 1000us);
  }
  void SetVerdicts(Verdict v) {
    for (uint32_t i = 0; i < batch.size(); ++i) batch.packet(i).meta().verdict = v;
  }
  void Retire() {
    std::array<PacketBuffer*, kMaxBatch> bufs;
    cache->PutBulk(bufs.data(), batch.TakeBuffers(bufs.data()));
  }
  std::unique_ptr<BufferPool> pool;
  std::unique_ptr<PoolCache> cache;
  Batch batch;
};

TEST(DivertEndpoint, OpenOnLinuxSaysToUseNfqueue) {
  if (DivertSupported()) GTEST_SKIP() << "this host has divert sockets";
  auto r = DivertEndpoint::Open({.port = 8000});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("divert sockets exist only on FreeBSD; on Linux use the nfqueue backend"),
            std::string::npos)
      << r.status().message();
}

TEST(DivertEndpoint, ValidateNamesWhatIsWrong) {
  EXPECT_FALSE(DivertEndpoint::Validate({.port = 0}).ok());
  const Status no_source = DivertEndpoint::Validate({.port = 1, .answer_emsgsize = true});
  EXPECT_FALSE(no_source.ok());
  EXPECT_NE(no_source.message().find("icmp_source"), std::string::npos);
  EXPECT_FALSE(DivertEndpoint::Validate({.port = 1, .answer_emsgsize = true, .icmp_mtu = 40, .icmp_source = 1}).ok());
  EXPECT_TRUE(DivertEndpoint::Validate({.port = 1, .answer_emsgsize = true, .icmp_source = Ip4(192, 0, 2, 1)}).ok());
}

TEST(DivertEndpoint, ReceiveTurnsEachAddressIntoMetadata) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  Env env;
  std::vector<uint8_t> out_bytes = Ipv4Packet({});
  out_bytes[10] ^= 0xff;  // outbound reads carry a bad header checksum
  k.Queue(Datagram(out_bytes, Direction::kOut, 1000, ""));
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 1010, "em0"));
  k.Queue(Datagram(testing::Ipv6Packet(20), Direction::kIn, 1020, "vtnet12"));
  k.Queue(Datagram(Ipv4Packet({}), Direction::kOut, 1000, "em1"));  // forwarded: carries its rcvif
  ASSERT_EQ(env.ReceiveAll(*ep), 4u);

  const PacketMeta& out = env.batch.packet(0).meta();
  EXPECT_EQ(out.direction, Direction::kOut);
  EXPECT_EQ(out.in_if, 0u);
  EXPECT_EQ(out.link_type, LinkType::kRaw);
  EXPECT_EQ(out.len, out_bytes.size());
  EXPECT_NE(out.flags & pkt_flag::kIpCsumUntrusted, 0) << "outbound IPv4 header checksum is not trusted";
  EXPECT_NE(out.rx_ns, 0u);
  EXPECT_EQ(std::memcmp(env.batch.packet(0).data(), out_bytes.data(), out_bytes.size()), 0);

  const PacketMeta& in = env.batch.packet(1).meta();
  EXPECT_EQ(in.direction, Direction::kIn);
  EXPECT_EQ(ep->InterfaceName(in.in_if), "em0");
  EXPECT_EQ(in.flags & pkt_flag::kIpCsumUntrusted, 0);
  EXPECT_EQ(DecodeDivertAddress(DivertToken::Addr(env.batch.packet(1).io())).rule, 1010);

  const PacketMeta& v6 = env.batch.packet(2).meta();
  EXPECT_EQ(v6.direction, Direction::kIn);
  EXPECT_EQ(ep->InterfaceName(v6.in_if), "vtnet12");
  EXPECT_EQ(v6.flags & pkt_flag::kIpCsumUntrusted, 0);

  EXPECT_EQ(ep->InterfaceName(env.batch.packet(3).meta().in_if), "em1");
  EXPECT_LT(env.batch.packet(0).meta().io_token, env.batch.packet(3).meta().io_token);

  EXPECT_EQ(ep->counter(DivertCounter::kRxPackets), 4u);
  EXPECT_EQ(ep->counter(DivertCounter::kRxOutbound), 2u);
  EXPECT_EQ(ep->counter(DivertCounter::kRxInbound), 2u);
  EXPECT_EQ(ep->counter(DivertCounter::kRxIpv6), 1u);
  env.SetVerdicts(Verdict::kDrop);
  ep->Send(env.batch);
  env.Retire();
}

// Rules that match on interfaces are compiled with ids given before any packet: every shard's
// endpoint must then give the received name that same id.
TEST(DivertEndpoint, InterfacesInternedUpFrontKeepTheirIds) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  EXPECT_EQ(ep->InternInterface("em1"), 1u);
  EXPECT_EQ(ep->InternInterface("vtnet12345"), 2u);  // cut to 7 characters, as divert(4) does
  EXPECT_EQ(ep->InternInterface("em1"), 1u);
  Env env;
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 1000, "vtnet12"));
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 1000, "em1"));
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 1000, "em0"));
  ASSERT_EQ(env.ReceiveAll(*ep), 3u);
  EXPECT_EQ(env.batch.packet(0).meta().in_if, 2u);
  EXPECT_EQ(env.batch.packet(1).meta().in_if, 1u);
  EXPECT_EQ(env.batch.packet(2).meta().in_if, 3u);  // first seen on the wire: the next id
  env.SetVerdicts(Verdict::kDrop);
  ep->Send(env.batch);
  env.Retire();
}

TEST(DivertEndpoint, ReceiveWaitsAtMostWaitAndReturnsWhatIsReady) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  Env env;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(ep->Receive(*env.cache, env.batch, 64, 5000us), 0u);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 4ms);
  for (int i = 0; i < 3; ++i) k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 1, "em0"));
  EXPECT_EQ(ep->Receive(*env.cache, env.batch, 2, 5000us), 2u) << "stops at max";
  EXPECT_EQ(k.queued(), 1u);
  env.SetVerdicts(Verdict::kDrop);
  env.Retire();
}

// A socket whose every read fails at once must not turn the I/O thread into a busy loop:
// Receive waits out its wait, as when nothing arrives, and counts the error.
TEST(DivertEndpoint, AReceiveErrorWaitsOutTheWaitInsteadOfSpinning) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  Env env;
  k.recv_error = EBADF;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(ep->Receive(*env.cache, env.batch, 64, 5000us), 0u);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 5ms);  // a sleep lasts at least its length
  EXPECT_EQ(k.recv_calls(), 1u);
  EXPECT_EQ(ep->counter(DivertCounter::kRxErrors), 1u);
  EXPECT_TRUE(env.batch.empty());
}

TEST(DivertEndpoint, BigDatagramsSpillIntoALargeBuffer) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  Env env(/*large=*/2);
  const std::vector<uint8_t> big = Ipv4Packet({.payload = 9000});  // reassembled, or TSO
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 7, "em0"));
  k.Queue(Datagram(big, Direction::kIn, 8, "em0"));
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 9, "em0"));
  ASSERT_EQ(env.ReceiveAll(*ep), 3u);
  PacketBuffer& p = env.batch.packet(1);
  EXPECT_EQ(p.meta().size_class, static_cast<uint8_t>(SizeClass::kLarge));
  ASSERT_EQ(p.len(), big.size());
  EXPECT_EQ(std::memcmp(p.data(), big.data(), big.size()), 0);
  EXPECT_EQ(DecodeDivertAddress(DivertToken::Addr(p.io())).rule, 8);
  EXPECT_EQ(DivertToken::Len(p.io()), sizeof(sockaddr_in));
  EXPECT_EQ(env.batch.packet(2).meta().size_class, static_cast<uint8_t>(SizeClass::kSmall));
  EXPECT_EQ(ep->counter(DivertCounter::kRxLarge), 1u);
  env.SetVerdicts(Verdict::kAccept);
  ep->Send(env.batch);
  ASSERT_EQ(k.sent().size(), 3u);
  EXPECT_EQ(k.sent()[1].bytes, big);
  env.Retire();
  env.cache->Flush();
  EXPECT_EQ(env.pool->Stats().free_central[1], 2u) << "the spare large buffer went back";
}

TEST(DivertEndpoint, WithoutALargeBufferABigDatagramIsCountedAndDropped) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  Env env(/*large=*/0);
  k.Queue(Datagram(Ipv4Packet({.payload = 3000}), Direction::kIn, 8, "em0"));
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 9, "em0"));
  ASSERT_EQ(env.ReceiveAll(*ep), 1u);
  EXPECT_EQ(ep->counter(DivertCounter::kRxTruncated), 1u);
  EXPECT_EQ(DecodeDivertAddress(DivertToken::Addr(env.batch.packet(0).io())).rule, 9);
  env.SetVerdicts(Verdict::kDrop);
  env.Retire();
}

TEST(DivertEndpoint, WhenLargeBuffersRunOutBigDatagramsAreDroppedAndSmallOnesStillRead) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  Env env(/*large=*/1);
  k.Queue(Datagram(Ipv4Packet({.payload = 5000}), Direction::kIn, 1, "em0"));
  k.Queue(Datagram(Ipv4Packet({.payload = 5000}), Direction::kIn, 2, "em0"));
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 3, "em0"));
  ASSERT_EQ(env.ReceiveAll(*ep), 2u);
  EXPECT_EQ(ep->counter(DivertCounter::kRxLarge), 1u);
  EXPECT_EQ(ep->counter(DivertCounter::kRxTruncated), 1u);
  EXPECT_EQ(DecodeDivertAddress(DivertToken::Addr(env.batch.packet(1).io())).rule, 3);
  env.SetVerdicts(Verdict::kDrop);
  env.Retire();
}

TEST(DivertEndpoint, ADatagramWithoutAnInetAddressIsNeverReinjected) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  Env env;
  FakeDatagram short_name = Datagram(Ipv4Packet({}), Direction::kIn, 1, "em0");
  short_name.addr_len = 8;
  FakeDatagram wrong_family = Datagram(Ipv4Packet({}), Direction::kIn, 1, "em0");
  wrong_family.addr.sin_family = AF_INET6;
  k.Queue(short_name);
  k.Queue(wrong_family);
  EXPECT_EQ(env.ReceiveAll(*ep), 0u);
  EXPECT_EQ(ep->counter(DivertCounter::kRxBadAddress), 2u);
}

TEST(DivertEndpoint, SendWritesAcceptedPacketsBackWithTheirOwnAddressAndNothingElse) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  Env env;
  std::vector<FakeDatagram> in;
  for (uint16_t i = 0; i < 12; ++i) {
    const char* names[] = {"", "em0", "em1", "igb0"};
    in.push_back(Datagram(Ipv4Packet({.id = i}), i % 3 == 0 ? Direction::kOut : Direction::kIn,
                          static_cast<uint16_t>(100 + 10 * (i % 4)), names[i % 4], Ip4(10, 0, i % 2, 1)));
    k.Queue(in.back());
  }
  ASSERT_EQ(env.ReceiveAll(*ep), 12u);
  for (uint32_t i = 0; i < 12; ++i) {
    env.batch.packet(i).meta().verdict = i % 4 == 3 ? Verdict::kDrop : Verdict::kAccept;
  }
  ep->Send(env.batch);
  const std::vector<SentDatagram> sent = k.sent();
  ASSERT_EQ(sent.size(), 9u);
  std::size_t s = 0;
  for (uint32_t i = 0; i < 12; ++i) {
    if (i % 4 == 3) continue;
    EXPECT_EQ(sent[s].bytes, in[i].bytes) << i;
    EXPECT_EQ(std::memcmp(sent[s].addr.data(), &in[i].addr, sizeof(sockaddr_in)), 0) << "address of packet " << i;
    EXPECT_EQ(sent[s].addr_len, sizeof(sockaddr_in));
    ++s;
  }
  EXPECT_EQ(ep->counter(DivertCounter::kTxPackets), 9u);
  EXPECT_EQ(ep->counter(DivertCounter::kTxDropped), 3u);
  env.Retire();
}

TEST(DivertEndpoint, SendRepairsABadHeaderChecksumOnlyOnTheInputPath) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  Env env;
  std::vector<uint8_t> bad = Ipv4Packet({});
  bad[10] ^= 0x5a;
  k.Queue(Datagram(bad, Direction::kIn, 1, "em0"));        // would be dropped by ip_input
  k.Queue(Datagram(bad, Direction::kOut, 1, ""));          // the kernel rewrites it on output
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 1, "em0"));
  ASSERT_EQ(env.ReceiveAll(*ep), 3u);
  env.SetVerdicts(Verdict::kAccept);
  ep->Send(env.batch);
  const auto sent = k.sent();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_TRUE(divert_detail::Ipv4HeaderChecksumOk(sent[0].bytes.data(), 20));
  EXPECT_EQ(sent[1].bytes, bad);
  EXPECT_EQ(sent[2].bytes, Ipv4Packet({}));
  EXPECT_EQ(ep->counter(DivertCounter::kTxIpCsumFixed), 1u);
  env.Retire();
}

struct ErrnoCase {
  int err;
  DivertCounter counter;
};

TEST(DivertEndpoint, EverySendtoErrorIsCountedByErrnoAndNeverStopsTheEndpoint) {
  const ErrnoCase cases[] = {
      {EHOSTUNREACH, DivertCounter::kTxEhostunreach}, {ENETUNREACH, DivertCounter::kTxEnetunreach},
      {EMSGSIZE, DivertCounter::kTxEmsgsize},         {EADDRNOTAVAIL, DivertCounter::kTxEaddrnotavail},
      {EACCES, DivertCounter::kTxEacces},             {EINVAL, DivertCounter::kTxEinval},
      {EPERM, DivertCounter::kTxOtherErrors},         {ENOBUFS, DivertCounter::kTxEnobufs},
  };
  FakeDivertKernel k;
  auto ep = AttachTo(k, {.enobufs_retries = 0});
  // Packet i fails with cases[i].err on every attempt; the others go through.
  k.fail = [&](uint64_t, const uint8_t* bytes, std::size_t) -> int {
    const uint16_t id = LoadBe16(bytes + 4);
    return id < std::size(cases) ? cases[id].err : 0;
  };
  Env env;
  for (uint16_t i = 0; i < std::size(cases) + 4; ++i) k.Queue(Datagram(Ipv4Packet({.id = i}), Direction::kIn, 1, "em0"));
  ASSERT_EQ(env.ReceiveAll(*ep), std::size(cases) + 4);
  env.SetVerdicts(Verdict::kAccept);
  ep->Send(env.batch);
  for (const ErrnoCase& c : cases) {
    EXPECT_EQ(ep->counter(c.counter), 1u) << kDivertCounterTable[static_cast<std::size_t>(c.counter)].name;
  }
  EXPECT_EQ(ep->counter(DivertCounter::kTxPackets), 4u) << "the packets after the failures still went out";
  // The lost ones are dropped in the batch, so the pipeline counts them as lost, not as sent.
  for (uint32_t i = 0; i < env.batch.size(); ++i) {
    const bool failed = i < std::size(cases);
    EXPECT_EQ(env.batch.packet(i).meta().verdict, failed ? Verdict::kDrop : Verdict::kAccept) << i;
    if (failed) {
      EXPECT_EQ(env.batch.reason(i), DropReason::kReinjectFailed) << i;
    }
  }
  env.Retire();

  // And the next batch is written as if nothing happened.
  k.fail = nullptr;
  k.Queue(Datagram(Ipv4Packet({.id = 0}), Direction::kIn, 1, "em0"));
  ASSERT_EQ(env.ReceiveAll(*ep), 1u);
  env.SetVerdicts(Verdict::kAccept);
  ep->Send(env.batch);
  EXPECT_EQ(ep->counter(DivertCounter::kTxPackets), 5u);
  env.Retire();
}

TEST(DivertEndpoint, EnobufsIsRetriedAFewTimesThenCounted) {
  FakeDivertKernel k;
  auto ep = AttachTo(k, {.enobufs_retries = 3, .enobufs_retry_budget = 100});
  // Packet 0: two ENOBUFS, then through. Packet 1: ENOBUFS for ever.
  std::map<uint16_t, int> failures;
  k.fail = [&](uint64_t, const uint8_t* bytes, std::size_t) -> int {
    const uint16_t id = LoadBe16(bytes + 4);
    const int n = failures[id]++;
    if (id == 0) return n < 2 ? ENOBUFS : 0;
    return ENOBUFS;
  };
  Env env;
  k.Queue(Datagram(Ipv4Packet({.id = 0}), Direction::kOut, 1, ""));
  k.Queue(Datagram(Ipv4Packet({.id = 1}), Direction::kOut, 1, ""));
  ASSERT_EQ(env.ReceiveAll(*ep), 2u);
  env.SetVerdicts(Verdict::kAccept);
  ep->Send(env.batch);
  EXPECT_EQ(failures[0], 3) << "two failures and the write that went through";
  EXPECT_EQ(failures[1], 4) << "one write and three retries, no more";
  EXPECT_EQ(ep->counter(DivertCounter::kTxPackets), 1u);
  EXPECT_EQ(ep->counter(DivertCounter::kTxEnobufs), 1u);
  EXPECT_EQ(ep->counter(DivertCounter::kTxEnobufsRetries), 5u);
  env.Retire();
}

TEST(DivertEndpoint, EnobufsRetriesAreBoundedPerBatch) {
  FakeDivertKernel k;
  auto ep = AttachTo(k, {.enobufs_retries = 3, .enobufs_retry_budget = 4});
  k.fail = [](uint64_t, const uint8_t*, std::size_t) { return ENOBUFS; };  // a saturated link
  Env env;
  for (uint16_t i = 0; i < 10; ++i) k.Queue(Datagram(Ipv4Packet({.id = i}), Direction::kOut, 1, ""));
  ASSERT_EQ(env.ReceiveAll(*ep), 10u);
  env.SetVerdicts(Verdict::kAccept);
  ep->Send(env.batch);
  EXPECT_EQ(k.send_calls(), 10u + 4u);
  EXPECT_EQ(ep->counter(DivertCounter::kTxEnobufs), 10u);
  EXPECT_EQ(ep->counter(DivertCounter::kTxEnobufsRetries), 4u);
  env.Retire();
}

constexpr uint32_t kRouter = Ip4(203, 0, 113, 1);

TEST(DivertEndpoint, EmsgsizeIsAnsweredWithFragmentationNeededTowardTheSource) {
  FakeDivertKernel k;
  auto ep = AttachTo(k, {.answer_emsgsize = true, .icmp_mtu = 1400, .icmp_source = kRouter});
  k.fail = [](uint64_t, const uint8_t* bytes, std::size_t len) {
    return len > 1400 && bytes[9] != 1 ? EMSGSIZE : 0;  // the ICMP itself goes through
  };
  Env env;
  Ipv4Spec spec;
  spec.payload = 1480;
  std::vector<uint8_t> big = Ipv4Packet(spec);
  big[10] ^= 0xff;  // read on the output path: header checksum not valid
  const FakeDatagram d = Datagram(big, Direction::kOut, 4321, "em1");
  k.Queue(d);
  ASSERT_EQ(env.ReceiveAll(*ep), 1u);
  env.SetVerdicts(Verdict::kAccept);
  ep->Send(env.batch);

  EXPECT_EQ(ep->counter(DivertCounter::kTxEmsgsize), 1u);
  EXPECT_EQ(ep->counter(DivertCounter::kIcmpFragNeededSent), 1u);
  const auto sent = k.sent();
  ASSERT_EQ(sent.size(), 1u);
  const std::vector<uint8_t>& icmp = sent[0].bytes;
  ASSERT_EQ(icmp.size(), 56u);
  EXPECT_EQ(std::memcmp(sent[0].addr.data(), &d.addr, sizeof d.addr), 0) << "sent the refused packet's way";
  EXPECT_TRUE(divert_detail::Ipv4HeaderChecksumOk(icmp.data(), 20));
  EXPECT_EQ(LoadBe32(&icmp[12]), kRouter);
  EXPECT_EQ(LoadBe32(&icmp[16]), spec.src);
  EXPECT_EQ(icmp[20], 3);
  EXPECT_EQ(icmp[21], 4);
  EXPECT_EQ(LoadBe16(&icmp[26]), 1400);
  EXPECT_EQ(InternetChecksum(&icmp[20], icmp.size() - 20), 0);
  EXPECT_TRUE(divert_detail::Ipv4HeaderChecksumOk(&icmp[28], 20)) << "quoted header repaired";
  EXPECT_EQ(std::memcmp(&icmp[28 + 12], &big[12], 8), 0) << "quoted addresses";
  EXPECT_EQ(std::memcmp(&icmp[48], &big[20], 8), 0) << "first 8 payload bytes";
  env.Retire();
}

TEST(DivertEndpoint, EmsgsizeIsNotAnsweredWhenOffInboundOrIneligible) {
  for (int variant = 0; variant < 3; ++variant) {
    FakeDivertKernel k;
    DivertOptions o;
    if (variant != 0) o = {.answer_emsgsize = true, .icmp_mtu = 1400, .icmp_source = kRouter};
    auto ep = AttachTo(k, o);
    k.fail = [](uint64_t, const uint8_t*, std::size_t len) { return len > 1400 ? EMSGSIZE : 0; };
    Env env;
    const Direction dir = variant == 1 ? Direction::kIn : Direction::kOut;
    k.Queue(Datagram(Ipv4Packet({.payload = 1480, .df = variant != 2}), dir, 1, "em0"));
    ASSERT_EQ(env.ReceiveAll(*ep), 1u);
    env.SetVerdicts(Verdict::kAccept);
    ep->Send(env.batch);
    EXPECT_EQ(ep->counter(DivertCounter::kTxEmsgsize), 1u);
    EXPECT_EQ(ep->counter(DivertCounter::kIcmpFragNeededSent), 0u) << variant;
    EXPECT_EQ(ep->counter(DivertCounter::kIcmpFragNeededSkipped), variant == 0 ? 0u : 1u) << variant;
    EXPECT_EQ(k.send_calls(), 1u) << variant;
    env.Retire();
  }
}

TEST(DivertEndpoint, AnOrphanIsCountedAndNeverWrittenBack) {
  FakeDivertKernel k;
  auto ep = AttachTo(k);
  Env env;
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 1, "em0"));
  k.Queue(Datagram(Ipv4Packet({}), Direction::kIn, 1, "em0"));
  ASSERT_EQ(env.ReceiveAll(*ep), 2u);
  env.batch.Clear();  // the packets die without a verdict
  EXPECT_EQ(ep->counter(DivertCounter::kOrphans), 2u);
  EXPECT_EQ(k.send_calls(), 0u);
  EXPECT_EQ(env.pool->Stats().orphaned, 2u);
}

TEST(DivertEndpoint, ReceiveAndSendAllocateNothingInSteadyState) {
  FakeDivertKernel k;
  k.record = false;
  auto ep = AttachTo(k);
  Env env(/*large=*/2);
  for (int i = 0; i < 2000; ++i) {
    k.Queue(Datagram(Ipv4Packet({.payload = static_cast<uint32_t>(i % 7 == 0 ? 4000 : 60)}),
                     i % 2 ? Direction::kIn : Direction::kOut, static_cast<uint16_t>(i % 5),
                     i % 3 == 0 ? "em0" : "igb1"));
  }
  auto round = [&] {
    const uint32_t n = env.ReceiveAll(*ep);
    env.SetVerdicts(Verdict::kAccept);
    ep->Send(env.batch);
    env.Retire();
    return n;
  };
  round();  // warm the caches and the interface table
  testing::AllocationScope scope;
  uint32_t n = 0;
  while (uint32_t got = round()) n += got;
  EXPECT_EQ(scope.count(), 0u);
  EXPECT_GT(n, 1500u);
}

// ---- The whole path: fake divert traffic through an InlinePipeline and back ------------------

// Drops IPv4 packets whose TOS byte is 4; accepts everything else. Rewrites nothing.
struct TosDropClassify {
  void Process(Batch& b) noexcept {
    for (uint32_t i = 0; i < b.size(); ++i) {
      if (b.next(i) != Next::kClassify) continue;
      const uint8_t* ip = b.packet(i).data();
      if ((ip[0] >> 4) == 4 && ip[1] == 4) {
        b.Drop(i, DropReason::kUnsupportedLinkType);
      } else {
        b.set_next(i, Next::kAccept);
      }
    }
  }
};

TEST(DivertEndpoint, EveryPacketThroughThePipelineGoesBackWithItsOwnAddress) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::printf("divert pipeline traffic seed %u\n", seed);
  std::mt19937 rng(seed);
  constexpr uint32_t kShards = 2;
  constexpr uint32_t kPackets = 3000;
  std::deque<FakeDivertKernel> kernels(kShards);
  std::vector<std::unique_ptr<DivertEndpoint>> eps;
  for (uint32_t s = 0; s < kShards; ++s) eps.push_back(AttachTo(kernels[s], {.port = static_cast<uint16_t>(8000 + s)}));

  // Enough large buffers for every batch in flight to be all big datagrams: none is truncated.
  auto pool = std::move(BufferPool::Create({.small_buffers = 8192, .large_buffers = 1024})).value();
  PassStage<Next::kParse, Next::kClassify> parse[kShards];
  TosDropClassify classify[kShards];
  PassStage<Next::kRewrite, Next::kAccept> rewrite[kShards];
  std::vector<InlineShard> shards;
  for (uint32_t s = 0; s < kShards; ++s) {
    shards.push_back({eps[s].get(), StageRef::Of(parse[s]), StageRef::Of(classify[s]), StageRef::Of(rewrite[s])});
  }
  // Interleave rule numbers, interfaces, directions and sizes in every batch.
  const char* names[] = {"", "em0", "em1", "igb0", "vtnet12", "lagg0"};
  std::vector<std::vector<FakeDatagram>> expect(kShards);
  for (uint32_t i = 0; i < kPackets; ++i) {
    const uint32_t s = rng() % kShards;
    Ipv4Spec spec;
    spec.id = static_cast<uint16_t>(i);
    spec.src = Ip4(10, 1, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i));
    spec.payload = rng() % 9 == 0 ? 3000 + rng() % 6000 : 20 + rng() % 1400;
    spec.tos = rng() % 5 == 0 ? 4 : 0;
    const Direction dir = rng() % 2 ? Direction::kIn : Direction::kOut;
    std::vector<uint8_t> bytes = rng() % 10 == 0 ? testing::Ipv6Packet(40 + rng() % 500) : Ipv4Packet(spec);
    if (bytes[0] >> 4 == 6) bytes[1] = static_cast<uint8_t>(i);  // IPv6 is never dropped, whatever sits here
    const FakeDatagram d = Datagram(std::move(bytes), dir, static_cast<uint16_t>(1 + rng() % 65535),
                                    dir == Direction::kIn ? names[1 + rng() % 5] : names[rng() % 6],
                                    Ip4(10, 0, rng() % 4, 1));
    kernels[s].Queue(d);
    expect[s].push_back(d);
  }

  InlinePipeline pipeline({.threads = 2, .batch_size = 32, .receive_wait = 2000us}, *pool, shards);
  pipeline.Start();
  for (int t = 0; t < 20000; ++t) {
    if (kernels[0].queued() == 0 && kernels[1].queued() == 0) break;
    std::this_thread::sleep_for(1ms);
  }
  std::this_thread::sleep_for(20ms);
  pipeline.Stop();

  for (uint32_t s = 0; s < kShards; ++s) {
    std::vector<const FakeDatagram*> accepted;
    for (const FakeDatagram& d : expect[s]) {
      if (!(d.bytes[0] >> 4 == 4 && d.bytes[1] == 4)) accepted.push_back(&d);
    }
    const auto sent = kernels[s].sent();
    ASSERT_EQ(eps[s]->counter(DivertCounter::kRxTruncated), 0u);
    ASSERT_EQ(sent.size(), accepted.size()) << "shard " << s;
    for (std::size_t i = 0; i < sent.size(); ++i) {
      ASSERT_EQ(sent[i].bytes, accepted[i]->bytes) << "shard " << s << " packet " << i;
      ASSERT_EQ(std::memcmp(sent[i].addr.data(), &accepted[i]->addr, sizeof(sockaddr_in)), 0)
          << "shard " << s << " packet " << i << ": reinjected with another packet's address";
    }
    EXPECT_EQ(eps[s]->counter(DivertCounter::kRxPackets), expect[s].size());
    EXPECT_EQ(eps[s]->counter(DivertCounter::kTxDropped), expect[s].size() - accepted.size());
    EXPECT_EQ(eps[s]->counter(DivertCounter::kOrphans), 0u);
    EXPECT_TRUE(pipeline.run_stats(s).Balanced());
  }
  EXPECT_EQ(pool->Stats().orphaned, 0u);
}

}  // namespace
}  // namespace sluice
