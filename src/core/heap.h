// A heap: the pages one thread (or CPU) allocates from.
//
// Ownership: exactly one thread owns a heap at a time (owned == 1, taken by
// CAS with acquire, given up with a release store); only the owner touches the
// fields marked "owner". A heap is never freed: a thread that exits abandons
// it and a later thread adopts it whole, pages included.
// While nobody allocates from it, its pages are sealed (protocol 3): they
// count their live blocks down, and the free of a page's last one gives the
// page back at once.
// Any thread may push on `notified` (pages it freed into while they were full).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/bits.h"
#include "core/config.h"
#include "core/owner_counter.h"
#include "core/page.h"
#include "core/segment.h"
#include "core/size_class.h"

namespace shardalloc::core {

struct Domain;

struct PageQueue {
  Page* first = nullptr;
  Page* last = nullptr;
};

// The page every direct slot of an unused heap points to: its free list is
// empty, so the fast path falls into the slow path without an extra branch.
inline constinit Page g_empty_page{};

// Checked mode: marks live (or quarantined) block b (p: the pointer the
// caller freed) freed; aborts on a double free, an overwritten canary, size
// record, slack or guard. Any thread may call it.
void disarm_canary(const Page* page, Block* b, const void* p);
// Checked mode: the size asked for when live block p was allocated (what
// usable_size answers there), and the kind of allocation recorded for it.
size_t requested_size(const void* p);
// Checked mode: the size record and slack of live block b are intact.
bool live_block_intact(const Page* page, const Block* b);
void set_alloc_kind(void* p, AllocKind kind);
// Checked mode: gives live huge block p (the pointer malloc returned) the
// size `size` if its block holds that many bytes, and false if not. Its size
// record then says `size`, the bytes it gains must still hold the slack
// pattern (else an overflow is reported), and the bytes it loses get it.
// realloc grows a block in place into the room its last move left
// (core/realloc_growth.h), and gives a block just moved with room its size.
bool resize_huge_in_place(void* p, size_t size);
// Checked mode: makes a huge block's span accessible again before its release.
void release_huge_guards(Segment* s);
// Checked mode: huge blocks of OS memory with an alignment up to this sit
// between inaccessible gaps: about 500 KiB before, kHugeGuardGap or more after.
inline constexpr size_t kHugeGuardAlignMax = 4096;
inline constexpr size_t kHugeGuardGap = (size_t{1} << 20) + 4096;

// Frees p (in a segment of domain d) from a thread that does not own its
// segment, or a huge block from any thread.
void free_remote(Domain* d, Segment* s, void* p);

// Allocation sampling (docs/profiling.md): a page whose free list was cut at
// the block that takes the next sample. The blocks from `rest` on (rest
// itself is the sampled block) wait here; `tail` is the last block left on
// the page's free list, still listed while page->free is not null (the fast
// path only pops from the front).
// A size class has at most one cut at a time: alloc_slow takes the cut of
// its class before it hands another page of the class.
struct SampleCut {
  Page* page = nullptr;
  Block* rest = nullptr;
  Block* tail = nullptr;
  uint32_t rest_count = 0;  // blocks from rest on
};

struct Heap {
  Page* direct[kDirectSlots];            // owner: page to allocate from, by (size+7)/8
  PageQueue queues[kClassCount];         // owner: pages with (maybe) free blocks, per class
  PageQueue full;                        // owner: pages found full
  Segment* partial[kPartialKinds] = {};  // owner: small / medium segments with a free page
  Domain* domain = nullptr;              // immutable once published
  Heap* next_in_domain = nullptr;        // immutable once published
  bool placeholder = false;              // a thread's heap before its first allocation
  // The domain samples allocations (copied from domain->sample_allocations
  // at init; next to placeholder so that alloc_slow tests both at once).
  bool sampling = false;
  // Kept for alloc_borrowed: no thread adopts it (Domain::acquire_heap), so
  // its pages hold only borrowed blocks. Immutable once published.
  bool for_borrowing = false;
  std::atomic<uint32_t> owned{0};
  std::atomic<uint32_t> segment_count{0};  // owner writes; sweepers read as a hint
  std::atomic<Page*> notified{nullptr};    // pages freed into while full (MPSC stack)
  // Region accounting: owner writes (relaxed store), anyone reads.
  std::atomic<int64_t> used_bytes{0};
  std::atomic<int64_t> block_bytes{0};
  uint32_t slow_calls = 0;             // owner: paces periodic work in alloc_slow
  uint32_t collect_requests_seen = 0;  // owner: Domain::collect_requests when last answered
  uint64_t collect_answered_ms = 0;    // owner: when it last answered (with a pacing clock)
  uint32_t pages_keyed = 0;  // owner: checked mode's page inits, mixed into their key seeds
  uint32_t dirty_pages = 0;  // owner: free pages of kept segments not purged yet (Page::free_since)
  uint64_t retired_classes = 0;  // owner: classes whose only page is empty and retiring
  uint32_t claim_clock = 0;      // owner: KiB of huge blocks set up (wraps)
  uint64_t expired_classes = 0;  // owner: classes whose retired page went at the last huge setup
  uint64_t kept_classes = 0;     // owner: classes whose empty page no longer retires
  uint32_t sealed_pages =
      0;  // owner: pages sealed since the last unseal_all (at least those still sealed)
  // Blocks other threads freed into this heap's pages, counted when the owner
  // collects them (a statistic: the owner stores, readers load, no RMW).
  std::atomic<uint64_t> remote_frees_collected{0};
  // Allocation sampling, when domain->sample_allocations (owner): bytes of
  // blocks still to hand to the fast path before the next sample point (0:
  // not drawn yet), and the page cut at a sampled block, per size class.
  int64_t sample_left = 0;
  SampleCut cuts[kClassCount] = {};
  // While sampling (owner): the alignment a replacement of the allocation
  // under way must have (0: malloc's; platform::kSampleKeep: none allowed),
  // set by alloc_aligned_block around its allocations.
  size_t sample_align = 0;
  // Checked mode: this thread's freed blocks waiting before reuse (owner).
  [[no_unique_address]] Quarantine quarantine;

