// Incremental == full: 10^6 random packets under random plans. After RewriteStage applies a
// plan with incremental checksum updates, a full recompute of every checksum must change no
// byte, and the builder's independent checksum code must verify the result.
//
// The seed is printed; set SLUICE_TEST_SEED to replay a run and SLUICE_RANDOM_PACKETS to
// change the count (default 1,000,000 in every build, ASan included).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "engine/stages/parse/parse_stage.h"
#include "engine/stages/rewrite/rewrite_ops.h"
#include "engine/stages/rewrite/rewrite_stage.h"
#include "tests/testing/guarded_packet.h"
#include "tests/testing/packet_builder.h"

namespace sluice {
namespace {

using testing::PacketBuilder;
using testing::TestPacket;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

// splitmix64: fast, and plenty for test data.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t operator()() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t s_;
};

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}

  uint32_t U(uint32_t n) { return static_cast<uint32_t>(rng_() % n); }
  bool Coin(uint32_t one_in = 2) { return U(one_in) == 0; }

  std::string V4() {
    // 198.18.0.0/15, the benchmarking range.
    return "198." + std::to_string(18 + U(2)) + "." + std::to_string(U(256)) + "." +
           std::to_string(U(256));
  }
  std::string V6() {
    char b[64];
    std::snprintf(b, sizeof b, "2001:2:%x:%x::%x:%x", U(65536), U(65536), U(65536), U(65536));
    return b;
  }

  TestPacket Packet() {
    PacketBuilder b;
    switch (U(4)) {
      case 0: break;
      case 1: b.Ethernet(); break;
      case 2: b.Ethernet().Vlan(static_cast<uint16_t>(U(4096))); break;
      default: b.LinuxSll(); break;
    }
    const bool v6 = Coin();
    if (v6) {
      b.Ipv6(V6(), V6()).FlowLabel(U(1 << 20));
      if (Coin(4)) b.HopByHop(Coin() ? std::vector<uint8_t>{5, 2, 0, 0} : std::vector<uint8_t>{});
      if (Coin(6)) b.DestOpts();
      if (Coin(6)) {
        const uint8_t type = Coin() ? 0 : 4;
        b.Routing(type, static_cast<uint8_t>(U(3)), {V6(), V6()});
      }
      if (Coin(8)) b.Ah();
    } else {
      b.Ipv4(V4(), V4()).Id(static_cast<uint16_t>(U(65536)));
      if (Coin(5)) b.Ipv4Options(Coin() ? std::vector<uint8_t>{1, 0x94, 4, 0, 0} : std::vector<uint8_t>{1, 1, 1, 1});
      if (Coin(3)) b.Df();
    }
    b.Ttl(static_cast<uint8_t>(1 + U(255))).Tos(static_cast<uint8_t>(U(256)));
    const auto sport = static_cast<uint16_t>(U(65536)), dport = static_cast<uint16_t>(U(65536));
    switch (U(6)) {
      case 0:
      case 1: {
        b.Tcp(sport, dport).TcpFlags(static_cast<uint8_t>(U(256)));
        if (Coin()) b.TcpOptions(std::vector<uint8_t>(U(4), 1));  // NOPs: MSS at odd offsets
        if (Coin()) b.Mss(static_cast<uint16_t>(U(65536)));
        if (Coin(3)) b.TcpOptions({4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8});
        break;
      }
      case 2:
      case 3:
        b.Udp(sport, dport);
        if (!v6 && Coin(6)) b.UdpNoChecksum();
        break;
      case 4:
        b.Icmp(static_cast<uint8_t>(U(256)), static_cast<uint8_t>(U(256)),
               static_cast<uint16_t>(U(65536)), static_cast<uint16_t>(U(65536)));
        break;
      default:
        b.L4Proto(Coin() ? 47 : 132);  // GRE, SCTP: not touched
        break;
    }
    std::vector<uint8_t> payload(U(4) == 0 ? U(1400) : U(64));
    for (std::size_t i = 0; i < payload.size(); i += 8) {
      const uint64_t r = rng_();
      std::memcpy(&payload[i], &r, std::min<std::size_t>(8, payload.size() - i));
    }
    return b.Payload(std::move(payload)).Build();
  }

  AddrRewrite Addr(bool v6) {
    if (Coin(3)) return {};
    const bool family = Coin(10) ? !v6 : v6;  // sometimes the wrong family
    std::array<uint8_t, 16> from{}, to{};
    for (unsigned i = 0; i < (family ? 16u : 4u); ++i) {
      from[i] = static_cast<uint8_t>(rng_());
      to[i] = static_cast<uint8_t>(rng_());
    }
    if (!family) {
      from[0] = 198;  // so some maps match the 198.18/15 traffic
      from[1] = 18;
    } else {
      from[0] = 0x20;
      from[1] = 0x01;
    }
    AddrRewrite a;
    a.family = family ? L3Type::kIpv6 : L3Type::kIpv4;
    a.to = to;
    if (Coin()) {
      a.kind = AddrRewrite::Kind::kSet;
      a.prefix_len = family ? 128 : 32;
    } else {
      a.kind = AddrRewrite::Kind::kMap;
      a.from = from;
      a.prefix_len = static_cast<uint8_t>(1 + U(family ? 24 : 15));
    }
    return a;
  }

  PortRewrite Port() {
    switch (U(3)) {
      case 0: return {};
      case 1: return PortRewrite::Set(static_cast<uint16_t>(U(65536)));
      default: break;
    }
    std::vector<PortMapEntry> m;
    uint32_t next = U(2000);
    while (next < 65536 && m.size() < 8) {
      const uint32_t last = std::min<uint32_t>(65535, next + U(8000));
      PortMapEntry e;
      e.first = static_cast<uint16_t>(next);
      e.last = static_cast<uint16_t>(last);
      e.mode = Coin() ? PortMapEntry::Mode::kShift : PortMapEntry::Mode::kCollapse;
      const uint32_t span = last - next;
      e.to = static_cast<uint16_t>(e.mode == PortMapEntry::Mode::kShift ? U(65536 - span) : U(65536));
      m.push_back(e);
      next = last + 1 + U(5000);
    }
    return PortRewrite::Map(std::move(m));
  }

  RewritePlan Plan(bool v6) {
    RewritePlan p;
    p.src_addr = Addr(v6);
    p.dst_addr = Addr(v6);
    p.src_port = Port();
    p.dst_port = Port();
    switch (U(3)) {
      case 0: break;
      case 1: p.ttl = {.kind = TtlRewrite::Kind::kSet, .value = static_cast<uint8_t>(1 + U(255))}; break;
      default: p.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = static_cast<uint8_t>(1 + U(3))}; break;
    }
    if (Coin()) p.dscp = static_cast<uint8_t>(U(64));
    if (Coin()) p.mss_clamp = static_cast<uint16_t>(kMinMssClamp + U(2000));
    if (Coin(4)) p.mark = static_cast<uint32_t>(rng_());
    return p;
  }

 private:
  Rng rng_;
};

