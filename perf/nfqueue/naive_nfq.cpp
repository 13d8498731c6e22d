// naive_nfq: the baseline NFQUEUE consumer sluice is measured against — libnetfilter_queue's
// nfq_nlmsg API on libmnl, one recv() and one verdict sendto() per packet, accept only (the
// shape of libnetfilter_queue's examples/nf-queue.c and of most small NFQUEUE tools).
//
//   naive_nfq [--queue N] [--maxlen N] [--rcvbuf BYTES] [--mark M] [--gso 0|1]
//
// Every verdict sets mark M (default 0x100) so the harness can count verdicted packets in the
// kernel. Runs until SIGINT/SIGTERM, then prints one line:
//   naive_nfq queue=N packets=P recv_calls=R send_calls=S enobufs=E
// clang-format off
#include <netinet/in.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
// clang-format on

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Loop {
  mnl_socket* nl = nullptr;
  uint16_t queue = 0;
  uint32_t mark = 0x100;
  unsigned long long packets = 0, recv_calls = 0, send_calls = 0, enobufs = 0;
  char verdict[256];
};

int OnPacket(const nlmsghdr* nlh, void* data) {
  auto* loop = static_cast<Loop*>(data);
  nlattr* attr[NFQA_MAX + 1] = {};
  if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == nullptr) return MNL_CB_OK;
  const auto* ph = static_cast<nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
  nlmsghdr* v = nfq_nlmsg_put(loop->verdict, NFQNL_MSG_VERDICT, loop->queue);
  nfq_nlmsg_verdict_put(v, static_cast<int>(ntohl(ph->packet_id)), NF_ACCEPT);
  nfq_nlmsg_verdict_put_mark(v, loop->mark);
  ++loop->send_calls;
  if (mnl_socket_sendto(loop->nl, v, v->nlmsg_len) < 0) std::perror("naive_nfq: sendto");
  ++loop->packets;
  return MNL_CB_OK;
}

}  // namespace

int main(int argc, char** argv) {
  Loop loop;
  uint32_t maxlen = 8192, rcvbuf = 16u << 20;
  bool gso = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const unsigned long v = std::strtoul(argv[i + 1], nullptr, 0);
    if (k == "--queue")
      loop.queue = static_cast<uint16_t>(v);
    else if (k == "--maxlen")
      maxlen = static_cast<uint32_t>(v);
    else if (k == "--rcvbuf")
      rcvbuf = static_cast<uint32_t>(v);
    else if (k == "--mark")
      loop.mark = static_cast<uint32_t>(v);
    else if (k == "--gso")
      gso = v != 0;
    else {
      std::fprintf(
          stderr,
          "usage: naive_nfq [--queue N] [--maxlen N] [--rcvbuf BYTES] [--mark M] [--gso 0|1]\n");
      return 2;
    }
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  loop.nl = mnl_socket_open(NETLINK_NETFILTER);
  if (loop.nl == nullptr || mnl_socket_bind(loop.nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    std::perror("naive_nfq: netlink socket");
    return 1;
  }
  const unsigned portid = mnl_socket_get_portid(loop.nl);
  const int fd = mnl_socket_get_fd(loop.nl);
  int size = static_cast<int>(rcvbuf);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  timeval tv{0, 100000};  // notice SIGTERM while idle
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  std::vector<char> buf(0xffff + (MNL_SOCKET_BUFFER_SIZE / 2));
  nlmsghdr* nlh = nfq_nlmsg_put(buf.data(), NFQNL_MSG_CONFIG, loop.queue);
  nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
  if (mnl_socket_sendto(loop.nl, nlh, nlh->nlmsg_len) < 0) {
    std::perror("naive_nfq: bind");
    return 1;
  }
  nlh = nfq_nlmsg_put(buf.data(), NFQNL_MSG_CONFIG, loop.queue);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 0xffff);
  nfq_nlmsg_cfg_put_qmaxlen(nlh, maxlen);
  mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(gso ? NFQA_CFG_F_GSO : 0));
  mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO));
  if (mnl_socket_sendto(loop.nl, nlh, nlh->nlmsg_len) < 0) {
    std::perror("naive_nfq: configure");
    return 1;
  }

  while (!g_stop) {
    ++loop.recv_calls;
    const ssize_t n = mnl_socket_recvfrom(loop.nl, buf.data(), buf.size());
    if (n < 0) {
      if (errno == ENOBUFS)
        ++loop.enobufs;
      else if (errno != EAGAIN && errno != EINTR)
        std::perror("naive_nfq: recv");
      continue;
    }
    mnl_cb_run(buf.data(), static_cast<size_t>(n), 0, portid, OnPacket, &loop);
  }
  std::printf("naive_nfq queue=%u packets=%llu recv_calls=%llu send_calls=%llu enobufs=%llu\n",
              loop.queue, loop.packets, loop.recv_calls, loop.send_calls, loop.enobufs);
  mnl_socket_close(loop.nl);
  return 0;
}
