// Counts heap allocations made through operator new on the calling thread.
//
// Linking sluice_testing replaces the global operator new/delete with versions that count and
// then forward to malloc/free (which mimalloc serves in non-sanitized builds). Tests use it to
// prove the data path allocates nothing per packet in steady state.
#pragma once

#include <cstdint>

namespace sluice::testing {

uint64_t ThreadAllocations() noexcept;
// Allocations by every thread of the process (worker threads included).
uint64_t ProcessAllocations() noexcept;

class AllocationScope {
 public:
  AllocationScope() noexcept : start_(ThreadAllocations()) {}
  uint64_t count() const noexcept { return ThreadAllocations() - start_; }

 private:
  uint64_t start_;
};

}  // namespace sluice::testing
