#include "perf/flood/flood_traffic.h"

#include <cstring>

#include "engine/core/byte_order.h"
#include "engine/proto/checksum.h"
#include "engine/rules/packet_fields.h"

namespace sluice::flood {

Flow FlowAt(uint64_t i) {
  Flow f;
  f.src = 0xc6120000u | static_cast<uint32_t>(i & 0x1ffff);
  f.sport = static_cast<uint16_t>(1024 + ((i >> 17) & 0xffff));
  f.dst = 0xc6130001u;
  f.dport = 443;
  return f;
}

FlowKey KeyOf(const Flow& f) {
  FlowKey k;
  k.set_src(f.src);
  k.set_dst(f.dst);
  k.sport = f.sport;
  k.dport = f.dport;
  k.proto = ip_proto::kUdp;
  k.family = L3Type::kIpv4;
  return k;
}

void WritePacket(const Flow& f, uint8_t* p) {
  std::memset(p, 0, kFloodPacketBytes);
  p[0] = 0x45;
  StoreBe16(p + 2, kFloodPacketBytes);
  p[8] = 64;
  p[9] = ip_proto::kUdp;
  StoreBe32(p + 12, f.src);
  StoreBe32(p + 16, f.dst);
  StoreHost16(p + 10, InternetChecksum(p, 20));
  uint8_t* u = p + 20;
  const uint32_t udp_len = kFloodPacketBytes - 20;
  StoreBe16(u, f.sport);
  StoreBe16(u + 2, f.dport);
  StoreBe16(u + 4, static_cast<uint16_t>(udp_len));
  std::memcpy(u + 8, "sluice flood data!", udp_len - 8);
  const uint16_t folded =
      ChecksumFold(ChecksumAccumulate(u, udp_len, Ipv4PseudoHeaderSum(p + 12, p + 16, ip_proto::kUdp, udp_len)));
  StoreHost16(u + 6, FinishL4Checksum(folded, CsumZero::kUdpIpv4));
}

std::vector<Flow> CollidingFlows(const FlowTableOptions& options, uint32_t n, uint32_t window, uint64_t start) {
  FlowTable probe([&] {
    FlowTableOptions o = options;
    o.capacity = 16;  // only its hash is used
    return o;
  }());
  constexpr uint32_t kMask = (1u << kCollisionHashBits) - 1;
  std::vector<Flow> out;
  out.reserve(n);
  for (uint64_t i = start; out.size() < n && i < kMaxFloodFlows; ++i) {
    const Flow f = FlowAt(i);
    if ((probe.KeyHash(KeyOf(f)) & kMask) < window) out.push_back(f);
  }
  return out;
}

FloodSource::FloodSource(std::vector<Flow> flows, uint64_t packets, uint64_t seed)
    : flows_(std::move(flows)), total_(packets), rng_(seed | 1) {}

bool FloodSource::ReadBurst(PoolCache& cache, Batch& batch, uint32_t max) {
  PacketBuffer* bufs[kMaxBatch];
  const auto want = static_cast<uint32_t>(std::min<uint64_t>(max - batch.size(), total_ - done_));
  const uint32_t got = cache.GetBulk(SizeClass::kSmall, bufs, want);
  for (uint32_t i = 0; i < got; ++i) {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    const Flow& f = flows_[rng_ % flows_.size()];
    PacketBuffer* b = bufs[i];
    uint8_t* p = b->Append(kFloodPacketBytes);
    WritePacket(f, p);
    b->meta().wire_len = kFloodPacketBytes;
    b->meta().link_type = LinkType::kRaw;
    batch.Push(PacketRef(b));
    ++done_;
    if (progress_ != nullptr && done_ % progress_every_ == 0) progress_(done_, progress_ctx_);
  }
  return done_ < total_;
}

}  // namespace sluice::flood
