#include "tests/testing/pcap_file.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <filesystem>

namespace sluice::testing {

LinkType LinkTypeFromDlt(int dlt) {
  switch (dlt) {
    case DLT_EN10MB:
      return LinkType::kEthernet;
    case DLT_RAW:
#ifdef DLT_RAW_ALT
    case DLT_RAW_ALT:
#endif
      return LinkType::kRaw;
    case DLT_LINUX_SLL:
      return LinkType::kLinuxSll;
    case DLT_LINUX_SLL2:
      return LinkType::kLinuxSll2;
    case DLT_NULL:
    case DLT_LOOP:
      return LinkType::kBsdLoopback;
    case DLT_IPV4:
      return LinkType::kIpv4;
    case DLT_IPV6:
      return LinkType::kIpv6;
    default:
      return LinkType::kUnsupported;
  }
}

PcapContents ReadPcap(const std::string& path) {
  PcapContents out;
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (p == nullptr) {
    out.error = err;
    return out;
  }
  out.dlt = pcap_datalink(p);
  out.link = LinkTypeFromDlt(out.dlt);
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  int rc;
  while ((rc = pcap_next_ex(p, &h, &data)) == 1) {
    out.records.push_back({std::vector<uint8_t>(data, data + h->caplen), h->len, h->ts.tv_sec, h->ts.tv_usec});
  }
  if (rc == PCAP_ERROR) out.error = pcap_geterr(p);
  pcap_close(p);
  return out;
}

bool WritePcap(const std::string& path, int dlt, const std::vector<std::vector<uint8_t>>& packets) {
  pcap_t* p = pcap_open_dead(dlt, 262144);
  if (p == nullptr) return false;
  pcap_dumper_t* d = pcap_dump_open(p, path.c_str());
  if (d == nullptr) {
    pcap_close(p);
    return false;
  }
  uint32_t sec = 1700000000;
  for (const auto& pkt : packets) {
    pcap_pkthdr h{};
    h.ts.tv_sec = sec++;
    h.caplen = static_cast<bpf_u_int32>(pkt.size());
    h.len = h.caplen;
    pcap_dump(reinterpret_cast<u_char*>(d), &h, pkt.data());
  }
  const bool ok = pcap_dump_flush(d) == 0;
  pcap_dump_close(d);
  pcap_close(p);
  return ok;
}

std::vector<std::string> CaptureFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string ext = e.path().extension().string();
    if (ext == ".pcap" || ext == ".pcapng") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace sluice::testing
