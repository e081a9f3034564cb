// A domain: one independent allocator instance over one page source: the
// process heap (OS source) or one shard_region (region source). It owns the
// arenas, the heaps of all threads, and the metadata memory they live in.
// Every field is either immutable after init or updated lock-free.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/arena.h"
#include "core/page_source.h"
#include "core/purge_pacing.h"
#include "core/segment.h"

namespace shardalloc::core {

struct Heap;
struct DomainLife;

// Released slots are purged (their pages given back to the OS) once they have
// stayed free for one to two delays (see Arena::purge_tick); the delay
// stretches while the program claims back what was purged (PurgePacing).
inline constexpr uint64_t kDefaultPurgeDelayMs = 100;
// Zeroed huge blocks up to this size get their pages at once on calloc
// (core/calloc_clear.h): above it a sparse table's untouched pages would cost
// memory; below it faults of a read-then-write pattern cost more than the
// pages a sparse user leaves untouched.
inline constexpr size_t kDefaultCallocPopulateMax = size_t{1} << 20;
// A purge tick keeps resident as many free slots as huge blocks claimed
// since the previous tick (a program replacing large buffers reuses them
// without page faults), but at most this fraction (a shift) of the slots in
// use; what stays is purged at a later tick once that demand stops.
inline constexpr unsigned kHugeReserveShift = 3;  // 1/8
// A one-slot claim scores at most this many free dirty slots (the lowest,
// newest arena first) for the one whose resident extent best matches it
// (Arena::find_dirty_slot): a review measured 31 us per claim with 16,000
// freed slots scored, against 0.1 us for the first one.
inline constexpr size_t kDirtySlotsScored = 32;
// A freed huge block with at least kStaleMin bytes resident, but less than
// 1 / 2^kSparseShift of its pages, is purged at once
// (Domain::purge_sparse_huge). A span reused while resident keeps every page
// any of its blocks touched: with sparsely written blocks it gains a few
// pages per block, and the next block on it faults at most the pages purged.
// The floor bounds what a span can gather at kStaleMin and keeps the purges
// (and their faults: ~15 us each on this project's VMs) rare: a span is
// purged once per ~kStaleMin of gathered pages, not at every free.
// Only every kSparseCheckEvery-th such free counts (mincore walks the whole
// block: +27% time on malloc-large when every free did), and only blocks up
// to kSparseCheckMax (the count and purge run inside the free's fork step).
// A larger block is purged at its free without a count, in one call, before
// the free's fork step (Domain::purge_big_huge): left
// to the purge ticks, it went slot by slot, one call per 512 KiB, inside
// some later malloc (a review: a freed 512 GiB table stalled a 300 KiB
// malloc for 1.2 s; 40 TiB, minutes). One call costs what the block still
// has resident, and a program reusing such blocks densely faults them in
// again, as glibc's munmap makes it do.
inline constexpr size_t kStaleMin = size_t{1} << 20;
inline constexpr unsigned kSparseShift = 3;  // 1/8
inline constexpr unsigned kSparseCheckEvery = 8;
inline constexpr size_t kSparseCheckMax = size_t{1} << 30;
// A huge claim that must write at least this many bytes that no freed span
// left resident grows the footprint by them, while free dirty slots may
// still hold as many resident, waiting for their purge tick: it purges those
// at once, up to what it grows by (Domain::offset_growth), at most once per
// purge delay. ImageMagick freed 12 and 18 MB blocks, then took 27 MB ones
// that fit neither span: both stayed resident beside the new blocks until
// their tick (peak RSS 1.34x glibc's, which unmaps at free). At every claim
// a program replacing huge blocks without pause (malloc-large) purged the
// spans it was about to reuse, and its next claims faulted them in and
// purged more: 3.5x the time. A block that reuses a span grows nothing.
inline constexpr size_t kGrowthPurgeMin = size_t{1} << 20;
// The least an OS arena reserved for a huge block spans (see Domain::grow).
inline constexpr size_t kHugeArenaSize = 4 * kOsArenaSize;  // 256 MiB
// Abandoned heaps are swept at most this often (see Domain::run_due_maintenance).
inline constexpr uint64_t kSweepIntervalMs = 200;
// A heap answers collect requests (Domain::collect_requests) at most once
// per this many ms where the domain has a clock (Domain::pacing_clock): a
// thread that retries a failing malloc in a loop (a program probing for the
// largest block under an address-space limit) would otherwise have every
// other heap collect at every slow path. The answers are paced, not the
// requests: a request is never dropped, only answered up to this much later.
inline constexpr uint64_t kCollectRequestIntervalMs = 10;

// A bump area for metadata (heap records), claimed by CAS on `top`.
struct MetaChunk {
  std::atomic<uintptr_t> top;
  uintptr_t end;
};

struct Domain {
  PageSource source{};
  std::atomic<uintptr_t> secret{0};  // set once before the first segment is claimed
  // The platform's per-domain record, found once and kept here (bare: the
  // domain's CPU table, cpu_heaps.cpp), so that a call does not walk a list
  // of every domain's. Rebuilt with the domain (a first-class heap's next
  // incarnation finds its record again). Beside fields written once: every
  // bare call reads it.
  std::atomic<void*> platform_record{nullptr};
  std::atomic<Arena*> arenas{nullptr};      // push-only list
  std::atomic<Heap*> heaps{nullptr};        // push-only list of every heap ever made
  std::atomic<Heap*> borrow_heap{nullptr};  // alloc_borrowed's heap, once made
  std::atomic<MetaChunk*> meta{nullptr};
  std::atomic<size_t> total_bytes{0};     // memory handed over or reserved
  std::atomic<size_t> overhead_bytes{0};  // metadata and lost edges (see region.h)
  // Walks that may read slot memory (core/heap_walk.h) in progress: a tail
  // of free slots is unmapped only while none is (give_back_tail).
  mutable std::atomic<uint32_t> slot_readers{0};
  std::atomic<uint64_t> purge_due_ms{0};          // when dirty slots get purged; 0: none pending
  std::atomic<uint64_t> growth_offset_due_ms{0};  // the next offset_growth allowed
  std::atomic<uint64_t> sweep_due_ms{0};          // when abandoned heaps are next swept
  // Bumped by a heap that found no memory even after giving back its own:
  // every other owner gives back what it keeps at its next allocation slow
  // path (Heap::answer_collect_request). Only the owner can free its pages,
  // so memory other threads freed into an idle owner's pages stays there
  // until it allocates again or calls shard_region_collect.
  std::atomic<uint32_t> collect_requests{0};
  // The clock that paces the answers to collect requests where the source
  // has none (a hosted region: its memory is never purged, but a thread
  // that retries a failing allocation in a loop had every other heap run
  // collect_all at every slow path: 86 ns -> 23 us per allocation for a
  // thread holding 1 GiB of small blocks). Null and no source clock: every
  // slow path answers (kernels).
  uint64_t (*request_clock_ms)() = nullptr;
  // The clock that paces answers: the source's, else request_clock_ms (may be null).
  uint64_t (*pacing_clock() const)() {
    return source.now_ms != nullptr ? source.now_ms : request_clock_ms;
  }
  uint64_t purge_delay_ms = kDefaultPurgeDelayMs;  // configured; 0: purge at release
  PurgePacing purge_pacing{};
  // The delay now: the configured one, stretched by the pacing.
  uint64_t purge_delay() const { return purge_pacing.delay(purge_delay_ms); }
  // The purge deadline purge_delay() after `now`; a delay too large for
  // the clock means never (it wrapped to a deadline already past: a review
  // set the delay to 2^64 - 1 and every freed slot was purged at once).
  uint64_t purge_deadline(uint64_t now) const {
    uint64_t due;
    return __builtin_add_overflow(now, purge_delay(), &due) ? UINT64_MAX : due;
  }
  // calloc makes a zeroed huge block's pages resident at once (source.populate)
  // when the block holds at most this many bytes (core/calloc_clear.h).
  size_t calloc_populate_max = kDefaultCallocPopulateMax;
  // Allocation sampling for the heap profiler (docs/profiling.md): set by the
  // platform before other threads start (Linux: the process domain when
  // SHARDALLOC_PROFILE is set) or at run time (shard_guarded_set_rate, while
  // threads may be making heaps); copied by each heap at init. Atomic for
  // that late writer; relaxed: a heap made just before it sees the flag
  // samples from its next init, nothing else depends on it.
  std::atomic<bool> sample_allocations{false};
  std::atomic<size_t> segments_claimed{0};
  // Slots claimed for huge blocks since the last purge tick (pacing only).
  std::atomic<size_t> huge_demand_slots{0};
  // Frees of huge blocks large enough for purge_sparse_huge (pacing only).
  std::atomic<uint32_t> sparse_candidates{0};
  // Statistics (relaxed RMWs on slow paths): bytes given back to the page
  // source, abandoned heaps adopted by a new thread, abandoned heaps swept.
  std::atomic<uint64_t> purged_bytes{0};
  std::atomic<uint64_t> heaps_adopted{0};
  std::atomic<uint64_t> heaps_swept{0};
  std::atomic<size_t> peak_segments{0};
  // Accounting of frees made by threads that have no heap here (region API).
  std::atomic<int64_t> heapless_used_bytes{0};
  std::atomic<int64_t> heapless_block_bytes{0};
  // Null for domains that live for ever (the process domain, regions); a
  // first-class heap's lifetime record otherwise (core/domain_life.h). Set
  // before the domain is handed out, then immutable for that incarnation.
  DomainLife* life = nullptr;

