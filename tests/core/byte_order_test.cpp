#include "engine/core/byte_order.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(ByteOrder, LoadsBigEndianFromUnalignedBytes) {
  const uint8_t bytes[] = {0xff, 0x12, 0x34, 0x56, 0x78};
  EXPECT_EQ(LoadBe16(bytes + 1), 0x1234);
  EXPECT_EQ(LoadBe32(bytes + 1), 0x12345678u);
}

TEST(ByteOrder, StoresRoundTrip) {
  uint8_t bytes[6] = {};
  StoreBe16(bytes + 1, 0xabcd);
  EXPECT_EQ(bytes[1], 0xab);
  EXPECT_EQ(bytes[2], 0xcd);
  StoreBe32(bytes + 1, 0xc6120001u);  // 198.18.0.1
  EXPECT_EQ(bytes[1], 198);
  EXPECT_EQ(bytes[4], 1);
  EXPECT_EQ(LoadBe32(bytes + 1), 0xc6120001u);
  EXPECT_EQ(bytes[0], 0);
  EXPECT_EQ(bytes[5], 0);
}

}  // namespace
}  // namespace sluice
