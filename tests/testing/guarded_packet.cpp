#include "tests/testing/guarded_packet.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <new>

namespace sluice::testing {

GuardedPacket::GuardedPacket(uint32_t max_len) : max_len_(max_len) {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t need = PacketBuffer::kDataRoomOffset + kHeadroom + kCacheLine + max_len;
  map_len_ = (need + page - 1) / page * page + page;
  void* m = mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) std::abort();
  map_ = static_cast<uint8_t*>(m);
  guard_ = map_ + map_len_ - page;
  if (mprotect(guard_, page, PROT_NONE) != 0) std::abort();
  Load(nullptr, 0, LinkType::kRaw);
}

GuardedPacket::~GuardedPacket() { munmap(map_, map_len_); }

PacketBuffer& GuardedPacket::Load(const uint8_t* bytes, uint32_t n, LinkType link) {
  if (n > max_len_) std::abort();
  // The buffer header must be cache-line aligned; the headroom absorbs the difference.
  auto start = reinterpret_cast<uintptr_t>(guard_ - n) - kHeadroom - PacketBuffer::kDataRoomOffset;
  start &= ~uintptr_t{kCacheLine - 1};
  buf_ = new (reinterpret_cast<void*>(start)) PacketBuffer();
  PacketMeta& m = buf_->meta();
  m.room = static_cast<uint32_t>(guard_ - buf_->room());
  m.data_off = static_cast<uint16_t>(guard_ - n - buf_->room());
  m.len = n;
  m.wire_len = n;
  m.link_type = link;
  m.rule = kNoRule;
  if (n != 0) std::memcpy(buf_->data(), bytes, n);
  return *buf_;
}

}  // namespace sluice::testing
