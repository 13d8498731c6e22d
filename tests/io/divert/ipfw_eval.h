// A small interpreter for the subset of ipfw(8) that sluice's generated rules use, written
// from the manual page and sbin/ipfw's parser, independently of the generator: it reads the
// rule text and answers, for a packet, what ipfw would do with it — first match in rule-number
// order, disabled sets skipped, `count` continuing, `divert` ending the search, and resumption
// after a rule number for packets written back by a divert socket.
//
// Subset: add NUM [set N] {divert PORT | count | allow | deny | skipto NUM} {ip|all|ip4|ip6}
// from [not] ADDRS to [not] ADDRS [options], where ADDRS is `any` or a comma list of IPv4
// `a.b.c.d[:mask|/len]` or IPv6 `addr[/mask|/len]`, and options are in, out, via/recv/xmit IF,
// diverted, ipversion N, each optionally after `not`; `delete set N`; `set enable/disable N…`.
// Anything else is refused with a message, as are address lists longer than ipfw accepts.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice::testing {

struct IpfwPacket {
  bool v6 = false;
  std::array<uint8_t, 16> src{};  // network order; IPv4 in the first 4 bytes
  std::array<uint8_t, 16> dst{};
  bool out = false;     // on the output path (else input)
  std::string recv_if;  // receiving interface, "" for none (locally generated)
  std::string xmit_if;  // transmitting interface, output path only
  bool diverted = false;  // written back by a divert socket
};

struct IpfwVerdict {
  enum Kind { kDivert, kAllow, kDeny, kDefault } kind = kDefault;
  uint16_t port = 0;       // for kDivert
  uint32_t rule = 65535;   // the rule number that decided
};

class IpfwSubset {
 public:
  // Runs every line of a rules file (comments and blank lines skipped).
  bool Load(const std::string& text, std::string* error);
  bool Command(const std::string& line, std::string* error);
  // What ipfw does with `p`, starting after rule `resume_after` (0: from the top).
  IpfwVerdict Evaluate(const IpfwPacket& p, uint32_t resume_after = 0);
  // Matches of the `count` rules of a set so far.
  uint64_t CountHits(uint32_t set) const;
  std::size_t size() const { return rules_.size(); }
  bool enabled(uint32_t set) const { return enabled_[set]; }

 private:
  struct Entry {
    bool v6 = false;
    std::array<uint8_t, 16> addr{};
    std::array<uint8_t, 16> mask{};
  };
  struct AddrSet {
    bool any = true;
    bool negate = false;
    bool v6 = false;
    std::vector<Entry> entries;
  };
  struct Option {
    enum Kind { kIn, kOut, kVia, kRecv, kXmit, kDiverted, kIpversion } kind;
    bool negate = false;
    std::string name;
    int number = 0;
  };
  enum class Action { kDivert, kCount, kAllow, kDeny, kSkipto };
  struct Rule {
    uint32_t number = 0;
    uint32_t set = 0;
    uint64_t seq = 0;
    Action action = Action::kAllow;
    uint32_t arg = 0;
    int proto_version = 0;  // 0 any, 4 or 6
    AddrSet src, dst;
    std::vector<Option> options;
    uint64_t hits = 0;
  };
  bool Add(const std::vector<std::string>& t, std::size_t i, std::string* error);
  static bool ParseAddrs(const std::string& s, AddrSet* out, std::string* error);
  static bool Matches(const AddrSet& a, bool v6, const std::array<uint8_t, 16>& addr);
  static bool Matches(const Option& o, const IpfwPacket& p);

  std::vector<Rule> rules_;  // sorted by (number, seq)
  std::array<bool, 32> enabled_ = [] {
    std::array<bool, 32> a{};
    a.fill(true);
    return a;
  }();
  uint64_t next_seq_ = 0;
};

}  // namespace sluice::testing
