#include "engine/rules/config_loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "engine/core/cpus.h"
#include "engine/core/limits.h"
#include "engine/packet/batch.h"
#include "engine/rules/match_records.h"

namespace sluice {
namespace {

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoIcmp6 = 58;
constexpr uint8_t kProtoSctp = 132;
constexpr uint8_t kProtoUdpLite = 136;
constexpr uint32_t kMaxInterfaceName = 15;  // IFNAMSIZ - 1

std::string_view TypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    default: return "a date or time";
  }
}

std::string Hex(uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

// Edit distance, for "did you mean" on unknown keys.
std::size_t Distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t prev = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cur = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] != b[j - 1] ? 1 : 0)});
      prev = cur;
    }
  }
  return row[b.size()];
}

bool ParseUint(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Collects errors and remembers where each value was, for cross-field checks.
class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  void Error(const toml::source_position& at, std::string key, std::string message) {
    errors_.push_back({file_, at.line, at.column, std::move(key), std::move(message)});
  }
  void Remember(const std::string& path, const toml::source_position& at) { where_[path] = at; }
  // Where `path` was written, or where `fallback` was, or 1:1.
  toml::source_position Where(const std::string& path, const std::string& fallback = {}) const {
    if (auto it = where_.find(path); it != where_.end()) return it->second;
    if (auto it = where_.find(fallback); it != where_.end()) return it->second;
    return {1, 1};
  }
  bool Has(const std::string& path) const { return where_.count(path) != 0; }
  std::vector<ConfigError> TakeErrors() { return std::move(errors_); }
  std::size_t error_count() const { return errors_.size(); }

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
  std::map<std::string, toml::source_position> where_;
};

// Reads the keys of one TOML table. Every key that no getter asked for is reported as unknown
// when the reader goes out of scope, with the closest known key as a suggestion.
class TableReader {
 public:
  TableReader(Loader& loader, const toml::table& table, std::string path)
      : loader_(loader), table_(table), path_(std::move(path)) {}
  TableReader(const TableReader&) = delete;
  TableReader& operator=(const TableReader&) = delete;
  ~TableReader() { ReportUnknown(); }

