// Test helpers for the divert backend: packets built in memory and a fake divert kernel that
// stands in for the socket (DivertSyscalls), so Receive and Send run on Linux.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

#include "engine/core/byte_order.h"
#include "engine/io/divert/divert_endpoint.h"
#include "engine/io/divert/frag_needed.h"

namespace sluice::testing {

inline constexpr uint32_t Ip4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return (a << 24) | (b << 16) | (c << 8) | d;
}

struct Ipv4Spec {
  uint32_t src = Ip4(192, 0, 2, 10);
  uint32_t dst = Ip4(198, 51, 100, 20);
  uint8_t proto = 6;
  uint32_t payload = 40;
  bool df = true;
  uint16_t frag_offset = 0;  // in 8-byte units
  uint16_t id = 0x1234;
  uint8_t tos = 0;
  uint8_t ihl_words = 5;      // header length in 32-bit words (options zero-filled)
  uint8_t first_payload_byte = 0;  // e.g. the ICMP type
};

// An IPv4 datagram with a valid header checksum and a recognisable payload.
inline std::vector<uint8_t> Ipv4Packet(const Ipv4Spec& s) {
  const uint32_t hlen = s.ihl_words * 4u;
  std::vector<uint8_t> p(hlen + s.payload, 0);
  p[0] = static_cast<uint8_t>(0x40 | s.ihl_words);
  p[1] = s.tos;
  StoreBe16(&p[2], static_cast<uint16_t>(p.size()));
  StoreBe16(&p[4], s.id);
  StoreBe16(&p[6], static_cast<uint16_t>((s.df ? 0x4000 : 0) | s.frag_offset));
  p[8] = 64;
  p[9] = s.proto;
  StoreBe32(&p[12], s.src);
  StoreBe32(&p[16], s.dst);
  for (uint32_t i = 0; i < s.payload; ++i) p[hlen + i] = static_cast<uint8_t>(0xa0 + i * 7);
  if (s.payload > 0) p[hlen] = s.first_payload_byte != 0 ? s.first_payload_byte : p[hlen];
  divert_detail::SetIpv4HeaderChecksum(p.data(), hlen);
  return p;
}

inline std::vector<uint8_t> Ipv6Packet(uint32_t payload, uint8_t low_src_byte = 1) {
  std::vector<uint8_t> p(40 + payload, 0);
  p[0] = 0x60;
  StoreBe16(&p[4], static_cast<uint16_t>(payload));
  p[6] = 17;
  p[7] = 64;
  p[8] = 0x20;
  p[9] = 0x01;
  p[10] = 0x0d;
  p[11] = 0xb8;
  p[23] = low_src_byte;
  p[24] = 0x20;
  p[25] = 0x01;
  p[39] = 2;
  for (uint32_t i = 0; i < payload; ++i) p[40 + i] = static_cast<uint8_t>(i);
  return p;
}

struct FakeDatagram {
  std::vector<uint8_t> bytes;
  sockaddr_in addr{};
  uint32_t addr_len = sizeof(sockaddr_in);
};

struct SentDatagram {
  std::vector<uint8_t> bytes;
  std::array<uint8_t, sizeof(sockaddr_in)> addr{};
  uint32_t addr_len = 0;
  sockaddr_in Addr() const {
    sockaddr_in a;
    std::memcpy(&a, addr.data(), sizeof a);
    return a;
  }
};

// The kernel side of one divert socket, in memory. recvmsg pops queued datagrams (scattering
// them over the iovecs and writing msg_name as the kernel does, MSG_TRUNC when they do not
// fit); sendto records what was written, or fails with the errno `fail` chooses.
class FakeDivertKernel {
 public:
  void Queue(FakeDatagram d) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(d));
    }
    cv_.notify_all();
  }
  std::size_t queued() {
    std::lock_guard lock(mu_);
    return queue_.size();
  }
  // Called for every sendto with the call's ordinal (0, 1, …) and the bytes: 0 to accept,
  // else the errno to fail with. Set before traffic flows.
  std::function<int(uint64_t call, const uint8_t* bytes, std::size_t len)> fail;
  // When false, sendto counts but records nothing (for allocation tests).
  bool record = true;
  // When not 0, every recvmsg fails with this errno (a broken socket).
  std::atomic<int> recv_error{0};
  uint64_t recv_calls() const { return recv_calls_.load(); }

  std::vector<SentDatagram> sent() {
    std::lock_guard lock(mu_);
    return sent_;
  }
  uint64_t send_calls() const { return send_calls_.load(); }
  uint64_t accepted_sends() const { return accepted_.load(); }

  DivertSyscalls syscalls() {
    DivertSyscalls s;
    s.ctx = this;
    s.wait_readable = &WaitReadable;
    s.recvmsg = &Recvmsg;
    s.sendto = &Sendto;
    return s;
  }

 private:
  static int WaitReadable(void* ctx, int, std::chrono::microseconds wait) noexcept {
    auto* k = static_cast<FakeDivertKernel*>(ctx);
    std::unique_lock lock(k->mu_);
    return k->cv_.wait_for(lock, wait, [k] { return !k->queue_.empty(); }) ? 1 : 0;
  }
  static ssize_t Recvmsg(void* ctx, int, msghdr* msg, int) noexcept {
    auto* k = static_cast<FakeDivertKernel*>(ctx);
    k->recv_calls_.fetch_add(1);
    if (const int e = k->recv_error.load(); e != 0) {
      errno = e;
      return -1;
    }
    std::lock_guard lock(k->mu_);
    if (k->queue_.empty()) {
      errno = EAGAIN;
      return -1;
    }
    const FakeDatagram& d = k->queue_.front();
    std::size_t done = 0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(msg->msg_iovlen) && done < d.bytes.size(); ++i) {
      const std::size_t n = std::min(msg->msg_iov[i].iov_len, d.bytes.size() - done);
      std::memcpy(msg->msg_iov[i].iov_base, d.bytes.data() + done, n);
      done += n;
    }
    msg->msg_flags = done < d.bytes.size() ? MSG_TRUNC : 0;
    const std::size_t name = std::min<std::size_t>(msg->msg_namelen, sizeof d.addr);
    std::memcpy(msg->msg_name, &d.addr, std::min<std::size_t>(name, d.addr_len));
    msg->msg_namelen = d.addr_len;
    k->queue_.pop_front();
    return static_cast<ssize_t>(done);
  }
  static ssize_t Sendto(void* ctx, int, const void* buf, std::size_t len, const void* addr,
                        uint32_t addr_len) noexcept {
    auto* k = static_cast<FakeDivertKernel*>(ctx);
    const uint64_t call = k->send_calls_.fetch_add(1);
    const auto* bytes = static_cast<const uint8_t*>(buf);
    if (k->fail) {
      if (const int e = k->fail(call, bytes, len); e != 0) {
        errno = e;
        return -1;
      }
    }
    k->accepted_.fetch_add(1);
    if (k->record) {
      SentDatagram s;
      s.bytes.assign(bytes, bytes + len);
      std::memcpy(s.addr.data(), addr, std::min<std::size_t>(addr_len, s.addr.size()));
      s.addr_len = addr_len;
      std::lock_guard lock(k->mu_);
      k->sent_.push_back(std::move(s));
    }
    return static_cast<ssize_t>(len);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<FakeDatagram> queue_;
  std::vector<SentDatagram> sent_;
  std::atomic<uint64_t> recv_calls_{0};
  std::atomic<uint64_t> send_calls_{0};
  std::atomic<uint64_t> accepted_{0};
};

}  // namespace sluice::testing