  constexpr Heap() {
    for (auto& d : direct) d = &g_empty_page;
  }
  // The placeholder heap of a domain: every allocation takes the slow path,
  // which swaps in the thread's real heap (platform::current_heap).
  constexpr explicit Heap(Domain* d) : Heap() {
    domain = d;
    placeholder = true;
  }

  // Fast paths ------------------------------------------------------------
  // The allocation fast path alone (size <= kDirectSizeMax): null when the
  // slow path has to run.
  SHARD_INLINE Block* alloc_small_fast(size_t size) {
    return direct[direct_slot_of(size)]->pop_free();
  }
  // kDirectSizeMax < size <= kLargeBlockMax: a block of the first page of
  // the size's class queue, or null.
  SHARD_INLINE Block* alloc_queued_fast(size_t size) {
    Page* page = queues[queued_class_of(size)].first;
    return page != nullptr ? page->pop_free() : nullptr;
  }
  SHARD_INLINE void* alloc_small(size_t size) {
    Block* b = alloc_small_fast(size);
    if (SHARD_LIKELY(b != nullptr)) return b;
    return alloc_slow(size);
  }
  // Entry points: `size` is what the caller asked for.
  SHARD_INLINE void* alloc(size_t size) {
    if constexpr (kChecked) return alloc_checked(size);
    return alloc_block(size);
  }
  void* alloc_aligned(size_t size, size_t align) {
    if constexpr (kChecked) return alloc_aligned_checked(size, align);
    return alloc_aligned_block(size, align);
  }
  // Internals: `size` is block bytes (checked mode's canary included).
  SHARD_INLINE void* alloc_block(size_t size) {
    if (SHARD_LIKELY(size <= kDirectSizeMax)) return alloc_small(size);
    if (size <= kLargeBlockMax) {
      if (Block* b = alloc_queued_fast(size)) return b;
    }
    return alloc_slow(size);
  }
  // p belongs to a segment this heap owns.
  SHARD_INLINE void free_local(Segment* s, void* p) {
    Page* page = s->page_of(p);
    Block* b = static_cast<Block*>(p);
    // The one unlikely branch for everything unusual in a local free:
    // interior pointers of aligned blocks, foreign pointers, an immediate
    // double free.
    if (SHARD_UNLIKELY(!page->owner_may_free(b))) return free_local_unusual(page, p);
    if constexpr (kChecked) disarm_canary(page, b, p);
    push_local(page, b);
  }
  // The region API's dealloc fast path (shard_region_dealloc), here so that
  // the API reads no owner-only page field. This heap is the caller's; s is
  // a live segment of its domain and p a pointer in it, `size` the bytes the
  // caller says p has. When p is a block start on a small, medium or large
  // page that Page::may_free accepts (without the canary, which checked
  // builds read on the general path) and size fits its block, frees it,
  // takes size and the block off the heap's region accounting and returns
  // kDone, or kPageFreed when page_freed_slow(*page) must follow; else
  // kNotTaken, having done nothing.
  enum class FastFree : uint8_t { kNotTaken, kDone, kPageFreed };
  SHARD_INLINE FastFree free_sized_fast(Segment* s, void* p, size_t size, Page** page_out) {
    Page* page = s->page_of(p);
    Block* b = static_cast<Block*>(p);
    *page_out = page;
    if (s->heap == this) {
      // Page::may_free(b, true), with the owner's fast view first.
      if (SHARD_LIKELY(page->owner_may_free(b) && page->in_use && b != page->free &&
                       size <= page->block_size)) {
        account_region(-int64_t(size), -int64_t(page->block_size));
        return push_local_fast(page, b) ? FastFree::kPageFreed : FastFree::kDone;
      }
    } else if (s->kind != SegmentKind::kHuge && page->may_free(b, false) &&
               size <= page->block_size) {
      account_region(-int64_t(size), -int64_t(page->block_size));
      free_remote(domain, s, p);
      return FastFree::kDone;
    }
    return FastFree::kNotTaken;
  }
  // Owner: the region API's accounting of a call (bytes asked for, block bytes).
  SHARD_INLINE void account_region(int64_t used, int64_t block) {
    owner_add(used_bytes, used);
    owner_add(block_bytes, block);
  }
  // Pushes b, known to be a live block of page, on the local free list.
  SHARD_INLINE void push_local(Page* page, Block* b) {
    if (SHARD_UNLIKELY(push_local_fast(page, b))) page_freed_slow(page);
  }
  // push_local without its rare step: true when page_freed_slow(page) must
  // follow (the page emptied or was full).
  SHARD_INLINE bool push_local_fast(Page* page, Block* b) {
    page->set_next(b, page->local_free);
    page->set_local_free(b);
    if (SHARD_UNLIKELY(--page->used == 0 || page->in_full)) {
      // A nonzero in_full (full queue, or sampled blocks to report) always
      // takes the slow step; an emptied page when it does not stay or
      // retires (retire_page: out of line, so that pages of small blocks,
      // which empty often, pay one compare).
      return page->in_full != 0 || !stays_when_empty(page) || retires_when_empty(page);
    }
    return false;
  }
  // The only page of its class (in its class queue, no neighbours) stays in
  // use when it empties: alloc/free of one block then never leaves the fast
  // path, nor claims and releases a page every time.
  SHARD_INLINE static bool stays_when_empty(const Page* page) {
    return !page->in_full_queue() && page->next == nullptr && page->prev == nullptr;
  }
  // ...and, for medium and large blocks, retires then (retire_page).
  SHARD_INLINE static bool retires_when_empty(const Page* page) {
    return page->block_size > kSmallBlockMax;
  }

