#include "core/purge_pacing.h"

namespace shardalloc::core {

// relaxed throughout: see the header (pacing only).

uint64_t PurgePacing::review_end(uint64_t base) const {
  const uint64_t start = review_start_ms.load(std::memory_order_relaxed);
  const uint64_t horizon = base > UINT64_MAX / kReviewDelays ? UINT64_MAX : base * kReviewDelays;
  return start > UINT64_MAX - horizon ? UINT64_MAX : start + horizon;
}

void PurgePacing::note_fresh_claim(size_t fresh, uint64_t now, uint64_t base) {
  if (fresh == 0 || !reviewing() || now >= review_end(base)) return;
  const size_t back = reclaimed.fetch_add(fresh, std::memory_order_relaxed) + fresh;
  if (back * 2 < purged.load(std::memory_order_relaxed)) return;
  end_review();  // claimed back half of it: purged too early
  step(+1);
}

void PurgePacing::after_tick(size_t slots, uint64_t now, uint64_t base) {
  if (reviewing() && now >= review_end(base)) {
    const size_t back = reclaimed.load(std::memory_order_relaxed);
    const bool left_alone = back * 4 < purged.load(std::memory_order_relaxed);
    end_review();
    if (left_alone) step(-1);
  }
  if (slots == 0) return;
  if (!reviewing()) review_start_ms.store(now, std::memory_order_relaxed);
  purged.fetch_add(slots, std::memory_order_relaxed);
}

void PurgePacing::end_review() {
  purged.store(0, std::memory_order_relaxed);
  reclaimed.store(0, std::memory_order_relaxed);
}

void PurgePacing::step(int by) {
  const int s = int(shift.load(std::memory_order_relaxed)) + by;
  if (s >= 0 && s <= int(kMaxShift)) shift.store(uint8_t(s), std::memory_order_relaxed);
}

}  // namespace shardalloc::core
