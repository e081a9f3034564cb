// An arena: a run of segment-sized slots with a bitmap of which are claimed.
// Claims and releases are CAS / fetch_and on bitmap words: lock-free, and an
// arena's header is never unmapped, so stale readers of bitmaps never fault
// (except by destroy of a first-class heap, when no call on it may be in
// flight: docs/protocols.md 7). A tail of free slots may go back to the OS
// (mapped_slots; protocol 4), never under a walk counted in slot_readers.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/config.h"

namespace shardalloc::core {

// The grain of Arena::resident: a slot in 64 parts (8 KiB).
inline constexpr unsigned kUnitsPerSlot = 64;
inline constexpr size_t kResidentUnit = kSegmentSize / kUnitsPerSlot;
static_assert(kUnitsPerSlot <= UINT8_MAX, "a slot's units fit a byte");
// The units that hold `bytes` (at most a slot's), rounded up.
constexpr unsigned resident_units_of(size_t bytes) {
  return unsigned((bytes + kResidentUnit - 1) / kResidentUnit);
}

// What a claim of `count` slots writes: its first `full` slots whole, then
// the units of at most two more (a huge block's last, partly written slot;
// the tail guard slot after it, unwritten).
struct SpanNeed {
  size_t count = 0;
  size_t full = 0;
  uint8_t tail[2] = {0, 0};
  // A claim of `count` slots whose tenant writes the first `written` bytes.
  static SpanNeed of(size_t count, size_t written);
  size_t tail_count() const { return count - full; }
  int64_t total() const { return int64_t(full) * kUnitsPerSlot + tail[0] + tail[1]; }
};

// Units a huge-block window may leave to fault in and still count as
// covering all (Arena::Fit::better_than): 16 KiB, 4 OS pages. pbzip2 needs
// 1; 8 measured the same on malloc-large as 2 (peak RSS 20.5 against 20.3
// MiB, page faults 23.5k against 23.4k, medians of 10 runs: its noise), so
// the smaller slack, closer to ranking by coverage alone, stays.
inline constexpr int64_t kFitSlack = 2;

struct Arena {
  Arena* next;     // domain's list; immutable once the arena is published
  uintptr_t base;  // address of slot 0 (segment aligned)
  size_t slot_count;
  uintptr_t mem_start;  // the memory handed over / reserved, for overlap and ownership checks
  uintptr_t mem_end;
  size_t word_count;
  std::atomic<uint64_t>* claimed;  // bit i: slot i is in use
  std::atomic<uint64_t>* dirty;    // bit i: slot i was used and not purged since
  std::atomic<uint64_t>* aged;  // bit i: slot i was already free and dirty at the last purge tick
  // Slot i's first resident[i] units of kResidentUnit may still be resident
  // (a hint for placement; docs/protocols.md 4): set by a release to the
  // extent its tenant wrote, or kept at an earlier tenant's larger one (a
  // dirty slot keeps every page any tenant touched), zeroed by a purge.
  std::atomic<uint8_t>* resident;
  // Reserved for a huge block (Domain::grow): one-slot segments come here
  // only when no other arena has a free slot (Domain::try_claim).
  bool for_huge;
  // Slots [0, mapped_slots) are mapped. The rest, all free, were given back
  // to the OS when it refused more address space (Domain::give_back_tail):
  // claimed for good, never read again. Readers that may read slot memory
  // (walks, arena_of) bound themselves by it (protocol 4).
  std::atomic<size_t> mapped_slots{0};

  // Bytes an arena header with its three bitmaps needs for slot_count slots.
  static size_t header_bytes(size_t slot_count);
  // Builds the header at `at` (header_bytes(slot_count) bytes).
  static Arena* create(void* at, uintptr_t base, size_t slot_count, uintptr_t mem_start,
                       uintptr_t mem_end);

  uintptr_t slot_addr(size_t index) const { return base + index * kSegmentSize; }
  bool holds(uintptr_t a) const { return a >= base && a < base + mapped() * kSegmentSize; }
  size_t mapped() const {
    // acquire: pairs with the release store that restores a tail whose give-back was called off.
    return mapped_slots.load(std::memory_order_acquire);
  }
  // Claims slots [index, slot_count) when every one is free (a tail to give
  // back); false, with nothing claimed, otherwise.
  bool claim_tail(size_t index) { return try_claim_range(index, slot_count - index); }
  // A hint (no ordering): whether slots [index, slot_count) all read free.
  bool tail_looks_free(size_t index) const { return range_looks_free(index, slot_count - index); }
  // Gives back the claims of slots [index, index + count) (a tail kept).
  void unclaim(size_t index, size_t count) { clear_bits(claimed, index, count); }
  size_t slot_index(uintptr_t a) const { return (a - base) / kSegmentSize; }

