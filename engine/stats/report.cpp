#include "engine/stats/report.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace sluice {
namespace {

constexpr std::pair<const char*, double> kQuantiles[] = {
    {"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"p99.9", 0.999}};

std::vector<std::pair<DropReason, uint64_t>> NonZero(const ReasonCounters& c) {
  std::vector<std::pair<DropReason, uint64_t>> out;
  for (std::size_t r = 0; r < c.size(); ++r) {
    if (uint64_t v = c[r].Load()) out.emplace_back(static_cast<DropReason>(r), v);
  }
  return out;
}

uint64_t Sum(const std::vector<std::pair<DropReason, uint64_t>>& v) {
  uint64_t n = 0;
  for (const auto& [r, c] : v) n += c;
  return n;
}

nlohmann::json ReasonsJson(const std::vector<std::pair<DropReason, uint64_t>>& v) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [r, c] : v) j[std::string(Name(r))] = c;
  return j;
}

// Prometheus label values escape backslash, double quote and newline.
std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void Metric(std::string& out, const std::string& name, const std::string& type, const std::string& help) {
  out += "# HELP sluice_" + name + " " + help + "\n# TYPE sluice_" + name + " " + type + "\n";
}

void Sample(std::string& out, const std::string& name, const std::string& labels, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  out += "sluice_" + name + (labels.empty() ? "" : "{" + labels + "}") + " " + buf + "\n";
}

}  // namespace

uint64_t StatsReport::DroppedTotal() const { return Sum(dropped); }
uint64_t StatsReport::SkippedTotal() const { return Sum(skipped); }

void AddRun(const RunStats& run, StatsReport& r) {
  r.packets_in += run.packets_in.Load();
  r.bytes_in += run.bytes_in.Load();
  r.bytes_out += run.bytes_out.Load();
  r.accepted += run.accepted.Load();
  r.rewritten += run.rewritten.Load();
  for (auto* side : {&r.dropped, &r.skipped}) {
    const ReasonCounters& from = side == &r.dropped ? run.dropped : run.skipped;
    for (const auto& [reason, n] : NonZero(from)) {
      auto it = std::find_if(side->begin(), side->end(), [want = reason](const auto& e) { return e.first == want; });
      if (it == side->end()) {
        side->emplace_back(reason, n);
      } else {
        it->second += n;
      }
    }
    std::sort(side->begin(), side->end());
  }
  r.latency.Merge(run.latency_ns.Read());
}

void AddStage(const std::string& stage, uint32_t shard, const StageStats& s, StatsReport& r) {
  r.stages.push_back({stage, shard, s.calls.Load(), s.packets.Load(), s.cycles.Load(), NonZero(s.ended)});
}

std::string ToJson(const StatsReport& r) {
  nlohmann::json j;
  for (const auto& [k, v] : r.conditions) j["conditions"][k] = v;
  j["elapsed_s"] = r.elapsed_s;
  j["packets"] = {{"in", r.packets_in},           {"accepted", r.accepted},
                  {"rewritten", r.rewritten},     {"dropped", r.DroppedTotal()},
                  {"skipped", r.SkippedTotal()},  {"balanced", r.Balanced()}};
  j["bytes"] = {{"in", r.bytes_in}, {"out", r.bytes_out}};
  j["dropped"] = ReasonsJson(r.dropped);
  j["skipped"] = ReasonsJson(r.skipped);
  const double secs = r.elapsed_s > 0 ? r.elapsed_s : 1e-9;
  j["throughput"] = {{"packets_per_s", static_cast<double>(r.packets_in) / secs},
                     {"bits_per_s", static_cast<double>(r.bytes_in) * 8 / secs}};
  nlohmann::json lat = {{"count", r.latency.total}, {"sum_us", r.latency.sum_us}, {"max", r.latency.max}};
  for (const auto& [name, q] : kQuantiles) lat[name] = r.latency.Percentile(q);
  // The non-empty buckets as [upper bound ns, count], enough to redraw the distribution.
  nlohmann::json buckets = nlohmann::json::array();
  for (uint32_t b = 0; b < r.latency.counts.size(); ++b) {
    if (r.latency.counts[b] != 0) buckets.push_back({LatencyHistogram::UpperBound(b), r.latency.counts[b]});
  }
  lat["buckets"] = buckets;
  j["latency_ns"] = lat;
  j["stages"] = nlohmann::json::array();
  for (const StageReport& s : r.stages) {
    j["stages"].push_back({{"stage", s.stage},
                           {"shard", s.shard},
                           {"calls", s.calls},
                           {"packets", s.packets},
                           {"cycles", s.cycles},
                           {"cycles_per_packet", s.packets ? static_cast<double>(s.cycles) / static_cast<double>(s.packets) : 0.0},
                           {"ended", ReasonsJson(s.ended)}});
  }
  j["rules"] = nlohmann::json::array();
  for (const RuleReport& rule : r.rules) {
    j["rules"].push_back({{"number", rule.number}, {"name", rule.name}, {"action", rule.action},
                          {"packets", rule.packets}, {"bytes", rule.bytes}});
  }
  j["counters"] = nlohmann::json::array();
  for (const NamedCounter& c : r.counters) {
    nlohmann::json labels = nlohmann::json::object();
    for (const auto& [k, v] : c.labels) labels[k] = v;
    j["counters"].push_back({{"name", c.name}, {"value", c.value}, {"labels", labels}});
  }
  return j.dump(2) + "\n";
}