  // Sets the secret once (racing callers agree on the first value).
  void ensure_secret(uintptr_t candidate);
  uintptr_t cookie_of(const void* segment) const {
    // relaxed: the secret is written once, before any segment exists.
    return reinterpret_cast<uintptr_t>(segment) ^ secret.load(std::memory_order_relaxed);
  }

  // Where a new arena over [start, start+size) puts its headers.
  struct ArenaPlan {
    uintptr_t start, end;  // the memory handed over
    uintptr_t first_slot;  // slots [first_slot, first_slot + slots*kSegmentSize)
    size_t slots;
    uintptr_t reserved;              // reserve_bytes for the caller
    uintptr_t header;                // the arena header
    uintptr_t meta_start, meta_end;  // what is left becomes metadata space
  };
  // Plans an arena with `reserve_bytes` carved out for the caller (placed in
  // slack when possible). False if no slot fits.
  static bool plan_arena(void* start, size_t size, size_t reserve_bytes, ArenaPlan* plan);
  // `for_huge`: reserved for a huge block (Arena::for_huge).
  void add_arena(const ArenaPlan& plan, bool for_huge = false);
  bool add_memory(void* start, size_t size, bool for_huge = false) {
    ArenaPlan plan;
    if (!plan_arena(start, size, 0, &plan)) return false;
    // The arena header and metadata are written from here on.
    if (source.commit != nullptr &&
        !source.commit(ptr(plan.reserved), plan.meta_end - plan.reserved)) {
      return false;
    }
    add_arena(plan, for_huge);
    return true;
  }
  // True when [start, start+size) overlaps memory some arena already has.
  bool overlaps(uintptr_t start, uintptr_t end) const;
  // The arena holding address a, or null.
  Arena* arena_of(uintptr_t a) const {
    // acquire: as in overlaps.
    for (Arena* arena = arenas.load(std::memory_order_acquire); arena != nullptr;
         arena = arena->next) {
      if (arena->holds(a)) return arena;
    }
    return nullptr;
  }