  // Slow paths (heap_alloc.cpp, heap_free.cpp) -------------------------------
  void* alloc_slow(size_t size);
  void* alloc_slow_sampled(size_t size);
  void* alloc_aligned_block(size_t size, size_t align);
  void* alloc_aligned_sampled(size_t size, size_t align);
  void* alloc_aligned_body(size_t size, size_t align);

  // Checked mode (heap_checked.cpp) -----------------------------------------
  void* alloc_checked(size_t size);
  void* alloc_aligned_checked(size_t size, size_t align);
  void* alloc_huge_guarded(size_t size, size_t align);
  // The process heap's free (owner): checks p as free would and that the
  // deallocation function matches how p was allocated (`kind`: kMalloc for
  // free; `size`: what sized delete passed, or SIZE_MAX), poisons the block
  // (huge: makes it inaccessible) and puts it in quarantine; the oldest
  // quarantined blocks are checked and freed for real.
  void free_checked(void* p, AllocKind kind, size_t size);
  // Frees every quarantined block (at abandon, and when out of memory).
  void flush_quarantine();
  void evict_oldest();
  // Verifies the poison of every quarantined block; returns how many wait.
  size_t check_quarantine() const;
  // Verifies every page, list, link and canary of this heap (owner only);
  // aborts with a message on the first inconsistency. Returns the blocks checked.
  size_t check() const;
  void page_freed_slow(Page* page);
  // An empty page of medium or large blocks that is its class's only page
  // stays (a class used for one block at a time allocates on the fast
  // path) until the heap has set up kRetireAfter times its size in huge
  // blocks, then goes back to its segment unless used again, for those to
  // reuse: a thread keeps no 256-512 KiB page per class it used once while
  // it claims huge blocks (64 threads with blocks of up to 1 MiB: 712 ->
  // 466 MB; docs/benchmarks.md). Counted in huge blocks only: counted in
  // slow paths, mixed-sizes freed and set up its pages again between
  // batches (+12% instructions); counted in pages set up too, classes used
  // in turn expired each other's pages at every allocation (8x).
  // A class whose page went and that needs a fresh page before the next
  // huge block (a block of it and a huge block in turn: a page set up and
  // given back at every turn, +22% instructions) keeps its empty page from
  // then on (kept_classes), as every class did before retiring.
  static constexpr uint32_t kRetireAfter = 2;
  // Owner: page, empty and its class's only page, begins to retire.
  void retire_page(Page* page) {
    static_assert(kClassCount <= 64, "retired_classes has a bit per class");
    const uint64_t bit = uint64_t{1} << page->size_class;
    if (kept_classes & bit) return;
    page->retired_at = claim_clock;
    retired_classes |= bit;
  }
  // Owner, before it sets up a huge block of `bytes`: advances claim_clock
  // and frees the retired pages whose time is up.
  void note_setup(size_t bytes) {
    claim_clock += uint32_t(bytes >> 10);
    expired_classes = 0;  // those of the last setup were not needed again before this one
    if (retired_classes != 0) expire_retired();
  }
  void expire_retired();
  [[noreturn]] void report_bad_local_free(Page* page, void* p);
  // The block an interior pointer (aligned allocation) belongs to; aborts
  // when no aligned allocation of it could have returned p (aligned_block_of).
  static Block* interior_block(Page* page, void* p);
  SHARD_NOINLINE void free_local_unusual(Page* page, void* p);