std::string ToPrometheus(const StatsReport& r) {
  std::string out;
  Metric(out, "packets_total", "counter", "Packets by what sluice did with them.");
  Sample(out, "packets_total", "verdict=\"accepted\"", static_cast<double>(r.accepted));
  Sample(out, "packets_total", "verdict=\"rewritten\"", static_cast<double>(r.rewritten));
  Sample(out, "packets_total", "verdict=\"dropped\"", static_cast<double>(r.DroppedTotal()));
  Sample(out, "packets_total", "verdict=\"skipped\"", static_cast<double>(r.SkippedTotal()));
  Metric(out, "packets_in_total", "counter", "Packets received.");
  Sample(out, "packets_in_total", "", static_cast<double>(r.packets_in));
  Metric(out, "bytes_total", "counter", "Bytes received and sent.");
  Sample(out, "bytes_total", "direction=\"in\"", static_cast<double>(r.bytes_in));
  Sample(out, "bytes_total", "direction=\"out\"", static_cast<double>(r.bytes_out));
  Metric(out, "dropped_total", "counter", "Packets dropped, by reason.");
  for (const auto& [reason, n] : r.dropped) {
    Sample(out, "dropped_total", "reason=\"" + std::string(Name(reason)) + "\"", static_cast<double>(n));
  }
  Metric(out, "skipped_total", "counter", "Packets passed unmodified without classification, by reason.");
  for (const auto& [reason, n] : r.skipped) {
    Sample(out, "skipped_total", "reason=\"" + std::string(Name(reason)) + "\"", static_cast<double>(n));
  }
  Metric(out, "latency_seconds", "summary", "Per-packet latency from receive to verdict.");
  for (const auto& [name, q] : kQuantiles) {
    char label[32];
    std::snprintf(label, sizeof label, "quantile=\"%g\"", q);
    Sample(out, "latency_seconds", label, static_cast<double>(r.latency.Percentile(q)) / 1e9);
  }
  Sample(out, "latency_seconds_sum", "", static_cast<double>(r.latency.sum_us) / 1e6);
  Sample(out, "latency_seconds_count", "", static_cast<double>(r.latency.total));
  Metric(out, "stage_calls_total", "counter", "Batches processed, per stage and shard.");
  for (const StageReport& s : r.stages) {
    Sample(out, "stage_calls_total", "stage=\"" + s.stage + "\",shard=\"" + std::to_string(s.shard) + "\"",
           static_cast<double>(s.calls));
  }
  Metric(out, "stage_packets_total", "counter", "Packets processed, per stage and shard.");
  for (const StageReport& s : r.stages) {
    Sample(out, "stage_packets_total", "stage=\"" + s.stage + "\",shard=\"" + std::to_string(s.shard) + "\"",
           static_cast<double>(s.packets));
  }
  Metric(out, "stage_cycles_total", "counter", "CPU cycles inside the stage, per stage and shard.");
  for (const StageReport& s : r.stages) {
    Sample(out, "stage_cycles_total", "stage=\"" + s.stage + "\",shard=\"" + std::to_string(s.shard) + "\"",
           static_cast<double>(s.cycles));
  }
  Metric(out, "stage_ended_total", "counter", "Packets a stage dropped or skipped, by reason.");
  for (const StageReport& s : r.stages) {
    for (const auto& [reason, n] : s.ended) {
      Sample(out, "stage_ended_total",
             "stage=\"" + s.stage + "\",shard=\"" + std::to_string(s.shard) + "\",reason=\"" +
                 std::string(Name(reason)) + "\"",
             static_cast<double>(n));
    }
  }
  Metric(out, "rule_packets_total", "counter", "Packets matched, per rule.");
  for (const RuleReport& rule : r.rules) {
    Sample(out, "rule_packets_total",
           "rule=\"" + std::to_string(rule.number) + "\",name=\"" + Escape(rule.name) + "\"",
           static_cast<double>(rule.packets));
  }
  Metric(out, "rule_bytes_total", "counter", "Bytes matched, per rule.");
  for (const RuleReport& rule : r.rules) {
    Sample(out, "rule_bytes_total", "rule=\"" + std::to_string(rule.number) + "\",name=\"" + Escape(rule.name) + "\"",
           static_cast<double>(rule.bytes));
  }
  // Every sample of a metric goes under its one HELP and TYPE, together: the text format
  // forbids a second header or a sample away from its group, and a scraper that meets either
  // rejects the whole file. Counters arrive per queue or port (all of queue 0's, then queue
  // 1's), so they are grouped by name here, in the order names first appear.
  // A counter's name ends in _total, as the text format's conventions ask; JSON keeps the
  // names as defined. Grouped by the name exported, so that X and X_total cannot become two
  // groups of one name.
  // Each exported name once, with its counters' indexes in report order (one pass: a daemon
  // with many queues has thousands of counters).
  std::vector<std::string> names;
  std::unordered_map<std::string, std::vector<std::size_t>> members;
  for (std::size_t i = 0; i < r.counters.size(); ++i) {
    const NamedCounter& c = r.counters[i];
    std::string exported = c.gauge || c.name.ends_with("_total") ? c.name : c.name + "_total";
    auto [at, added] = members.try_emplace(std::move(exported));
    if (added) names.push_back(at->first);
    at->second.push_back(i);
  }
  for (const std::string& exported : names) {
    const std::vector<std::size_t>& group = members.at(exported);
    const NamedCounter& first = r.counters[group.front()];
    Metric(out, exported, first.gauge ? "gauge" : "counter", first.help);
    for (const std::size_t j : group) {
      const NamedCounter& c = r.counters[j];
      std::string labels;
      for (const auto& [k, v] : c.labels) labels += (labels.empty() ? "" : ",") + k + "=\"" + Escape(v) + "\"";
      Sample(out, exported, labels, static_cast<double>(c.value));
    }
  }
  return out;
}

