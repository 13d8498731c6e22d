#include "engine/rules/ip_addr.h"

#include <array>
#include <cstdio>

namespace sluice {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<uint32_t> ParseV4(std::string_view s) {
  uint32_t v = 0;
  int octets = 0;
  std::size_t i = 0;
  while (octets < 4) {
    if (i >= s.size() || s[i] < '0' || s[i] > '9') return std::nullopt;
    const std::size_t start = i;
    uint32_t octet = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      octet = octet * 10 + static_cast<uint32_t>(s[i] - '0');
      if (octet > 255 || i - start >= 3) return std::nullopt;
      ++i;
    }
    if (i - start > 1 && s[start] == '0') return std::nullopt;  // "010" is ambiguous (octal?)
    v = (v << 8) | octet;
    ++octets;
    if (octets < 4) {
      if (i >= s.size() || s[i] != '.') return std::nullopt;
      ++i;
    }
  }
  if (i != s.size()) return std::nullopt;
  return v;
}

// Parses "h:h:..." groups (no "::") into out; returns the group count or -1. A dotted quad
// is allowed as the last element when `allow_v4_tail` and counts as two groups.
int ParseGroups(std::string_view s, bool allow_v4_tail, std::array<uint16_t, 8>& out) {
  if (s.empty()) return 0;
  int n = 0;
  std::size_t i = 0;
  while (true) {
    std::size_t j = s.find(':', i);
    std::string_view part = s.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i);
    if (j == std::string_view::npos && allow_v4_tail && part.find('.') != std::string_view::npos) {
      auto v4 = ParseV4(part);
      if (!v4 || n > 6) return -1;
      out[n++] = static_cast<uint16_t>(*v4 >> 16);
      out[n++] = static_cast<uint16_t>(*v4 & 0xffff);
      return n;
    }
    if (part.empty() || part.size() > 4 || n >= 8) return -1;
    uint32_t g = 0;
    for (char c : part) {
      int d = HexDigit(c);
      if (d < 0) return -1;
      g = (g << 4) | static_cast<uint32_t>(d);
    }
    out[n++] = static_cast<uint16_t>(g);
    if (j == std::string_view::npos) return n;
    i = j + 1;
  }
}

std::optional<U128> ParseV6(std::string_view s) {
  std::array<uint16_t, 8> head{}, tail{};
  int nh = 0, nt = 0;
  const std::size_t dc = s.find("::");
  if (dc == std::string_view::npos) {
    nh = ParseGroups(s, true, head);
    if (nh != 8) return std::nullopt;
  } else {
    if (s.find("::", dc + 1) != std::string_view::npos) return std::nullopt;
    nh = ParseGroups(s.substr(0, dc), false, head);
    nt = ParseGroups(s.substr(dc + 2), true, tail);
    if (nh < 0 || nt < 0 || nh + nt > 7) return std::nullopt;
  }
  // Head groups, then the zero run "::" stands for, then the tail groups.
  U128 v = 0;
  for (int k = 0; k < 8; ++k) {
    uint16_t g = 0;
    if (k < nh) g = head[k];
    else if (k >= 8 - nt) g = tail[k - (8 - nt)];
    v = (v << 16) | g;
  }
  return v;
}

}  // namespace

void IpAddr::ToBytes(uint8_t* out) const noexcept {
  const int n = family == L3Type::kIpv4 ? 4 : 16;
  for (int i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(value >> (8 * (n - 1 - i)));
}

IpAddr IpAddr::FromV4Bytes(const uint8_t* p) noexcept {
  return V4((uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]);
}

IpAddr IpAddr::FromV6Bytes(const uint8_t* p) noexcept {
  U128 v = 0;
  for (int i = 0; i < 16; ++i) v = (v << 8) | p[i];
  return V6(v);
}

std::optional<IpAddr> ParseIpAddr(std::string_view text) {
  if (text.find(':') != std::string_view::npos) {
    auto v = ParseV6(text);
    if (!v) return std::nullopt;
    return IpAddr::V6(*v);
  }
  auto v = ParseV4(text);
  if (!v) return std::nullopt;
  return IpAddr::V4(*v);
}

std::optional<Cidr> ParseCidr(std::string_view text, std::string* why) {
  auto fail = [&](std::string msg) -> std::optional<Cidr> {
    if (why) *why = std::move(msg);
    return std::nullopt;
  };
  const std::size_t slash = text.find('/');
  auto addr = ParseIpAddr(text.substr(0, slash));
  if (!addr) return fail("not an IPv4 or IPv6 address");
  const uint32_t width = addr->bits();
  uint32_t len = width;
  if (slash != std::string_view::npos) {
    std::string_view l = text.substr(slash + 1);
    if (l.empty() || l.size() > 3) return fail("prefix length must be a number");
    len = 0;
    for (char c : l) {
      if (c < '0' || c > '9') return fail("prefix length must be a number");
      len = len * 10 + static_cast<uint32_t>(c - '0');
    }
    if (len > width) {
      return fail("prefix length " + std::to_string(len) + " is longer than " + std::to_string(width) +
                  " bits");
    }
  }
  if ((addr->value & ~PrefixMask(len, width)) != 0) {
    Cidr net{IpAddr{addr->family, addr->value & PrefixMask(len, width)}, static_cast<uint8_t>(len)};
    return fail("host bits are set below the /" + std::to_string(len) + " prefix (did you mean " +
                ToString(net) + "?)");
  }
  return Cidr{*addr, static_cast<uint8_t>(len)};
}

std::string ToString(const IpAddr& a) {
  char buf[64];
  if (a.family == L3Type::kIpv4) {
    const uint32_t v = a.v4();
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
    return buf;
  }
  if (a.family != L3Type::kIpv6) return "<none>";
  uint16_t g[8];
  for (int i = 0; i < 8; ++i) g[i] = static_cast<uint16_t>(a.value >> (16 * (7 - i)));
  // RFC 5952: compress the longest run (>= 2) of zero groups, the first one on a tie.
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (g[i] != 0) { ++i; continue; }
    int j = i;
    while (j < 8 && g[j] == 0) ++j;
    if (j - i > best_len && j - i >= 2) { best = i; best_len = j - i; }
    i = j;
  }
  std::string out;
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    std::snprintf(buf, sizeof buf, "%x", g[i]);
    out += buf;
  }
  return out;
}

std::string ToString(const Cidr& c) { return ToString(c.addr) + "/" + std::to_string(c.len); }

}  // namespace sluice
