// Domain memory intake: arenas, segments and metadata chunks.
#include "core/domain.h"

#include <new>

#include "core/assert.h"
#include "core/bits.h"
#include "core/heap.h"
#include "core/lockfree_stack.h"
#include "core/step.h"

namespace shardalloc::core {
namespace {

// The smallest metadata area worth keeping: one heap record.
constexpr size_t kMetaRecord = align_up(sizeof(Heap), 64);
constexpr size_t kMetaMin = align_up(sizeof(MetaChunk), 64) + kMetaRecord;

void zero(void* p, size_t n) { __builtin_memset(p, 0, n); }

}  // namespace

void Domain::ensure_secret(uintptr_t candidate) {
  uintptr_t expected = 0;
  // relaxed: the value needs no ordering; every claimer reads it after this call returns.
  if (secret.load(std::memory_order_relaxed) == 0) {
    secret.compare_exchange_strong(expected, candidate | 1, std::memory_order_relaxed);
  }
}

void Domain::publish_arena(Arena* a) {
  // release (lockfree_stack.h): readers that load the list see the arena's header and bitmaps.
  push_front(arenas, a, &Arena::next);
}

void Domain::add_meta_chunk(uintptr_t start, uintptr_t end) {
  start = align_up(start, 64);
  if (end < start || end - start < kMetaMin) return;
  auto* chunk = new (ptr(start)) MetaChunk{};
  chunk->top.store(align_up(start + sizeof(MetaChunk), 64), std::memory_order_relaxed);
  chunk->end = end;
  // Replace the current chunk only when it has less room left.
  // acquire: we read the current chunk's fields.
  MetaChunk* current = meta.load(std::memory_order_acquire);
  for (;;) {
    if (current != nullptr && current->end - current->top.load(std::memory_order_relaxed) >=
                                  end - chunk->top.load(std::memory_order_relaxed)) {
      return;
    }
    // release: publishes the chunk header; acquire on failure to re-read the winner's chunk.
    if (meta.compare_exchange_weak(current, chunk, std::memory_order_release,
                                   std::memory_order_acquire))
      return;
  }
}

bool Domain::plan_arena(void* start_ptr, size_t size, size_t reserve_bytes, ArenaPlan* plan) {
  const uintptr_t start = addr(start_ptr);
  if (size == 0) return false;
  // The inclusive last byte: a range that ends exactly at 2^64 does not wrap.
  const uintptr_t last_byte = start + (size - 1);
  if (last_byte < start) return false;
  // An arena's end (Arena::mem_end, compared as p < end) must be an address:
  // a range that ends at 2^64 gives up its last byte (region.h).
  const uintptr_t end = last_byte + 1 != 0 ? last_byte + 1 : last_byte;
  uintptr_t first = align_up(start, kSegmentSize);
  if (first < start) return false;  // within a slot of the address space's end: align_up wrapped
  const uintptr_t last = align_down(end, kSegmentSize);
  size_t slots = last > first ? (last - first) / kSegmentSize : 0;
  if (slots == 0) return false;
  const size_t reserve = align_up(reserve_bytes, 64);
  const size_t need = reserve + align_up(Arena::header_bytes(slots), 64) + kMetaMin + 64;
  uintptr_t area, area_end;
  if (first - start >= need) {
    area = start;
    area_end = first;
  } else if (end - last >= need) {
    area = last;
    area_end = end;
  } else if (slots > (need + kSegmentSize - 1) / kSegmentSize) {
    // No slack is large enough: the first slots hold the headers and metadata
    // (several of them when the bitmaps of a very large arena need it).
    const size_t header_slots = (need + kSegmentSize - 1) / kSegmentSize;
    area = first;
    area_end = first + header_slots * kSegmentSize;
    first += header_slots * kSegmentSize;
    slots -= header_slots;
  } else {
    return false;
  }
  area = align_up(area, 64);
  plan->start = start;
  plan->end = end;
  plan->first_slot = first;
  plan->slots = slots;
  plan->reserved = area;
  plan->header = align_up(area + reserve, 64);
  plan->meta_start = align_up(plan->header + Arena::header_bytes(slots), 64);
  plan->meta_end = area_end;
  return true;
}

void Domain::add_arena(const ArenaPlan& plan, bool for_huge) {
  Arena* a = Arena::create(ptr(plan.header), plan.first_slot, plan.slots, plan.start, plan.end);
  a->for_huge = for_huge;  // published with the arena (publish_arena's release)
  add_meta_chunk(plan.meta_start, plan.meta_end);
  const size_t size = plan.end - plan.start;
  // relaxed: statistics, read without ordering needs.
  total_bytes.fetch_add(size, std::memory_order_relaxed);
  // Every slot will carry a segment header when used: count them up front so
  // that available_bytes returns to the same value whenever all is freed.
  overhead_bytes.fetch_add(size - plan.slots * (kSegmentSize - kSegmentHeaderSize),
                           std::memory_order_relaxed);
  publish_arena(a);
}

bool Domain::overlaps(uintptr_t start, uintptr_t end) const {
  // acquire: see the headers of published arenas.
  for (Arena* a = arenas.load(std::memory_order_acquire); a != nullptr; a = a->next) {
    if (start < a->mem_end && a->mem_start < end) return true;
  }
  return false;
}

Segment* Domain::try_claim(size_t slots, size_t align, size_t align_offset, size_t written,
                           int64_t* grown, bool* refused) {
  if (align <= kSegmentSize) {
    // Reuse what freed spans left resident, where it best matches what the
    // claimant writes (Arena::find_reusing): a huge block of several slots
    // among all free runs; one slot among freed slots only, before a fresh
    // one (the list runs newest arena first, and first fit there would touch
    // a new arena's untouched slots while an older one's freed slots wait
    // for the purge: peak RSS then counts both). Tried twice, then first fit
    // if other threads keep taking the pick.
    const SpanNeed need = SpanNeed::of(slots, written);
    for (int attempt = 0; attempt < 2; ++attempt) {
      Arena* best_arena = nullptr;
      Arena::Fit best;
      // One-slot claims are frequent (every paged segment): they score a
      // bounded number of freed slots, however many there are.
      size_t budget = kDirtySlotsScored;
      // acquire: as in overlaps.
      for (Arena* a = arenas.load(std::memory_order_acquire); a != nullptr; a = a->next) {
        const Arena::Fit fit =
            slots == 1 ? a->find_dirty_slot(need, &budget) : a->find_reusing(need);
        if (slots == 1 ? fit.better_slot_than(best) : fit.better_than(best)) {
          best = fit;
          best_arena = a;
        }
        // Scored enough, or an exact fit (of a run of exactly its length: a
        // longer run in a later arena may still hold one, best fit).
        const bool exact = best.index != SIZE_MAX && best.score == need.total() &&
                           (slots == 1 || best.run == slots);
        if (exact || budget == 0) break;
      }
      if (best_arena == nullptr) break;
      const size_t index = best_arena->claim_fit(best, slots);
      if (index != SIZE_MAX) {
        Segment* s = claimed(best_arena, index, slots, refused);
        // Not for a refused commit: a claim retried after it (claim_in_step)
        // may take other slots, and offset_growth would purge for these.
        if (s != nullptr && slots > 1) {
          // relaxed: only paces the purge (purge_arenas).
          huge_demand_slots.fetch_add(slots, std::memory_order_relaxed);
          *grown = need.total() - best.covered;
        }
        return s;
      }
    }
  }
  // One-slot segments go to arenas reserved for huge blocks last: first
  // fit there puts them right after a huge block, where they cut the run
  // its span leaves when freed (sort -S 200M: a freed 200 MiB buffer, then
  // two 100 MiB ones, the second of which no longer fit and went to a new
  // arena while the freed span's rest stayed resident: peak RSS +95 MiB).
  for (int pass = 0; pass < 2; ++pass) {
    // acquire: as in overlaps.
    for (Arena* a = arenas.load(std::memory_order_acquire); a != nullptr; a = a->next) {
      if (slots == 1 && a->for_huge != (pass == 1)) continue;
      const size_t index = a->claim(slots, align, align_offset);
      if (index != SIZE_MAX) return claimed(a, index, slots, refused);
    }
    if (slots != 1) break;
  }
  return nullptr;
}

Segment* Domain::claimed(Arena* a, size_t index, size_t slots, bool* refused) {
  auto* s = ptr<Segment>(a->slot_addr(index));
  // Slots used before are committed already (commits are never undone):
  // the source answers from its own record, without a call to the OS.
  if (source.commit != nullptr && !source.commit(s, slots * kSegmentSize)) {
    a->unclaim(index, slots);
    *refused = true;
    return nullptr;
  }
  s->cookie = cookie_of(s);
  s->domain = this;
  s->arena = a;
  s->span_slots = slots;
  s->tail_guard = 0;
  const size_t fresh = a->clean_count(index, slots);
  s->zeroed = source.fresh_is_zero && fresh == slots;
  if (fresh != 0 && purge_pacing.reviewing() && source.now_ms != nullptr) {
    purge_pacing.note_fresh_claim(fresh, source.now_ms(), purge_delay_ms);
  }
  // relaxed: statistics.
  const size_t now = segments_claimed.fetch_add(slots, std::memory_order_relaxed) + slots;
  size_t peak = peak_segments.load(std::memory_order_relaxed);
  while (now > peak && !peak_segments.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
  return s;
}

bool Domain::grow(size_t slots, size_t align) {
  if (source.reserve == nullptr) return false;
  // One extra slot for the arena's own header, and room to reach the alignment.
  size_t want = (slots + 1) * kSegmentSize + (align > kSegmentSize ? align : 0);
  want = align_up(want, kOsArenaSize);
  size_t got = 0;
  void* mem = nullptr;
  // A huge block grows by a larger arena (address space only: untouched
  // slots cost no memory), so freed spans coalesce with more neighbours and
  // fewer arena ends cut runs that later huge blocks could reuse. If the
  // address space is short, what the block needs is enough.
  if (slots > 1 && want < kHugeArenaSize) mem = source.reserve(kHugeArenaSize, kOsArenaSize, &got);
  if (mem == nullptr) mem = source.reserve(want, kOsArenaSize, &got);
  // Refused (an address-space limit, ulimit -v): the free tails of arenas
  // that earlier huge blocks grew go back, one at a time and the largest
  // first, until the OS maps the request. They are never joined, so without
  // this a program whose huge blocks grow failed once their sizes summed past
  // the limit (a review: 1000, 2000, then 3000 MiB in turn, nothing live,
  // under 4.5 GiB: ENOMEM). Not when giving every tail back would not make
  // room either (a probe for what the tails lack is refused too): a failed
  // malloc of 1 PiB gave every tail back, and each arena's remaining 64 MiB
  // (now its first 4 MiB) piled up as a mapping of its own (a review: 402
  // arenas after 400 rounds).
  if (mem == nullptr && tails_could_make_room(want)) {
    while (mem == nullptr && give_back_largest_free_tail()) {
      mem = source.reserve(want, kOsArenaSize, &got);
    }
  }
  if (mem == nullptr) return false;
  if (add_memory(mem, got, slots > 1)) return true;
  // Refused at the header's commit (only a committing source's add_memory
  // fails for an OS-sized reservation): as claim_in_step does for a span,
  // what free tails hold committed goes back first.
  while (source.commit != nullptr && give_back_largest_free_tail(/*committed_only=*/true)) {
    if (add_memory(mem, got, slots > 1)) return true;
  }
  // Refused (the header's commit) or too small: not published, so nothing
  // can point into it, and it goes back whatever the source's `release`
  // (first-class OS heaps have none: each refused growth kept its 256 MiB
  // or more of address space, and its g_os_arena_map entries, for good).
  if (source.unreserve != nullptr) {
    source.unreserve(mem, got);
  } else if (source.release != nullptr) {
    source.release(mem, got);
  }
  return false;
}

bool Domain::free_tail_of(const Arena* a, size_t* keep) const {
  // The header, bitmaps and metadata (all below base) stay, with the slots
  // up to the next release grain (kArenaReleaseGrain: 7 slots after a
  // one-slot header); the tail starts there. Before, it started at the next
  // 64 MiB: each arena a growing block left behind kept 64 MiB of address
  // space for good (17 of them cut a 700 MiB limit to 383 MiB served).
  const uintptr_t tail = align_up(a->base, kArenaReleaseGrain);
  const size_t mapped = a->mapped();
  if (addr(a) >= tail || (tail - a->base) / kSegmentSize >= mapped) return false;
  *keep = (tail - a->base) / kSegmentSize;
  return a->tail_looks_free(*keep);
}

bool Domain::tails_could_make_room(size_t want) {
  if (source.release == nullptr) return false;
  size_t tails = 0;
  // acquire: as in overlaps.
  for (Arena* a = arenas.load(std::memory_order_acquire); a != nullptr; a = a->next) {
    size_t keep;
    if (free_tail_of(a, &keep)) tails += (a->slot_count - keep) * kSegmentSize;
  }
  if (tails == 0) return false;
  if (tails >= want) return true;
  // An address-space limit counts the total: what the tails lack must be
  // mappable now. The probe is given back at once.
  size_t got = 0;
  void* probe = source.reserve(align_up(want - tails, kOsArenaSize), kOsArenaSize, &got);
  if (probe == nullptr) return false;
  source.release(probe, got);
  return true;
}

bool Domain::tail_holds_commit(const Arena* a, size_t keep) const {
  if (source.committed == nullptr) return true;
  for (size_t i = keep; i < a->slot_count; ++i) {
    if (source.committed(ptr(a->slot_addr(i)), 1)) return true;
  }
  return false;
}

bool Domain::give_back_largest_free_tail(bool committed_only) {
  if (source.release == nullptr) return false;
  // Tails in order of (length, address), largest first; one that a claim
  // or a walker keeps is passed over for the next.
  size_t below_len = SIZE_MAX;
  uintptr_t below_addr = UINTPTR_MAX;
  for (;;) {
    // relaxed: a hint; give_back_tail decides. A walk now would call off
    // every give-back: none is claimed meanwhile (each claims a whole tail).
    if (slot_readers.load(std::memory_order_relaxed) != 0) return false;
    Arena* best = nullptr;
    size_t best_len = 0;
    // acquire: as in overlaps.
    for (Arena* a = arenas.load(std::memory_order_acquire); a != nullptr; a = a->next) {
      size_t keep;
      if (!free_tail_of(a, &keep)) continue;
      if (committed_only && !tail_holds_commit(a, keep)) continue;
      const size_t len = a->slot_count - keep;
      const bool below = len < below_len || (len == below_len && addr(a) < below_addr);
      if (below &&
          (best == nullptr || len > best_len || (len == best_len && addr(a) > addr(best)))) {
        best = a;
        best_len = len;
      }
    }
    if (best == nullptr) return false;
    if (give_back_tail(best)) return true;
    below_len = best_len;
    below_addr = addr(best);
  }
}

bool Domain::give_back_tail(Arena* a) {
  size_t keep;
  if (!free_tail_of(a, &keep)) return false;
  const uintptr_t tail = a->slot_addr(keep);
  SHARD_ASSERT(tail % kArenaReleaseGrain == 0);
  if (!a->claim_tail(keep)) return false;  // some slot of it was claimed meanwhile
  // Read under our claim: another giver's claim of this tail is over (its
  // unclaim, which our claim's acquire saw, came after it restored the
  // bound), so the whole arena is mapped. (Read before the claim, it could
  // be that giver's lowered bound: a review's race.)
  const size_t mapped = a->slot_count;
  SHARD_ASSERT(a->mapped() == mapped);
  // seq_cst, with the load of slot_readers below and the walkers' seq_cst
  // increment and load of mapped_slots (SlotReaderScope): either a walker
  // sees the smaller bound, or we see the walker and keep the tail.
  a->mapped_slots.store(keep, std::memory_order_seq_cst);
  if (slot_readers.load(std::memory_order_seq_cst) != 0) {
    a->mapped_slots.store(mapped, std::memory_order_release);
    a->unclaim(keep, mapped - keep);
    return false;
  }
  // The tail's slots stay claimed for good: nothing claims, purges or reads them again.
  const size_t bytes = a->mem_end - tail;
  source.release(ptr(tail), bytes);
  // relaxed: statistics (as add_arena's).
  total_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  overhead_bytes.fetch_sub(bytes - (mapped - keep) * (kSegmentSize - kSegmentHeaderSize),
                           std::memory_order_relaxed);
  return true;
}

Segment* Domain::claim_segment(size_t slots, size_t align, size_t align_offset, size_t written) {
  int64_t grown = 0;
  Segment* s = claim_in_step(slots, align, align_offset, written, &grown);
  // After the claim's step: a fork waits for one slot's purge at a time
  // (each its own step), not for the whole offset (a review: a fork that
  // began at the first of 99 purges waited for all of them).
  if (s != nullptr) offset_growth(grown);
  return s;
}

Segment* Domain::claim_in_step(size_t slots, size_t align, size_t align_offset, size_t written,
                               int64_t* grown) {
  // A step: no fork between the claim of a run's first bitmap word and its
  // last (or the undo of a partial claim), nor between a new arena's mapping
  // and its publication.
  Step step;
  bool refused = false;
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (Segment* s = try_claim(slots, align, align_offset, written, grown, &refused)) return s;
    // The OS refused memory for the slots (a memory-lock or commit limit):
    // another arena would be refused as well. But the limit counts what free
    // arena tails hold committed (a purge drops pages, not the commit): those
    // go back, the largest first, and the claim is tried again (a freed 1000
    // MiB block, then a 1500 MiB one under a 2200 MiB RLIMIT_DATA: ENOMEM,
    // nothing live; with read-write reservations the refused reserve gave
    // the tail back and it succeeded).
    if (refused) {
      if (!give_back_largest_free_tail(/*committed_only=*/true)) return nullptr;
      refused = false;
      continue;
    }
    if (attempt == 0) {
      sweep_abandoned();
    } else if (!grow(slots, align)) {
      // Once more: slots may have come free meanwhile (a give-back of another
      // thread that a walker called off gives its tail's slots back).
      return try_claim(slots, align, align_offset, written, grown, &refused);
    }
  }
  return nullptr;
}

bool Domain::purge_sparse_huge(Segment* s) {
  if (source.purge == nullptr || source.resident == nullptr) return false;
  const Page& page = s->pages()[0];
  const size_t dense = page.block_size >> kSparseShift;
  if (dense <= kStaleMin || page.block_size > kSparseCheckMax) return false;
  // relaxed: pacing only.
  if (sparse_candidates.fetch_add(1, std::memory_order_relaxed) % kSparseCheckEvery != 0)
    return false;
  // Resident at least `dense`: kept for reuse, as any huge span; below
  // kStaleMin: not worth the faults yet.
  const size_t resident = source.resident(page.area, page.block_size, dense);
  if (resident >= dense || resident < kStaleMin) return false;
  return purge_huge_span(s);
}

bool Domain::purge_big_huge(Segment* s) {
  if (source.purge == nullptr || s->pages()[0].block_size <= kSparseCheckMax) return false;
  return purge_huge_span(s);
}

bool Domain::purge_huge_span(Segment* s) {
  const uintptr_t from = addr(s) + kOsPage;  // the header's page stays: release reads it
  const size_t bytes = addr(s->slot_end()) - from;
  // Refused (locked pages): the span keeps (some of) its contents, all dirty.
  if (!source.purge(ptr(from), bytes)) return false;
  purged_bytes.fetch_add(bytes, std::memory_order_relaxed);  // relaxed: a statistic
  return true;
}

int64_t Domain::huge_overhead(const Segment* s) {
  const Page& page = s->pages()[0];
  const uintptr_t area = addr(page.area);
  const uintptr_t end = area + page.block_size;
  // Slot starts k * kSegmentSize with the whole header in [area, end).
  const uintptr_t first = align_up(area, kSegmentSize);
  const size_t inside =
      first + kSegmentHeaderSize <= end ? (end - kSegmentHeaderSize - first) / kSegmentSize + 1 : 0;
  return int64_t(area - addr(s) - kSegmentHeaderSize) - int64_t(inside * kSegmentHeaderSize);
}

void Domain::release_segment(Segment* s, bool purged) {
  Step step;  // no fork between the cookie's clearing and the last slot's release
  Arena* a = s->arena;
  const size_t slots = s->span_slots;
  s->cookie = 0;  // a stale pointer into this segment no longer passes validation
  // relaxed: statistics (what alloc_huge added).
  if (s->kind == SegmentKind::kHuge) {
    overhead_bytes.fetch_sub(size_t(huge_overhead(s)), std::memory_order_relaxed);
  }
  segments_claimed.fetch_sub(slots, std::memory_order_relaxed);
  const size_t written = s->kind == SegmentKind::kHuge ? s->huge_written : SIZE_MAX;
  a->release(a->slot_index(addr(s)), slots, purged, written);
  if (source.purge == nullptr) return;
  if (source.now_ms == nullptr || purge_delay_ms == 0) {
    purge_dirty();
    return;
  }
  // relaxed: the deadline only decides when to purge; the arena bitmaps
  // (protocol 4) make the purge itself safe.
  uint64_t none = 0;
  purge_due_ms.compare_exchange_strong(none, purge_deadline(source.now_ms()),
                                       std::memory_order_relaxed);
  run_due_maintenance();
}

void Domain::run_due_maintenance() {
  if (source.now_ms == nullptr) return;
  const uint64_t now = source.now_ms();
  // relaxed: deadlines only pace the work; heap ownership (protocol 3) makes sweeping safe.
  uint64_t sweep_due = sweep_due_ms.load(std::memory_order_relaxed);
  if (now >= sweep_due && sweep_due_ms.compare_exchange_strong(sweep_due, now + kSweepIntervalMs,
                                                               std::memory_order_relaxed)) {
    sweep_abandoned();
  }
  // relaxed: see release_segment.
  uint64_t due = purge_due_ms.load(std::memory_order_relaxed);
  if (due == 0 || now < due) return;
  // One thread wins the deadline and runs the tick; the others go on.
  if (!purge_due_ms.compare_exchange_strong(due, 0, std::memory_order_relaxed)) return;
  size_t purged = 0;
  const size_t left = purge_arenas(false, &purged);
  // Before the re-arm: the pacing sets the next deadline's delay.
  purge_pacing.after_tick(purged, now, purge_delay_ms);
  if (left != 0) {
    uint64_t none = 0;
    purge_due_ms.compare_exchange_strong(none, purge_deadline(now), std::memory_order_relaxed);
  }
}

void Domain::purge_dirty() { purge_arenas(true); }

uint32_t Domain::request_collect() {
  // relaxed: a request only asks for work that is safe at any time
  // (Heap::answer_collect_request, which paces the answers).
  return collect_requests.fetch_add(1, std::memory_order_relaxed) + 1;
}

size_t Domain::purge_arenas(bool all, size_t* purged_slots) {
  size_t purged = 0, left = 0;
  // relaxed: pacing counters; the arena bitmaps (protocol 4) make the purge safe.
  const size_t demand = huge_demand_slots.exchange(0, std::memory_order_relaxed);
  const size_t cap = segments_claimed.load(std::memory_order_relaxed) >> kHugeReserveShift;
  size_t keep = all ? 0 : (demand < cap ? demand : cap);
  for (Arena* a = arenas.load(std::memory_order_acquire); a != nullptr; a = a->next) {
    left += a->purge_tick(source.purge, all, &purged, &keep);
  }
  purged_bytes.fetch_add(purged * kSegmentSize, std::memory_order_relaxed);  // relaxed: a statistic
  if (purged_slots != nullptr) *purged_slots = purged;
  return left;
}

void Domain::offset_growth(int64_t units) {
  if (source.purge == nullptr || source.now_ms == nullptr) return;
  if (units * int64_t(kResidentUnit) < int64_t(kGrowthPurgeMin)) return;
  // At most one offset that finds a free dirty slot per purge delay (one
  // that finds none waits for nothing: the next claim may find one); a
  // delay too large for the clock means never, for this purge too.
  // (relaxed: the deadline only paces the work; each slot is claimed while
  // it is purged. Two threads past it at once both purge: a bounded excess.)
  const uint64_t now = source.now_ms();
  const uint64_t next = purge_deadline(now);
  if (next == UINT64_MAX || now < growth_offset_due_ms.load(std::memory_order_relaxed)) return;
  size_t purged = 0, refused = 0;
  // acquire: as in overlaps.
  for (Arena* a = arenas.load(std::memory_order_acquire); a != nullptr && units > 0; a = a->next) {
    a->purge_resident(source.purge, &units, &purged, &refused);
  }
  // Refused purges (locked pages) pace it too: unpaced, every claim that
  // grew tried every free dirty slot (a review: 906 refused madvise calls
  // per 3 MiB malloc after mlockall, 2 ms each malloc).
  if (purged + refused == 0) return;
  growth_offset_due_ms.store(next, std::memory_order_relaxed);
  purged_bytes.fetch_add(purged * kSegmentSize, std::memory_order_relaxed);  // relaxed: a statistic
}

void* Domain::meta_alloc(size_t bytes) {
  bytes = align_up(bytes, 64);
  for (int attempt = 0; attempt < 8; ++attempt) {
    // acquire: pairs with the release that installed the chunk.
    MetaChunk* c = meta.load(std::memory_order_acquire);
    if (c != nullptr) {
      // relaxed: the CAS hands out disjoint ranges; the memory itself needs no ordering.
      uintptr_t top = c->top.load(std::memory_order_relaxed);
      while (top + bytes <= c->end) {
        if (c->top.compare_exchange_weak(top, top + bytes, std::memory_order_relaxed)) {
          zero(ptr(top), bytes);
          return ptr(top);
        }
      }
    }
    // A fresh chunk could not hold it: claiming slots for it would turn them
    // into metadata for nothing (8 slots per failed call, for good).
    if (bytes > kMetaAllocMax) break;
    // A fresh slot becomes the next metadata chunk (a step: no fork leaves
    // the slot claimed but not installed).
    Step step;
    Segment* slot = claim_segment(1, 0, 0);
    if (slot == nullptr) return nullptr;
    // The slot now holds metadata for good: it is not a segment any more.
    slot->cookie = 0;
    overhead_bytes.fetch_add(kSegmentSize - kSegmentHeaderSize, std::memory_order_relaxed);
    add_meta_chunk(addr(slot), addr(slot) + kSegmentSize);
  }
  return nullptr;
}

}  // namespace shardalloc::core