TEST(RewriteRandom, IncrementalEqualsFullRecompute) {
  const uint64_t seed = EnvOr("SLUICE_TEST_SEED", std::random_device{}());
  const uint64_t total = EnvOr("SLUICE_RANDOM_PACKETS", 1000000);
  std::printf("rewrite random: seed %lu (SLUICE_TEST_SEED=%lu replays), %lu packets\n", seed, seed,
              total);
  Gen gen(seed);
  constexpr uint32_t kBatch = 64;
  std::vector<std::unique_ptr<testing::GuardedPacket>> slots, copies;
  for (uint32_t i = 0; i < kBatch; ++i) {
    slots.push_back(std::make_unique<testing::GuardedPacket>(2048));
    copies.push_back(std::make_unique<testing::GuardedPacket>(2048));
  }
  ParseStage parse({});
  RewriteStage rewrite;
  std::vector<TestPacket> pkts(kBatch);
  std::vector<RewritePlan> plans(kBatch);
  uint64_t done = 0, modified = 0, expired = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (done < total) {
    Batch batch;
    batch.set_limit(kMaxBatch);
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kBatch, total - done));
    for (uint32_t i = 0; i < n; ++i) {
      pkts[i] = gen.Packet();
      batch.Push(PacketRef(&slots[i]->Load(pkts[i].bytes, pkts[i].link)));
    }
    parse.Process(batch);
    for (uint32_t i = 0; i < n; ++i) {
      ASSERT_EQ(batch.next(i), Next::kClassify) << "seed " << seed << ": " << Name(batch.reason(i));
      plans[i] = gen.Plan(batch.packet(i).meta().l3 == L3Type::kIpv6);
      ASSERT_TRUE(Validate(plans[i]).ok()) << Validate(plans[i]).message();
      batch.set_next(i, Next::kRewrite);
      batch.set_plan(i, &plans[i]);
    }
    rewrite.Process(batch);
    for (uint32_t i = 0; i < n; ++i) {
      PacketBuffer& out = batch.packet(i);
      if (batch.next(i) == Next::kDrop) {
        ASSERT_EQ(batch.reason(i), DropReason::kTtlExpired);
        ASSERT_TRUE(std::equal(pkts[i].bytes.begin(), pkts[i].bytes.end(), out.data()));
        ++expired;
        continue;
      }
      ASSERT_EQ(batch.next(i), Next::kAccept);
      modified += (out.meta().flags & pkt_flag::kModified) != 0;
      // The same bytes, parsed afresh, with every checksum recomputed in full.
      PacketBuffer& full = copies[i]->Load(out.data(), out.len(), out.meta().link_type);
      std::array<uint64_t, kNumParseCounters> counts{};
      ASSERT_EQ(ParsePacket(full, ParseConfig{}, counts), DropReason::kNone);
      const ChecksumFinish f = FinishChecksums(full, true, true);
      ASSERT_FALSE(f.changed) << "seed " << seed << " packet " << done + i
                              << ": incremental differs from full recompute";
      const uint8_t* ip = out.data() + out.meta().l3_off;
      const std::size_t ip_len = out.len() - out.meta().l3_off;
      ASSERT_TRUE(testing::RefIpHeaderChecksumOk(ip, ip_len)) << "seed " << seed;
      ASSERT_TRUE(testing::RefL4ChecksumOk(ip, ip_len)) << "seed " << seed;
    }
    testing::ReleaseAll(batch);
    done += n;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("rewrite random: %lu packets, %lu modified, %lu ttl_expired, %.1f s\n", done,
              modified, expired, secs);
  EXPECT_GT(modified, done / 2);
}

}  // namespace
}  // namespace sluice
