#include "engine/io/gen/traffic_gen.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "engine/core/byte_order.h"
#include "tests/testing/external_tool.h"

namespace sluice {
namespace {

TEST(TrafficGenerator, SameSeedSameBytesOtherSeedOtherBytes) {
  TrafficSpec spec{.seed = 42, .flows = 100, .sizes = SizeMix::kImix, .ipv6_share = 0.3};
  const auto a = TrafficGenerator(spec).Generate(2000);
  const auto b = TrafficGenerator(spec).Generate(2000);
  EXPECT_EQ(a, b);
  spec.seed = 43;
  EXPECT_NE(TrafficGenerator(spec).Generate(2000), a);
}

TEST(TrafficGenerator, AddressesComeFromTheBenchmarkingRanges) {
  const auto frames = TrafficGenerator({.seed = 1, .flows = 500, .ipv6_share = 0.5}).Generate(5000);
  uint64_t v4 = 0, v6 = 0;
  for (const auto& f : frames) {
    const uint16_t type = LoadBe16(f.data() + 12);
    if (type == 0x0800) {
      ++v4;
      for (int off : {26, 30}) {
        ASSERT_EQ(LoadBe32(f.data() + off) & 0xfffe0000u, 0xc6120000u);  // 198.18.0.0/15
      }
    } else {
      ASSERT_EQ(type, 0x86dd);
      ++v6;
      for (int off : {22, 38}) {
        ASSERT_EQ(LoadBe32(f.data() + off), 0x20010002u);  // 2001:2::/48
        ASSERT_EQ(LoadBe16(f.data() + off + 4), 0u);
      }
    }
  }
  EXPECT_GT(v4, 1000u);
  EXPECT_GT(v6, 1000u);
}

TEST(TrafficGenerator, ImixIsSevenFourOne) {
  const auto frames = TrafficGenerator({.seed = 3, .flows = 1, .sizes = SizeMix::kImix, .udp_share = 1.0}).Generate(1200);
  std::map<std::size_t, int> sizes;
  for (const auto& f : frames) ++sizes[f.size()];
  EXPECT_EQ(sizes[60], 700);
  EXPECT_EQ(sizes[590], 400);
  EXPECT_EQ(sizes[1514], 100);
}

// tshark, with checksum validation on, finds no bad IPv4, TCP or UDP checksum.
TEST(TrafficGenerator, EveryChecksumIsValidAccordingToTshark) {
  ASSERT_TRUE(testing::HaveTool("tshark")) << "tools/bootstrap installs tshark";
  testing::TempDir dir;
  const std::string path = dir.File("gen.pcap");
  ASSERT_TRUE(WritePcap({.seed = 9, .flows = 300, .sizes = SizeMix::kImix, .ipv6_share = 0.3, .udp_share = 0.4},
                        20000, path).ok());
  const testing::ToolRun run = testing::RunTool(
      "tshark -r " + path +
      " -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
      " -T fields -e ip.checksum.status -e tcp.checksum.status -e udp.checksum.status");
  ASSERT_EQ(run.exit_code, 0) << run.errors;
  const std::string& out = run.output;
  uint64_t lines = 0, good = 0, bad = 0;
  for (std::size_t pos = 0; pos < out.size();) {
    const std::size_t end = out.find('\n', pos);
    const std::string line = out.substr(pos, end - pos);
    pos = end == std::string::npos ? out.size() : end + 1;
    ++lines;
    for (char c : line) {
      good += c == '1';
      bad += c == '0';
    }
  }
  EXPECT_EQ(lines, 20000u);
  EXPECT_EQ(bad, 0u);
  EXPECT_GE(good, 20000u);  // IPv4 packets count two (IP and L4)
}

}  // namespace
}  // namespace sluice
