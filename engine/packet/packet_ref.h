// PacketRef: the one owner of a PacketBuffer while it is in the engine.
//
// Move-only. Whoever holds it must give the packet a verdict (meta().verdict) before letting
// it go. Destroyed without one, it records DROP with reason no_verdict, counts an orphan in the
// pool, tells the buffer's owner (so NFQUEUE or divert can return a DROP for the kernel's
// packet id, and no id leaks), and returns the buffer to its pool. That path takes the pool's
// lock: it is for mistakes and teardown, not for the data path, where the sink hands buffers
// back in bulk through Release() and a PoolCache.
#pragma once

#include <utility>

#include "engine/packet/packet_buffer.h"

namespace sluice {

class PacketRef {
 public:
  PacketRef() noexcept = default;
  explicit PacketRef(PacketBuffer* buf) noexcept : buf_(buf) {}
  PacketRef(PacketRef&& other) noexcept : buf_(std::exchange(other.buf_, nullptr)) {}
  PacketRef& operator=(PacketRef&& other) noexcept {
    if (this != &other) {
      Dispose();
      buf_ = std::exchange(other.buf_, nullptr);
    }
    return *this;
  }
  PacketRef(const PacketRef&) = delete;
  PacketRef& operator=(const PacketRef&) = delete;
  ~PacketRef() { Dispose(); }

  explicit operator bool() const noexcept { return buf_ != nullptr; }
  PacketBuffer* get() const noexcept { return buf_; }
  PacketBuffer& operator*() const noexcept { return *buf_; }
  PacketBuffer* operator->() const noexcept { return buf_; }

  // Gives up ownership without any action: the caller now owns the buffer (and its verdict).
  [[nodiscard]] PacketBuffer* Release() noexcept { return std::exchange(buf_, nullptr); }

  // Records the verdict on the packet; the ref still owns the buffer.
  void SetVerdict(Verdict v, DropReason reason = DropReason::kNone) noexcept {
    buf_->meta().verdict = v;
    buf_->meta().drop_reason = reason;
  }

 private:
  void Dispose() noexcept {
    if (buf_ != nullptr) DisposeSlow();
  }
  void DisposeSlow() noexcept;  // buffer_pool.cpp: needs the pool

  PacketBuffer* buf_ = nullptr;
};

}  // namespace sluice
