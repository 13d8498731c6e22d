#include "engine/io/pcap/pcap_sink.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <cstring>

#include "engine/io/pcap/pcap_source.h"

namespace sluice {

Result<std::unique_ptr<PcapWriter>> PcapWriter::Open(const std::string& path, int dlt, bool nanosecond) {
  std::unique_ptr<PcapWriter> w(new PcapWriter());
  w->path_ = path;
  w->dead_ = pcap_open_dead_with_tstamp_precision(
      dlt, 262144, nanosecond ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO);
  if (w->dead_ == nullptr) return IoError(path + ": cannot create a pcap writer");
  w->dumper_ = pcap_dump_open(w->dead_, path.c_str());
  if (w->dumper_ == nullptr) return IoError(path + ": " + pcap_geterr(w->dead_));
  return w;
}

PcapWriter::~PcapWriter() { (void)Close(); }

void PcapWriter::Write(const PacketBuffer& p) noexcept {
  PcapTimestamp ts;
  std::memcpy(&ts, p.io().token, sizeof ts);
  pcap_pkthdr hdr{};
  hdr.ts.tv_sec = ts.sec;
  hdr.ts.tv_usec = ts.frac;
  hdr.caplen = p.len();
  // A cut capture keeps its original wire length; otherwise the bytes are the whole packet.
  hdr.len = (p.meta().flags & pkt_flag::kTruncated) ? std::max(p.meta().wire_len, p.len()) : p.len();
  pcap_dump(reinterpret_cast<u_char*>(dumper_), &hdr, p.data());
  ++written_;
}

Status PcapWriter::Close() {
  Status s;
  if (dumper_ != nullptr) {
    if (pcap_dump_flush(dumper_) != 0) s = IoError(path_ + ": write failed (disk full?)");
    pcap_dump_close(dumper_);
    dumper_ = nullptr;
  }
  if (dead_ != nullptr) {
    pcap_close(dead_);
    dead_ = nullptr;
  }
  return s;
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
  return a.ok() ? b : a;
}

}  // namespace sluice
