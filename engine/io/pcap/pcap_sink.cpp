#include "engine/io/pcap/pcap_sink.h"

#include <algorithm>
#include <cstring>

#include "engine/io/pcap/pcap_source.h"

namespace sluice {

Result<std::unique_ptr<PcapWriter>> PcapWriter::Open(const std::string& path, const PcapFormat& format) {
  auto out = PcapRecordWriter::Open(path, format);
  if (!out.ok()) return out.status();
  return std::unique_ptr<PcapWriter>(new PcapWriter(std::move(out).value()));
}

void PcapWriter::Write(const PacketBuffer& p) noexcept {
  PcapTimestamp ts;
  std::memcpy(&ts, p.io().token, sizeof ts);
  PcapRecord r;
  r.sec = ts.sec;
  r.frac = ts.frac;
  r.caplen = p.len();
  // A cut capture keeps its original wire length; otherwise the bytes are the whole packet.
  r.len = (p.meta().flags & pkt_flag::kTruncated) ? std::max(p.meta().wire_len, p.len()) : p.len();
  r.data = p.data();
  out_->Write(r);
  ++written_;
}

void PcapSink::Consume(std::span<PacketBuffer* const> packets) noexcept {
  for (PacketBuffer* p : packets) {
    if (p->meta().verdict == Verdict::kAccept) {
      out_->Write(*p);
    } else if (drops_ != nullptr) {
      drops_->Write(*p);
    }
  }
}

Status PcapSink::Finish() {
  Status a = out_->Close();
  Status b = drops_ != nullptr ? drops_->Close() : Status::Ok();
  return a.ok() ? b : a;
}

}  // namespace sluice
