// The divert sockaddr_in ↔ metadata mapping: rule number in host order, direction from the
// address, interface name from sin_zero, and the interface table behind PacketMeta::in_if.
#include "engine/io/divert/divert_address.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/testing/alloc_counter.h"

namespace sluice {
namespace {

std::string NameOf(uint64_t key) {
  char buf[8];
  return std::string(buf, IfNameOfKey(key, buf));
}

TEST(DivertAddress, RuleDirectionAndInterfaceRoundTrip) {
  const uint16_t rules[] = {1, 100, 1000, 0x1234, 65534, 65535};
  const char* names[] = {"", "em0", "igb1", "vtnet12" /* 7 chars: the most sin_zero holds */};
  for (uint16_t rule : rules) {
    for (const char* name : names) {
      for (Direction dir : {Direction::kIn, Direction::kOut}) {
        const sockaddr_in a = MakeDivertAddress(dir, rule, 0xc0000201, name);
        const DivertInfo info = DecodeDivertAddress(a);
        SCOPED_TRACE(std::to_string(rule) + " '" + name + "' " + (dir == Direction::kIn ? "in" : "out"));
        EXPECT_EQ(info.rule, rule);
        EXPECT_EQ(info.direction, dir);
        EXPECT_EQ(info.if_addr, dir == Direction::kIn ? 0xc0000201u : 0u);
        EXPECT_EQ(NameOf(info.if_key), name);
        EXPECT_EQ(info.if_key == 0, std::string(name).empty());
      }
    }
  }
}

TEST(DivertAddress, RuleNumberIsHostOrderNotTheBindPort) {
  // The kernel stores the rule number as is: sin_port holds 0x1234, not htons(0x1234).
  const sockaddr_in a = MakeDivertAddress(Direction::kOut, 0x1234, 0, "em0");
  EXPECT_EQ(a.sin_port, 0x1234);
  sockaddr_in raw{};
  raw.sin_family = AF_INET;
  raw.sin_port = 300;  // as divert_packet() writes rule 300
  EXPECT_EQ(DecodeDivertAddress(raw).rule, 300);
  if (htons(300) != 300) {
    EXPECT_NE(DecodeDivertAddress(raw).rule, ntohs(300));
  }
}

TEST(DivertAddress, DirectionComesFromTheAddress) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  EXPECT_EQ(DecodeDivertAddress(a).direction, Direction::kOut);
  a.sin_addr.s_addr = htonl(0x0a000001);
  EXPECT_EQ(DecodeDivertAddress(a).direction, Direction::kIn);
}

TEST(DivertAddress, LongNamesAreCutToSevenCharactersAsStrlcpyDoes) {
  const sockaddr_in a = MakeDivertAddress(Direction::kIn, 5, 1, "lagg0.100");
  EXPECT_EQ(a.sin_zero[7], '\0');
  EXPECT_EQ(NameOf(IfNameKey(a)), "lagg0.1");
}

TEST(DivertAddress, BytesAfterTheNulDoNotChangeTheKey) {
  sockaddr_in a = MakeDivertAddress(Direction::kIn, 5, 1, "em0");
  const uint64_t clean = IfNameKey(a);
  a.sin_zero[5] = 'x';
  a.sin_zero[7] = 'y';
  EXPECT_EQ(IfNameKey(a), clean);
  EXPECT_EQ(NameOf(IfNameKey(a)), "em0");
}

TEST(DivertAddress, AnEightByteNameWithoutNulKeepsAllEight) {
  sockaddr_in a{};
  std::memcpy(a.sin_zero, "abcdefgh", 8);
  EXPECT_EQ(NameOf(IfNameKey(a)), "abcdefgh");
}

TEST(DivertToken, StoresTheAddressBytesAndLengthUnchanged) {
  PacketBuffer buf{};
  const sockaddr_in a = MakeDivertAddress(Direction::kIn, 4242, 0x0a000001, "ix0");
  DivertToken::Store(buf.io(), a, sizeof a);
  EXPECT_EQ(std::memcmp(DivertToken::AddrBytes(buf.io()), &a, sizeof a), 0);
  EXPECT_EQ(DivertToken::Len(buf.io()), sizeof a);
}

uint64_t Key(const char* name) { return IfNameKey(MakeDivertAddress(Direction::kIn, 1, 1, name)); }

TEST(InterfaceTable, InternsNamesToStableSmallIds) {
  InterfaceTable t;
  EXPECT_EQ(t.Intern(0), 0u);
  const uint32_t em0 = t.Intern(Key("em0"));
  const uint32_t em1 = t.Intern(Key("em1"));
  EXPECT_EQ(em0, 1u);
  EXPECT_EQ(em1, 2u);
  EXPECT_EQ(t.Intern(Key("em0")), em0);
  EXPECT_EQ(t.Intern(Key("em1")), em1);
  EXPECT_EQ(t.Name(em0), "em0");
  EXPECT_EQ(t.Name(em1), "em1");
  EXPECT_EQ(t.Name(0), "");
  EXPECT_EQ(t.Find("em1"), em1);
  EXPECT_EQ(t.Find("nope"), 0u);
  EXPECT_EQ(t.size(), 2u);
}

TEST(InterfaceTable, FullTableAnswersTheOverflowIdAndCountsIt) {
  InterfaceTable t;
  for (uint32_t i = 0; i < InterfaceTable::kCapacity; ++i) {
    EXPECT_EQ(t.Intern(Key(("if" + std::to_string(i)).c_str())), i + 1);
  }
  EXPECT_EQ(t.Intern(Key("late0")), InterfaceTable::kOverflowId);
  EXPECT_EQ(t.Intern(Key("late0")), InterfaceTable::kOverflowId);
  EXPECT_EQ(t.overflowed(), 2u);
  EXPECT_EQ(t.Intern(Key("if7")), 8u);  // known names keep their ids
  EXPECT_EQ(t.Name(InterfaceTable::kOverflowId), "");
}

TEST(InterfaceTable, InterningAllocatesNothing) {
  InterfaceTable t;
  const uint64_t keys[] = {Key("em0"), Key("em1"), Key("lo0"), Key("vtnet12")};
  testing::AllocationScope scope;
  for (int round = 0; round < 1000; ++round) {
    for (uint64_t k : keys) ASSERT_NE(t.Intern(k), 0u);
  }
  EXPECT_EQ(scope.count(), 0u);
}

}  // namespace
}  // namespace sluice
