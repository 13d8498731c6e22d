// GuardedPacket: a PacketBuffer whose last data byte sits right before an inaccessible page,
// so a read (or write) one byte past the captured length faults at once — in release
// builds too, where ASan is absent, and in the buffer's tailroom, where ASan would see
// nothing because pool buffers are larger than their packets.
//
// Not from a pool: take it back out of a batch (ReleaseAll) before the batch dies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/packet/packet_buffer.h"
#include "tests/testing/test_batch.h"

namespace sluice::testing {

class GuardedPacket {
 public:
  explicit GuardedPacket(uint32_t max_len = 70000);
  ~GuardedPacket();
  GuardedPacket(const GuardedPacket&) = delete;
  GuardedPacket& operator=(const GuardedPacket&) = delete;

  // Places n bytes so that data() + n is the guard page; metadata reset, link type set.
  PacketBuffer& Load(const uint8_t* bytes, uint32_t n, LinkType link);
  PacketBuffer& Load(const std::vector<uint8_t>& bytes, LinkType link) {
    return Load(bytes.data(), static_cast<uint32_t>(bytes.size()), link);
  }
  PacketBuffer& buffer() { return *buf_; }

 private:
  uint8_t* map_ = nullptr;
  std::size_t map_len_ = 0;
  uint8_t* guard_ = nullptr;
  uint32_t max_len_;
  PacketBuffer* buf_ = nullptr;
};

}  // namespace sluice::testing
