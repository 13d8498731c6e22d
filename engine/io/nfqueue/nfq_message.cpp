#include "engine/io/nfqueue/nfq_message.h"

// glibc's socket headers before the kernel's (linux/libc-compat.h then skips its duplicates),
// and the kernel's nfnetlink_queue.h before libnetfilter_queue's copy of it.
// clang-format off
#include <netinet/in.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
// clang-format on

#include <cstring>

#include "engine/core/byte_order.h"

namespace sluice {
namespace {

constexpr uint16_t kPacketType = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
constexpr uint32_t kNlHdr = sizeof(nlmsghdr);
constexpr uint32_t kNfHdr = sizeof(nfgenmsg);
constexpr uint32_t kAttrHdr = sizeof(nlattr);

constexpr uint32_t Align4(uint32_t n) noexcept { return (n + 3u) & ~3u; }

uint32_t AttrU32(const nlattr* a) noexcept {
  return LoadBe32(static_cast<const uint8_t*>(mnl_attr_get_payload(a)));
}

}  // namespace

NfqMessage ParseNfqMessage(const uint8_t* msg, uint32_t len) noexcept {
  NfqMessage out;
  if (len < kNlHdr) return out;
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(msg);
  if (nlh->nlmsg_len < kNlHdr || nlh->nlmsg_len > len) {
    if (nlh->nlmsg_type == kPacketType) {
      out.kind = NfqMessageKind::kBadPacket;
      out.has_id = PeekNfqPacketId(msg, len, &out.packet.id);
    }
    return out;
  }
  out.seq = nlh->nlmsg_seq;
  if (nlh->nlmsg_type == NLMSG_ERROR) {
    if (nlh->nlmsg_len < kNlHdr + sizeof(nlmsgerr)) return out;
    const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
    out.kind = NfqMessageKind::kError;
    out.error = -err->error;
    return out;
  }
  if (nlh->nlmsg_type != kPacketType) return out;

  out.kind = NfqMessageKind::kBadPacket;
  if (nlh->nlmsg_len < kNlHdr + kNfHdr) return out;
  nlattr* attr[NFQA_MAX + 1] = {};
  const int parsed = nfq_nlmsg_parse(nlh, attr);  // validates each attribute's type and length
  if (attr[NFQA_PACKET_HDR] == nullptr) return out;
  const auto* ph =
      static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
  NfqPacketFields& f = out.packet;
  f.id = LoadBe32(reinterpret_cast<const uint8_t*>(&ph->packet_id));
  out.has_id = true;
  if (parsed < 0 || attr[NFQA_PAYLOAD] == nullptr) return out;

  f.hw_protocol = LoadBe16(reinterpret_cast<const uint8_t*>(&ph->hw_protocol));
  f.hook = ph->hook;
  if (attr[NFQA_MARK]) f.mark = AttrU32(attr[NFQA_MARK]);
  if (attr[NFQA_IFINDEX_INDEV]) f.in_if = AttrU32(attr[NFQA_IFINDEX_INDEV]);
  if (attr[NFQA_IFINDEX_OUTDEV]) f.out_if = AttrU32(attr[NFQA_IFINDEX_OUTDEV]);
  if (attr[NFQA_SKB_INFO]) f.skb_info = AttrU32(attr[NFQA_SKB_INFO]);
  if (attr[NFQA_CAP_LEN]) f.cap_len = AttrU32(attr[NFQA_CAP_LEN]);
  const auto* payload = static_cast<const uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD]));
  f.payload_off = static_cast<uint32_t>(payload - msg);
  f.payload_len = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
  if (f.payload_len == 0) return out;
  out.kind = NfqMessageKind::kPacket;
  return out;
}

bool PeekNfqPacketId(const uint8_t* msg, uint32_t avail, uint32_t* id) noexcept {
  constexpr uint32_t kFirstAttr = kNlHdr + kNfHdr;
  if (avail < kFirstAttr + kAttrHdr + sizeof(nfqnl_msg_packet_hdr)) return false;
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(msg);
  if (nlh->nlmsg_type != kPacketType) return false;
  const auto* a = reinterpret_cast<const nlattr*>(msg + kFirstAttr);
  if ((a->nla_type & NLA_TYPE_MASK) != NFQA_PACKET_HDR ||
      a->nla_len < kAttrHdr + sizeof(nfqnl_msg_packet_hdr)) {
    return false;
  }
  *id = LoadBe32(msg + kFirstAttr + kAttrHdr);
  return true;
}

VerdictWriter::VerdictWriter(uint16_t queue, uint32_t max_messages, std::size_t max_chunk_bytes)
    : queue_(queue),
      max_messages_(max_messages),
      max_chunk_bytes_(max_chunk_bytes),
      arena_(std::make_unique<uint8_t[]>(std::size_t{max_messages} * kHeaderBytes + 4)),
      iov_(std::make_unique<iovec[]>(kMaxIov)) {}

void VerdictWriter::Clear() noexcept {
  arena_used_ = 0;
  iov_count_ = 0;
  messages_ = 0;
  bytes_ = 0;
}

std::size_t VerdictWriter::Bytes(const VerdictMessage& m) noexcept {
  const uint32_t base = kHeaderBytes - kAttrHdr;
  return m.payload == nullptr ? base : base + kAttrHdr + Align4(m.payload_len);
}

bool VerdictWriter::Append(const VerdictMessage& m) noexcept {
  static constexpr uint8_t kPad[4] = {};
  const std::size_t wire = Bytes(m);
  const uint32_t iov_needed = m.payload == nullptr ? 1 : 3;
  if (messages_ == max_messages_ || bytes_ + wire > max_chunk_bytes_ ||
      iov_count_ + iov_needed > kMaxIov ||
      (m.payload != nullptr && m.payload_len > kNfqMaxPayload)) {
    return false;
  }
  auto* at = reinterpret_cast<char*>(arena_.get() + arena_used_);
  nlmsghdr* nlh = nfq_nlmsg_put(at, m.batch ? NFQNL_MSG_VERDICT_BATCH : NFQNL_MSG_VERDICT, queue_);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(m.id), m.accept ? NF_ACCEPT : NF_DROP);
  nfq_nlmsg_verdict_put_mark(nlh, m.mark);
  uint32_t header = nlh->nlmsg_len;
  if (m.payload != nullptr) {
    // The attribute header here; its bytes follow as their own iovec, then the padding.
    auto* a = static_cast<nlattr*>(mnl_nlmsg_get_payload_tail(nlh));
    a->nla_type = NFQA_PAYLOAD;
    a->nla_len = static_cast<uint16_t>(kAttrHdr + m.payload_len);
    header += kAttrHdr;
    nlh->nlmsg_len = header + Align4(m.payload_len);
  }
  // Header bytes join the previous iovec when it ends where they begin (back-to-back headers).
  if (iov_count_ > 0 &&
      static_cast<uint8_t*>(iov_[iov_count_ - 1].iov_base) + iov_[iov_count_ - 1].iov_len ==
          reinterpret_cast<uint8_t*>(at)) {
    iov_[iov_count_ - 1].iov_len += header;
  } else {
    iov_[iov_count_++] = iovec{at, header};
  }
  if (m.payload != nullptr) {
    iov_[iov_count_++] = iovec{const_cast<uint8_t*>(m.payload), m.payload_len};
    if (const uint32_t pad = Align4(m.payload_len) - m.payload_len; pad != 0) {
      iov_[iov_count_++] = iovec{const_cast<uint8_t*>(kPad), pad};
    }
  }
  arena_used_ += header;
  ++messages_;
  bytes_ += wire;
  return true;
}

}  // namespace sluice
