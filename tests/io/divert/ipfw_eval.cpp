#include "tests/io/divert/ipfw_eval.h"

#include <arpa/inet.h>

#include <algorithm>
#include <sstream>

namespace sluice::testing {

namespace {

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

bool ParseNumber(const std::string& s, uint32_t max, uint32_t* out) {
  if (s.empty() || s.size() > 6 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  const unsigned long v = std::stoul(s);
  if (v > max) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

void PrefixMask(int bits, int total_bytes, std::array<uint8_t, 16>* m) {
  m->fill(0);
  for (int i = 0; i < total_bytes; ++i) {
    const int left = bits - 8 * i;
    (*m)[i] = left >= 8 ? 0xff : left <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - left));
  }
}

}  // namespace

bool IpfwSubset::Load(const std::string& text, std::string* error) {
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    if (!Command(line, error)) {
      *error = "line " + std::to_string(n) + ": " + *error + ": " + line;
      return false;
    }
  }
  return true;
}

bool IpfwSubset::Command(const std::string& line, std::string* error) {
  std::istringstream in(line);
  std::vector<std::string> t;
  for (std::string w; in >> w;) t.push_back(w);
  std::size_t i = 0;
  if (i < t.size() && t[i] == "ipfw") ++i;
  while (i < t.size() && (t[i] == "-q" || t[i] == "-f")) ++i;
  if (i >= t.size()) {
    *error = "empty command";
    return false;
  }
  if (t[i] == "add") return Add(t, i + 1, error);
  if (t[i] == "delete" && i + 1 < t.size() && t[i + 1] == "set") {
    uint32_t set;
    if (i + 3 != t.size() || !ParseNumber(t[i + 2], 31, &set)) {
      *error = "delete set takes one set number";
      return false;
    }
    std::erase_if(rules_, [set](const Rule& r) { return r.set == set; });
    return true;
  }
  if (t[i] == "set") {
    bool enable = true;
    bool any = false;
    for (std::size_t k = i + 1; k < t.size(); ++k) {
      if (t[k] == "enable") {
        enable = true;
      } else if (t[k] == "disable") {
        enable = false;
      } else {
        uint32_t set;
        if (k == i + 1 || !ParseNumber(t[k], 30, &set)) {  // enable or disable comes first
          *error = "set takes enable/disable and set numbers 0..30";
          return false;
        }
        enabled_[set] = enable;
        any = true;
      }
    }
    if (!any) {
      *error = "set command without a set";
      return false;
    }
    return true;
  }
  *error = "command outside the subset";
  return false;
}

bool IpfwSubset::Add(const std::vector<std::string>& t, std::size_t i, std::string* error) {
  Rule r;
  auto need = [&](const char* what) {
    if (i < t.size()) return true;
    *error = std::string("missing ") + what;
    return false;
  };
  if (!need("rule number") || !ParseNumber(t[i], 65534, &r.number) || r.number == 0) {
    *error = "a rule number 1..65534 must follow add";
    return false;
  }
  ++i;
  if (i < t.size() && t[i] == "set") {
    if (i + 1 >= t.size() || !ParseNumber(t[i + 1], 30, &r.set)) {
      *error = "bad set";
      return false;
    }
    i += 2;
  }
  if (!need("action")) return false;
  const std::string action = t[i++];
  if (action == "divert" || action == "skipto") {
    r.action = action == "divert" ? Action::kDivert : Action::kSkipto;
    if (!need("action argument") || !ParseNumber(t[i], 65535, &r.arg) || r.arg == 0) {
      *error = action + " needs a number";
      return false;
    }
    ++i;
  } else if (action == "count") {
    r.action = Action::kCount;
  } else if (action == "allow" || action == "accept" || action == "pass" || action == "permit") {
    r.action = Action::kAllow;
  } else if (action == "deny" || action == "drop") {
    r.action = Action::kDeny;
  } else {
    *error = "action outside the subset: " + action;
    return false;
  }
  if (!need("protocol")) return false;
  const std::string proto = t[i++];
  if (proto == "ip" || proto == "all") {
    r.proto_version = 0;
  } else if (proto == "ip4" || proto == "ipv4") {
    r.proto_version = 4;
  } else if (proto == "ip6" || proto == "ipv6") {
    r.proto_version = 6;
  } else {
    *error = "protocol outside the subset: " + proto;
    return false;
  }
  for (AddrSet* side : {&r.src, &r.dst}) {
    const char* kw = side == &r.src ? "from" : "to";
    if (!need(kw) || t[i] != kw) {
      *error = std::string("expected ") + kw;
      return false;
    }
    ++i;
    bool negate = false;
    if (i < t.size() && t[i] == "not") {
      negate = true;
      ++i;
    }
    if (!need("address") || !ParseAddrs(t[i], side, error)) return false;
    side->negate = negate;
    ++i;
  }
  while (i < t.size()) {
    Option o{};
    if (t[i] == "not") {
      o.negate = true;
      ++i;
      if (!need("option after not")) return false;
    }
    const std::string w = t[i++];
    if (w == "in") {
      o.kind = Option::kIn;
    } else if (w == "out") {
      o.kind = Option::kOut;
    } else if (w == "diverted") {
      o.kind = Option::kDiverted;
    } else if (w == "via" || w == "recv" || w == "xmit") {
      o.kind = w == "via" ? Option::kVia : w == "recv" ? Option::kRecv : Option::kXmit;
      if (!need("interface")) return false;
      o.name = t[i++];
    } else if (w == "ipversion") {
      o.kind = Option::kIpversion;
      uint32_t v;
      if (!need("version") || !ParseNumber(t[i++], 6, &v) || (v != 4 && v != 6)) {
        *error = "ipversion takes 4 or 6";
        return false;
      }
      o.number = static_cast<int>(v);
    } else {
      *error = "option outside the subset: " + w;
      return false;
    }
    r.options.push_back(o);
  }
  r.seq = next_seq_++;
  const auto pos = std::upper_bound(rules_.begin(), rules_.end(), r, [](const Rule& a, const Rule& b) {
    return a.number < b.number || (a.number == b.number && a.seq < b.seq);
  });
  rules_.insert(pos, std::move(r));
  return true;
}

