#include "core/arena.h"

#include <bit>
#include <new>

#include "core/bits.h"
#include "core/segment.h"
#include "core/step.h"

namespace shardalloc::core {
namespace {

constexpr size_t kBitsPerWord = 64;

// The bits of word `w` that fall in [index, index+count).
uint64_t word_mask(size_t w, size_t index, size_t count) {
  const size_t lo = w * kBitsPerWord > index ? w * kBitsPerWord : index;
  const size_t hi_excl =
      (w + 1) * kBitsPerWord < index + count ? (w + 1) * kBitsPerWord : index + count;
  const size_t n = hi_excl - lo;
  const uint64_t ones = n == kBitsPerWord ? ~uint64_t{0} : ((uint64_t{1} << n) - 1);
  return ones << (lo - w * kBitsPerWord);
}

}  // namespace

size_t Arena::header_bytes(size_t slot_count) {
  const size_t words = (slot_count + kBitsPerWord - 1) / kBitsPerWord;
  return align_up(sizeof(Arena), 8) + 3 * words * sizeof(uint64_t) + align_up(slot_count, 8);
}

Arena* Arena::create(void* at, uintptr_t base, size_t slot_count, uintptr_t mem_start,
                     uintptr_t mem_end) {
  Arena* a = new (at) Arena{};
  a->next = nullptr;
  a->base = base;
  a->slot_count = slot_count;
  a->mem_start = mem_start;
  a->mem_end = mem_end;
  a->for_huge = false;
  // relaxed: published with the arena (the domain list's release CAS).
  a->mapped_slots.store(slot_count, std::memory_order_relaxed);
  a->word_count = (slot_count + kBitsPerWord - 1) / kBitsPerWord;
  auto* words = ptr<std::atomic<uint64_t>>(align_up(addr(at) + sizeof(Arena), 8));
  a->claimed = words;
  a->dirty = words + a->word_count;
  a->aged = words + 2 * a->word_count;
  a->resident = ptr<std::atomic<uint8_t>>(addr(words + 3 * a->word_count));
  for (size_t i = 0; i < slot_count; ++i) new (&a->resident[i]) std::atomic<uint8_t>(0);
  for (size_t w = 0; w < a->word_count; ++w) {
    // Bits past slot_count are permanently claimed so searches never hand them out.
    const uint64_t tail =
        (w + 1) * kBitsPerWord > slot_count ? ~uint64_t{0} << (slot_count - w * kBitsPerWord) : 0;
    // relaxed: the arena is published to other threads by a release CAS on the domain's list.
    new (&a->claimed[w]) std::atomic<uint64_t>(tail);
    new (&a->dirty[w]) std::atomic<uint64_t>(0);
    new (&a->aged[w]) std::atomic<uint64_t>(0);
  }
  return a;
}

bool Arena::is_claimed(size_t index) const {
  // acquire: a reader that sees the claim also sees the segment header the claimer wrote before
  // publishing it.
  return (claimed[index / kBitsPerWord].load(std::memory_order_acquire) >> (index % kBitsPerWord)) &
         1;
}

size_t Arena::clean_count(size_t index, size_t count) const {
  size_t dirty_slots = 0;
  for (size_t w = index / kBitsPerWord; w * kBitsPerWord < index + count; ++w) {
    // relaxed: we own the slots; their dirty bits change only by our own release.
    dirty_slots += size_t(
        std::popcount(dirty[w].load(std::memory_order_relaxed) & word_mask(w, index, count)));
  }
  return count - dirty_slots;
}

bool Arena::range_looks_free(size_t index, size_t count) const {
  for (size_t w = index / kBitsPerWord; w * kBitsPerWord < index + count; ++w) {
    // relaxed: only a hint; try_claim_range decides with CAS.
    if (claimed[w].load(std::memory_order_relaxed) & word_mask(w, index, count)) return false;
  }
  return true;
}

void Arena::clear_bits(std::atomic<uint64_t>* bits, size_t index, size_t count) {
  for (size_t w = index / kBitsPerWord; w * kBitsPerWord < index + count; ++w) {
    // release: our writes to the slots happen-before the next claimer's acquire CAS.
    bits[w].fetch_and(~word_mask(w, index, count), std::memory_order_release);
  }
}

bool Arena::try_claim_range(size_t index, size_t count) {
  const size_t first_word = index / kBitsPerWord;
  for (size_t w = first_word; w * kBitsPerWord < index + count; ++w) {
    const uint64_t mask = word_mask(w, index, count);
    uint64_t seen = claimed[w].load(std::memory_order_relaxed);
    for (;;) {
      if (seen & mask) {
        // Someone claimed part of the run: give back the words we already took.
        if (w > first_word) clear_bits(claimed, index, w * kBitsPerWord - index);
        return false;
      }
      // acquire: we see everything the previous owner wrote before its release.
      if (claimed[w].compare_exchange_weak(seen, seen | mask, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
        break;
      }
    }
  }
  return true;
}

namespace {

// The first slot at or after i whose claimed bit reads clear, or a.slot_count
// (bits past slot_count are permanently set). A hint: the claim decides.
size_t next_clear_slot(const Arena& a, size_t i) {
  while (i < a.slot_count) {
    // relaxed: a hint; try_claim_range decides with CAS.
    const uint64_t word = a.claimed[i / kBitsPerWord].load(std::memory_order_relaxed);
    const uint64_t clear = ~word & (~uint64_t{0} << (i % kBitsPerWord));
    if (clear != 0) return (i / kBitsPerWord) * kBitsPerWord + size_t(std::countr_zero(clear));
    i = (i / kBitsPerWord + 1) * kBitsPerWord;
  }
  return a.slot_count;
}

}  // namespace

size_t Arena::claim(size_t count, size_t align, size_t align_offset) {
  if (count == 0 || count > slot_count) return SIZE_MAX;
  // Runs for an alignment above a slot start where (base slot + i + align_offset)
  // is a multiple of align_slots: the first such i, then every align_slots-th.
  const size_t align_slots = align > kSegmentSize ? align / kSegmentSize : 1;
  const size_t phase = (base / kSegmentSize + align_offset) % align_slots;
  size_t i = (align_slots - phase) % align_slots;
  // First fit from the lowest slot: recently released slots are reused while
  // their pages are still resident, and the high end of the arena stays
  // untouched (or gets purged), which keeps RSS compact.
  while (i + count <= slot_count) {
    if (count == 1 && align_slots == 1) {
      i = next_clear_slot(*this, i);  // skips full words
      if (i >= slot_count) break;
    }
    if (range_looks_free(i, count) && try_claim_range(i, count)) return i;
    i += align_slots;
  }
  return SIZE_MAX;
}

namespace {

// The units of slot k of a span whose first `written` bytes were written.
unsigned units_written(size_t written, size_t k) {
  const size_t at = k * kSegmentSize;
  if (written <= at) return 0;
  return resident_units_of(written - at < kSegmentSize ? written - at : kSegmentSize);
}

}  // namespace

SpanNeed SpanNeed::of(size_t count, size_t written) {
  SpanNeed n;
  n.count = count;
  n.full = written / kSegmentSize < count ? written / kSegmentSize : count;
  if (count - n.full > 2) n.full = count - 2;  // counted whole: a hint that asks a little more
  for (size_t k = 0; k < 2 && k < n.tail_count(); ++k) {
    n.tail[k] = uint8_t(units_written(written, n.full + k));
  }
  return n;
}

namespace {

// The bit of slot i in a bitmap, read without ordering: the claim decides.
uint64_t slot_bit(const std::atomic<uint64_t>* bits, size_t i) {
  return (bits[i / kBitsPerWord].load(std::memory_order_relaxed) >> (i % kBitsPerWord)) & 1;
}

}  // namespace

bool Arena::was_aged(size_t index) const { return slot_bit(aged, index) != 0; }

size_t Arena::resident_sum(size_t index, size_t count) const {
  size_t sum = 0;
  for (size_t k = index; k < index + count; ++k) sum += resident_units(k);
  return sum;
}

// The window of need.count slots at start; full_resident: the resident
// units of its first need.full slots.
Arena::Fit Arena::window_fit(size_t start, size_t full_resident, const SpanNeed& need,
                             size_t run) const {
  Fit fit{start, int64_t(full_resident), run, int64_t(full_resident)};
  for (size_t k = 0; k < need.tail_count(); ++k) {
    const int64_t r = resident_units(start + need.full + k);
    const int64_t t = need.tail[k];
    fit.covered += r <= t ? r : t;
    fit.score += r <= t ? r : t - (r - t);  // covered, less the excess left unused
  }
  fit.missing = need.total() - fit.covered;
  return fit;
}

Arena::Fit Arena::find_dirty_slot(const SpanNeed& need, size_t* budget) const {
  Fit best;
  if (need.count != 1) return best;
  for (size_t w = 0; w < word_count && *budget != 0; ++w) {
    // relaxed: hints; claim_fit decides with CAS.
    uint64_t free_dirty =
        dirty[w].load(std::memory_order_relaxed) & ~claimed[w].load(std::memory_order_relaxed);
    for (; free_dirty != 0 && *budget != 0; free_dirty &= free_dirty - 1) {
      const size_t i = w * kBitsPerWord + size_t(std::countr_zero(free_dirty));
      if (i >= slot_count) break;
      --*budget;
      const Fit here = window_fit(i, need.full != 0 ? resident_units(i) : 0, need, 0);
      if (here.better_slot_than(best)) best = here;
      if (best.score == need.total()) return best;  // resident as far as it will be written
    }
  }
  return best;
}

namespace {

// The first slot in [i, limit) whose bit in `bits` reads set, or limit
// (relaxed loads: hints).
size_t next_set_slot(const std::atomic<uint64_t>* bits, size_t i, size_t limit) {
  while (i < limit) {
    const uint64_t set = bits[i / kBitsPerWord].load(std::memory_order_relaxed) &
                         (~uint64_t{0} << (i % kBitsPerWord));
    if (set != 0) {
      const size_t found = (i / kBitsPerWord) * kBitsPerWord + size_t(std::countr_zero(set));
      return found < limit ? found : limit;
    }
    i = (i / kBitsPerWord + 1) * kBitsPerWord;
  }
  return limit;
}

// The last slot in [from, end) whose bit in `bits` reads set, or end.
size_t last_set_slot(const std::atomic<uint64_t>* bits, size_t from, size_t end) {
  for (size_t i = end; i > from;) {
    const size_t w = (i - 1) / kBitsPerWord;
    const size_t base = w * kBitsPerWord;
    uint64_t set = bits[w].load(std::memory_order_relaxed);
    const size_t top = i - base;  // bits [0, top) of this word are below i
    if (top < kBitsPerWord) set &= (uint64_t{1} << top) - 1;
    if (from > base) set &= ~uint64_t{0} << (from - base);
    if (set != 0) return base + kBitsPerWord - 1 - size_t(std::countl_zero(set));
    i = base;
  }
  return end;
}

}  // namespace

Arena::Fit Arena::find_reusing(const SpanNeed& need) const {
  Fit best;
  const size_t count = need.count;
  if (count == 0 || count > slot_count) return best;
  size_t i = 0;
  while (i < slot_count) {
    i = next_clear_slot(*this, i);
    if (i + count > slot_count) break;
    // The free run [i, end) (bits past slot_count read claimed).
    const size_t end = next_set_slot(claimed, i, slot_count);
    const size_t run = end - i;
    if (run >= count) {
      // The lowest window that covers the most: the first, or one that
      // holds a dirty slot (the others hold nothing resident).
      Fit in_run = window_fit(i, resident_sum(i, need.full), need, run);
      const size_t dirty_first = next_set_slot(dirty, i, end);
      if (dirty_first != end) {
        const size_t dirty_last = last_set_slot(dirty, dirty_first, end);
        const size_t lo = dirty_first >= i + count ? dirty_first - count + 1 : i + 1;
        const size_t hi = dirty_last + count <= end ? dirty_last : end - count;
        // Slide from lo, summing the resident units of the wholly written part.
        size_t full_resident = lo <= hi ? resident_sum(lo, need.full) : 0;
        for (size_t start = lo; start <= hi; ++start) {
          if (start > lo && need.full != 0) {
            full_resident += resident_units(start + need.full - 1);
            full_resident -= resident_units(start - 1);
          }
          const Fit here = window_fit(start, full_resident, need, run);
          if (here.covered > in_run.covered) in_run = here;
        }
      }
      if (in_run.better_than(best)) best = in_run;
      if (best.score == need.total() && best.run == count) break;  // an exact, resident fit
    }
    i = end;
  }
  return best;
}

void Arena::release(size_t index, size_t count, bool first_only, size_t written) {
  // The resident hint first, while we hold every slot (nobody else writes
  // their bits or hints): a slot that stays dirty keeps an earlier tenant's
  // larger extent; first_only leaves the first OS page of the first slot.
  for (size_t k = 0; k < count; ++k) {
    const size_t i = index + k;
    const unsigned now = units_written(first_only ? kOsPage : written, k);
    // (first_only: the caller's purge took an earlier tenant's pages too.)
    const unsigned before =
        !first_only && now < kUnitsPerSlot && slot_bit(dirty, i) ? resident_units(i) : 0;
    // relaxed: a hint; read again only as one.
    resident[i].store(uint8_t(now > before ? now : before), std::memory_order_relaxed);
  }
  for (size_t w = index / kBitsPerWord; w * kBitsPerWord < index + count; ++w) {
    const uint64_t mask = word_mask(w, index, count);
    const uint64_t first = w == index / kBitsPerWord ? uint64_t{1} << (index % kBitsPerWord) : 0;
    const uint64_t dirty_mask = first_only ? first : mask;
    // relaxed: purge ticks read these bits only as candidates and claim a slot
    // before purging it; we still hold every slot of the range, so no other
    // thread writes their bits.
    dirty[w].fetch_or(dirty_mask, std::memory_order_relaxed);
    if (dirty_mask != mask) dirty[w].fetch_and(~(mask & ~dirty_mask), std::memory_order_relaxed);
    aged[w].fetch_and(~mask, std::memory_order_relaxed);  // freed just now: not old enough yet
  }
  clear_bits(claimed, index, count);
}

size_t Arena::purge_tick(bool (*purge)(void* p, size_t bytes), bool all, size_t* purged,
                         size_t* keep) {
  size_t left = 0;
  for (size_t w = 0; w < word_count; ++w) {
    // relaxed: candidates only; each is re-checked by claiming it.
    const uint64_t free_dirty =
        dirty[w].load(std::memory_order_relaxed) & ~claimed[w].load(std::memory_order_relaxed);
    uint64_t candidates = all ? free_dirty : free_dirty & aged[w].load(std::memory_order_relaxed);
    while (candidates != 0) {
      const size_t bit = size_t(std::countr_zero(candidates));
      candidates &= candidates - 1;
      const size_t index = w * kBitsPerWord + bit;
      if (keep != nullptr && *keep > 0) {  // stays resident (and aged) for a later tick
        --*keep;
        continue;
      }
      if (purge_slot(index, purge) == SlotPurge::kPurged) ++*purged;
    }
    // What is free and dirty now gets purged at the next tick if it stays so.
    const uint64_t still =
        dirty[w].load(std::memory_order_relaxed) & ~claimed[w].load(std::memory_order_relaxed);
    aged[w].fetch_or(still, std::memory_order_relaxed);
    left += size_t(std::popcount(still));
  }
  return left;
}

void Arena::purge_resident(bool (*purge)(void* p, size_t bytes), int64_t* units, size_t* purged,
                           size_t* refused) {
  for (size_t w = 0; w < word_count; ++w) {
    // relaxed: candidates only; each is re-checked by claiming it.
    uint64_t candidates =
        dirty[w].load(std::memory_order_relaxed) & ~claimed[w].load(std::memory_order_relaxed);
    while (candidates != 0) {
      if (*units <= 0) return;
      const size_t index = w * kBitsPerWord + size_t(std::countr_zero(candidates));
      candidates &= candidates - 1;
      const unsigned held = resident_units(index);  // before the purge zeroes it
      const SlotPurge outcome = purge_slot(index, purge);
      if (outcome == SlotPurge::kTaken) continue;
      ++*(outcome == SlotPurge::kPurged ? purged : refused);
      *units -= held > 0 ? held : 1;
    }
  }
}

Arena::SlotPurge Arena::purge_slot(size_t index, bool (*purge)(void* p, size_t bytes)) {
  Step step;  // no fork leaves the slot claimed for good
  if (!try_claim_range(index, 1)) return SlotPurge::kTaken;
  const bool done = purge == nullptr || purge(ptr(slot_addr(index)), kSegmentSize);
  if (done) {
    const size_t w = index / kBitsPerWord;
    const uint64_t bit = uint64_t{1} << (index % kBitsPerWord);
    // relaxed: we own the slot now; nobody else touches its bits until we release it.
    resident[index].store(0, std::memory_order_relaxed);  // first: no clean slot reads resident
    dirty[w].fetch_and(~bit, std::memory_order_relaxed);
    aged[w].fetch_and(~bit, std::memory_order_relaxed);
  }
  clear_bits(claimed, index, 1);
  return done ? SlotPurge::kPurged : SlotPurge::kRefused;
}

}  // namespace shardalloc::core
