// libFuzzer target: ParsePacket on any bytes under any link type.
// Invariants: no read past the captured bytes (guard page, ASan); a rejected packet is left
// byte for byte and length for length as it came, with l3 = none; an accepted one has every
// offset inside what parse kept, its L4 header (when validated) whole, and parses again to
// the same metadata (parse is idempotent on its own output).
#include <cstring>
#include <vector>

#include "engine/stages/parse/parse_stage.h"
#include "tests/fuzz/fuzz_packet.h"

namespace sluice::fuzz {
namespace {

void Check(const uint8_t* data, std::size_t size) {
  if (size < 1 || size - 1 > kMaxPacket) return;
  const LinkType link = kLinkTypes[data[0] % kNumLinkTypes];
  const uint8_t* pkt = data + 1;
  const auto n = static_cast<uint32_t>(size - 1);
  ParseConfig config;
  config.flow_hash_seed = 0x5eed;
  PacketBuffer& b = Slot(0).Load(pkt, n, link);
  ParseCounts counts{};
  const DropReason r = ParsePacket(b, config, counts);
  const PacketMeta& m = b.meta();
  if (r != DropReason::kNone) {
    SLUICE_FUZZ_CHECK(m.l3 == L3Type::kNone);
    SLUICE_FUZZ_CHECK(m.l4_off == 0);
    SLUICE_FUZZ_CHECK(b.len() == n);
    SLUICE_FUZZ_CHECK(std::memcmp(b.data(), pkt, n) == 0);
    return;
  }
  SLUICE_FUZZ_CHECK(m.l3 != L3Type::kNone);
  SLUICE_FUZZ_CHECK(b.len() <= n);
  SLUICE_FUZZ_CHECK(std::memcmp(b.data(), pkt, b.len()) == 0);
  SLUICE_FUZZ_CHECK(m.l3_off + (m.l3 == L3Type::kIpv4 ? 20u : 40u) <= b.len());
  if (m.l4_off != 0) SLUICE_FUZZ_CHECK(m.l4_off > m.l3_off && m.l4_off <= b.len());
  if (m.flags & pkt_flag::kFragmentLater) SLUICE_FUZZ_CHECK(m.l4_off == 0 && (m.flags & pkt_flag::kL4Valid) == 0);
  if (m.flags & pkt_flag::kL4Valid) {
    const uint32_t min = m.l4_proto == 6 ? 20u : 8u;
    SLUICE_FUZZ_CHECK(m.l4_off != 0 && m.l4_off + min <= b.len());
  }

  // Parse what parse kept: the same verdict and offsets.
  const PacketMeta first = m;
  const std::vector<uint8_t> kept(b.data(), b.data() + b.len());
  PacketBuffer& again = Slot(1).Load(kept.data(), static_cast<uint32_t>(kept.size()), link);
  SLUICE_FUZZ_CHECK(ParsePacket(again, config, counts) == DropReason::kNone);
  const PacketMeta& m2 = again.meta();
  SLUICE_FUZZ_CHECK(again.len() == kept.size());
  SLUICE_FUZZ_CHECK(m2.l3 == first.l3 && m2.l3_off == first.l3_off && m2.l4_off == first.l4_off);
  SLUICE_FUZZ_CHECK(m2.l4_proto == first.l4_proto && m2.flow_hash == first.flow_hash);
  SLUICE_FUZZ_CHECK(m2.flags == first.flags);
}

}  // namespace
}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  sluice::fuzz::Check(data, size);
  return 0;
}