  // Claims `count` consecutive slots whose slot (first + align_offset) starts
  // on an `align`-aligned address (align > kSegmentSize; else no constraint).
  // Returns the first slot's index or SIZE_MAX.
  size_t claim(size_t count, size_t align, size_t align_offset);
  // Where a claim of `need.count` slots (no alignment) reuses the most of
  // what freed spans left resident: the window whose resident units cover
  // the most of what the claimant writes (reuse before fresh memory: a
  // resident span passed over stays resident until the purge, and peak RSS
  // counts both); in a run, the lowest such window (one further in would
  // cut the run in two: sort -S 200M, a freed 200 MiB buffer then 40 MiB
  // ones, took the window that ended where the buffer had, and the fifth
  // no longer fit: +39 MB peak RSS); between runs of equal cover, the units
  // covered less those left resident and unused beside the block (an
  // earlier, larger tenant's pages stay for the new tenant's life), then
  // the shortest run (best fit), then the lowest. SIZE_MAX when no run is
  // free. A hint read without ordering; claim_fit decides with CAS.
  struct Fit {
    size_t index = SIZE_MAX;
    int64_t score = 0;    // units covered minus units left unused in the window
    size_t run = 0;       // length of the free run holding it
    int64_t covered = 0;  // units the claimant writes that are resident
    int64_t missing = 0;  // units the claimant writes that are not (need.total() - covered)
    // Between huge-block windows (find_reusing, and across arenas): the one
    // that covers more, then the better score (less left resident and
    // unused beside the block), then the shorter run. Two windows that each
    // leave at most kFitSlack units to fault in count as covering all.
    // Without the slack, a window in a larger freed span won by a
    // unit and cut that span where a later block of its size needed it
    // whole (pbzip2: its 911,664-byte output buffers, 112 units, took the
    // first two slots of a freed run of two 3.6 MB arrays, 112 covered but
    // 16 left unused, rather than a freed 902,064-byte input buffer's span,
    // 111 covered; the next array then took 7 fresh slots: peak RSS 47-48
    // MiB against glibc's 41).
    bool better_than(const Fit& o) const {
      if (index == SIZE_MAX) return false;
      if (o.index == SIZE_MAX) return true;
      const bool both_cover_all = missing <= kFitSlack && o.missing <= kFitSlack;
      if (!both_cover_all && covered != o.covered) return covered > o.covered;
      return score != o.score ? score > o.score : run < o.run;
    }
    // Between freed slots for a one-slot claim (no run to cut): the score.
    bool better_slot_than(const Fit& o) const {
      if (index == SIZE_MAX) return false;
      return o.index == SIZE_MAX || score > o.score;
    }
  };
  Fit find_reusing(const SpanNeed& need) const;
  // One slot (need.count == 1) among free dirty slots only (a one-slot
  // claim takes a dirty slot before any fresh one): the best score
  // (better_slot_than: the units covered less those left unused) of the
  // lowest *budget of them (counted down: a claim scores a bounded number of
  // slots, however many are free and dirty), the lowest of equals; run is
  // left 0.
  Fit find_dirty_slot(const SpanNeed& need, size_t* budget) const;
  // Claims the run find_reusing picked. Returns the first slot's index or
  // SIZE_MAX when that run was taken meanwhile.
  size_t claim_fit(const Fit& fit, size_t count) {
    return fit.index != SIZE_MAX && try_claim_range(fit.index, count) ? fit.index : SIZE_MAX;
  }
  // Gives slots [index, index + count) back, dirty; with first_only, only
  // the first is (the caller purged all but its first OS page while it held
  // them: they read as zero again). `written`: bytes from the first slot's
  // start its tenant may have made resident (the resident hint).
  void release(size_t index, size_t count, bool first_only = false, size_t written = SIZE_MAX);
  // The holder of claimed slot `index` purged its pages from unit `units` on.
  void cap_resident(size_t index, unsigned units) {
    // relaxed: a hint; only the holder writes it (as release does).
    if (resident_units(index) > units)
      resident[index].store(uint8_t(units), std::memory_order_relaxed);
  }
  // The resident hint of slot index, in kResidentUnit (tests, walks).
  unsigned resident_units(size_t index) const {
    // relaxed: a hint.
    return resident[index].load(std::memory_order_relaxed);
  }
  // For slots the caller has claimed: true when none was used since it was
  // fresh or purged.
  bool range_is_clean(size_t index, size_t count) const {
    return clean_count(index, count) == count;
  }
  // For slots the caller has claimed: how many were not used since they were fresh or purged.
  size_t clean_count(size_t index, size_t count) const;
  bool is_claimed(size_t index) const;
  // Whether slot `index` was already free and dirty at the last purge tick
  // (a hint: the tick and this read race; claims do not clear the bit).
  bool was_aged(size_t index) const;

  // One purge tick: purges the free dirty slots that were already free and
  // dirty at the previous tick (so each stayed free for a whole delay), or
  // every free dirty slot when `all`. Each is claimed while it is purged.
  // With `keep`, up to *keep of those slots (counted down, the lowest first)
  // stay resident, still aged, for a later tick. Returns the number of free
  // dirty slots left for a later tick.
  size_t purge_tick(bool (*purge)(void* p, size_t bytes), bool all, size_t* purged,
                    size_t* keep = nullptr);
  // Purges free dirty slots, the lowest first, until their resident hints
  // sum to *units (counted down) or none is left (Domain::offset_growth).
  // A slot whose purge is refused (locked pages stay resident whatever we
  // do) spends its units too, so the scan stays bounded, and is counted in
  // *refused.
  void purge_resident(bool (*purge)(void* p, size_t bytes), int64_t* units, size_t* purged,
                      size_t* refused);

 private:
  enum class SlotPurge { kTaken, kRefused, kPurged };
  // Claims free slot `index`, purges it and gives it back clean. kTaken:
  // claimed meanwhile; kRefused: the purge was refused (locked pages: it
  // stays dirty, as it may keep its contents).
  SlotPurge purge_slot(size_t index, bool (*purge)(void* p, size_t bytes));
  bool try_claim_range(size_t index, size_t count);
  void clear_bits(std::atomic<uint64_t>* bits, size_t index, size_t count);
  bool range_looks_free(size_t index, size_t count) const;
  Fit window_fit(size_t start, size_t full_resident, const SpanNeed& need, size_t run) const;
  size_t resident_sum(size_t index, size_t count) const;
};

}  // namespace shardalloc::core