  std::string Path(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  const std::string& path() const { return path_; }
  const toml::table& table() const { return table_; }
  Loader& loader() { return loader_; }

  // The node at `key`, or nullptr; marks the key as known either way.
  const toml::node* Find(std::string_view key) {
    known_.insert(std::string(key));
    const toml::node* n = table_.get(key);
    if (n != nullptr) loader_.Remember(Path(key), n->source().begin);
    return n;
  }
  void Error(const toml::node& at, std::string_view key, std::string message) {
    loader_.Error(at.source().begin, Path(key), std::move(message));
  }
  void ErrorAtTable(std::string_view key, std::string message) {
    loader_.Error(table_.source().begin, Path(key), std::move(message));
  }

  // Each getter: absent → false, nothing written; present and valid → true; invalid → an
  // error, false.
  template <typename T>
  bool Integer(std::string_view key, int64_t lo, int64_t hi, T* out) {
    const toml::node* n = Find(key);
    if (n == nullptr) return false;
    const std::string expected = "expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi);
    const auto* v = n->as_integer();
    if (v == nullptr) {
      Error(*n, key, expected + ", got " + std::string(TypeName(*n)));
      return false;
    }
    if (v->get() < lo || v->get() > hi) {
      Error(*n, key, expected + ", got " + std::to_string(v->get()));
      return false;
    }
    *out = static_cast<T>(v->get());
    return true;
  }
  bool Boolean(std::string_view key, bool* out) {
    const toml::node* n = Find(key);
    if (n == nullptr) return false;
    if (const auto* v = n->as_boolean()) {
      *out = v->get();
      return true;
    }
    Error(*n, key, "expected true or false, got " + std::string(TypeName(*n)));
    return false;
  }
  bool String(std::string_view key, std::string* out) {
    const toml::node* n = Find(key);
    if (n == nullptr) return false;
    if (const auto* v = n->as_string()) {
      *out = v->get();
      return true;
    }
    Error(*n, key, "expected a string, got " + std::string(TypeName(*n)));
    return false;
  }
  template <typename E, std::size_t N>
  bool Choice(std::string_view key, const std::array<std::pair<std::string_view, E>, N>& choices, E* out) {
    const toml::node* n = Find(key);
    if (n == nullptr) return false;
    std::string names;
    for (const auto& [name, value] : choices) names += (names.empty() ? "\"" : ", \"") + std::string(name) + "\"";
    const auto* s = n->as_string();
    if (s != nullptr) {
      for (const auto& [name, value] : choices) {
        if (s->get() == name) {
          *out = value;
          return true;
        }
      }
      Error(*n, key, "expected one of " + names + ", got \"" + s->get() + "\"");
      return false;
    }
    Error(*n, key, "expected one of " + names + ", got " + std::string(TypeName(*n)));
    return false;
  }
  // A sub-table; an error when `key` holds something else.
  const toml::table* Table(std::string_view key) {
    const toml::node* n = Find(key);
    if (n == nullptr) return nullptr;
    if (const auto* t = n->as_table()) return t;
    Error(*n, key, "expected a table, got " + std::string(TypeName(*n)));
    return nullptr;
  }

 private:
  void ReportUnknown() {
    for (auto&& [k, v] : table_) {
      const std::string key(k.str());
      if (known_.count(key) != 0) continue;
      std::string message = "unknown key";
      std::string best;
      std::size_t best_d = 3;
      std::string all;
      for (const std::string& kn : known_) {
        all += (all.empty() ? "" : ", ") + kn;
        const std::size_t d = Distance(key, kn);
        if (d < best_d) {
          best_d = d;
          best = kn;
        }
      }
      if (!best.empty()) {
        message += " (did you mean \"" + best + "\"?)";
      }
      message += "; expected one of: " + all;
      loader_.Error(k.source().begin, Path(key), std::move(message));
    }
  }

  Loader& loader_;
  const toml::table& table_;
  std::string path_;
  std::set<std::string> known_;
};

// ---- value forms shared by several keys -----------------------------------------------------

// A node that is one item or an array of items: calls fn(item) for each.
template <typename Fn>
void ForEachItem(const toml::node& n, Fn&& fn) {
  if (const auto* a = n.as_array()) {
    for (const toml::node& e : *a) fn(e);
  } else {
    fn(n);
  }
}

// "lo-hi", "p" or an integer p, each bound in [min, max].
template <typename T>
std::optional<std::pair<T, T>> ParseRange(const toml::node& n, int64_t min, int64_t max, std::string* why) {
  const std::string bounds = std::to_string(min) + ".." + std::to_string(max);
  if (const auto* i = n.as_integer()) {
    if (i->get() < min || i->get() > max) {
      *why = "expected a value in " + bounds + ", got " + std::to_string(i->get());
      return std::nullopt;
    }
    return std::pair<T, T>{static_cast<T>(i->get()), static_cast<T>(i->get())};
  }
  const auto* s = n.as_string();
  if (s == nullptr) {
    *why = "expected an integer or a \"lo-hi\" range string, got " + std::string(TypeName(n));
    return std::nullopt;
  }
  std::string_view text = s->get();
  const std::size_t dash = text.find('-');
  uint64_t lo = 0, hi = 0;
  if (!ParseUint(Trim(text.substr(0, dash)), &lo) ||
      (dash != std::string_view::npos && !ParseUint(Trim(text.substr(dash + 1)), &hi))) {
    *why = "expected \"lo-hi\" with integers in " + bounds + ", got \"" + std::string(text) + "\"";
    return std::nullopt;
  }
  if (dash == std::string_view::npos) hi = lo;
  if (lo < static_cast<uint64_t>(min) || hi > static_cast<uint64_t>(max)) {
    *why = "expected values in " + bounds + ", got \"" + std::string(text) + "\"";
    return std::nullopt;
  }
  if (lo > hi) {
    *why = "range \"" + std::string(text) + "\" is reversed; expected lo <= hi";
    return std::nullopt;
  }
  return std::pair<T, T>{static_cast<T>(lo), static_cast<T>(hi)};
}

std::optional<uint8_t> ProtoByName(std::string_view s) {
  static constexpr std::array<std::pair<std::string_view, uint8_t>, 11> kNames = {{
      {"icmp", kProtoIcmp}, {"igmp", 2}, {"tcp", kProtoTcp}, {"udp", kProtoUdp}, {"gre", 47},
      {"esp", 50}, {"ah", 51}, {"icmp6", kProtoIcmp6}, {"ipv6-icmp", kProtoIcmp6},
      {"sctp", kProtoSctp}, {"udplite", kProtoUdpLite},
  }};
  for (const auto& [name, p] : kNames) {
    if (s == name) return p;
  }
  return std::nullopt;
}

std::optional<uint8_t> DscpByName(std::string_view s) {
  if (s == "ef") return 46;
  if (s == "va") return 44;
  if (s == "le") return 1;
  if (s.size() == 3 && s.substr(0, 2) == "cs" && s[2] >= '0' && s[2] <= '7') return (s[2] - '0') * 8;
  if (s.size() == 4 && s.substr(0, 2) == "af" && s[2] >= '1' && s[2] <= '4' && s[3] >= '1' && s[3] <= '3') {
    return (s[2] - '0') * 8 + (s[3] - '0') * 2;
  }
  return std::nullopt;
}

// A DSCP value: 0..63 or a name (cs0-cs7, af11-af43, ef, va, le).
std::optional<uint8_t> ParseDscp(const toml::node& n, std::string* why) {
  if (const auto* i = n.as_integer()) {
    if (i->get() >= 0 && i->get() <= 63) return static_cast<uint8_t>(i->get());
    *why = "expected a DSCP value in 0..63 or a name (cs0-cs7, af11-af43, ef, va, le), got " +
           std::to_string(i->get());
    return std::nullopt;
  }
  if (const auto* s = n.as_string()) {
    if (auto d = DscpByName(s->get())) return d;
    *why = "expected a DSCP value in 0..63 or a name (cs0-cs7, af11-af43, ef, va, le), got \"" + s->get() + "\"";
    return std::nullopt;
  }
  *why = "expected a DSCP value in 0..63 or a name, got " + std::string(TypeName(n));
  return std::nullopt;
}

bool IsPortProto(uint8_t p) {
  return p == kProtoTcp || p == kProtoUdp || p == kProtoSctp || p == kProtoUdpLite;
}

// The single family a rule's packets can have, or kNone when it can match both.
L3Type RuleFamily(const MatchSpec& m) {
  if (m.family != L3Type::kNone) return m.family;
  L3Type f = L3Type::kNone;
  bool mixed = false;
  for (const auto* list : {&m.src, &m.dst}) {
    for (const Cidr& c : *list) {
      if (f == L3Type::kNone) f = c.addr.family;
      else if (f != c.addr.family) mixed = true;
    }
  }
  return mixed ? L3Type::kNone : f;
}

std::string_view FamilyName(L3Type f) { return f == L3Type::kIpv4 ? "IPv4" : "IPv6"; }

// ---- sections -------------------------------------------------------------------------------

constexpr std::array<std::pair<std::string_view, Backend>, 3> kBackends = {
    {{"pcap", Backend::kPcap}, {"nfqueue", Backend::kNfqueue}, {"divert", Backend::kDivert}}};

void ReadIo(Loader& l, const toml::table& t, IoConfig& io) {
  TableReader r(l, t, "io");
  r.Choice("backend", kBackends, &io.backend);
  if (const toml::table* p = r.Table("pcap")) {
    TableReader pr(l, *p, "io.pcap");
    pr.String("input", &io.pcap.input);
    pr.String("output", &io.pcap.output);
  }
  if (const toml::table* q = r.Table("nfqueue")) {
    TableReader qr(l, *q, "io.nfqueue");
    NfqueueIoConfig& n = io.nfqueue;
    qr.Integer("queue_first", 0, 65535, &n.queue_first);
    qr.Integer("queue_count", 1, kMaxShards, &n.queue_count);
    qr.Integer("queue_maxlen", 1, 1 << 20, &n.queue_maxlen);
    qr.Integer("rcvbuf_bytes", 65536, int64_t{1} << 30, &n.rcvbuf_bytes);
    qr.Boolean("fail_open", &n.fail_open);
    qr.Boolean("gso", &n.gso);
    qr.Boolean("watch_links", &n.watch_links);
    qr.Integer("verdict_mark", 0, 0xffffffff, &n.verdict_mark);
    qr.Integer("verdict_mask", 0, 0xffffffff, &n.verdict_mask);
    if (const toml::node* outside = qr.Find("outside_interfaces")) {
      ForEachItem(*outside, [&](const toml::node& e) {
        const auto* name = e.as_string();
        if (name == nullptr || name->get().empty() || name->get().size() > kMaxInterfaceName) {
          l.Error(e.source().begin, "io.nfqueue.outside_interfaces",
                  "expected interface names of 1.." + std::to_string(kMaxInterfaceName) + " characters, got " +
                      (name ? "\"" + name->get() + "\"" : std::string(TypeName(e))));
          return;
        }
        n.outside_interfaces.push_back(name->get());
      });
      if (n.outside_interfaces.size() > NfqueueIoConfig::kMaxOutsideInterfaces) {
        l.Error(outside->source().begin, "io.nfqueue.outside_interfaces",
                "at most " + std::to_string(NfqueueIoConfig::kMaxOutsideInterfaces) + " interfaces, got " +
                    std::to_string(n.outside_interfaces.size()));
      }
    }
    if (uint32_t{n.queue_first} + n.queue_count > 65536) {
      l.Error(l.Where("io.nfqueue.queue_count"), "io.nfqueue.queue_count",
              "queues " + std::to_string(n.queue_first) + ".." +
                  std::to_string(uint32_t{n.queue_first} + n.queue_count - 1) +
                  " run past 65535; expected queue_first + queue_count <= 65536");
    }
    if (n.verdict_mask == 0) {
      l.Error(l.Where("io.nfqueue.verdict_mask"), "io.nfqueue.verdict_mask",
              "expected a non-zero mask: the loop guard needs at least one mark bit");
    } else if (n.verdict_mark == 0 || (n.verdict_mark & ~n.verdict_mask) != 0) {
      l.Error(l.Where("io.nfqueue.verdict_mark", "io.nfqueue.verdict_mask"), "io.nfqueue.verdict_mark",
              "verdict_mark " + Hex(n.verdict_mark) + " must be non-zero and inside verdict_mask " +
                  Hex(n.verdict_mask));
    }
  }
  if (const toml::table* d = r.Table("divert")) {
    TableReader dr(l, *d, "io.divert");
    if (const toml::node* ports = dr.Find("ports")) {
      io.divert.ports.clear();
      std::set<uint16_t> seen;
      ForEachItem(*ports, [&](const toml::node& e) {
        const auto* i = e.as_integer();
        if (i == nullptr || i->get() < 1 || i->get() > 65535) {
          l.Error(e.source().begin, "io.divert.ports",
                  "expected divert ports in 1..65535, got " +
                      (i ? std::to_string(i->get()) : std::string(TypeName(e))));
          return;
        }
        if (!seen.insert(static_cast<uint16_t>(i->get())).second) {
          l.Error(e.source().begin, "io.divert.ports",
                  "port " + std::to_string(i->get()) + " is listed twice; each shard needs its own divert port");
          return;
        }
        io.divert.ports.push_back(static_cast<uint16_t>(i->get()));
      });
      if (io.divert.ports.empty() && seen.empty()) {
        dr.Error(*ports, "ports", "expected at least one divert port");
      }
    }
    dr.Integer("rcvbuf_bytes", 65536, int64_t{1} << 30, &io.divert.rcvbuf_bytes);
  }
}

void ReadPipeline(Loader& l, const toml::table& t, PipelineConfig& p) {
  TableReader r(l, t, "pipeline");
  r.Integer("batch_size", 1, kMaxBatch, &p.batch_size);
  r.Integer("batch_timeout_us", 0, 1000000, &p.batch_timeout_us);
  r.Boolean("run_to_completion", &p.run_to_completion);
  r.Integer("threads", 0, kMaxThreads, &p.threads);
  r.Integer("shards", 1, kMaxShards, &p.shards);
  r.Integer("batches_per_shard", 1, 4096, &p.batches_per_shard);
  if (const toml::node* cpus = r.Find("cpus")) {
    // Shape only: whether this host has them is for the host that runs them (sluice run
    // checks with CheckCpusForThisHost); `sluice check` elsewhere must not refuse them.
    p.cpus.clear();
    p.cpus_where.clear();
    ForEachItem(*cpus, [&](const toml::node& e) {
      const auto* i = e.as_integer();
      if (i == nullptr || i->get() < 0 || i->get() > kMaxCpu) {
        l.Error(e.source().begin, "pipeline.cpus",
                "expected CPU numbers in 0.." + std::to_string(kMaxCpu) + ", got " +
                    (i ? std::to_string(i->get()) : std::string(TypeName(e))));
        return;
      }
      if (std::find(p.cpus.begin(), p.cpus.end(), i->get()) != p.cpus.end()) {
        l.Error(e.source().begin, "pipeline.cpus", "CPU " + std::to_string(i->get()) + " is listed twice");
        return;
      }
      p.cpus.push_back(static_cast<uint32_t>(i->get()));
      p.cpus_where.push_back({e.source().begin.line, e.source().begin.column});
    });
  }
  if (const toml::table* pool = r.Table("pool")) {
    TableReader pr(l, *pool, "pipeline.pool");
    pr.Integer("small_buffers", 1, 1 << 24, &p.pool.small_buffers);
    pr.Integer("large_buffers", 0, 1 << 16, &p.pool.large_buffers);
  }
}

void ReadParse(Loader& l, const toml::table& t, ParseConfig& p) {
  TableReader r(l, t, "parse");
  static constexpr std::array<std::pair<std::string_view, MalformedPolicy>, 2> kPolicies = {
      {{"pass", MalformedPolicy::kPass}, {"drop", MalformedPolicy::kDrop}}};
  r.Choice("malformed", kPolicies, &p.malformed);
  r.Integer("ipv6_max_ext_headers", 0, 255, &p.ipv6.max_headers);
  r.Integer("ipv6_max_ext_bytes", 8, kMaxIpv6ExtBytesCap, &p.ipv6.max_bytes);
}

void ReadNat(Loader& l, const toml::table& t, NatConfig& n) {
  TableReader r(l, t, "nat");
  r.Integer("max_flows", 16, 1 << 24, &n.max_flows);
  r.Integer("seed", 0, INT64_MAX, &n.seed);
  static constexpr std::array<std::pair<std::string_view, NatFullPolicy>, 2> kFull = {
      {{"evict-oldest", NatFullPolicy::kEvictOldest}, {"drop-new", NatFullPolicy::kDropNew}}};
  r.Choice("on_full", kFull, &n.on_full);
  constexpr int64_t kWeek = 7 * 24 * 3600;
  r.Integer("tcp_established_s", 1, kWeek, &n.tcp_established_s);
  r.Integer("tcp_transitory_s", 1, kWeek, &n.tcp_transitory_s);
  r.Integer("tcp_closed_s", 1, kWeek, &n.tcp_closed_s);
  r.Integer("udp_s", 1, kWeek, &n.udp_s);
  r.Integer("icmp_s", 1, kWeek, &n.icmp_s);
}

void ReadClassify(Loader& l, const toml::table& t, ClassifyConfig& c) {
  TableReader r(l, t, "classify");
  static constexpr std::array<std::pair<std::string_view, DefaultAction>, 2> kDefault = {
      {{"accept", DefaultAction::kAccept}, {"drop", DefaultAction::kDrop}}};
  r.Choice("default_action", kDefault, &c.default_action);
}

// ---- [[rule]] -------------------------------------------------------------------------------

void ReadPorts(TableReader& r, std::string_view key, std::vector<PortRange>& out) {
  const toml::node* n = r.Find(key);
  if (n == nullptr) return;
  ForEachItem(*n, [&](const toml::node& e) {
    std::string why;
    if (auto range = ParseRange<uint16_t>(e, 1, 65535, &why)) {
      out.push_back({range->first, range->second});
    } else {
      r.Error(e, key, "port: " + why);
    }
  });
  if (out.empty() && n->as_array() != nullptr && n->as_array()->empty()) {
    r.Error(*n, key, "expected at least one port or range; omit the key to match any port");
  }
}

void ReadCidrs(TableReader& r, std::string_view key, std::vector<Cidr>& out) {
  const toml::node* n = r.Find(key);
  if (n == nullptr) return;
  ForEachItem(*n, [&](const toml::node& e) {
    const auto* s = e.as_string();
    if (s == nullptr) {
      r.Error(e, key, "expected an address or CIDR string like \"198.18.0.0/15\", got " + std::string(TypeName(e)));
      return;
    }
    std::string why;
    if (auto c = ParseCidr(s->get(), &why)) {
      out.push_back(*c);
    } else {
      r.Error(e, key, "\"" + s->get() + "\": " + why);
    }
  });
  if (out.empty() && n->as_array() != nullptr && n->as_array()->empty()) {
    r.Error(*n, key, "expected at least one address; omit the key to match any address");
  }
}

void ReadMatch(Loader& l, const toml::table& t, const std::string& path, MatchSpec& m) {
  TableReader r(l, t, path);
  static constexpr std::array<std::pair<std::string_view, L3Type>, 2> kFamilies = {
      {{"ipv4", L3Type::kIpv4}, {"ipv6", L3Type::kIpv6}}};
  r.Choice("family", kFamilies, &m.family);
  if (const toml::node* n = r.Find("proto")) {
    ForEachItem(*n, [&](const toml::node& e) {
      if (const auto* i = e.as_integer(); i != nullptr && i->get() >= 0 && i->get() <= 255) {
        m.protos.push_back(static_cast<uint8_t>(i->get()));
      } else if (const auto* s = e.as_string(); s != nullptr && ProtoByName(s->get())) {
        m.protos.push_back(*ProtoByName(s->get()));
      } else {
        r.Error(e, "proto",
                "expected a protocol number 0..255 or a name (tcp, udp, icmp, icmp6, sctp, udplite, gre, "
                "esp, ah, igmp), got " +
                    (e.as_string() ? "\"" + e.as_string()->get() + "\"" : std::string(TypeName(e))));
      }
    });
    std::sort(m.protos.begin(), m.protos.end());
    m.protos.erase(std::unique(m.protos.begin(), m.protos.end()), m.protos.end());
  }
  ReadCidrs(r, "src", m.src);
  ReadCidrs(r, "dst", m.dst);
  ReadPorts(r, "src_port", m.src_ports);
  ReadPorts(r, "dst_port", m.dst_ports);
  static constexpr std::array<std::pair<std::string_view, Direction>, 3> kDirections = {
      {{"in", Direction::kIn}, {"out", Direction::kOut}, {"any", Direction::kUnknown}}};
  r.Choice("direction", kDirections, &m.direction);
  for (auto [key, out] : {std::pair{"in_interface", &m.in_interface}, std::pair{"out_interface", &m.out_interface}}) {
    if (r.String(key, out) && (out->empty() || out->size() > kMaxInterfaceName)) {
      r.Error(*r.Find(key), key, "expected an interface name of 1.." + std::to_string(kMaxInterfaceName) +
                                     " characters, got \"" + *out + "\"");
    }
  }
  if (const toml::node* n = r.Find("tcp_flags")) {
    static constexpr std::array<std::pair<std::string_view, uint8_t>, 8> kFlags = {{
        {"fin", 0x01}, {"syn", 0x02}, {"rst", 0x04}, {"psh", 0x08},
        {"ack", 0x10}, {"urg", 0x20}, {"ece", 0x40}, {"cwr", 0x80},
    }};
    const auto* s = n->as_string();
    bool ok = s != nullptr && !s->get().empty();
    if (ok) {
      std::string_view text = s->get();
      while (ok && !text.empty()) {
        const std::size_t comma = text.find(',');
        std::string_view item = Trim(text.substr(0, comma));
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
        const bool negated = !item.empty() && item.front() == '!';
        if (negated) item.remove_prefix(1);
        ok = false;
        for (const auto& [name, bit] : kFlags) {
          if (item == name && (m.tcp_flags.mask & bit) == 0) {
            m.tcp_flags.mask |= bit;
            if (!negated) m.tcp_flags.value |= bit;
            ok = true;
          }
        }
      }
    }
    if (!ok) {
      r.Error(*n, "tcp_flags",
              "expected a comma-separated list of fin, syn, rst, psh, ack, urg, ece, cwr, each once and "
              "optionally negated with '!' (like \"syn,!ack\")");
      m.tcp_flags = {};
    } else if (m.protos != std::vector<uint8_t>{kProtoTcp}) {
      r.Error(*n, "tcp_flags", "tcp_flags needs proto = \"tcp\" in the same match");
    }
  }
  if (const toml::node* n = r.Find("dscp")) {
    ForEachItem(*n, [&](const toml::node& e) {
      std::string why;
      if (auto d = ParseDscp(e, &why)) m.dscp |= uint64_t{1} << *d;
      else r.Error(e, "dscp", why);
    });
  }
  if (const toml::node* n = r.Find("length")) {
    std::string why;
    if (auto range = ParseRange<uint32_t>(*n, 20, 65535, &why)) {
      m.length = LengthRange{range->first, range->second};
    } else {
      r.Error(*n, "length", "IP length: " + why);
    }
  }

  // Cross-field checks.
  if ((!m.src_ports.empty() || !m.dst_ports.empty()) && !m.protos.empty() &&
      !std::all_of(m.protos.begin(), m.protos.end(), IsPortProto)) {
    r.Error(*r.Find(!m.src_ports.empty() ? "src_port" : "dst_port"),
            !m.src_ports.empty() ? "src_port" : "dst_port",
            "ports need every proto to carry ports (tcp, udp, sctp, udplite)");
  }
  for (auto [key, list] : {std::pair{"src", &m.src}, std::pair{"dst", &m.dst}}) {
    if (m.family == L3Type::kNone) continue;
    for (const Cidr& c : *list) {
      if (c.addr.family != m.family) {
        r.Error(*r.Find(key), key,
                ToString(c) + " is " + std::string(FamilyName(c.addr.family)) + " but family = \"" +
                    (m.family == L3Type::kIpv4 ? "ipv4" : "ipv6") + "\"");
        break;
      }
    }
  }
  if (!m.src.empty() && !m.dst.empty()) {
    bool common = false;
    for (const Cidr& a : m.src) {
      for (const Cidr& b : m.dst) common |= a.addr.family == b.addr.family;
    }
    if (!common) {
      r.Error(*r.Find("dst"), "dst", "src and dst have no address family in common: the rule can never match");
    }
  }
  if (const uint64_t n = MatchRecordCount(m); n > kMaxRecordsPerRule) {
    r.ErrorAtTable("", "the lists in this match expand into " + std::to_string(n) +
                           " match records (the product of the list lengths); the limit is " +
                           std::to_string(kMaxRecordsPerRule) + ": split the rule");
  }
}

void ReadPortRewrite(TableReader& r, const std::string& side, PortEdit& out) {
  const std::string set_key = side + "_port", map_key = side + "_port_map", shift_key = side + "_port_shift";
  int given = 0;
  if (r.Integer(set_key, 1, 65535, &out.port)) {
    out.kind = PortEdit::Kind::kSet;
    ++given;
  }
  if (const toml::table* map = r.Table(map_key)) {
    ++given;
    out.kind = PortEdit::Kind::kMap;
    for (auto&& [k, v] : *map) {
      uint64_t from = 0;
      const auto* to = v.as_integer();
      if (!ParseUint(k.str(), &from) || from < 1 || from > 65535) {
        r.loader().Error(k.source().begin, r.Path(map_key) + "." + std::string(k.str()),
                         "expected a port number 1..65535 as the key");
      } else if (to == nullptr || to->get() < 1 || to->get() > 65535) {
        r.loader().Error(v.source().begin, r.Path(map_key) + "." + std::string(k.str()),
                         "expected a port number 1..65535 as the new port");
      } else {
        out.map.emplace_back(static_cast<uint16_t>(from), static_cast<uint16_t>(to->get()));
      }
    }
    std::sort(out.map.begin(), out.map.end());
    for (std::size_t i = 1; i < out.map.size(); ++i) {
      if (out.map[i].first == out.map[i - 1].first) {
        r.Error(*r.Find(map_key), map_key, "port " + std::to_string(out.map[i].first) + " is mapped twice");
      }
    }
    if (map->empty()) r.Error(*r.Find(map_key), map_key, "expected at least one \"from\" = to pair");
  }
  if (const toml::table* shift = r.Table(shift_key)) {
    ++given;
    out.kind = PortEdit::Kind::kShift;
    TableReader sr(r.loader(), *shift, r.Path(shift_key));
    std::string why;
    const toml::node* from = sr.Find("from");
    if (from == nullptr) {
      sr.ErrorAtTable("from", "missing; expected from = \"lo-hi\", the ports to shift");
    } else if (auto range = ParseRange<uint16_t>(*from, 1, 65535, &why)) {
      out.from = {range->first, range->second};
    } else {
      sr.Error(*from, "from", why);
    }
    if (!sr.Integer("to", 1, 65535, &out.to) && sr.Find("to") == nullptr) {
      sr.ErrorAtTable("to", "missing; expected to = the port that `from`'s first port maps to");
    } else if (uint32_t{out.to} + out.from.size() - 1 > 65535) {
      sr.Error(*sr.Find("to"), "to",
               "the shifted range " + std::to_string(out.to) + ".." +
                   std::to_string(uint32_t{out.to} + out.from.size() - 1) + " runs past 65535");
    }
  }
  if (given > 1) {
    r.ErrorAtTable(set_key, "give only one of " + set_key + ", " + map_key + " and " + shift_key);
  }
}

void ReadAddrRewrite(TableReader& r, const std::string& side, L3Type family, AddressEdit& out) {
  const std::string set_key = side + "_addr", map_key = side + "_prefix_map";
  auto check_family = [&](const toml::node& at, std::string_view key, L3Type f) {
    if (family != f) {
      r.Error(at, key,
              std::string(FamilyName(f)) + " rewrite needs a rule that matches only " +
                  std::string(FamilyName(f)) + " (set match.family or give src/dst of that family)");
    }
  };
  std::string text;
  if (r.String(set_key, &text)) {
    if (auto a = ParseIpAddr(text)) {
      out.kind = AddressEdit::Kind::kSet;
      out.addr = *a;
      check_family(*r.Find(set_key), set_key, a->family);
    } else {
      r.Error(*r.Find(set_key), set_key, "expected an IPv4 or IPv6 address, got \"" + text + "\"");
    }
  }
  if (const toml::table* map = r.Table(map_key)) {
    if (out.kind != AddressEdit::Kind::kNone) {
      r.Error(*r.Find(map_key), map_key, "give only one of " + set_key + " and " + map_key);
    }
    TableReader mr(r.loader(), *map, r.Path(map_key));
    std::optional<Cidr> from, to;
    for (auto [key, slot] : {std::pair{"from", &from}, std::pair{"to", &to}}) {
      std::string s, why;
      if (!mr.String(key, &s)) {
        if (mr.Find(key) == nullptr) mr.ErrorAtTable(key, "missing; expected a CIDR string");
        continue;
      }
      *slot = ParseCidr(s, &why);
      if (!*slot) mr.Error(*mr.Find(key), key, "\"" + s + "\": " + why);
    }
    if (from && to) {
      if (from->addr.family != to->addr.family || from->len != to->len) {
        mr.Error(*mr.Find("to"), "to",
                 ToString(*to) + " must have the family and prefix length of from = " + ToString(*from));
      } else {
        out.kind = AddressEdit::Kind::kPrefixMap;
        out.from = *from;
        out.to = *to;
        check_family(*r.Find(map_key), map_key, from->addr.family);
      }
    }
  }
}

void ReadMark(TableReader& r, const NfqueueIoConfig& guard, MarkSpec& out, bool required) {
  out.mask = ~guard.verdict_mask;
  const bool has_value = r.Integer("mark", 0, 0xffffffff, &out.value);
  if (!has_value && required && r.Find("mark") == nullptr) {
    r.ErrorAtTable("mark", "missing; action \"mark\" needs mark = <0..0xffffffff>");
  }
  const bool has_mask = r.Integer("mark_mask", 1, 0xffffffff, &out.mask);
  const toml::node* at = r.Find(has_mask ? "mark_mask" : "mark");
  if (at == nullptr) return;
  if ((out.mask & guard.verdict_mask) != 0) {
    r.Error(*at, has_mask ? "mark_mask" : "mark",
            "mark_mask " + Hex(out.mask) + " overlaps the loop-guard bits " + Hex(guard.verdict_mask) +
                " (io.nfqueue.verdict_mask); a rule may not change them");
  } else if ((out.value & guard.verdict_mask) != 0) {
    r.Error(*r.Find("mark"), "mark",
            "mark " + Hex(out.value) + " collides with the loop-guard bits " + Hex(guard.verdict_mask) +
                " (io.nfqueue.verdict_mask)");
  } else if ((out.value & ~out.mask) != 0) {
    r.Error(*r.Find("mark"), "mark", "mark " + Hex(out.value) + " has bits outside mark_mask " + Hex(out.mask));
  }
}

bool ProtosWithin(const std::vector<uint8_t>& protos, std::initializer_list<uint8_t> allowed) {
  return !protos.empty() && std::all_of(protos.begin(), protos.end(), [&](uint8_t p) {
    return std::find(allowed.begin(), allowed.end(), p) != allowed.end();
  });
}

void ReadRewrite(Loader& l, const toml::table& t, const std::string& path, const Config& cfg, RuleConfig& rule) {
  TableReader r(l, t, path);
  RewriteSpec& w = rule.rewrite;
  const L3Type family = RuleFamily(rule.match);
  ReadAddrRewrite(r, "src", family, w.src_addr);
  ReadAddrRewrite(r, "dst", family, w.dst_addr);
  ReadPortRewrite(r, "src", w.src_port);
  ReadPortRewrite(r, "dst", w.dst_port);
  for (const char* key : {"src_port", "src_port_map", "src_port_shift", "dst_port", "dst_port_map", "dst_port_shift"}) {
    const toml::node* n = t.get(key);
    if (n != nullptr && !ProtosWithin(rule.match.protos, {kProtoTcp, kProtoUdp})) {
      r.Error(*n, key, "port rewrites need match.proto limited to tcp and udp");
      break;
    }
  }
  uint8_t ttl = 0;
  if (r.Integer("ttl", 1, 255, &ttl)) w.ttl = ttl;
  r.Boolean("ttl_decrement", &w.ttl_decrement);
  if (w.ttl && w.ttl_decrement) {
    r.Error(*r.Find("ttl_decrement"), "ttl_decrement", "give only one of ttl and ttl_decrement");
  }
  if (const toml::node* n = r.Find("dscp")) {
    std::string why;
    if (auto d = ParseDscp(*n, &why)) w.dscp = *d;
    else r.Error(*n, "dscp", why);
  }
  uint16_t mss = 0;
  if (r.Integer("mss_clamp", 88, 65495, &mss)) {
    w.mss_clamp = mss;
    const auto& protos = rule.match.protos;
    if (rule.action == RuleAction::kTranslateSourcePort) {
      // A translation's edits apply to all its flows; the clamp acts on the TCP SYNs among them.
      if (std::find(protos.begin(), protos.end(), kProtoTcp) == protos.end()) {
        r.Error(*r.Find("mss_clamp"), "mss_clamp", "mss_clamp needs match.proto to include \"tcp\"");
      }
    } else if (protos != std::vector<uint8_t>{kProtoTcp}) {
      r.Error(*r.Find("mss_clamp"), "mss_clamp", "mss_clamp needs match.proto = \"tcp\"");
    }
  }
  if (t.get("mark") != nullptr || t.get("mark_mask") != nullptr) {
    MarkSpec mark;
    ReadMark(r, cfg.io.nfqueue, mark, false);
    w.mark = mark;
  } else {
    r.Find("mark");
    r.Find("mark_mask");
  }
  r.Boolean("full_checksum", &w.full_checksum);
  const bool any_edit = w.src_addr.kind != AddressEdit::Kind::kNone || w.dst_addr.kind != AddressEdit::Kind::kNone ||
                        w.src_port.kind != PortEdit::Kind::kNone || w.dst_port.kind != PortEdit::Kind::kNone ||
                        w.ttl || w.ttl_decrement || w.dscp || w.mss_clamp || w.mark;
  if (!any_edit && t.empty()) {
    r.ErrorAtTable("", "a rewrite needs at least one edit (addresses, ports, ttl, dscp, mss_clamp, mark)");
  }
}

// The translate checks that depend on the shard count; `shards_from` says where the count came
// from ("pipeline.shards", or a command line's "--shards"). Empty: no problem.
std::string TranslatePortsProblem(const TranslateSpec& x, uint32_t shards, std::string_view shards_from) {
  if (x.ports.size() >= shards) return "";
  return "the range has " + std::to_string(x.ports.size()) + " ports but " + std::string(shards_from) + " = " +
         std::to_string(shards) + "; each shard needs at least one";
}
std::string TranslateAddressProblem(uint32_t shards, std::string_view shards_from) {
  // Replies come back addressed to `address`, not to the inside host: kernel queues (NFQUEUE
  // balances by address, divert shards by inside host) and the graph's flow-hash dispatch
  // would all hand them to another shard than the one holding the translation.
  if (shards <= 1) return "";
  return "translating the source address needs every reply on the shard that made the translation, "
         "which no backend's steering guarantees with " +
         std::string(shards_from) + " > 1; use one shard or translate ports only (omit address)";
}

// The [rule.rewrite] keys a translate-source-port rule may carry.
bool IsTranslationEdit(std::string_view key) {
  for (std::string_view k : {"ttl", "ttl_decrement", "dscp", "mss_clamp", "mark", "mark_mask", "full_checksum"}) {
    if (key == k) return true;
  }
  return false;
}

void ReadTranslate(Loader& l, const toml::table& t, const std::string& path, const Config& cfg, RuleConfig& rule) {
  TableReader r(l, t, path);
  TranslateSpec& x = rule.translate;
  const toml::node* ports = r.Find("ports");
  if (ports == nullptr) {
    r.ErrorAtTable("ports", "missing; expected ports = \"lo-hi\", the range translated source ports come from");
  } else {
    std::string why;
    if (auto range = ParseRange<uint16_t>(*ports, 1, 65535, &why)) {
      x.ports = {range->first, range->second};
      if (std::string why_not = TranslatePortsProblem(x, cfg.pipeline.shards, "pipeline.shards"); !why_not.empty()) {
        r.Error(*ports, "ports", why_not);
      }
    } else {
      r.Error(*ports, "ports", why);
    }
  }
  std::string text;
  if (r.String("address", &text)) {
    if (auto a = ParseIpAddr(text)) {
      x.address = *a;
      if (RuleFamily(rule.match) != a->family) {
        r.Error(*r.Find("address"), "address",
                std::string(FamilyName(a->family)) +
                    " translation address needs a rule that matches only that family (set match.family)");
      } else if (std::string why_not = TranslateAddressProblem(cfg.pipeline.shards, "pipeline.shards");
                 !why_not.empty()) {
        r.Error(*r.Find("address"), "address", why_not);
      }
    } else {
      r.Error(*r.Find("address"), "address", "expected an IPv4 or IPv6 address, got \"" + text + "\"");
    }
  }
}

void ReadRule(Loader& l, const toml::table& t, std::size_t index, Config& cfg, RuleConfig& rule) {
  const std::string path = "rule[" + std::to_string(index) + "]";
  TableReader r(l, t, path);
  rule.where = {t.source().begin.line, t.source().begin.column};
  if (!r.Integer("number", 1, 65535, &rule.number) && r.Find("number") == nullptr) {
    r.ErrorAtTable("number", "missing; every rule needs number = <1..65535>");
  }
  if (!r.String("name", &rule.name) && r.Find("name") == nullptr) {
    r.ErrorAtTable("name", "missing; every rule needs a name (used in stats)");
  } else if (rule.name.empty() && r.Find("name") != nullptr && r.Find("name")->is_string()) {
    r.Error(*r.Find("name"), "name", "expected a non-empty name");
  }
  static constexpr std::array<std::pair<std::string_view, RuleAction>, 6> kActions = {{
      {"accept", RuleAction::kAccept},
      {"drop", RuleAction::kDrop},
      {"rewrite", RuleAction::kRewrite},
      {"mark", RuleAction::kMark},
      {"count", RuleAction::kCount},
      {"translate-source-port", RuleAction::kTranslateSourcePort},
  }};
  const bool has_action = r.Choice("action", kActions, &rule.action);
  if (!has_action && r.Find("action") == nullptr) {
    r.ErrorAtTable("action", "missing; expected one of \"accept\", \"drop\", \"rewrite\", \"mark\", \"count\", "
                             "\"translate-source-port\"");
  }
  if (const toml::table* m = r.Table("match")) ReadMatch(l, *m, path + ".match", rule.match);

  const toml::table* rewrite = r.Table("rewrite");
  const toml::table* translate = r.Table("translate");
  const bool has_mark = t.get("mark") != nullptr || t.get("mark_mask") != nullptr;
  if (!has_action) {
    r.Find("mark");
    r.Find("mark_mask");
    return;
  }
  if (rule.action == RuleAction::kRewrite) {
    if (rewrite == nullptr) r.ErrorAtTable("rewrite", "missing; action \"rewrite\" needs a [rule.rewrite] table");
    else ReadRewrite(l, *rewrite, path + ".rewrite", cfg, rule);
  } else if (rewrite != nullptr && rule.action == RuleAction::kTranslateSourcePort) {
    // Edits for every packet of the rule's translations, both ways (an MSS clamp on a NAT
    // gateway): the translation itself sets addresses and ports.
    bool only_edits = true;
    for (const auto& [key, node] : *rewrite) {
      if (IsTranslationEdit(key.str())) continue;
      l.Error(node.source().begin, path + ".rewrite." + std::string(key.str()),
              "a translation sets addresses and ports itself; its [rule.rewrite] takes only ttl, ttl_decrement, "
              "dscp, mss_clamp, mark, mark_mask and full_checksum");
      only_edits = false;
    }
    r.Find("rewrite");
    if (only_edits) ReadRewrite(l, *rewrite, path + ".rewrite", cfg, rule);
  } else if (rewrite != nullptr) {
    r.Error(*r.Find("rewrite"), "rewrite", "only valid with action = \"rewrite\" or \"translate-source-port\"");
  }
  if (rule.action == RuleAction::kTranslateSourcePort) {
    if (translate == nullptr) {
      r.ErrorAtTable("translate", "missing; action \"translate-source-port\" needs a [rule.translate] table");
    } else {
      ReadTranslate(l, *translate, path + ".translate", cfg, rule);
    }
    if (!ProtosWithin(rule.match.protos, {kProtoTcp, kProtoUdp, kProtoIcmp, kProtoIcmp6})) {
      l.Error(l.Where(path + ".match.proto", path + ".action"), path + ".match.proto",
              "translate-source-port needs match.proto limited to tcp, udp, icmp and icmp6 (echo)");
    }
  } else if (translate != nullptr) {
    r.Error(*r.Find("translate"), "translate", "only valid with action = \"translate-source-port\"");
  }
  if (rule.action == RuleAction::kMark) {
    ReadMark(r, cfg.io.nfqueue, rule.mark, true);
  } else if (has_mark) {
    r.Error(*t.get(t.get("mark") ? "mark" : "mark_mask"), t.get("mark") ? "mark" : "mark_mask",
            "only valid with action = \"mark\" (a rewrite takes its mark in [rule.rewrite])");
    r.Find("mark");
    r.Find("mark_mask");
  }
}

// Checks across sections and across rules, once every section is read.
void CrossCheck(Loader& l, Config& cfg) {
  const PipelineConfig& p = cfg.pipeline;
  if (cfg.io.backend == Backend::kNfqueue && p.shards != cfg.io.nfqueue.queue_count) {
    l.Error(l.Where("pipeline.shards", "io.nfqueue.queue_count"), "pipeline.shards",
            "expected pipeline.shards = io.nfqueue.queue_count (" + std::to_string(cfg.io.nfqueue.queue_count) +
                "): one shard per queue, got " + std::to_string(p.shards));
  }
  if (cfg.io.backend == Backend::kDivert && p.shards != cfg.io.divert.ports.size()) {
    l.Error(l.Where("pipeline.shards", "io.divert.ports"), "pipeline.shards",
            "expected pipeline.shards = the number of io.divert.ports (" +
                std::to_string(cfg.io.divert.ports.size()) + "): one divert socket per shard, got " +
                std::to_string(p.shards));
  }
  const uint64_t need = uint64_t{p.shards} * p.batches_per_shard * p.batch_size;
  if (p.pool.small_buffers < need) {
    l.Error(l.Where("pipeline.pool.small_buffers", "pipeline"), "pipeline.pool.small_buffers",
            "expected at least shards * batches_per_shard * batch_size = " + std::to_string(need) +
                " buffers so every batch in flight can fill, got " + std::to_string(p.pool.small_buffers));
  }

  std::map<uint32_t, std::size_t> numbers;
  std::map<std::string, std::size_t> names;
  uint32_t last_number = 0;
  for (std::size_t i = 0; i < cfg.rules.size(); ++i) {
    const RuleConfig& r = cfg.rules[i];
    const std::string path = "rule[" + std::to_string(i) + "]";
    if (r.number != 0) {
      if (auto [it, fresh] = numbers.emplace(r.number, i); !fresh) {
        l.Error(l.Where(path + ".number"), path + ".number",
                "rule number " + std::to_string(r.number) + " is already used by rule[" + std::to_string(it->second) +
                    "]; expected unique numbers");
      } else if (r.number <= last_number) {
        l.Error(l.Where(path + ".number"), path + ".number",
                "rule number " + std::to_string(r.number) + " is not above the previous rule's " +
                    std::to_string(last_number) + "; expected numbers increasing in file order (first match wins)");
      }
      last_number = std::max(last_number, r.number);
    }
    if (!r.name.empty()) {
      if (auto [it, fresh] = names.emplace(r.name, i); !fresh) {
        l.Error(l.Where(path + ".name"), path + ".name",
                "rule name \"" + r.name + "\" is already used by rule[" + std::to_string(it->second) +
                    "]; expected unique names");
      }
    }
  }

  // Translation ranges: each shard owns the ports p with p % shards == shard, so two ranges that
  // overlap could hand one (address, protocol, port) to two flows on different shards.
  for (std::size_t i = 0; i < cfg.rules.size(); ++i) {
    const RuleConfig& a = cfg.rules[i];
    if (a.action != RuleAction::kTranslateSourcePort || a.translate.ports.lo == 0) continue;
    for (std::size_t j = 0; j < i; ++j) {
      const RuleConfig& b = cfg.rules[j];
      if (b.action != RuleAction::kTranslateSourcePort || b.translate.ports.lo == 0) continue;
      const bool disjoint_addresses = a.translate.address && b.translate.address && *a.translate.address != *b.translate.address;
      if (disjoint_addresses) continue;
      if (a.translate.ports.lo <= b.translate.ports.hi && b.translate.ports.lo <= a.translate.ports.hi) {
        const std::string path = "rule[" + std::to_string(i) + "].translate.ports";
        l.Error(l.Where(path), path,
                "ports " + std::to_string(a.translate.ports.lo) + "-" + std::to_string(a.translate.ports.hi) +
                    " overlap rule[" + std::to_string(j) + "] (number " + std::to_string(b.number) + ")'s " +
                    std::to_string(b.translate.ports.lo) + "-" + std::to_string(b.translate.ports.hi) +
                    " for the same translated address; expected disjoint ranges");
      }
    }
  }
}

}  // namespace

