// Reading and writing pcap files in tests, with libpcap directly (the product's reader is
// engine/io/pcap; tests stay independent of it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/packet/packet_buffer.h"

namespace sluice::testing {

struct PcapRecord {
  std::vector<uint8_t> bytes;  // captured bytes
  uint32_t wire_len = 0;
  int64_t ts_sec = 0;   // the record's timestamp as libpcap gives it at nanosecond precision
  int64_t ts_nsec = 0;  // (a corrupt file may carry a fraction of a second >= 10^9)
};

struct PcapContents {
  int dlt = -1;  // pcap_datalink() of the file
  LinkType link = LinkType::kUnsupported;
  std::vector<PcapRecord> records;
  std::string error;  // non-empty when the file could not be opened or read whole
};

// The .pcap and .pcapng files directly in `dir`, sorted by path (tests/corpus/tcpdump).
std::vector<std::string> CaptureFiles(const std::string& dir);

// DLT_* (as pcap_datalink returns it) to the parser's link type.
LinkType LinkTypeFromDlt(int dlt);

// Every record of a pcap or pcapng file, up to the first read error.
PcapContents ReadPcap(const std::string& path);

// Writes packets as a pcap file of the given DLT; false on any error.
bool WritePcap(const std::string& path, int dlt, const std::vector<std::vector<uint8_t>>& packets);

}  // namespace sluice::testing
