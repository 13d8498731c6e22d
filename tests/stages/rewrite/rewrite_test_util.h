// A built packet, parsed, in a buffer that ends at a guard page: what rewrite tests start from.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "engine/stages/parse/parse_stage.h"
#include "tests/testing/guarded_packet.h"
#include "tests/testing/packet_builder.h"

namespace sluice::testing {

class Parsed {
 public:
  explicit Parsed(const TestPacket& p) : guard_(static_cast<uint32_t>(p.bytes.size()) + 64) {
    buf_ = &guard_.Load(p.bytes, p.link);
    ParseCounts counts{};
    const DropReason r = ParsePacket(*buf_, ParseConfig{}, counts);
    EXPECT_EQ(r, DropReason::kNone) << Name(r);
  }

  PacketBuffer& buf() { return *buf_; }
  PacketMeta& meta() { return buf_->meta(); }
  uint8_t* ip() { return buf_->data() + buf_->meta().l3_off; }
  std::size_t ip_len() { return buf_->len() - buf_->meta().l3_off; }
  uint8_t* l4() { return buf_->data() + buf_->meta().l4_off; }
  // Checksums verified by the builder's independent implementation.
  bool IpOk() { return RefIpHeaderChecksumOk(ip(), ip_len()); }
  bool L4Ok() { return RefL4ChecksumOk(ip(), ip_len()); }
  std::vector<uint8_t> Bytes() { return {buf_->data(), buf_->data() + buf_->len()}; }

 private:
  GuardedPacket guard_;
  PacketBuffer* buf_;
};

}  // namespace sluice::testing
