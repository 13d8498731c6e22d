// The ends of an offline pipeline: where packets come from and where they go.
// Implementations live under engine/io (pcap files, generated traffic, memory, null).
#pragma once

#include <cstdint>
#include <span>

#include "engine/core/status.h"
#include "engine/packet/batch.h"
#include "engine/pool/buffer_pool.h"

namespace sluice {

class PacketSource {
 public:
  virtual ~PacketSource() = default;

  // Appends up to `max` packets to `batch` (already limited to `max`), with buffers from
  // `cache`: data, len, wire_len, link_type. The pipeline stamps io_token (input ordinal)
  // and rx_ns. Returns false once the input is exhausted or failed (status() says which),
  // possibly after appending a last few packets. Called serially; never blocks for long.
  virtual bool ReadBurst(PoolCache& cache, Batch& batch, uint32_t max) = 0;

  // Ok, or why the input stopped early.
  virtual Status status() const { return Status::Ok(); }
};

class PacketSink {
 public:
  virtual ~PacketSink() = default;

  // One source burst, in input order, every packet with meta().verdict recorded (accepted
  // packets carry the bytes to send; dropped ones their drop_reason). Called serially, bursts
  // in input order. Must not keep the pointers: the buffers are recycled on return.
  virtual void Consume(std::span<PacketBuffer* const> packets) noexcept = 0;

  // Flushes and closes; Ok or the first error seen (for example a full disk).
  virtual Status Finish() { return Status::Ok(); }
};

}  // namespace sluice
