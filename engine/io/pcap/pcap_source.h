// PcapSource: packets from a pcap or pcapng file (PcapRecordReader: classic pcap read directly,
// everything else through libpcap).
//
// Link types decoded by parse (Ethernet, raw IP, Linux SLL/SLL2, BSD loopback, IPv4, IPv6)
// are tagged on each packet; any other link type is read and tagged kUnsupported, so parse
// skips it with a reason and it is counted, never silently lost. The original timestamp
// travels in the buffer's IoContext so the pcap sink writes it back unchanged — on the first
// pass. With loops, each later pass is shifted to start where the one before ended, one mean
// packet gap after its latest timestamp, so a looped replay's output runs forward in time at
// the capture's own rate (pass k: + k × (latest − earliest + gap)).
//
// Errors: Open() fails with the file name and libpcap's message; a file that breaks off
// mid-record ends the run with status() saying so, after every packet read before it.
// A record that needs a pool buffer the pool has not got (only the large class can run dry)
// waits for the next burst: the reader keeps it, nothing is skipped.
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/core/status.h"
#include "engine/graph/endpoints.h"
#include "engine/io/pcap/pcap_records.h"


namespace sluice {

// What PcapSource keeps of a record in the buffer's io().token, for the writer.
struct PcapToken {
  int64_t sec;
  int64_t frac;          // microseconds or nanoseconds, as the file had them
  uint32_t caplen = 0;   // bytes read into the buffer; 0: unknown (write len())
  uint16_t data_off = 0; // where they start in the buffer's room
};
static_assert(sizeof(PcapToken) <= sizeof(IoContext::token));

LinkType LinkTypeOfDlt(int dlt) noexcept;

class PcapSource final : public PacketSource {
 public:
  // Opens `path`; the file is read `loops` times in a row (>= 1).
  static Result<std::unique_ptr<PcapSource>> Open(const std::string& path, uint32_t loops = 1);
  ~PcapSource() override;

  bool ReadBurst(PoolCache& cache, Batch& batch, uint32_t max) override;
  Status status() const override { return status_; }

  // What a writer needs to write these packets back in the same format.
  const PcapFormat& format() const noexcept { return format_; }
  uint64_t records() const noexcept { return records_; }
  // Records whose timestamp does not fit pcap's 32-bit seconds (pcapng carries 64): a pcap
  // writer keeps their seconds modulo 2^32, as libpcap's pcap_dump does. Read after the run.
  uint64_t timestamps_beyond_32bit() const noexcept { return beyond_32bit_records_; }
  // How far through all loops the reading is, 0..1, from file bytes consumed; any thread.
  double Progress() const noexcept {
    const uint64_t total = total_bytes_;
    return total == 0 ? 0.0 : static_cast<double>(consumed_.load(std::memory_order_relaxed)) / static_cast<double>(total);
  }

 private:
  PcapSource(std::string path, uint32_t loops) : path_(std::move(path)), loops_left_(loops), looping_(loops > 1) {}
  Status Reopen();
  void ShiftTimestamp(PcapRecord& r) noexcept;
  // What a timestamp's fraction counts: microseconds or nanoseconds, as the file has them.
  int64_t UnitsPerSecond() const noexcept { return format_.nanosecond ? 1000000000 : 1000000; }

  std::string path_;
  uint32_t loops_left_;
  bool looping_;  // more than one pass: timestamps are moved on (ShiftTimestamp)
  std::unique_ptr<PcapRecordReader> reader_;
  PcapFormat format_;
  LinkType link_type_ = LinkType::kUnsupported;
  uint64_t records_ = 0;
  uint64_t total_bytes_ = 0;              // file size × loops
  std::atomic<uint64_t> consumed_{0};     // record bytes (header included) read so far
  bool pending_ = false;  // record_ was read but not yet placed in a buffer
  // Timestamps in the file's unit (µs or ns) since the epoch: the first pass's earliest and
  // latest, and what is added to every record of the current pass.
  int64_t earliest_ = INT64_MAX;
  int64_t latest_ = INT64_MIN;
  uint64_t first_pass_records_ = 0;
  int64_t shift_ = 0;
  bool beyond_32bit_ = false;  // a first-pass timestamp outside pcap's 32-bit seconds (pcapng)
  uint64_t beyond_32bit_records_ = 0;
  int64_t shift_sec_ = 0;   // shift_ in seconds and the rest, for the per-record add
  int64_t shift_frac_ = 0;
  PcapRecord record_;
  Status status_;
};

}  // namespace sluice