std::string ConfigError::ToString() const {
  std::string s = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  if (!key.empty()) s += key + ": ";
  return s + message;
}

Status ConfigLoad::ToStatus() const {
  if (errors.empty()) return Status::Ok();
  std::string m;
  for (const ConfigError& e : errors) m += (m.empty() ? "" : "\n") + e.ToString();
  return InvalidArgument(std::move(m));
}

std::string_view Name(Backend b) noexcept {
  switch (b) {
    case Backend::kPcap: return "pcap";
    case Backend::kNfqueue: return "nfqueue";
    case Backend::kDivert: return "divert";
  }
  return "?";
}

std::string_view Name(RuleAction a) noexcept {
  switch (a) {
    case RuleAction::kAccept: return "accept";
    case RuleAction::kDrop: return "drop";
    case RuleAction::kRewrite: return "rewrite";
    case RuleAction::kMark: return "mark";
    case RuleAction::kCount: return "count";
    case RuleAction::kTranslateSourcePort: return "translate-source-port";
  }
  return "?";
}

ConfigLoad LoadConfigText(std::string_view text, std::string source_name) {
  ConfigLoad out;
  Loader l(source_name);
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    // toml++ names the key in quotes for redefinitions ("cannot redefine existing table 'io'").
    std::string key;
    const std::string_view d = e.description();
    if (const std::size_t q = d.find('\''); q != std::string_view::npos) {
      if (const std::size_t q2 = d.find('\'', q + 1); q2 != std::string_view::npos) key = d.substr(q + 1, q2 - q - 1);
    }
    l.Error(e.source().begin, key, "TOML syntax: " + std::string(d));
    out.errors = l.TakeErrors();
    return out;
  }

  Config cfg;
  cfg.source = source_name;
  {
    TableReader top(l, root, "");
    // [io], [pipeline] and [nat] are read before the rules: rule checks use them.
    if (const toml::table* t = top.Table("io")) ReadIo(l, *t, cfg.io);
    if (const toml::table* t = top.Table("pipeline")) ReadPipeline(l, *t, cfg.pipeline);
    if (const toml::table* t = top.Table("parse")) ReadParse(l, *t, cfg.parse);
    if (const toml::table* t = top.Table("nat")) ReadNat(l, *t, cfg.nat);
    if (const toml::table* t = top.Table("classify")) ReadClassify(l, *t, cfg.classify);
    if (const toml::node* rules = top.Find("rule")) {
      const toml::array* a = rules->as_array();
      if (a == nullptr || !a->is_array_of_tables()) {
        top.Error(*rules, "rule", "expected [[rule]] tables (an array of tables), got " + std::string(TypeName(*rules)));
      } else {
        cfg.rules.resize(a->size());
        for (std::size_t i = 0; i < a->size(); ++i) ReadRule(l, *a->get(i)->as_table(), i, cfg, cfg.rules[i]);
      }
    }
  }
  CrossCheck(l, cfg);

  out.errors = l.TakeErrors();
  std::stable_sort(out.errors.begin(), out.errors.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  if (out.errors.empty()) out.config = std::move(cfg);
  return out;
}

