#include "engine/io/gen/traffic_gen.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "engine/core/byte_order.h"
#include "engine/io/pcap/pcap_records.h"
#include "engine/proto/checksum.h"

namespace sluice {
namespace {

constexpr uint32_t kEthHeader = 14;

// 60 / 590 / 1514 in the ratio 7:4:1, spread out over a cycle of 12.
constexpr uint32_t kImixCycle[12] = {60, 590, 60, 60, 1514, 60, 590, 60, 60, 590, 60, 590};

}  // namespace

bool ParseSizeMix(const std::string& text, SizeMix* out) {
  if (text == "64") *out = SizeMix::k64;
  else if (text == "imix") *out = SizeMix::kImix;
  else if (text == "1500") *out = SizeMix::k1500;
  else return false;
  return true;
}

const char* SizeMixName(SizeMix m) {
  switch (m) {
    case SizeMix::k64: return "64";
    case SizeMix::kImix: return "imix";
    case SizeMix::k1500: return "1500";
  }
  return "?";
}

TrafficGenerator::TrafficGenerator(const TrafficSpec& spec) : spec_(spec), rng_(spec.seed) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  static constexpr uint16_t kServerPorts[] = {80, 443, 53, 8080, 22, 25, 123, 5060, 3478, 8443};
  flows_.resize(std::max<uint32_t>(1, spec.flows));
  for (uint32_t i = 0; i < flows_.size(); ++i) {
    Flow& f = flows_[i];
    f = Flow{};
    f.ipv6 = unit(rng_) < spec.ipv6_share;
    f.proto = unit(rng_) < spec.udp_share ? 17 : 6;
    const uint32_t client_host = static_cast<uint32_t>(rng_() & 0xffff);
    const uint32_t server_host = static_cast<uint32_t>(rng_() % 256);
    if (f.ipv6) {
      // 2001:2:0:c::<host> clients, 2001:2:0:5::<host> servers.
      const uint8_t prefix[8] = {0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0c};
      std::memcpy(f.client, prefix, 8);
      std::memcpy(f.server, prefix, 8);
      f.server[7] = 0x05;
      StoreBe32(f.client + 12, client_host);
      StoreBe32(f.server + 12, server_host);
    } else {
      StoreBe32(f.client, 0xc6120000u | client_host);  // 198.18.0.0/16
      StoreBe32(f.server, 0xc6130000u | server_host);  // 198.19.0.0/16
    }
    f.client_port = static_cast<uint16_t>(1024 + rng_() % (65536 - 1024));
    f.server_port = kServerPorts[rng_() % std::size(kServerPorts)];
    f.client_seq = static_cast<uint32_t>(rng_());
    f.server_seq = static_cast<uint32_t>(rng_());
  }
}

uint32_t TrafficGenerator::NextFrameSize() {
  switch (spec_.sizes) {
    case SizeMix::k64: return 60;
    case SizeMix::k1500: return 1514;
    case SizeMix::kImix: return kImixCycle[imix_step_++ % 12];
  }
  return 60;
}

