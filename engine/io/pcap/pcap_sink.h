// PcapSink: accepted packets (and, optionally, dropped ones to a second file) written as
// classic pcap (PcapRecordWriter), in the order the pipeline hands them over (input order),
// with the timestamps PcapSource read. Link type, snap length and timestamp precision are the
// input's (PcapSource::format()).
#pragma once

#include <memory>
#include <string>

#include "engine/core/status.h"
#include "engine/graph/endpoints.h"
#include "engine/io/pcap/pcap_records.h"


namespace sluice {

class PcapWriter {
 public:
  static Result<std::unique_ptr<PcapWriter>> Open(const std::string& path, const PcapFormat& format);
  void Write(const PacketBuffer& p) noexcept;
  Status Close() { return out_->Close(); }
  uint64_t written() const noexcept { return written_; }

 private:
  explicit PcapWriter(std::unique_ptr<PcapRecordWriter> out) : out_(std::move(out)) {}
  std::unique_ptr<PcapRecordWriter> out_;
  uint64_t written_ = 0;
};

class PcapSink final : public PacketSink {
 public:
  // `out` receives accepted, rewritten and skipped packets; `drops` (may be null) dropped ones.
  PcapSink(std::unique_ptr<PcapWriter> out, std::unique_ptr<PcapWriter> drops)
      : out_(std::move(out)), drops_(std::move(drops)) {}

  void Consume(std::span<PacketBuffer* const> packets) noexcept override;
  Status Finish() override;

 private:
  std::unique_ptr<PcapWriter> out_;
  std::unique_ptr<PcapWriter> drops_;
};

}  // namespace sluice
