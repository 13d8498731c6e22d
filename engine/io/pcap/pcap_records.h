// Record streams under PcapSource and PcapSink.
//
// libpcap reads every format and is the reference; on the hot path it costs two fread calls
// per record on the way in and two fwrite calls on the way out — a quarter of a whole replay's
// time in `perf record` (replay of 1M x 64 B, one port rewrite). So the classic pcap format
// (the 24-byte header and 16-byte record headers, host byte order) is read in 256 KiB
// read(2)s into one buffer and written through one large buffer with plain write(2).
// Everything else — pcapng, byte-swapped files (libpcap fixes some link types' pseudo-headers
// on the way in) — goes through libpcap. Both readers give the same records; tests hold them
// to it over the whole tcpdump corpus.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/status.h"

struct pcap;

namespace sluice {

// What a capture file says about all its records.
struct PcapFormat {
  uint32_t linktype = 1;    // LINKTYPE_* as written in the file header
  int dlt = 1;              // the same as libpcap's DLT_* (what LinkTypeOfDlt maps)
  uint32_t snaplen = 262144;
  bool nanosecond = false;  // timestamps' fraction is nanoseconds (else microseconds)
};

struct PcapRecord {
  int64_t sec = 0;
  int64_t frac = 0;         // microseconds or nanoseconds, as PcapFormat says
  uint32_t caplen = 0;
  uint32_t len = 0;         // on the wire
  const uint8_t* data = nullptr;  // caplen bytes, valid until the next Next()
};

class PcapRecordReader {
 public:
  enum class Result : uint8_t { kRecord, kEnd, kError };

  // The fast reader when the file is classic pcap in host byte order, else libpcap's.
  static sluice::Result<std::unique_ptr<PcapRecordReader>> Open(const std::string& path);
  virtual ~PcapRecordReader() = default;

  virtual Result Next(PcapRecord& out) noexcept = 0;
  const PcapFormat& format() const noexcept { return format_; }
  // Why Next returned kError (names the file and the record).
  const std::string& error() const noexcept { return error_; }
  // True for the direct reader (classic pcap read by sluice itself), false for libpcap's.
  bool direct() const noexcept { return direct_; }

 protected:
  PcapFormat format_;
  std::string error_;
  bool direct_ = false;
};

// Classic pcap out, through one buffer: the header libpcap would write for `format`, then
// records. Errors (disk full) are remembered and reported by Close().
class PcapRecordWriter {
 public:
  static sluice::Result<std::unique_ptr<PcapRecordWriter>> Open(const std::string& path, const PcapFormat& format);
  ~PcapRecordWriter();
  void Write(const PcapRecord& r) noexcept;
  Status Close();

 private:
  PcapRecordWriter() = default;
  void Flush() noexcept;

  static constexpr std::size_t kBufferBytes = 1 << 20;
  std::string path_;
  int fd_ = -1;
  std::vector<uint8_t> buf_;
  std::size_t used_ = 0;
  int error_ = 0;  // first errno seen
};

}  // namespace sluice