void TrafficGenerator::Next(std::vector<uint8_t>& frame) {
  Flow& f = flows_[rng_() % flows_.size()];
  const bool reply = f.syn_sent && std::uniform_real_distribution<double>(0, 1)(rng_) < spec_.reply_share;
  const bool syn = f.proto == 6 && !f.syn_sent;
  f.syn_sent = true;

  const uint32_t l3_len = f.ipv6 ? 40 : 20;
  const uint32_t l4_len = f.proto == 17 ? 8 : (syn ? 24 : 20);
  const uint32_t headers = kEthHeader + l3_len + l4_len;
  // A SYN carries no data (its frame is just the headers); other packets fill the frame.
  const uint32_t size = syn ? headers : std::max(NextFrameSize(), headers);
  const uint32_t payload = size - headers;
  frame.assign(size, 0);
  uint8_t* p = frame.data();

  // Ethernet
  const uint8_t mac_a[6] = {0x02, 0, 0, 0, 0, 0x01}, mac_b[6] = {0x02, 0, 0, 0, 0, 0x02};
  std::memcpy(p, reply ? mac_a : mac_b, 6);
  std::memcpy(p + 6, reply ? mac_b : mac_a, 6);
  StoreBe16(p + 12, f.ipv6 ? 0x86dd : 0x0800);

  const uint8_t* src = reply ? f.server : f.client;
  const uint8_t* dst = reply ? f.client : f.server;
  const uint16_t sport = reply ? f.server_port : f.client_port;
  const uint16_t dport = reply ? f.client_port : f.server_port;
  uint8_t* ip = p + kEthHeader;
  uint8_t* l4 = ip + l3_len;
  const auto l4_total = static_cast<uint16_t>(l4_len + payload);
  uint64_t pseudo = 0;
  if (f.ipv6) {
    StoreBe32(ip, 0x60000000u);
    StoreBe16(ip + 4, l4_total);
    ip[6] = f.proto;
    ip[7] = 64;
    std::memcpy(ip + 8, src, 16);
    std::memcpy(ip + 24, dst, 16);
    pseudo = Ipv6PseudoHeaderSum(ip + 8, ip + 24, f.proto, l4_total);
  } else {
    ip[0] = 0x45;
    StoreBe16(ip + 2, static_cast<uint16_t>(20 + l4_total));
    StoreBe16(ip + 4, static_cast<uint16_t>(rng_()));
    StoreBe16(ip + 6, 0x4000);  // DF
    ip[8] = 64;
    ip[9] = f.proto;
    std::memcpy(ip + 12, src, 4);
    std::memcpy(ip + 16, dst, 4);
    StoreHost16(ip + 10, InternetChecksum(ip, 20));
    pseudo = Ipv4PseudoHeaderSum(ip + 12, ip + 16, f.proto, l4_total);
  }

  StoreBe16(l4, sport);
  StoreBe16(l4 + 2, dport);
  if (f.proto == 17) {
    StoreBe16(l4 + 4, l4_total);
  } else {
    uint32_t& seq = reply ? f.server_seq : f.client_seq;
    StoreBe32(l4 + 4, seq);
    StoreBe32(l4 + 8, reply ? f.client_seq : f.server_seq);
    seq += syn ? 1 : payload;
    l4[12] = static_cast<uint8_t>((l4_len / 4) << 4);
    l4[13] = syn ? 0x02 : 0x18;  // SYN, or PSH|ACK
    StoreBe16(l4 + 14, 65535);
    if (syn) {
      l4[20] = 2;  // MSS
      l4[21] = 4;
      StoreBe16(l4 + 22, f.ipv6 ? 1440 : 1460);
    }
  }
  for (uint32_t i = 0; i < payload; ++i) l4[l4_len + i] = static_cast<uint8_t>(rng_());
  const int csum_at = f.proto == 17 ? 6 : 16;
  const CsumZero zero = f.proto != 17 ? CsumZero::kPlain : (f.ipv6 ? CsumZero::kUdpIpv6 : CsumZero::kUdpIpv4);
  StoreHost16(l4 + csum_at, FinishL4Checksum(ChecksumFold(ChecksumAccumulate(l4, l4_total, pseudo)), zero));
}

std::vector<std::vector<uint8_t>> TrafficGenerator::Generate(uint64_t count) {
  std::vector<std::vector<uint8_t>> out(count);
  for (auto& f : out) Next(f);
  return out;
}

Status WritePcap(const TrafficSpec& spec, uint64_t count, const std::string& path) {
  // The replay's writer: every write and the close are checked, so a full disk is an error,
  // not a short file.
  auto out = PcapRecordWriter::Open(path, PcapFormat{.linktype = 1, .dlt = DLT_EN10MB, .snaplen = 65535});
  if (!out.ok()) return out.status();
  TrafficGenerator gen(spec);
  std::vector<uint8_t> frame;
  for (uint64_t i = 0; i < count; ++i) {
    gen.Next(frame);
    PcapRecord r;
    r.sec = static_cast<int64_t>(1700000000 + i / 1000000);
    r.frac = static_cast<int64_t>(i % 1000000);
    r.caplen = r.len = static_cast<uint32_t>(frame.size());
    r.data = frame.data();
    (*out)->Write(r);
  }
  return (*out)->Close();
}

}  // namespace sluice
