// The ends of an offline pipeline: where packets come from and where they go.
// Implementations live under engine/io (pcap files, generated traffic, memory, null).
#pragma once

#include <chrono>
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

namespace sluice {

// One shard's kernel queue (an NFQUEUE queue, a divert socket): where its packets come from
// and where their verdicts go. Receive runs on the shard's I/O thread; Send runs in the graph,
// serially per shard, batches in the order Receive filled them.
class InlineEndpoint : public PacketOwner {
 public:
  virtual ~InlineEndpoint() = default;

  // Appends up to `max` packets to `batch`, with buffers from `cache` (raw L3: link_type
  // kRaw; io_token and the IoContext carry what Send needs to return each; rx_ns stamped).
  // Waits at most `wait` for the first packet and returns as soon as the socket has no more
  // ready (so a batch closes on size or when the queue is drained). Returns how many it added.
  // Errors are counted by the endpoint, never thrown; 0 is a normal answer.
  virtual uint32_t Receive(PoolCache& cache, Batch& batch, uint32_t max, std::chrono::microseconds wait) noexcept = 0;

  // Acts on every packet's recorded verdict (Batch::RecordVerdicts has run): accept with the
  // new bytes and mark where flagged, or drop. An accept it cannot carry out becomes a drop
  // recorded in the batch (Batch::DropRecorded), so that what the graph counts afterwards is
  // what the kernel was told. The buffers stay the caller's.
  virtual void Send(Batch& batch) noexcept = 0;

  // Called on the I/O thread after a Receive that found nothing, and once more after Stop()
  // has drained the graph: the moment to send what an earlier Send had to hold back (NFQUEUE's
  // verdicts deferred by a full socket), which would otherwise wait for the next packet.
  virtual void Idle() noexcept {}

  // True while the endpoint holds packets it has received but not yet handed out (NFQUEUE:
  // long messages waiting for a large buffer, and what came after them); the next Receive
  // hands them out first, reading nothing new meanwhile. The I/O thread keeps receiving after
  // Stop() until this is false, so that every packet received gets its verdict.
  virtual bool Holding() const noexcept { return false; }

 protected:
  InlineEndpoint() = default;
};

}  // namespace sluice
