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
#include "tests/testing/random_traffic.h"

namespace sluice {
namespace {

using testing::TestPacket;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

TEST(RewriteRandom, IncrementalEqualsFullRecompute) {
  const uint64_t seed = testing::SeedFromEnv();
  const uint64_t total = EnvOr("SLUICE_RANDOM_PACKETS", 1000000);
  std::printf("rewrite random: seed %lu (SLUICE_TEST_SEED=%lu replays), %lu packets\n", seed, seed,
              total);
  testing::RandomTraffic gen(seed);
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
      ParseCounts counts{};
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
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("rewrite random: %lu packets, %lu modified, %lu ttl_expired, %.1f s\n", done,
              modified, expired, secs);
  EXPECT_GT(modified, done / 2);
}

}  // namespace
}  // namespace sluice
