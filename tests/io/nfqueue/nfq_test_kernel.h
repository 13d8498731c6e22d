// The kernel's half of NFQUEUE, for tests that need no kernel: packet messages built with
// libmnl exactly as nfnetlink_queue lays them out, verdict messages decoded back, and a
// socketpair that plays the netlink socket (one datagram per sendmsg, as netlink delivers).
#pragma once

// clang-format off
#include <netinet/in.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/if_ether.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
// clang-format on

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <vector>

namespace sluice::testing {

struct PacketSpec {
  uint16_t queue = 0;
  uint32_t id = 1;
  uint16_t hw_protocol = ETH_P_IP;
  uint8_t hook = NF_INET_FORWARD;
  uint32_t mark = 0;  // 0: no NFQA_MARK, as the kernel does
  uint32_t in_if = 0;
  uint32_t out_if = 0;
  uint32_t skb_info = 0;      // 0: no NFQA_SKB_INFO
  uint32_t cap_len = 0;       // 0: no NFQA_CAP_LEN
  bool hwaddr = false;        // NFQA_HWADDR (input packets on Ethernet)
  bool timestamp = false;     // NFQA_TIMESTAMP
  uint32_t secctx_bytes = 0;  // an NFQA_SECCTX of this many bytes (to make a message longer)
  std::vector<uint8_t> payload;
};

// An IPv4 header and `len` bytes in all, the rest a counting pattern; `tag` in the first
// payload byte after the header.
inline std::vector<uint8_t> Ipv4Bytes(uint32_t len, uint8_t tag = 0) {
  std::vector<uint8_t> p(len);
  for (uint32_t i = 0; i < len; ++i) p[i] = static_cast<uint8_t>(i * 7 + tag);
  if (len >= 20) {
    p[0] = 0x45;
    p[2] = static_cast<uint8_t>(len >> 8);
    p[3] = static_cast<uint8_t>(len);
    p[9] = 17;
  }
  if (len > 20) p[20] = tag;
  return p;
}

inline std::vector<uint8_t> BuildPacketMessage(const PacketSpec& s) {
  std::vector<uint8_t> buf(s.payload.size() + s.secctx_bytes + 512);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = AF_INET;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = htons(s.queue);
  nfqnl_msg_packet_hdr ph{};
  ph.packet_id = htonl(s.id);
  ph.hw_protocol = htons(s.hw_protocol);
  ph.hook = s.hook;
  mnl_attr_put(nlh, NFQA_PACKET_HDR, sizeof ph, &ph);
  if (s.in_if) mnl_attr_put_u32(nlh, NFQA_IFINDEX_INDEV, htonl(s.in_if));
  if (s.out_if) mnl_attr_put_u32(nlh, NFQA_IFINDEX_OUTDEV, htonl(s.out_if));
  if (s.mark) mnl_attr_put_u32(nlh, NFQA_MARK, htonl(s.mark));
  if (s.hwaddr) {
    nfqnl_msg_packet_hw hw{};
    hw.hw_addrlen = htons(6);
    mnl_attr_put(nlh, NFQA_HWADDR, sizeof hw, &hw);
  }
  if (s.timestamp) {
    nfqnl_msg_packet_timestamp ts{};
    mnl_attr_put(nlh, NFQA_TIMESTAMP, sizeof ts, &ts);
  }
  if (s.secctx_bytes) {
    std::vector<uint8_t> ctx(s.secctx_bytes, 'x');
    mnl_attr_put(nlh, NFQA_SECCTX, ctx.size(), ctx.data());
  }
  if (s.cap_len) mnl_attr_put_u32(nlh, NFQA_CAP_LEN, htonl(s.cap_len));
  if (s.skb_info) mnl_attr_put_u32(nlh, NFQA_SKB_INFO, htonl(s.skb_info));
  mnl_attr_put(nlh, NFQA_PAYLOAD, s.payload.size(), s.payload.data());
  buf.resize(nlh->nlmsg_len);
  return buf;
}

// An NLMSG_ERROR report for `error` (an errno; 0 is an acknowledgement).
inline std::vector<uint8_t> BuildErrorMessage(int error, uint32_t seq = 0) {
  std::vector<uint8_t> buf(128);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = NLMSG_ERROR;
  nlh->nlmsg_seq = seq;
  auto* err = static_cast<nlmsgerr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nlmsgerr)));
  err->error = -error;
  buf.resize(nlh->nlmsg_len);
  return buf;
}

struct DecodedVerdict {
  bool batch = false;
  uint16_t queue = 0;
  uint32_t verdict = 0;  // NF_ACCEPT, NF_DROP
  uint32_t id = 0;
  std::optional<uint32_t> mark;
  std::vector<uint8_t> payload;
  bool has_payload = false;
};

