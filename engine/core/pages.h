// Pages of anonymous memory: faulting them in ahead of use.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>

namespace sluice {

// Faults every page of [data, data + bytes) in, writable, keeping what is there: one
// madvise(MADV_POPULATE_WRITE) (Linux 5.14), else a read and write back of a byte per page.
// For owners (the buffer pool, ZeroedArray) that want no page fault on their data path.
inline void PrefaultPages(void* data, std::size_t bytes) noexcept {
  if (data == nullptr || bytes == 0) return;
  if (madvise(data, bytes, MADV_POPULATE_WRITE) == 0) return;
  auto* p = static_cast<volatile unsigned char*>(data);
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  for (std::size_t off = 0; off < bytes; off += page) p[off] = p[off];
}

}  // namespace sluice
