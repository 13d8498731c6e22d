#include "engine/io/pcap/pcap_sink.h"

#include <algorithm>
#include <cstring>

#include "engine/io/pcap/pcap_source.h"

namespace sluice {

namespace {

// The bytes to write: what the source read. Parse trims link-layer padding and trailers (an
// Ethernet frame's pad to 60 bytes, an FCS, a vendor trailer) off len(), but they are still in
// the buffer behind it: no stage moves a packet's start or changes its length, so the record
// goes out whole, as tcprewrite writes it. When the start has moved or the packet has grown,
// len() is all there is.
uint32_t BytesToWrite(const PacketBuffer& p, const PcapToken& t) noexcept {
  const bool same_start = t.data_off == p.meta().data_off;
  const bool fits = t.caplen <= p.meta().room - p.meta().data_off;
  return same_start && fits && t.caplen > p.len() ? t.caplen : p.len();
}

}  // namespace

Result<std::unique_ptr<PcapWriter>> PcapWriter::Open(const std::string& path, const PcapFormat& format) {
  auto out = PcapRecordWriter::Open(path, format);
  if (!out.ok()) return out.status();
  return std::unique_ptr<PcapWriter>(new PcapWriter(std::move(out).value()));
}

void PcapWriter::Write(const PacketBuffer& p) noexcept {
  PcapToken t;
  std::memcpy(&t, p.io().token, sizeof t);
  PcapRecord r;
  r.sec = t.sec;
  r.frac = t.frac;
  r.caplen = BytesToWrite(p, t);
  // A cut capture keeps its original wire length; otherwise the bytes are the whole packet.
  r.len = (p.meta().flags & pkt_flag::kTruncated) ? std::max(p.meta().wire_len, r.caplen) : r.caplen;
  r.data = p.data();
  out_->Write(r);
  ++written_;
}

void PcapSink::Consume(std::span<PacketBuffer* const> packets) noexcept {
  for (PacketBuffer* p : packets) {
    PcapWriter* w = p->meta().verdict == Verdict::kAccept ? out_.get() : drops_.get();
    if (w != nullptr) w->Write(*p);
  }
}

Status PcapSink::Finish() {
  Status a = out_ != nullptr ? out_->Close() : Status::Ok();
  Status b = drops_ != nullptr ? drops_->Close() : Status::Ok();
  return Both(std::move(a), std::move(b));
}

}  // namespace sluice
