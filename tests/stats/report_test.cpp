#include "engine/stats/report.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace sluice {
namespace {

StatsReport Sample() {
  RunStats run;
  run.packets_in.Add(10);
  run.bytes_in.Add(1000);
  run.accepted.Add(4);
  run.rewritten.Add(3);
  run.dropped[static_cast<int>(DropReason::kNotIp)].Add(2);
  run.skipped[static_cast<int>(DropReason::kUnsupportedLinkType)].Add(1);
  run.bytes_out.Add(800);
  for (int i = 1; i <= 10; ++i) run.latency_ns.Record(i * 1000);
  StatsReport r;
  r.conditions = {{"input", "x.pcap"}, {"threads", "2"}};
  r.elapsed_s = 0.5;
  AddRun(run, r);
  StageStats st;
  st.calls.Add(2);
  st.packets.Add(10);
  st.cycles.Add(1234);
  st.ended[static_cast<int>(DropReason::kNotIp)].Add(2);
  AddStage("parse", 0, st, r);
  r.rules.push_back({10, "web \"front\"", "rewrite", 7, 700});
  r.counters.push_back({"flow_table_entries", "Flows in the table.", 5, {{"shard", "0"}}, /*gauge=*/true});
  return r;
}

TEST(StatsReport, JsonCarriesEveryFigure) {
  const auto j = nlohmann::json::parse(ToJson(Sample()));
  EXPECT_EQ(j["packets"]["in"], 10);
  EXPECT_EQ(j["packets"]["dropped"], 2);
  EXPECT_EQ(j["packets"]["skipped"], 1);
  EXPECT_TRUE(j["packets"]["balanced"].get<bool>());
  EXPECT_EQ(j["dropped"]["not_ip"], 2);
  EXPECT_EQ(j["skipped"]["unsupported_link_type"], 1);
  EXPECT_EQ(j["throughput"]["packets_per_s"], 20.0);
  EXPECT_EQ(j["latency_ns"]["count"], 10);
  EXPECT_GE(j["latency_ns"]["p50"].get<uint64_t>(), 5000u);
  EXPECT_EQ(j["latency_ns"]["max"], 10000);
  EXPECT_EQ(j["stages"][0]["stage"], "parse");
  EXPECT_EQ(j["stages"][0]["ended"]["not_ip"], 2);
  EXPECT_EQ(j["rules"][0]["name"], "web \"front\"");
  EXPECT_EQ(j["conditions"]["input"], "x.pcap");
}

// The text exposition format's line grammar, for the subset sluice writes:
//   # HELP|TYPE sluice_<name> <text>
//   sluice_<name>[{label="value",...}] <number>
bool IsMetricName(const std::string& s, std::size_t& i) {
  if (s.compare(i, 7, "sluice_") != 0) return false;
  i += 7;
  const std::size_t start = i;
  while (i < s.size() && (std::islower(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
  return i > start;
}

bool IsSampleLine(const std::string& s) {
  std::size_t i = 0;
  if (!IsMetricName(s, i)) return false;
  if (i < s.size() && s[i] == '{') {
    ++i;
    for (;;) {
      const std::size_t start = i;
      while (i < s.size() && (std::islower(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
      if (i == start || s.compare(i, 2, "=\"") != 0) return false;
      i += 2;
      while (i < s.size() && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
      if (i >= s.size()) return false;
      ++i;
      if (i < s.size() && s[i] == ',') {
        ++i;
        continue;
      }
      if (i < s.size() && s[i] == '}') {
        ++i;
        break;
      }
      return false;
    }
  }
  if (i >= s.size() || s[i] != ' ') return false;
  const char* num = s.c_str() + i + 1;
  char* end = nullptr;
  std::strtod(num, &end);
  return end != num && *end == '\0';
}

bool IsCommentLine(const std::string& s) {
  if (s.rfind("# HELP ", 0) != 0 && s.rfind("# TYPE ", 0) != 0) return false;
  std::size_t i = 7;
  return IsMetricName(s, i) && i < s.size() && s[i] == ' ' && i + 1 < s.size();
}

TEST(StatsReport, PrometheusTextIsWellFormed) {
  const std::string text = ToPrometheus(Sample());
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.rfind("#", 0) == 0) {
      EXPECT_TRUE(IsCommentLine(line)) << line;
    } else {
      EXPECT_TRUE(IsSampleLine(line)) << line;
      ++samples;
    }
  }
  EXPECT_FALSE(IsSampleLine("sluice_x{a=\"b\" 1"));  // the checker itself rejects bad lines
  EXPECT_FALSE(IsSampleLine("sluice_x nan?"));
  EXPECT_GT(samples, 15);
  EXPECT_NE(text.find("sluice_dropped_total{reason=\"not_ip\"} 2"), std::string::npos);
  EXPECT_NE(text.find("name=\"web \\\"front\\\"\""), std::string::npos);  // escaped quotes
  EXPECT_NE(text.find("sluice_flow_table_entries{shard=\"0\"} 5"), std::string::npos);
}

// Each metric's HELP and TYPE appear once, and its samples follow them together (the text
// format's rule: node_exporter drops a file that breaks it). Two queues' counters arrive
// queue by queue, as the daemon appends them.
TEST(StatsReport, PrometheusGroupsEachMetricUnderOneHeader) {
  StatsReport r = Sample();
  for (const char* queue : {"0", "1"}) {
    r.counters.push_back({"nfqueue_received", "Packets received.", 7, {{"queue", queue}}});
    r.counters.push_back({"nfqueue_dropped", "Packets dropped.", 1, {{"queue", queue}}});
  }
  const std::string text = ToPrometheus(r);
  std::istringstream in(text);
  std::string line, family;
  std::set<std::string> typed;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      family = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(typed.insert(family).second) << "a second TYPE for " << family;
    } else if (line.rfind("#", 0) != 0) {
      const std::string name = line.substr(0, line.find_first_of("{ "));
      EXPECT_TRUE(name == family || name == family + "_count" || name == family + "_sum")
          << name << " is away from its group (under " << family << ")";
    }
  }
  EXPECT_NE(text.find("sluice_nfqueue_received_total{queue=\"0\"} 7\nsluice_nfqueue_received_total{queue=\"1\"} 7\n"),
            std::string::npos)
      << text;
}

// A count that only grows is a counter (so that rate() handles restarts), named ..._total as
// the format's conventions ask; a level is a gauge and keeps its name. JSON keeps every name.
TEST(StatsReport, PrometheusTypesCountsAsCountersAndLevelsAsGauges) {
  StatsReport r;
  r.counters.push_back({"nat_created", "Translations created.", 9, {}});
  r.counters.push_back({"nat_flows", "Live translations.", 3, {}, /*gauge=*/true});
  r.counters.push_back({"packets_sent_total", "Already so named.", 4, {}});
  const std::string text = ToPrometheus(r);
  EXPECT_NE(text.find("# TYPE sluice_nat_created_total counter\nsluice_nat_created_total 9\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE sluice_nat_flows gauge\nsluice_nat_flows 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("sluice_packets_sent_total 4\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("_total_total"), std::string::npos) << text;
  // One family per exported name, even when two names meet there.
  r.counters.push_back({"packets_sent", "Sent.", 5, {{"queue", "1"}}});
  const std::string two = ToPrometheus(r);
  EXPECT_NE(two.find("sluice_packets_sent_total 4\nsluice_packets_sent_total{queue=\"1\"} 5\n"), std::string::npos)
      << two;
  const std::string json = ToJson(r);
  EXPECT_NE(json.find("\"name\": \"nat_created\""), std::string::npos) << json;
}

// The latency summary carries _sum beside _count (so that rate(sum) / rate(count) is the mean
// latency), summed exactly over every run merged into the report.
TEST(StatsReport, TheLatencySummaryHasItsSumAndCount) {
  RunStats a, b;
  a.latency_ns.Record(125'000'000);
  a.latency_ns.RecordMany(62'500'000, 2);
  b.latency_ns.Record(250'000'000);
  StatsReport r;
  AddRun(a, r);
  AddRun(b, r);
  EXPECT_EQ(r.latency.total, 4u);
  EXPECT_EQ(r.latency.sum_us, 500'000u);  // exact, where the buckets are only within 3 %
  const std::string text = ToPrometheus(r);
  EXPECT_NE(text.find("sluice_latency_seconds_sum 0.5\nsluice_latency_seconds_count 4\n"), std::string::npos)
      << text;
  EXPECT_NE(ToJson(r).find("\"sum_us\": 500000"), std::string::npos);
}

TEST(StatsReport, AddRunAccumulatesShards) {
  RunStats a, b;
  a.packets_in.Add(3);
  a.accepted.Add(1);
  a.dropped[static_cast<int>(DropReason::kNotIp)].Add(2);
  a.latency_ns.Record(100);
  b.packets_in.Add(4);
  b.rewritten.Add(2);
  b.dropped[static_cast<int>(DropReason::kNotIp)].Add(1);
  b.skipped[static_cast<int>(DropReason::kTooBig)].Add(1);
  b.latency_ns.Record(200);
  StatsReport r;
  AddRun(a, r);
  AddRun(b, r);
  EXPECT_EQ(r.packets_in, 7u);
  EXPECT_EQ(r.DroppedTotal(), 3u);
  ASSERT_EQ(r.dropped.size(), 1u);
  EXPECT_EQ(r.dropped[0].second, 3u);
  EXPECT_EQ(r.SkippedTotal(), 1u);
  EXPECT_EQ(r.latency.total, 2u);
  EXPECT_TRUE(r.Balanced());
}

TEST(StatsReport, TextSaysWhetherEveryPacketIsAccountedFor) {
  StatsReport r = Sample();
  EXPECT_NE(ToText(r).find("every packet accounted for"), std::string::npos);
  r.packets_in = 11;
  EXPECT_NE(ToText(r).find("NOT BALANCED"), std::string::npos);
}

TEST(FormatNs, PicksAReadableUnit) {
  EXPECT_EQ(FormatNs(812), "812 ns");
  EXPECT_EQ(FormatNs(12345), "12.3 us");
  EXPECT_EQ(FormatNs(45'600'000), "45.6 ms");
}

}  // namespace
}  // namespace sluice
