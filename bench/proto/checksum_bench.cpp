// The Internet checksum: the wide sum sluice uses against RFC 1071's plain 16-bit loop, at
// header and packet sizes, and the RFC 1624 incremental updates the rewrite stage uses.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/proto/checksum.h"

namespace sluice {
namespace {

std::vector<uint8_t> RandomBytes(std::size_t n) {
  std::vector<uint8_t> v(n + 8);
  std::mt19937 rng(1);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

uint16_t Wide(const uint8_t* p, std::size_t n) { return InternetChecksum(p, n); }

// A full checksum of n bytes (20 = IPv4 header, 40 = IPv6 header / TCP SYN, 1500, 64 KiB),
// starting one byte past an 8-byte boundary as packet fields often do. `wide` is sluice's
// (four 64-bit lanes, end-around carry); `plain16` the baseline, one 16-bit word at a time
// into a 32-bit sum (RFC 1071 §4.1).
void BM_Checksum(benchmark::State& state, uint16_t (*checksum)(const uint8_t*, std::size_t)) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto data = RandomBytes(n);
  for (auto _ : state) {
    benchmark::DoNotOptimize(checksum(data.data() + 1, n));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}
BENCHMARK_CAPTURE(BM_Checksum, wide, Wide)->Arg(20)->Arg(40)->Arg(1500)->Arg(65536);
BENCHMARK_CAPTURE(BM_Checksum, plain16, InternetChecksumPlain16)
    ->Arg(20)
    ->Arg(40)
    ->Arg(1500)
    ->Arg(65536);

// One RFC 1624 update per item for a 16-bit (port), 32-bit (IPv4 address) or 128-bit (IPv6
// address) field; a dependent chain, as when several fields of one packet change.
void BM_ChecksumIncremental(benchmark::State& state) {
  const int bits = static_cast<int>(state.range(0));
  const auto data = RandomBytes(64);
  uint16_t hc = 0x1234;
  uint32_t k = 0;
  for (auto _ : state) {
    CsumDelta d;
    const uint8_t* old_b = data.data() + (k & 15);
    const uint8_t* new_b = data.data() + 16 + (k & 15);
    if (bits == 16) {
      uint16_t o, n;
      std::memcpy(&o, old_b, 2);
      std::memcpy(&n, new_b, 2);
      d.Replace16(o, n);
    } else if (bits == 32) {
      uint32_t o, n;
      std::memcpy(&o, old_b, 4);
      std::memcpy(&n, new_b, 4);
      d.Replace32(o, n);
    } else {
      d.Replace128(old_b, new_b);
    }
    hc = d.Apply(hc);
    ++k;
  }
  benchmark::DoNotOptimize(hc);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ChecksumIncremental)->Arg(16)->Arg(32)->Arg(128);

}  // namespace
}  // namespace sluice
