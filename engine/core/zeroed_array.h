// A fixed-size array in anonymous memory that starts as the kernel's zero pages: no byte is
// written and no page is faulted in until an element is. For large tables that may stay
// mostly empty, such as a NAT flow table when no rule translates, where std::vector would
// write every byte up front (tens of megabytes before the first packet, most of it page
// faults). Prefault() pays that cost at once instead, for owners that want no page fault on
// their data path.
//
// T must be an implicit-lifetime type (an aggregate, say) for which all-zero bytes are a
// valid value: the elements are never constructed, they are the zero bytes. C++20 promises
// implicit object creation for calloc-like functions; mmap is opaque to the compiler and
// treated as one (C++23's std::start_lifetime_as_array would say it formally).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "engine/core/assert.h"
#include "engine/core/pages.h"

namespace sluice {

template <typename T>
class ZeroedArray {
  static_assert(std::is_trivially_copyable_v<T> &&
                    (std::is_aggregate_v<T> || std::is_trivially_default_constructible_v<T>),
                "ZeroedArray's elements are zero bytes, never constructed: T must be implicit-lifetime");
  static_assert(alignof(T) <= 4096, "mmap aligns to a page");

 public:
  ZeroedArray() noexcept = default;
  explicit ZeroedArray(std::size_t n) : size_(n) {
    if (n == 0) return;
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
    void* p = mmap(nullptr, Bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = static_cast<T*>(p);
  }
  ~ZeroedArray() {
    if (data_ != nullptr) munmap(data_, Bytes());
  }
  ZeroedArray(ZeroedArray&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  // Swaps: `o` unmaps what this held when it goes.
  ZeroedArray& operator=(ZeroedArray&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    return *this;
  }
  ZeroedArray(const ZeroedArray&) = delete;
  ZeroedArray& operator=(const ZeroedArray&) = delete;

  // Faults every page in now, contents unchanged (what was written stays): the kernel
  // populates the range writable in one call (Linux 5.14+), else each page is read and its
  // first byte written back. Single-threaded: call it before the array is shared.
  void Prefault() noexcept { PrefaultPages(data_, Bytes()); }

  // Checked in debug builds only: AddressSanitizer does not watch mmap'd memory.
  T& operator[](std::size_t i) noexcept {
    SLUICE_DCHECK(i < size_);
    return data_[i];
  }
  const T& operator[](std::size_t i) const noexcept {
    SLUICE_DCHECK(i < size_);
    return data_[i];
  }
  std::size_t size() const noexcept { return size_; }

 private:
  std::size_t Bytes() const noexcept { return size_ * sizeof(T); }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace sluice
