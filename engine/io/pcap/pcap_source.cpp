#include "engine/io/pcap/pcap_source.h"

#include <pcap/pcap.h>  // DLT_ values

#include <algorithm>
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

PcapSource::~PcapSource() = default;

Status PcapSource::Reopen() {
  if (reader_ != nullptr && beyond_32bit_) {
    return InvalidArgument(path_ + ": it has timestamps outside what pcap's 32-bit seconds hold (pcapng carries "
                           "64); its passes cannot be moved on, so it cannot be looped");
  }
  if (reader_ != nullptr && first_pass_records_ != 0) {
    // The next pass starts one mean gap after this one's latest timestamp (the first pass's
    // figures hold for every pass: the file is the same).
    const int64_t span = latest_ > earliest_ ? latest_ - earliest_ : 0;
    const int64_t gap = first_pass_records_ > 1 ? std::max<int64_t>(1, span / static_cast<int64_t>(first_pass_records_ - 1)) : 1;
    shift_ += span + gap;
    const int64_t unit = UnitsPerSecond();
    shift_sec_ = shift_ / unit;
    shift_frac_ = shift_ % unit;
    // pcap keeps seconds in a signed 32-bit field (libpcap reads it so): refuse a pass whose
    // timestamps would wrap past 2038-01-19.
    if ((latest_ + shift_) / unit > int64_t{INT32_MAX}) {
      return InvalidArgument(path_ + ": looping it once more would move its timestamps past what pcap's 32-bit "
                             "seconds hold (2038-01-19); loop fewer times");
    }
  }
  reader_.reset();
  auto r = PcapRecordReader::Open(path_);
  if (!r.ok()) return r.status();
  reader_ = std::move(r).value();
  format_ = reader_->format();
  link_type_ = LinkTypeOfDlt(format_.dlt);
  --loops_left_;
  return Status::Ok();
}

// Notes the first pass's timestamp range, and moves later passes' records along (Reopen).
void PcapSource::ShiftTimestamp(PcapRecord& r) noexcept {
  const int64_t unit = UnitsPerSecond();
  if (shift_ == 0) {
    // pcapng's 64-bit seconds past about 2262 would overflow the product below; any outside
    // 32 bits keep the file from being looped at all (Reopen), so none is multiplied.
    if (r.sec > INT32_MAX || r.sec < INT32_MIN) {
      beyond_32bit_ = true;
      return;
    }
    const int64_t t = r.sec * unit + r.frac;
    earliest_ = std::min(earliest_, t);
    latest_ = std::max(latest_, t);
    ++first_pass_records_;
    return;
  }
  r.sec += shift_sec_;
  r.frac += shift_frac_;
  if (r.frac >= unit) {
    r.frac -= unit;
    ++r.sec;
  }
}

bool PcapSource::ReadBurst(PoolCache& cache, Batch& batch, uint32_t max) {
  const bool large_buffers = cache.pool().Capacity(SizeClass::kLarge) != 0;
  while (batch.size() < max && reader_ != nullptr) {
    if (!pending_) {
      switch (reader_->Next(record_)) {
        case PcapRecordReader::Result::kRecord:
          pending_ = true;
          ++records_;
          beyond_32bit_records_ += record_.sec > INT32_MAX || record_.sec < INT32_MIN;
          if (looping_) ShiftTimestamp(record_);
          consumed_.store(consumed_.load(std::memory_order_relaxed) + record_.caplen + 16, std::memory_order_relaxed);
          break;
        case PcapRecordReader::Result::kEnd:
          if (loops_left_ == 0) {
            reader_.reset();
          } else {
            status_ = Reopen();
            if (!status_.ok()) reader_.reset();
          }
          continue;
        case PcapRecordReader::Result::kError:
          status_ = IoError(reader_->error());
          reader_.reset();
          continue;
      }
    }
    // A record no buffer of this pool can hold (larger than the largest class, or its class
    // has no buffers at all) must not wait for one: it would wait forever. Its first bytes
    // go on in a small buffer, cut, to be dropped as too_big (and written so to --drops).
    SizeClass size_class;
    const bool fits = ClassFor(record_.caplen, &size_class) && (size_class == SizeClass::kSmall || large_buffers);
    PacketBuffer* b = cache.Get(fits ? size_class : SizeClass::kSmall);
    if (b == nullptr) return true;  // the pool is dry: this record waits for the next burst
    const uint32_t caplen = fits ? record_.caplen : std::min(record_.caplen, b->tailroom());
    PacketMeta& m = b->meta();
    m.link_type = link_type_;
    m.wire_len = record_.len;
    if (caplen < record_.len) m.flags |= pkt_flag::kTruncated;
    b->Assign(record_.data, caplen);
    const PcapToken token{record_.sec, record_.frac, caplen, m.data_off};
    std::memcpy(b->io().token, &token, sizeof token);
    batch.Push(PacketRef(b));
    if (!fits) batch.Drop(batch.size() - 1, DropReason::kTooBig);
    pending_ = false;
  }
  return reader_ != nullptr;
}

}  // namespace sluice