  // Segments -----------------------------------------------------------------
  // Claims `slots` consecutive slots (see Arena::claim for align/offset),
  // sweeping abandoned heaps and growing the source when needed. A run of
  // several slots without alignment (a huge block) goes where the most of
  // it is still resident from a freed span (Arena::find_reusing), so a
  // program that replaces large buffers reuses their pages without faults
  // until the purge delay gives them back.
  // `written`: bytes from the span's start its tenant will write (the
  // resident hint placement matches against, Arena::resident), or all.
  Segment* claim_segment(size_t slots, size_t align, size_t align_offset,
                         size_t written = SIZE_MAX);
  // `purged`: the caller purged every slot of s but the first OS page (a
  // sparsely touched huge block, Domain::purge_sparse_huge): only the first
  // slot goes back dirty.
  void release_segment(Segment* s, bool purged = false);
  // A huge segment about to be released whose block the program touched
  // sparsely (kStaleMin, kSparseShift): purges all of it but the header's
  // OS page and returns true; false (nothing done) otherwise.
  // Keeping such a span resident for reuse would save few page faults, and
  // its stale pages would stay resident inside every block that reuses it:
  // a program replacing sparsely written buffers grew by a page per
  // replacement (docs/benchmarks.md, "Sparsely touched huge blocks").
  bool purge_sparse_huge(Segment* s);
  // A huge segment about to be freed whose block is larger than
  // kSparseCheckMax: purges all of it but the header's OS page (true), before
  // the free's fork step (its madvise may take longer than a fork waits for
  // a step: a review's fork mid-purge of a dense 4 GiB block left the child
  // with the span claimed for good). False: not such a block, or refused.
  bool purge_big_huge(Segment* s);
  // Purges all of huge segment s but the header's OS page; false when refused.
  bool purge_huge_span(Segment* s);
  // The arena check makes the header readable; the cookie tells a live
  // segment header from anything else (release_segment clears it before the
  // slot is released, and a slot that is not a segment's first never has one).
  bool is_live_segment(const Segment* s) const {
    return arena_of(addr(s)) != nullptr &&
           (source.committed == nullptr || source.committed(s, sizeof(Segment))) &&
           s->cookie == cookie_of(s);
  }

