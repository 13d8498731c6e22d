// mimalloc is the process allocator of every sluice binary (this test binary is one).
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#ifdef SLUICE_WITH_MIMALLOC
#include <mimalloc.h>
#endif

namespace {

TEST(Allocator, MallocNewAndContainersAreServedByMimalloc) {
#ifndef SLUICE_WITH_MIMALLOC
  GTEST_SKIP() << "sanitizer build: the sanitizer's allocator replaces mimalloc here; "
                  "the release preset runs this test";
#else
  void* raw = std::malloc(100);
  auto boxed = std::make_unique<int[]>(1000);
  std::vector<uint64_t> vec(4096);
  std::string str(1000, 'x');
  EXPECT_TRUE(mi_is_in_heap_region(raw));
  EXPECT_TRUE(mi_is_in_heap_region(boxed.get()));
  EXPECT_TRUE(mi_is_in_heap_region(vec.data()));
  EXPECT_TRUE(mi_is_in_heap_region(str.data()));
  std::free(raw);
#endif
}

}  // namespace
