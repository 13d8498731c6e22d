#include "engine/io/divert/divert_address.h"

#include <arpa/inet.h>

#include <algorithm>

namespace sluice {

static_assert(sizeof(sockaddr_in{}.sin_zero) == 8, "sin_zero carries an 8-byte interface name");

uint64_t IfNameKey(const sockaddr_in& addr) noexcept {
  char name[8];
  std::memcpy(name, addr.sin_zero, sizeof name);
  std::fill(std::find(name, name + sizeof name, '\0'), name + sizeof name, '\0');
  uint64_t key;
  std::memcpy(&key, name, sizeof key);
  return key;
}

std::size_t IfNameOfKey(uint64_t key, char (&out)[8]) noexcept {
  std::memcpy(out, &key, sizeof out);
  return static_cast<std::size_t>(std::find(out, out + sizeof out, '\0') - out);
}

DivertInfo DecodeDivertAddress(const sockaddr_in& addr) noexcept {
  DivertInfo info;
  info.if_addr = ntohl(addr.sin_addr.s_addr);
  info.direction = info.if_addr == INADDR_ANY ? Direction::kOut : Direction::kIn;
  info.rule = addr.sin_port;  // the kernel writes the rule number in host order
  info.if_key = IfNameKey(addr);
  return info;
}

sockaddr_in MakeDivertAddress(Direction direction, uint16_t rule, uint32_t if_addr,
                              std::string_view if_name) noexcept {
  sockaddr_in a;
  std::memset(&a, 0, sizeof a);
#if defined(__FreeBSD__) || defined(__APPLE__) || defined(__NetBSD__) || defined(__OpenBSD__) || \
    defined(__DragonFly__)
  a.sin_len = sizeof a;
#endif
  a.sin_family = AF_INET;
  a.sin_port = rule;
  a.sin_addr.s_addr = direction == Direction::kIn ? htonl(if_addr) : htonl(INADDR_ANY);
  const std::size_t n = std::min(if_name.size(), sizeof a.sin_zero - 1);
  std::memcpy(a.sin_zero, if_name.data(), n);
  return a;
}

uint32_t InterfaceTable::InternSlow(uint64_t key) noexcept {
  const uint32_t n = size_.load(std::memory_order_relaxed);  // this thread is the only writer
  uint32_t id = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (keys_[i] == key) {
      id = i + 1;
      break;
    }
  }
  if (id == 0) {
    if (n == kCapacity) {
      overflowed_.fetch_add(1, std::memory_order_relaxed);
      return kOverflowId;  // not cached: every overflowing packet is counted
    }
    keys_[n] = key;
    size_.store(n + 1, std::memory_order_release);
    id = n + 1;
  }
  last_key_ = key;
  last_id_ = id;
  return id;
}

std::string_view InterfaceTable::Name(uint32_t id) const noexcept {
  if (id == 0 || id > size()) return {};
  const char* p = reinterpret_cast<const char*>(&keys_[id - 1]);
  return {p, static_cast<std::size_t>(std::find(p, p + 8, '\0') - p)};
}

uint32_t InterfaceTable::Find(std::string_view name) const noexcept {
  const uint32_t n = size();
  for (uint32_t i = 0; i < n; ++i) {
    if (Name(i + 1) == name) return i + 1;
  }
  return 0;
}

}  // namespace sluice