  // Heaps ----------------------------------------------------------------------
  Heap* acquire_heap();  // adopts an abandoned heap (the one with most segments; never the borrow
                         // heap) or makes one; null if no memory
  // Collects h and abandons it; a sweeper's release also purges pages that
  // have been free for the purge delay (Heap::purge_free_pages).
  void release_heap(Heap* h, bool sweeping = false);
  void sweep_abandoned();  // collects every abandoned heap it can claim
  // A free put a page on the notified stack of h and found h unowned: claims
  // h (if nobody did meanwhile), frees the notified pages with no live block
  // left and seals the others, and gives h up again. In a step.
  void reclaim_abandoned(Heap* h);
  // One allocation (align <= kMinAlign: any) from a heap borrowed for it:
  // acquired, used, released. For a caller that must not touch its own heap
  // here (a signal handler that interrupted a call). Null if no memory.
  void* alloc_borrowed(size_t size, size_t align);

  // Zeroed, 64-byte aligned; null if no memory. Up to kMetaAllocMax bytes
  // (what a slot made a metadata chunk holds); a larger request is served
  // only from room the current chunk has, and never claims a slot.
  void* meta_alloc(size_t bytes);
  // What the huge block of segment s adds to overhead_bytes while it lives
  // (added at its allocation, taken back at its release; page 0 set up): the
  // gap between the segment header and the block (alignment, checked mode's
  // guards), less the headers of later slots its bytes cover, which the
  // arena counted as overhead when it was added (every slot's) and the
  // block's size counts again. May be negative (added modulo 2^64).
  static int64_t huge_overhead(const Segment* s);
  static constexpr size_t kMetaAllocMax = kSegmentSize - align_up(sizeof(MetaChunk), 64);
  void purge_dirty();
  // Periodic upkeep, called from allocation slow paths: purges dirty slots
  // whose delay has run out, and now and then sweeps abandoned heaps so that
  // blocks freed into them after their thread exited go back to the arena
  // even when no new thread adopts them. Cheap when nothing is due.
  void run_due_maintenance();
  // A heap found no memory even after its own collect_all: asks every other
  // owner to give back what it keeps (collect_requests; each answers at most
  // once per kCollectRequestIntervalMs with a clock). Returns the request
  // count the caller has answered.
  uint32_t request_collect();

 private:
  // One purge tick over every arena (all: every dirty slot, not only those
  // past their delay); counts purged_bytes. Returns the slots left dirty;
  // *purged_slots: the slots it purged.
  size_t purge_arenas(bool all, size_t* purged_slots = nullptr);
  // A huge claim writes `units` units no freed span held resident: purges
  // free dirty slots whose resident hints sum to as many (kGrowthPurgeMin).
  void offset_growth(int64_t units);
  // *grown: the units a huge claim writes that no freed span held resident.
  // *refused: the source refused to commit the slots claimed (given back).
  Segment* try_claim(size_t slots, size_t align, size_t align_offset, size_t written,
                     int64_t* grown, bool* refused);
  // claim_segment's claim, in one fork step.
  Segment* claim_in_step(size_t slots, size_t align, size_t align_offset, size_t written,
                         int64_t* grown);
  // Owner: owned = 0, then claims h again while pages wait on its notified stack.
  void give_up(Heap* h);
  // Just claimed by acquire_heap: counts the adoption, unseals h's pages.
  Heap* adopt(Heap* h);
  // A new heap record, owned by the caller and published; null if no memory.
  Heap* make_heap(bool for_borrowing);
  // Owns the heap alloc_borrowed allocates from: the domain's borrow heap
  // (made at the first borrow), else (another borrower holds it) any heap.
  Heap* acquire_borrow_heap();
  // Commits the slots [index, index + slots) of `a`, just claimed, and
  // writes the header fields of their segment; null, with the claim given
  // back and *refused set, when the source refuses the commit.
  Segment* claimed(Arena* a, size_t index, size_t slots, bool* refused);
  bool grow(size_t slots, size_t align);
  // When the source refused to grow: unmaps the largest arena tail of free
  // slots past its arena's first kArenaReleaseGrain (which keeps the header
  // and bitmaps). True when some address space went back. Protocol 4 of
  // docs/protocols.md.
  // committed_only: only tails that hold committed slots (a refused
  // commit: what the limit counts).
  bool give_back_largest_free_tail(bool committed_only = false);
  // Whether some slot of a's tail from slot `keep` on was committed.
  bool tail_holds_commit(const Arena* a, size_t keep) const;
  // Whether giving back every free tail could make room for a reservation of
  // `want` bytes: the tails hold it, or what they lack can be mapped now.
  bool tails_could_make_room(size_t want);
  bool give_back_tail(Arena* a);
  // Whether a has a tail to give back, and where it starts (*keep: the slots that stay).
  bool free_tail_of(const Arena* a, size_t* keep) const;
  void publish_arena(Arena* a);
  void add_meta_chunk(uintptr_t start, uintptr_t end);
};

}  // namespace shardalloc::core