ConfigLoad LoadConfigFile(const std::string& path) {
  // POSIX I/O, so that a failed read is seen: an ifstream reads a directory as an empty file
  // (a valid config with no rules). A pipe (`-c <(…)`) is read like a file.
  auto error = [&](const std::string& what) {
    ConfigLoad out;
    out.errors.push_back({path, 0, 0, "", what});
    return out;
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error(std::string("cannot open the file for reading: ") + std::strerror(errno));
  std::string text;
  char buf[65536];
  struct stat st {};
  int failed = ::fstat(fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  while (failed == 0) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      failed = errno;
    }
  }
  ::close(fd);
  if (failed != 0) return error(std::string("cannot read the file: ") + std::strerror(failed));
  return LoadConfigText(text, path);
}

std::vector<ConfigError> CheckRulesForShards(const Config& config, uint32_t shards, std::string_view shards_from) {
  std::vector<ConfigError> errors;
  for (std::size_t i = 0; i < config.rules.size(); ++i) {
    const RuleConfig& rule = config.rules[i];
    if (rule.action != RuleAction::kTranslateSourcePort) continue;
    const std::string key = "rule[" + std::to_string(i) + "].translate.";
    if (std::string why = TranslatePortsProblem(rule.translate, shards, shards_from); !why.empty()) {
      errors.push_back({config.source, rule.where.line, rule.where.column, key + "ports", why});
    }
    if (!rule.translate.address) continue;
    if (std::string why = TranslateAddressProblem(shards, shards_from); !why.empty()) {
      errors.push_back({config.source, rule.where.line, rule.where.column, key + "address", why});
    }
  }
  return errors;
}