std::string ToText(const StatsReport& r) {
  std::string out;
  char line[512];
  auto add = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof line, fmt, args...);
    out += line;
  };
  const double secs = r.elapsed_s > 0 ? r.elapsed_s : 1e-9;
  add("packets     in %" PRIu64 "  accepted %" PRIu64 "  rewritten %" PRIu64 "  dropped %" PRIu64
      "  skipped %" PRIu64 "  (%s)\n",
      r.packets_in, r.accepted, r.rewritten, r.DroppedTotal(), r.SkippedTotal(),
      r.Balanced() ? "every packet accounted for" : "NOT BALANCED");
  for (const auto& [reason, n] : r.dropped) add("  dropped   %-28s %12" PRIu64 "\n", std::string(Name(reason)).c_str(), n);
  for (const auto& [reason, n] : r.skipped) add("  skipped   %-28s %12" PRIu64 "\n", std::string(Name(reason)).c_str(), n);
  const double pps = static_cast<double>(r.packets_in) / secs;
  const double bps = static_cast<double>(r.bytes_in) * 8 / secs;
  if (pps >= 1e6) {
    add("throughput  %.3f Mpps, %.3f Gbit/s in, over %.3f s\n", pps / 1e6, bps / 1e9, r.elapsed_s);
  } else {
    add("throughput  %.1f pps, %.3f Mbit/s in, over %.3f s\n", pps, bps / 1e6, r.elapsed_s);
  }
  add("latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s   (receive to verdict)\n",
      FormatNs(r.latency.Percentile(0.5)).c_str(), FormatNs(r.latency.Percentile(0.9)).c_str(),
      FormatNs(r.latency.Percentile(0.99)).c_str(), FormatNs(r.latency.Percentile(0.999)).c_str(),
      FormatNs(r.latency.max).c_str());
  if (!r.rules.empty()) {
    add("rules       %-6s %-28s %-22s %14s %16s\n", "number", "name", "action", "packets", "bytes");
    for (const RuleReport& rule : r.rules) {
      add("            %-6u %-28s %-22s %14" PRIu64 " %16" PRIu64 "\n", rule.number, rule.name.c_str(),
          rule.action.c_str(), rule.packets, rule.bytes);
    }
  }
  if (!r.stages.empty()) {
    add("stages      %-10s %5s %12s %14s %12s\n", "stage", "shard", "batches", "packets", "cycles/pkt");
    for (const StageReport& s : r.stages) {
      add("            %-10s %5u %12" PRIu64 " %14" PRIu64 " %12.1f\n", s.stage.c_str(), s.shard, s.calls, s.packets,
          s.packets ? static_cast<double>(s.cycles) / static_cast<double>(s.packets) : 0.0);
    }
  }
  return out;
}

std::string FormatNs(uint64_t ns) {
  char buf[32];
  if (ns < 10'000) {
    std::snprintf(buf, sizeof buf, "%" PRIu64 " ns", ns);
  } else if (ns < 10'000'000) {
    std::snprintf(buf, sizeof buf, "%.1f us", static_cast<double>(ns) / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f ms", static_cast<double>(ns) / 1e6);
  }
  return buf;
}

}  // namespace sluice
