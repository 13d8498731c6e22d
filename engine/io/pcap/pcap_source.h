// PcapSource: packets from a pcap or pcapng file, through libpcap.
//
// Link types decoded by parse (Ethernet, raw IP, Linux SLL/SLL2, BSD loopback, IPv4, IPv6)
// are tagged on each packet; any other link type is read and tagged kUnsupported, so parse
// skips it with a reason and it is counted, never silently lost. The original timestamp
// travels in the buffer's IoContext so the pcap sink writes it back unchanged.
//
// Errors: Open() fails with the file name and libpcap's message; a file that breaks off
// mid-record ends the run with status() saying so, after every packet read before it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/core/status.h"
#include "engine/graph/endpoints.h"

struct pcap;
struct pcap_pkthdr;

namespace sluice {

// The timestamp a pcap record carried, kept in IoContext::token.
struct PcapTimestamp {
  int64_t sec;
  int64_t frac;  // microseconds or nanoseconds, as the file had them
};
static_assert(sizeof(PcapTimestamp) <= sizeof(IoContext::token));

LinkType LinkTypeOfDlt(int dlt) noexcept;

class PcapSource final : public PacketSource {
 public:
  // Opens `path`; the file is read `loops` times in a row (>= 1).
  static Result<std::unique_ptr<PcapSource>> Open(const std::string& path, uint32_t loops = 1);
  ~PcapSource() override;

  bool ReadBurst(PoolCache& cache, Batch& batch, uint32_t max) override;
  Status status() const override { return status_; }

  int datalink() const noexcept { return dlt_; }
  bool nanosecond() const noexcept { return nanosecond_; }
  uint64_t records() const noexcept { return records_; }
  // How far through all loops the reading is, 0..1, from file bytes consumed; any thread.
  double Progress() const noexcept {
    const uint64_t total = total_bytes_;
    return total == 0 ? 0.0 : static_cast<double>(consumed_.load(std::memory_order_relaxed)) / static_cast<double>(total);
  }

 private:
  PcapSource(std::string path, uint32_t loops) : path_(std::move(path)), loops_left_(loops) {}
  Status Reopen();

  std::string path_;
  uint32_t loops_left_;
  pcap* handle_ = nullptr;
  int dlt_ = 0;
  LinkType link_type_ = LinkType::kUnsupported;
  bool nanosecond_ = false;
  uint64_t records_ = 0;
  uint64_t total_bytes_ = 0;              // file size × loops
  std::atomic<uint64_t> consumed_{0};     // record bytes (header included) read so far
  pcap_pkthdr* pending_hdr_ = nullptr;  // a record read but not yet placed in a buffer
  const unsigned char* pending_data_ = nullptr;
  Status status_;
};

}  // namespace sluice
