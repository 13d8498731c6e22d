#include "engine/io/pcap/pcap_source.h"

#include <pcap/pcap.h>

#include <cstring>
#include <filesystem>

namespace sluice {

LinkType LinkTypeOfDlt(int dlt) noexcept {
  switch (dlt) {
    case DLT_EN10MB:
      return LinkType::kEthernet;
    case DLT_RAW:
    case 101:  // LINKTYPE_RAW, as written by some tools
      return LinkType::kRaw;
    case DLT_LINUX_SLL:
      return LinkType::kLinuxSll;
#ifdef DLT_LINUX_SLL2
    case DLT_LINUX_SLL2:
#else
    case 276:
#endif
      return LinkType::kLinuxSll2;
    case DLT_NULL:
    case DLT_LOOP:
      return LinkType::kBsdLoopback;
    case 228:  // DLT_IPV4
      return LinkType::kIpv4;
    case 229:  // DLT_IPV6
      return LinkType::kIpv6;
    default:
      return LinkType::kUnsupported;
  }
}

Result<std::unique_ptr<PcapSource>> PcapSource::Open(const std::string& path, uint32_t loops) {
  std::unique_ptr<PcapSource> src(new PcapSource(path, loops < 1 ? 1 : loops));
  Status s = src->Reopen();
  if (!s.ok()) return s;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  src->total_bytes_ = ec ? 0 : size * (loops < 1 ? 1 : loops);
  return src;
}

PcapSource::~PcapSource() {
  if (handle_ != nullptr) pcap_close(handle_);
}

Status PcapSource::Reopen() {
  if (handle_ != nullptr) pcap_close(handle_);
  handle_ = nullptr;
  char err[PCAP_ERRBUF_SIZE] = {};
  // Nanosecond precision when the file has it, so timestamps are written back exactly.
  handle_ = pcap_open_offline_with_tstamp_precision(path_.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (handle_ == nullptr) return IoError(path_ + ": " + err);
  dlt_ = pcap_datalink(handle_);
  link_type_ = LinkTypeOfDlt(dlt_);
  nanosecond_ = pcap_get_tstamp_precision(handle_) == PCAP_TSTAMP_PRECISION_NANO;
  --loops_left_;
  return Status::Ok();
}

bool PcapSource::ReadBurst(PoolCache& cache, Batch& batch, uint32_t max) {
  while (batch.size() < max && handle_ != nullptr) {
    if (pending_hdr_ == nullptr) {
      const int rc = pcap_next_ex(handle_, &pending_hdr_, &pending_data_);
      if (rc == PCAP_ERROR_BREAK) {  // end of file
        pending_hdr_ = nullptr;
        if (loops_left_ == 0) {
          pcap_close(handle_);
          handle_ = nullptr;
          break;
        }
        status_ = Reopen();
        continue;
      }
      if (rc != 1) {
        pending_hdr_ = nullptr;
        status_ = IoError(path_ + ": after " + std::to_string(records_) +
                          " records: " + pcap_geterr(handle_));
        pcap_close(handle_);
        handle_ = nullptr;
        break;
      }
      ++records_;
      consumed_.store(consumed_.load(std::memory_order_relaxed) + pending_hdr_->caplen + 16,
                      std::memory_order_relaxed);
    }
    const pcap_pkthdr& hdr = *pending_hdr_;
    SizeClass size_class;
    const bool fits = ClassFor(hdr.caplen, &size_class);
    PacketBuffer* b = cache.Get(fits ? size_class : SizeClass::kSmall);
    if (b == nullptr) {
      // Pool dry (the large class; the small one is sized for the bursts in flight): close
      // the burst here and keep the record for the next one. libpcap keeps `data` valid
      // until the next pcap_next_ex.
      return true;
    }
    PacketMeta& m = b->meta();
    m.link_type = link_type_;
    m.wire_len = hdr.len;
    if (hdr.caplen < hdr.len) m.flags |= pkt_flag::kTruncated;
    const PcapTimestamp ts{hdr.ts.tv_sec, hdr.ts.tv_usec};
    std::memcpy(b->io().token, &ts, sizeof ts);
    batch.Push(PacketRef(b));
    if (fits) {
      b->Assign(pending_data_, hdr.caplen);
    } else {
      batch.Drop(batch.size() - 1, DropReason::kTooBig);  // larger than the largest buffer
    }
    pending_hdr_ = nullptr;
  }
  return handle_ != nullptr;
}

}  // namespace sluice
