// PcapSink: accepted packets (and, optionally, dropped ones to a second file) written with
// libpcap, in the order the pipeline hands them over (input order), with the timestamps
// PcapSource read. The link type is the input's; nanosecond files stay nanosecond.
#pragma once

#include <memory>
#include <string>

#include "engine/core/status.h"
#include "engine/graph/endpoints.h"

struct pcap;
struct pcap_dumper;

namespace sluice {

class PcapWriter {
 public:
  static Result<std::unique_ptr<PcapWriter>> Open(const std::string& path, int dlt, bool nanosecond);
  ~PcapWriter();
  void Write(const PacketBuffer& p) noexcept;
  Status Close();
  uint64_t written() const noexcept { return written_; }

 private:
  PcapWriter() = default;
  std::string path_;
  pcap* dead_ = nullptr;
  pcap_dumper* dumper_ = nullptr;
  uint64_t written_ = 0;
};

class PcapSink final : public PacketSink {
 public:
  // `out` receives accepted, rewritten and skipped packets; `drops` dropped ones. Either may
  // be null: those packets are not written.
  PcapSink(std::unique_ptr<PcapWriter> out, std::unique_ptr<PcapWriter> drops)
      : out_(std::move(out)), drops_(std::move(drops)) {}

  void Consume(std::span<PacketBuffer* const> packets) noexcept override;
  Status Finish() override;

 private:
  std::unique_ptr<PcapWriter> out_;
  std::unique_ptr<PcapWriter> drops_;
};

}  // namespace sluice
