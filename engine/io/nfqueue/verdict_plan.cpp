#include "engine/io/nfqueue/verdict_plan.h"

#include <bit>
#include <cstring>

namespace sluice {

VerdictTracker::VerdictTracker() : bits_(std::make_unique<uint64_t[]>(kWindow / 64)) {
  std::memset(bits_.get(), 0, kWindow / 8);
}

uint64_t VerdictTracker::FirstUnresolved(uint64_t from) const noexcept {
  if (from < low_) from = low_;
  while (from - low_ < kWindow) {
    const uint64_t i = from & (kWindow - 1);
    // The resolved bits from `from` upward within its word.
    const uint64_t word = bits_[i >> 6] >> (i & 63);
    const auto ones = static_cast<uint64_t>(std::countr_one(word));
    if (ones < 64 - (i & 63)) return from + ones;
    from += 64 - (i & 63);
  }
  return from;
}

bool VerdictTracker::IsResolved(uint64_t ordinal) const noexcept {
  if (ordinal < low_) return true;
  return ordinal - low_ < kWindow && Bit(ordinal);
}

void VerdictTracker::Resolve(uint64_t ordinal) noexcept {
  if (ordinal < low_) return;
  if (ordinal != low_) {
    if (ordinal - low_ >= kWindow) {
      ++overflows_;
      return;
    }
    const uint64_t i = ordinal & (kWindow - 1);
    bits_[i >> 6] |= uint64_t{1} << (i & 63);
    return;
  }
  ++low_;
  while (Bit(low_)) {  // absorb the out-of-order resolutions now adjacent to the prefix
    const uint64_t i = low_ & (kWindow - 1);
    bits_[i >> 6] &= ~(uint64_t{1} << (i & 63));
    ++low_;
  }
}

uint32_t PlanVerdicts(std::span<const VerdictItem> items, const VerdictTracker& tracker,
                      VerdictMessage* out, PlanCounts* counts) noexcept {
  uint32_t n = 0;
  // Every ordinal below `cursor` is resolved or resolved by a message already planned.
  uint64_t cursor = tracker.FirstUnresolved(tracker.low());
  bool run_open = false;
  uint32_t run_first = 0, run_count = 0, run_last = 0, run_mark = 0;

  auto close_run = [&] {
    if (!run_open) return;
    const VerdictItem& last = items[run_last];
    out[n++] = VerdictMessage{.batch = run_count > 1,
                              .accept = true,
                              .id = last.id,
                              .mark = run_mark,
                              .payload = nullptr,
                              .payload_len = 0,
                              .first = run_first,
                              .count = run_last - run_first + 1};
    if (run_count > 1) {
      ++counts->batch_messages;
      counts->batched_packets += run_count;
    }
    run_open = false;
  };

  for (uint32_t i = 0; i < items.size(); ++i) {
    const VerdictItem& it = items[i];
    const bool in_order = it.ordinal == cursor;
    if (in_order) cursor = tracker.FirstUnresolved(cursor + 1);

    if (it.kind == VerdictKind::kDrop) {
      // Emitted now, ahead of any open run's batch message (it may sit inside that message's
      // item range; see VerdictMessage). A drop that is not in order ends the run: the items
      // after it are not in order either.
      if (!in_order) close_run();
      out[n++] = VerdictMessage{.batch = false,
                                .accept = false,
                                .id = it.id,
                                .mark = it.mark,
                                .payload = nullptr,
                                .payload_len = 0,
                                .first = i,
                                .count = 1};
      continue;
    }
    if (it.kind == VerdictKind::kAccept && in_order) {
      if (run_open && run_mark != it.mark) close_run();
      if (!run_open) {
        run_open = true;
        run_first = i;
        run_count = 0;
        run_mark = it.mark;
      }
      run_last = i;
      ++run_count;
      continue;
    }
    close_run();
    if (it.kind == VerdictKind::kAccept) ++counts->unbatched;
    out[n++] =
        VerdictMessage{.batch = false,
                       .accept = true,
                       .id = it.id,
                       .mark = it.mark,
                       .payload = it.kind == VerdictKind::kAcceptPayload ? it.payload : nullptr,
                       .payload_len = it.kind == VerdictKind::kAcceptPayload ? it.payload_len : 0,
                       .first = i,
                       .count = 1};
  }
  close_run();
  return n;
}

}  // namespace sluice
