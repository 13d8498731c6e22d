// A fixed-size array in anonymous memory that starts as the kernel's zero pages: no byte is
// written and no page is faulted in until an element is. For large tables that may stay
// mostly empty, such as a NAT flow table when no rule translates, where std::vector would
// write every byte up front (tens of megabytes before the first packet, most of it page
// faults). Prefault() pays that cost at once instead, for owners that want no page fault on
// their data path.
//
// T must be an implicit-lifetime type (an aggregate, say) for which all-zero bytes are a
// valid value: the elements are never constructed, they are the zero bytes.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#include "engine/core/assert.h"

namespace sluice {

template <typename T>
class ZeroedArray {
  static_assert(std::is_trivially_destructible_v<T> && std::is_trivially_copyable_v<T>);

 public:
  ZeroedArray() noexcept = default;
  explicit ZeroedArray(std::size_t n) : size_(n) {
    if (n == 0) return;
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

  // Faults every page in now, with the same zero contents.
  void Prefault() noexcept {
    if (data_ != nullptr) std::memset(static_cast<void*>(data_), 0, Bytes());
  }

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