bool IpfwSubset::ParseAddrs(const std::string& s, AddrSet* out, std::string* error) {
  *out = AddrSet{};
  if (s == "any") return true;
  out->any = false;
  bool first = true;
  for (const std::string& item : Split(s, ',')) {
    Entry e;
    std::string addr = item, mask;
    char sep = 0;
    const bool looks_v6 = std::count(item.begin(), item.end(), ':') >= 2;
    const std::size_t cut = looks_v6 ? item.find('/') : item.find_first_of(":/");
    if (cut != std::string::npos) {
      sep = item[cut];
      addr = item.substr(0, cut);
      mask = item.substr(cut + 1);
    }
    e.v6 = looks_v6;
    const int bytes = e.v6 ? 16 : 4;
    if (inet_pton(e.v6 ? AF_INET6 : AF_INET, addr.c_str(), e.addr.data()) != 1) {
      *error = "bad address " + addr;
      return false;
    }
    if (sep == 0) {
      PrefixMask(bytes * 8, bytes, &e.mask);
    } else if ((sep == ':' && !e.v6) || (sep == '/' && e.v6 && mask.find(':') != std::string::npos)) {
      if (inet_pton(e.v6 ? AF_INET6 : AF_INET, mask.c_str(), e.mask.data()) != 1) {
        *error = "bad mask " + mask;
        return false;
      }
    } else {
      uint32_t len;
      if (!ParseNumber(mask, bytes * 8u, &len)) {
        *error = "bad mask length " + mask;
        return false;
      }
      PrefixMask(static_cast<int>(len), bytes, &e.mask);
    }
    for (int b = 0; b < bytes; ++b) e.addr[b] &= e.mask[b];  // ipfw masks the base address
    if (!first && e.v6 != out->v6) {
      *error = "address list mixes IPv4 and IPv6";
      return false;
    }
    out->v6 = e.v6;
    first = false;
    if (std::all_of(e.mask.begin(), e.mask.begin() + bytes, [](uint8_t m) { return m == 0; })) {
      out->any = true;  // ipfw: a zero-width entry turns the whole list into `any`
    }
    out->entries.push_back(e);
  }
  // sbin/ipfw: the instruction length field holds 63 words; a pair takes 2 (IPv4) or 8 (IPv6).
  const std::size_t limit = out->v6 ? 7 : 31;
  if (out->entries.size() > limit) {
    *error = "address list too long for ipfw (" + std::to_string(out->entries.size()) + " entries)";
    return false;
  }
  if (out->any) out->entries.clear();
  return true;
}

bool IpfwSubset::Matches(const AddrSet& a, bool v6, const std::array<uint8_t, 16>& addr) {
  bool m = a.any;
  if (!a.any && a.v6 == v6) {
    const int bytes = v6 ? 16 : 4;
    for (const Entry& e : a.entries) {
      bool hit = true;
      for (int b = 0; b < bytes && hit; ++b) hit = (addr[b] & e.mask[b]) == e.addr[b];
      if (hit) {
        m = true;
        break;
      }
    }
  }
  return a.negate ? !m : m;
}

bool IpfwSubset::Matches(const Option& o, const IpfwPacket& p) {
  bool m = false;
  switch (o.kind) {
    case Option::kIn: m = !p.out; break;
    case Option::kOut: m = p.out; break;
    case Option::kVia: m = p.recv_if == o.name || (p.out && p.xmit_if == o.name); break;
    case Option::kRecv: m = p.recv_if == o.name; break;
    case Option::kXmit: m = p.out && p.xmit_if == o.name; break;
    case Option::kDiverted: m = p.diverted; break;
    case Option::kIpversion: m = (p.v6 ? 6 : 4) == o.number; break;
  }
  return o.negate ? !m : m;
}

IpfwVerdict IpfwSubset::Evaluate(const IpfwPacket& p, uint32_t resume_after) {
  uint32_t skip_below = resume_after + 1;
  for (Rule& r : rules_) {
    if (r.number < skip_below || !enabled_[r.set]) continue;
    if (r.proto_version != 0 && r.proto_version != (p.v6 ? 6 : 4)) continue;
    if (!Matches(r.src, p.v6, p.src) || !Matches(r.dst, p.v6, p.dst)) continue;
    if (!std::all_of(r.options.begin(), r.options.end(), [&](const Option& o) { return Matches(o, p); })) continue;
    ++r.hits;
    switch (r.action) {
      case Action::kCount: continue;
      case Action::kSkipto: skip_below = std::max(skip_below, r.arg); continue;
      case Action::kDivert: return {IpfwVerdict::kDivert, static_cast<uint16_t>(r.arg), r.number};
      case Action::kAllow: return {IpfwVerdict::kAllow, 0, r.number};
      case Action::kDeny: return {IpfwVerdict::kDeny, 0, r.number};
    }
  }
  return {};
}

uint64_t IpfwSubset::CountHits(uint32_t set) const {
  uint64_t n = 0;
  for (const Rule& r : rules_) {
    if (r.set == set && r.action == Action::kCount) n += r.hits;
  }
  return n;
}

}  // namespace sluice::testing
