#include "engine/core/zeroed_array.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <vector>

namespace sluice {
namespace {

struct Entry {
  uint64_t a = 7;  // a default the zero bytes do not have: the elements are never constructed
  std::array<uint32_t, 6> b{};
};

// How many pages of [p, p + bytes) are resident (mincore).
std::size_t ResidentPages(const void* p, std::size_t bytes) {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const std::size_t pages = (reinterpret_cast<uintptr_t>(p) + bytes - begin + page - 1) / page;
  std::vector<unsigned char> vec(pages);
  EXPECT_EQ(mincore(reinterpret_cast<void*>(begin), pages * page, vec.data()), 0);
  std::size_t resident = 0;
  for (unsigned char v : vec) resident += v & 1;
  return resident;
}

constexpr std::size_t kEntries = 1 << 16;  // 2 MiB of Entry

TEST(ZeroedArray, StartsAsZeroBytesWithNoPageFaultedIn) {
  ZeroedArray<Entry> arr(kEntries);
  ASSERT_EQ(arr.size(), kEntries);
  EXPECT_EQ(ResidentPages(&arr[0], kEntries * sizeof(Entry)), 0u);
  EXPECT_EQ(arr[0].a, 0u);
  EXPECT_EQ(arr[kEntries - 1].b[5], 0u);
  arr[kEntries / 2].a = 42;
  EXPECT_EQ(arr[kEntries / 2].a, 42u);
  EXPECT_EQ(arr[kEntries / 2 + 1].a, 0u);
}

TEST(ZeroedArray, PrefaultMakesEveryPageResidentAndChangesNoContents) {
  ZeroedArray<Entry> arr(kEntries);
  arr[77].a = 9;  // written before: Prefault must keep it
  arr.Prefault();
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  EXPECT_GE(ResidentPages(&arr[0], kEntries * sizeof(Entry)), kEntries * sizeof(Entry) / page);
  EXPECT_EQ(arr[77].a, 9u);
  EXPECT_EQ(arr[123].a, 0u);
}

TEST(ZeroedArray, MovesOwnership) {
  ZeroedArray<Entry> a(16);
  a[3].a = 5;
  ZeroedArray<Entry> b(std::move(a));
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(b[3].a, 5u);
  ZeroedArray<Entry> c(8);
  c = std::move(b);  // c's old 8 entries go with b
  EXPECT_EQ(c.size(), 16u);
  EXPECT_EQ(c[3].a, 5u);
  ZeroedArray<Entry> empty(0);
  EXPECT_EQ(empty.size(), 0u);
  empty.Prefault();
}

}  // namespace
}  // namespace sluice
