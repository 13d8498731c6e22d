// StatsReport: one run's figures in a plain, self-describing form, and its two renderings —
// JSON (`--stats-json`) and Prometheus text exposition (for node_exporter's textfile
// collector). Built off the hot path from the per-worker counters; costs nothing per packet.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/packet/drop_reason.h"
#include "engine/stats/histogram.h"
#include "engine/stats/stage_stats.h"

namespace sluice {

struct StageReport {
  std::string stage;  // parse, classify, rewrite …
  uint32_t shard = 0;
  uint64_t calls = 0;
  uint64_t packets = 0;
  uint64_t cycles = 0;
  std::vector<std::pair<DropReason, uint64_t>> ended;  // non-zero reasons only
};

struct RuleReport {
  uint32_t number = 0;
  std::string name;
  std::string action;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

// A counter that belongs to no fixed table (flow table, kernel queue, per-stage domain counters).
struct NamedCounter {
  std::string name;  // snake_case, becomes sluice_<name> in Prometheus
  std::string help;
  uint64_t value = 0;
  std::vector<std::pair<std::string, std::string>> labels;
  bool gauge = false;  // a level that goes up and down (else a count that only grows)
};

struct StatsReport {
  std::vector<std::pair<std::string, std::string>> conditions;  // what the run was: input, threads …
  double elapsed_s = 0;
  uint64_t packets_in = 0, bytes_in = 0, bytes_out = 0;
  uint64_t accepted = 0, rewritten = 0;
  std::vector<std::pair<DropReason, uint64_t>> dropped, skipped;  // non-zero reasons only
  LatencyHistogram::Snapshot latency;
  std::vector<StageReport> stages;
  std::vector<RuleReport> rules;
  std::vector<NamedCounter> counters;

  uint64_t DroppedTotal() const;
  uint64_t SkippedTotal() const;
  bool Balanced() const { return packets_in == accepted + rewritten + DroppedTotal() + SkippedTotal(); }
};

// Adds a RunStats into the run-level part of a report (once per shard for the inline graph).
void AddRun(const RunStats& run, StatsReport& report);
// Appends one stage instance's figures.
void AddStage(const std::string& stage, uint32_t shard, const StageStats& stats, StatsReport& report);

std::string ToJson(const StatsReport& report);
std::string ToPrometheus(const StatsReport& report);
// A human summary, several lines, for the end of a replay.
std::string ToText(const StatsReport& report);
// 812 ns, 12.3 us, 4.5 ms.
std::string FormatNs(uint64_t ns);

}  // namespace sluice
