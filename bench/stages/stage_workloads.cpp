#include "bench/stages/stage_workloads.h"

#include <cstring>
#include <string>

#include "engine/stages/parse/parse_stage.h"
#include "tests/rules/rule_gen.h"

namespace sluice::bench {
namespace {

testing::TestPacket Build(const PacketFields& f) {
  testing::PacketBuilder b;
  const std::string src = ToString(IpAddr{f.family, f.src});
  const std::string dst = ToString(IpAddr{f.family, f.dst});
  if (f.family == L3Type::kIpv6) b.Ipv6(src, dst);
  else b.Ipv4(src, dst);
  b.Tos(static_cast<uint8_t>(f.dscp << 2));
  if (f.proto == 6) b.Tcp(f.sport, f.dport).TcpFlags(static_cast<uint8_t>(f.tcp_flags));
  else if (f.proto == 17) b.Udp(f.sport, f.dport);
  else if (f.proto == 1 || f.proto == 58) b.Icmp(f.family == L3Type::kIpv6 ? 128 : 8, 0, 1, 1);
  else b.L4Proto(f.proto).Payload(8);
  return b.Build();
}

}  // namespace

// Every buffer goes back through the cache, as a sink gives them back after verdicts.
BatchWorkload::~BatchWorkload() {
  for (uint32_t i = 0; i < batch_.size(); ++i) batch_.set_next(i, Next::kAccept);
  batch_.RecordVerdicts();
  PacketBuffer* out[kMaxBatch];
  cache_.PutBulk(out, batch_.TakeBuffers(out));
}

void BatchWorkload::Push(const testing::TestPacket& p) {
  PacketBuffer* b = cache_.Get(SizeClass::kSmall);
  b->Assign(p.bytes.data(), static_cast<uint32_t>(p.bytes.size()));
  b->meta().link_type = p.link;
  bytes_ += b->len();
  batch_.Push(PacketRef(b));
}

// ---- parse ---------------------------------------------------------------------------------

ParseWorkload::ParseWorkload(BufferPool& pool, int mix, uint32_t n) : BatchWorkload(pool) {
  for (const testing::TestPacket& p : MixPackets(mix, n)) {
    Push(p);
    len_.push_back(batch_.packet(batch_.size() - 1).len());
  }
}

void ParseWorkload::Restore() noexcept {
  for (uint32_t i = 0; i < batch_.size(); ++i) {
    batch_.packet(i).meta().len = len_[i];
    batch_.set_next(i, Next::kParse);
  }
}

// ---- rewrite -------------------------------------------------------------------------------

const char* RewriteOpName(int op) {
  static const char* const kNames[] = {
      "noop (restore only)", "port_set", "port_map",  "addr4_set",     "addr4_map", "addr6_set",
      "ttl_decrement",       "dscp",     "mss_clamp", "full_checksum", "mark",      "everything"};
  return kNames[op];
}

RewritePlan RewriteOpPlan(int op) {
  RewritePlan p;
  const PortRewrite map = PortRewrite::Map(
      {{.first = 80, .last = 80, .to = 8080},
       {.first = 443, .last = 443, .to = 8443},
       {.first = 1024, .last = 65535, .to = 1024, .mode = PortMapEntry::Mode::kShift}});
  std::array<uint8_t, 16> v6{0xfd, 0, 0, 2};
  v6[15] = 1;
  switch (op) {
    case kPortSet:
      p.dst_port = PortRewrite::Set(8080);
      break;
    case kPortMap:
      p.src_port = map;
      p.dst_port = map;
      break;
    case kAddr4Set:
      p.src_addr = AddrRewrite::SetIpv4(0x0a000001);
      break;
    case kAddr4Map:
      p.dst_addr = AddrRewrite::MapIpv4(0xc6120000, 0x0a000000, 15);
      break;
    case kAddr6Set:
      p.src_addr = AddrRewrite::SetIpv6(v6);
      break;
    case kTtlDecrement:
      p.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = 1};
      break;
    case kDscp:
      p.dscp = 46;
      break;
    case kMssClamp:
      p.mss_clamp = 1200;
      break;
    case kFullChecksum:
      p.full_checksum = true;
      break;
    case kMark:
      p.mark = 0x5a;
      break;
    case kEverything:
      p.src_addr = AddrRewrite::MapIpv4(0xc6120000, 0x0a000000, 15);
      p.dst_addr = AddrRewrite::SetIpv4(0xc0000201);
      p.src_port = map;
      p.dst_port = map;
      p.ttl = {.kind = TtlRewrite::Kind::kDecrement, .value = 1};
      p.dscp = 46;
      p.mss_clamp = 1200;
      p.mark = 1;
      break;
    default:
      break;
  }
  return p;
}

RewriteWorkload::RewriteWorkload(BufferPool& pool, int op) : BatchWorkload(pool), plan_(RewriteOpPlan(op)) {
  for (uint32_t i = 0; i < kPackets; ++i) {
    testing::PacketBuilder b;
    b.Ethernet();
    if (op == kAddr6Set) {
      b.Ipv6("2001:2::1", "2001:2::" + std::to_string(i + 2));
    } else {
      b.Ipv4("198.18.0.1", "198.19.0." + std::to_string(i + 2));
    }
    packets_.push_back(b.Tcp(static_cast<uint16_t>(40000 + i), 80).TcpFlags(0x02).Mss(1460).PadTo(60).Build());
    Push(packets_.back());
  }
  ParseStage({}).Process(batch_);
  for (uint32_t i = 0; i < kPackets; ++i) parsed_meta_.push_back(batch_.packet(i).meta());
}

void RewriteWorkload::Restore() noexcept {
  for (uint32_t i = 0; i < kPackets; ++i) {
    PacketBuffer& b = batch_.packet(i);
    std::memcpy(b.data(), packets_[i].bytes.data(), parsed_meta_[i].len);
    b.meta().flags = parsed_meta_[i].flags;
    batch_.set_next(i, Next::kRewrite);
    batch_.set_plan(i, &plan_);
  }
}

// ---- classify ------------------------------------------------------------------------------

ClassifyWorkload::ClassifyWorkload(BufferPool& pool, ClassifyProfile profile, int rules) : BatchWorkload(pool) {
  testing::RuleGen gen(1);
  std::vector<RuleMatchInput> inputs;
  std::vector<PacketFields> traffic;
  if (profile == kAcl) gen.AclWorkload(rules, kPackets, specs_, inputs, traffic);
  else gen.LastRuleWorkload(rules, kPackets, specs_, inputs, traffic);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    RuleConfig r;
    r.number = static_cast<uint32_t>(i + 1);
    r.name = "r" + std::to_string(i + 1);
    r.action = i % 2 ? RuleAction::kAccept : RuleAction::kDrop;
    r.match = *inputs[i].match;
    config_.rules.push_back(std::move(r));
  }
  handle_ = std::move(RuleSetHandle::Create(config_, RuleSetOptions{})).value();
  stage_ = std::make_unique<ClassifyStage>(*handle_, 0, FlowTableOptions::From(config_.nat, 1, 0, 1));
  for (const PacketFields& f : traffic) Push(Build(f));
  ParseStage(ParseConfig{}).Process(batch_);
}

void ClassifyWorkload::Restore() noexcept {
  for (uint32_t i = 0; i < batch_.size(); ++i) batch_.set_next(i, Next::kClassify);
}

}  // namespace sluice::bench
