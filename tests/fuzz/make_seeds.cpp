// make_seeds CORPUS_DIR OUT_DIR: the fuzz targets' seed corpora from tcpdump's captures.
//   OUT_DIR/parse/<hash>    link byte + packet            (fuzz_parse)
//   OUT_DIR/rewrite/<hash>  link byte + plan bytes + packet (fuzz_rewrite)
// Every distinct packet up to kMaxSeed bytes of a link type parse knows, once. The plan bytes
// are derived from the packet's hash, so the seeds are the same on every run.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_packet.h"
#include "tests/testing/pcap_file.h"

namespace {

constexpr std::size_t kMaxSeed = 2048;

uint64_t Fnv(const std::vector<uint8_t>& v) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : v) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

void Write(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_seeds CORPUS_DIR OUT_DIR\n");
    return 2;
  }
  const std::filesystem::path out = argv[2];
  std::filesystem::create_directories(out / "parse");
  std::filesystem::create_directories(out / "rewrite");
  std::set<uint64_t> seen;
  uint64_t files = 0, packets = 0;
  for (const auto& e : std::filesystem::directory_iterator(argv[1])) {
    const std::string ext = e.path().extension().string();
    if (ext != ".pcap" && ext != ".pcapng") continue;
    ++files;
    const sluice::testing::PcapContents pc = sluice::testing::ReadPcap(e.path().string());
    if (pc.link == sluice::LinkType::kUnsupported) continue;
    for (const sluice::testing::PcapRecord& r : pc.records) {
      if (r.bytes.empty() || r.bytes.size() > kMaxSeed) continue;
      std::vector<uint8_t> seed = {sluice::fuzz::LinkByte(pc.link)};
      seed.insert(seed.end(), r.bytes.begin(), r.bytes.end());
      const uint64_t h = Fnv(seed);
      if (!seen.insert(h).second) continue;
      ++packets;
      char name[32];
      std::snprintf(name, sizeof name, "%016llx", static_cast<unsigned long long>(h));
      Write(out / "parse" / name, seed);
      std::vector<uint8_t> rw = {seed[0]};
      uint64_t s = h;
      for (std::size_t i = 0; i < sluice::fuzz::kPlanBytes; ++i) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        rw.push_back(static_cast<uint8_t>(s >> 56));
      }
      rw.insert(rw.end(), r.bytes.begin(), r.bytes.end());
      Write(out / "rewrite" / name, rw);
    }
  }
  std::printf("make_seeds: %llu files, %llu distinct packets → %s/{parse,rewrite}\n",
              static_cast<unsigned long long>(files), static_cast<unsigned long long>(packets), argv[2]);
  return 0;
}
