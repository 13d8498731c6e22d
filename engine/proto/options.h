// Kind-length-value option lists as IPv4 (RFC 791) and TCP (RFC 9293) share them: kind 0 ends
// the list, kind 1 is a one-byte no-op, every other option is kind, length (>= 2, counting
// both bytes), then length - 2 bytes of value.
#pragma once

#include <cstdint>

namespace sluice {

inline constexpr uint8_t kOptEnd = 0;
inline constexpr uint8_t kOptNop = 1;

// True when the list in [p, p + n) is well formed: each option's length byte is present, at
// least 2, and ends inside the list. Bytes after End are padding and not looked at.
// Cost: one step per option (a TCP timestamp-carrying ACK: NOP, NOP, TS = 3 steps).
inline bool ValidKlvOptions(const uint8_t* p, uint32_t n) noexcept {
  uint32_t i = 0;
  while (i < n) {
    const uint8_t kind = p[i];
    if (kind == kOptEnd) return true;
    if (kind == kOptNop) {
      ++i;
      continue;
    }
    if (n - i < 2) return false;
    const uint8_t len = p[i + 1];
    if (len < 2 || len > n - i) return false;
    i += len;
  }
  return true;
}

// Offset within [p, p + n) of the first option of `kind` whose length byte is `len`, at or
// after `from` (0, or where an earlier option ends), or -1. Stops at End or at the first
// malformed option; never reads outside the list.
inline int FindKlvOption(const uint8_t* p, uint32_t n, uint8_t kind, uint8_t len, uint32_t from = 0) noexcept {
  uint32_t i = from;
  while (i < n) {
    const uint8_t k = p[i];
    if (k == kOptEnd) return -1;
    if (k == kOptNop) {
      ++i;
      continue;
    }
    if (n - i < 2) return -1;
    const uint8_t l = p[i + 1];
    if (l < 2 || l > n - i) return -1;
    if (k == kind && l == len) return static_cast<int>(i);
    i += l;
  }
  return -1;
}

}  // namespace sluice