  // Lifecycle (heap_lifecycle.cpp) --------------------------------------------
  void init(Domain* d);
  // Owner: collects every page, returns empty pages and segments. Used at
  // abandon and by sweepers of abandoned heaps.
  void collect_all();
  // Owner, on allocation slow paths: another heap of the domain ran out of
  // memory since this one last looked (Domain::collect_requests): collect_all.
  void answer_collect_request();
  // Owner: takes the pages remote threads reported (moves them out of full).
  void drain_notified();
  // Owner: the whole notified stack (last pushed first); null when none waits.
  Page* take_notified();
  // Owner: the next page of a list take_notified returned, back from
  // kNotified to kNormal (its remote list kept). Each page is read from the
  // list before its state changes: a page back in a normal state may be
  // notified again, which rewrites next_notified.
  static Page* next_unnotified(Page*& list);
  // Owner: fn(page) for every page in a class queue or the full queue; fn may
  // move or free the page it is given (the next one is read before).
  template <class Fn>
  void for_each_page(Fn fn) {
    for (unsigned cls = 0; cls <= kClassCount; ++cls) {
      Page* page = cls == kClassCount ? full.first : queues[cls].first;
      while (page != nullptr) {
        Page* next = page->next;
        fn(page);
        page = next;
      }
    }
  }
  // Protocol 3 (docs/protocols.md), sealed pages: an abandoned heap's pages
  // count their live blocks down in thread_free, and the free of the last one
  // puts the page on `notified`. Owner, at abandon and by a sweeper:
  // collects every page, frees the empty ones and seals the others.
  // `sweeping`: a sweeper's, which also purges long-free pages.
  void abandon_pages(bool sweeping);
  // Owner, a thread that adopts the heap to allocate from it: turns every
  // sealed page back into a plain one (before any allocation or free).
  void unseal_all();
  // Owner, a thread that claimed the abandoned heap for a moment: takes the
  // notified pages and seals those with live blocks left; a page with none
  // is freed when its whole segment can go back (then with every page of
  // the segment), else kept whole for the heap's next owner.
  void reclaim_notified();
  // Owner: no page of s (one of ours) holds a live block.
  bool segment_is_empty(const Segment* s) const;
  void count_remote_frees(uint32_t n) {
    if (n != 0) owner_add(remote_frees_collected, uint64_t{n});
  }