std::vector<ConfigError> CheckCpusForThisHost(const Config& config, std::span<const uint32_t> allowed) {
  std::vector<ConfigError> errors;
  const PipelineConfig& p = config.pipeline;
  for (std::size_t k = 0; k < p.cpus.size(); ++k) {
    if (std::find(allowed.begin(), allowed.end(), p.cpus[k]) != allowed.end()) continue;
    const SourceLocation at = k < p.cpus_where.size() ? p.cpus_where[k] : SourceLocation{};
    const std::string here = CpuList({allowed.begin(), allowed.end()});
    errors.push_back({config.source, at.line, at.column, "pipeline.cpus",
                      "CPU " + std::to_string(p.cpus[k]) + " is not one this process may run on here (" + here + ")"});
  }
  return errors;
}

std::string DirectionNote(const Config& config) {
  if (config.io.backend != Backend::kNfqueue || !config.io.nfqueue.outside_interfaces.empty()) return "";
  std::string names;
  std::size_t n = 0;
  for (const RuleConfig& r : config.rules) {
    if (r.match.direction == Direction::kUnknown) continue;
    if (n++ < 3) names += (names.empty() ? "" : ", ") + std::to_string(r.number);
  }
  if (n == 0) return "";
  return std::to_string(n) + (n == 1 ? " rule matches" : " rules match") + " on direction (rule " + names +
         (n > 3 ? ", ..." : "") +
         "): on the FORWARD hook a packet has a direction only through io.nfqueue.outside_interfaces, "
         "which is empty, so " + (n == 1 ? "it matches" : "they match") + " no forwarded packet";
}

ReloadCheck CompareForReload(const Config& current, const Config& next) {
  ReloadCheck r;
  const NfqueueIoConfig& a = current.io.nfqueue;
  const NfqueueIoConfig& b = next.io.nfqueue;
  r.guard_changed = current.io.backend == Backend::kNfqueue &&
                    (a.verdict_mark != b.verdict_mark || a.verdict_mask != b.verdict_mask);
  if (!(current.io == next.io)) r.start_only.push_back("io");
  if (!(current.pipeline == next.pipeline)) r.start_only.push_back("pipeline");
  if (!(current.parse == next.parse)) r.start_only.push_back("parse");
  if (!(current.nat == next.nat)) r.start_only.push_back("nat");
  return r;
}

}  // namespace sluice