// Every verdict message in one datagram, in order; a message of another kind fails the decode.
inline bool DecodeVerdicts(const uint8_t* data, std::size_t len, std::vector<DecodedVerdict>* out) {
  int remaining = static_cast<int>(len);
  auto* nlh = reinterpret_cast<const nlmsghdr*>(data);
  while (mnl_nlmsg_ok(nlh, remaining)) {
    const uint16_t type = nlh->nlmsg_type;
    if ((type >> 8) != NFNL_SUBSYS_QUEUE) return false;
    if ((type & 0xff) != NFQNL_MSG_VERDICT && (type & 0xff) != NFQNL_MSG_VERDICT_BATCH)
      return false;
    if (!(nlh->nlmsg_flags & NLM_F_REQUEST)) return false;
    DecodedVerdict v;
    v.batch = (type & 0xff) == NFQNL_MSG_VERDICT_BATCH;
    const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
    v.queue = ntohs(nfg->res_id);
    bool has_hdr = false;
    const auto* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
    for (auto* a = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)));
         mnl_attr_ok(a, static_cast<int>(tail - reinterpret_cast<const char*>(a)));
         a = mnl_attr_next(a)) {
      switch (mnl_attr_get_type(a)) {
        case NFQA_VERDICT_HDR: {
          if (mnl_attr_get_payload_len(a) != sizeof(nfqnl_msg_verdict_hdr)) return false;
          const auto* vh = static_cast<const nfqnl_msg_verdict_hdr*>(mnl_attr_get_payload(a));
          v.verdict = ntohl(vh->verdict);
          v.id = ntohl(vh->id);
          has_hdr = true;
          break;
        }
        case NFQA_MARK:
          v.mark = ntohl(mnl_attr_get_u32(a));
          break;
        case NFQA_PAYLOAD: {
          const auto* p = static_cast<const uint8_t*>(mnl_attr_get_payload(a));
          v.payload.assign(p, p + mnl_attr_get_payload_len(a));
          v.has_payload = true;
          break;
        }
        default:
          return false;
      }
    }
    if (!has_hdr) return false;
    out->push_back(std::move(v));
    nlh = mnl_nlmsg_next(nlh, &remaining);
  }
  return remaining == 0;
}

// The kernel's list of queued packets, fed the decoded verdicts: VERDICT takes one id,
// VERDICT_BATCH N every entry from the head whose id is not after N (serial order).
struct QueueModel {
  struct Outcome {
    uint32_t verdict;
    std::optional<uint32_t> mark;
    std::vector<uint8_t> payload;
    bool has_payload;
    int times;
  };
  std::deque<uint32_t> queue;
  std::map<uint32_t, Outcome> outcome;
  std::vector<uint32_t> accepted_order;
  int enoent = 0;

  void Queued(uint32_t id) { queue.push_back(id); }
  void Apply(const std::vector<DecodedVerdict>& verdicts) {
    for (const DecodedVerdict& v : verdicts) {
      if (v.batch) {
        int taken = 0;
        while (!queue.empty() && static_cast<int32_t>(queue.front() - v.id) <= 0) {
          Record(queue.front(), v);
          queue.pop_front();
          ++taken;
        }
        enoent += taken == 0;
        continue;
      }
      bool found = false;
      for (auto it = queue.begin(); it != queue.end(); ++it) {
        if (*it != v.id) continue;
        Record(v.id, v);
        queue.erase(it);
        found = true;
        break;
      }
      enoent += !found;
    }
  }

 private:
  void Record(uint32_t id, const DecodedVerdict& v) {
    Outcome& o = outcome[id];
    o.verdict = v.verdict;
    o.mark = v.mark;
    o.payload = v.payload;
    o.has_payload = v.has_payload;
    ++o.times;
    if (v.verdict == NF_ACCEPT) accepted_order.push_back(id);
  }
};

// A socketpair standing in for the netlink socket: the endpoint gets fd(), the test writes
// packet messages and reads verdict datagrams on the other end.
class FakeKernel {
 public:
  FakeKernel() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0) {
      endpoint_fd_ = sv[0];
      kernel_fd_ = sv[1];
      int big = 8 << 20;
      setsockopt(kernel_fd_, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
      setsockopt(kernel_fd_, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    }
  }
  ~FakeKernel() {
    if (kernel_fd_ >= 0) close(kernel_fd_);
    if (endpoint_fd_ >= 0) close(endpoint_fd_);  // unless the endpoint took it
  }
  // The endpoint's end; the endpoint owns it from now on.
  int TakeEndpointFd() {
    const int fd = endpoint_fd_;
    endpoint_fd_ = -1;
    return fd;
  }
  bool Deliver(const std::vector<uint8_t>& msg) const {
    return send(kernel_fd_, msg.data(), msg.size(), 0) == static_cast<ssize_t>(msg.size());
  }
  // One datagram (one sendmsg of the endpoint), or nullopt when none is waiting.
  std::optional<std::vector<DecodedVerdict>> ReadDatagram() const {
    std::vector<uint8_t> buf(1 << 22);
    const ssize_t n = recv(kernel_fd_, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    std::vector<DecodedVerdict> out;
    if (!DecodeVerdicts(buf.data(), static_cast<std::size_t>(n), &out))
      return std::vector<DecodedVerdict>{};
    return out;
  }
  // Every waiting datagram, flattened; `datagrams` counts them.
  std::vector<DecodedVerdict> ReadAll(int* datagrams = nullptr) const {
    std::vector<DecodedVerdict> all;
    int n = 0;
    while (auto d = ReadDatagram()) {
      ++n;
      all.insert(all.end(), d->begin(), d->end());
    }
    if (datagrams) *datagrams = n;
    return all;
  }
  int kernel_fd() const { return kernel_fd_; }

 private:
  int endpoint_fd_ = -1;
  int kernel_fd_ = -1;
};

}  // namespace sluice::testing