  // Allocation sampling (heap_sample.cpp) --------------------------------------
  // Charges the blocks of page's free list to the sample budget unless they
  // are; cuts the list at the block that crosses the next sample point.
  void charge_page(Page* page) {
    // Inline, the common case: a list that does not reach the sample point.
    if (page->sample_flags & Page::kListCharged) return;
    page->sample_flags |= Page::kListCharged;
    const int64_t bytes = int64_t(page->capacity - page->used) * int64_t(page->block_size);
    if (page->local_free == nullptr && bytes < sample_left) {
      sample_left -= bytes;
      return;
    }
    charge_page_slow(page);
  }
  void charge_page_slow(Page* page);  // the rest: counts, draws, cuts (heap_sample.cpp)
  // The slow path of an allocation of class cls: serves it from the cut
  // page of that class, if any (the sampled allocation). Null when none.
  void* take_sample(unsigned cls, size_t size);
  // A huge block p of `size` bytes just allocated: charges it, samples it
  // when it crosses the sample point. Returns what the allocation returns.
  void* charge_huge(void* p, size_t size);
  // Before page's free list is taken back or collected whole: credits back
  // the charged blocks still on it and puts a cut block back on it.
  void forget_page_samples(Page* page);
  // The cut of page, if any (checked by check()).
  const SampleCut* cut_of(const Page* page) const;

  // Internals shared by the heap files --------------------------------------
  void queue_push_front(PageQueue& q, Page* page);
  void queue_push_back(PageQueue& q, Page* page);
  void queue_remove(PageQueue& q, Page* page);
  PageQueue& queue_of(Page* page) {
    return page->in_full_queue() ? full : queues[page->size_class];
  }
  void set_direct(unsigned cls, Page* page);
  bool move_to_full(Page* page);
  // Owner: collects page; false when no live block is left (the caller frees
  // it), else seals it (kSealed, its live blocks counted) unless a
  // notification is on its way (kNotified: the drain or reclaim takes it).
  bool seal(Page* page);
  // Owner: seal, or free_page when no live block is left; a sealed page with
  // free blocks leaves the full queue.
  void seal_or_free(Page* page);
  void move_out_of_full(Page* page);
  void free_page(Page* page);
  // Owner, a sweeper (the heap has had no owner for a while): gives back to
  // the OS the memory of free pages inside segments the heap keeps for
  // their live blocks, once they have stayed free for the domain's purge
  // delay since a sweep first found them free (every free page when `all`). Whole free segments go
  // back by slots (Domain::release_segment). (Not done for heaps threads allocate from: their free
  // pages are soon reused, and purging them costs page faults; measured: rptest 2.7x slower with a
  // 100 ms delay.)
  void purge_free_pages(bool all);
  void purge_page(Segment* s, Page* page);
  Segment* claim_owned_segment(const PageGeometry& g);
  Segment* claim_segment(size_t slots, size_t align, size_t align_offset,
                         size_t written = SIZE_MAX);
  template <bool kSampling>
  Page* find_page(unsigned cls);
  Page* fresh_page(unsigned cls);
  void* alloc_huge(size_t size, size_t align);
  // s, just claimed for one huge block of `usable` bytes at `block`: its
  // header and its one page describe that block (tail_guard: segment.h).
  void set_up_huge(Segment* s, uint8_t* block, size_t usable, bool tail_guard);
  uintptr_t key_seed(const Page* page);
};

// Frees p, local or remote. `current` is the calling thread's heap in p's domain (may be the empty
// heap).
SHARD_INLINE void free_block(Heap* current, void* p) {
  Segment* s = segment_of(p);
  if (SHARD_LIKELY(s->heap == current)) {
    current->free_local(s, p);
  } else {
    free_remote(current->domain, s, p);
  }
}

// Bytes usable at p (p inside a live block of a segment), canary excluded.
size_t usable_size(const void* p);

// The block of page that holds p, when p (not a block start) is a pointer
// an aligned allocation of that block could have returned; else null.
Block* aligned_block_of(const Page* page, const void* p);
// The block handed out that p names on page (in use): p itself, a block
// start below capacity, or the block an aligned allocation of it could have
// returned p for, if that block is below capacity; else null. What free and
// realloc accept.
Block* handed_block_of(const Page* page, const void* p);

// realloc's check (p in a live segment): p must be a live block as free would
// find it, a block start or aligned pointer of a block handed out, not on
// top of its page's local or remote free list (nor a freed huge block), else
// the program stops: "realloc of a pointer that is not allocated" or
// "realloc of a freed block (use after free)". Returns the bytes usable at p.
size_t usable_of_live_block(void* p);

}  // namespace shardalloc::core
