// A validated walk over a domain's memory for readers on any thread: the
// statistics (core/stats.h) and the heap snapshot (core/snapshot.h).
//
// The threads that own the memory keep changing it while a reader walks; the
// reader takes no lock and the owners pay nothing for it. What makes the walk
// safe anyway (docs/protocols.md, "Concurrent readers"):
//   - It reads only memory that stays mapped: the domain's arena and heap
//     lists (push-only, never freed), arena headers and bitmaps, and the first
//     kSegmentHeaderSize bytes of claimed slots, plus blocks of a page it has
//     checked, except in a domain whose source or program may make block
//     memory inaccessible (checked mode's huge-block guards, the opt-in
//     guard slot, a program's mprotect of OS memory: the walk then counts no
//     remote frees). Arenas are
//     never unmapped; a first-class heap's destroy, which
//     unmaps its arenas, may not run while any call on that heap is in flight.
//     A tail of free slots given back to the OS lies past mapped_slots, which
//     the walk reads after it is counted in slot_readers (SlotReaderScope).
//   - It never follows a pointer read from a segment header: the owning heap
//     is found by comparing addresses with the heap list, and a page's
//     remote-free list is followed only through block starts of that page, at
//     most `used` of them.
//   - Each header field is loaded once (relaxed) into a local copy; the copy
//     is checked (cookie, domain, arena, kind, geometry, class, area) and the
//     cookie loaded again after it. A slot whose header fails is reported as
//     kMeta (a claim being set up or released); a page that does not fit its
//     segment is left out; the counts of those that fit are clamped to
//     used <= capacity <= reserved; block sizes come from the class table.
// So while threads run a walk sees approximate figures that are possible
// ones, never an index out of range or a fault; when the domain is quiescent
// it sees exact ones.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/config.h"
#include "core/domain.h"

namespace shardalloc::core {

struct Heap;

// What a reader copied of one page in use.
struct PageView {
  unsigned index;       // in its segment
  unsigned size_class;  // 1 .. kClassCount - 1
  size_t block_size;    // from the class table
  uint32_t used;        // blocks handed out, remote frees not yet collected included (<= capacity)
  uint32_t remote;      // blocks on its remote-free list (<= used); 0 in a domain
                        // whose block memory may become inaccessible (OS memory:
                        // the process heap, OS first-class heaps)
  uint32_t capacity;    // blocks whose free list was built (<= reserved)
  uint32_t reserved;    // blocks the page holds
  bool full;            // in its heap's full queue
  uintptr_t area;       // first block
};

// The kinds of SegmentKind, and kMeta: a claimed slot without a live segment
// header (metadata, or a claim being set up or released).
enum class SlotKind : uint8_t { kMeta = 0, kSmall = 1, kMedium = 2, kLarge = 3, kHuge = 4 };

// What a reader copied of one claimed slot (or span of slots).
struct SlotView {
  size_t index;  // of its first slot in the arena
  size_t span;   // slots it covers: >= 1, within the arena
  SlotKind kind;
  // Small, medium and large segments:
  int64_t heap;  // index of its heap in the reader's HeapList; -1: none of them (or not looked up)
  bool heap_abandoned;  // that heap has no owner
  unsigned page_count;  // pages of its kind: 8, 2 or 1
  unsigned used_pages;  // <= page_count
  size_t page_size;
  unsigned page_views;  // entries of pages[]: the pages in use, in index order
  PageView pages[kSmallPagesPerSegment];
  // Huge blocks:
  size_t huge_block_size;  // usable bytes, from the span and the block's start
  bool huge_live;          // not freed yet
  uintptr_t huge_area;
};

struct ArenaView {
  uint64_t id;  // position in the domain's arena list
  uintptr_t base;
  size_t slot_count;
  uintptr_t mem_start, mem_end;
};

// A domain's heap records as one reader sees them: the list from the head it
// loaded once. The list only grows at its head (protocol 6), so the part a
// reader holds never changes and indices into it stay valid for its walk.
class HeapList {
 public:
  explicit HeapList(const Domain& d)
      // acquire: records are published with release (protocol 6).
      : first_(d.heaps.load(std::memory_order_acquire)) {}
  const Heap* first() const { return first_; }
  // The index of the record at `candidate` (compared by address, never
  // read), with the record itself in *found; -1 and null when it is none.
  int64_t index_of(const void* candidate, const Heap** found) const;

 private:
  const Heap* first_;
};

// Whether a walk follows pages' remote-free lists into block memory to count
// them (PageView::remote). Snapshots do (where the domain allows it: see
// read_slot); statistics report no such count, so they stay on headers and a
// walk costs them a few loads per page, however many frees are pending.
enum class RemoteLists : uint8_t { kSkip, kCount };

// Copies, checks and clamps the claimed slot `index` of arena a, a published
// arena of d. heaps: where to look up the owner of a paged segment; null
// leaves heap at -1 (statistics need no owner).
void read_slot(const Domain& d, const HeapList* heaps, const Arena& a, size_t index,
               RemoteLists remote, SlotView* out);

// Every arena of d in list order, each slot in address order:
//   visitor.arena(arena) for each arena, then for its slots
//   visitor.free_slots(arena, first, count) for each run of unclaimed slots,
//   visitor.slot(arena, slot) for each claimed slot (a huge block: its span).
// Every slot of every arena is in exactly one run or span.
// A walk in progress, counted in d.slot_readers: no tail of free slots is
// unmapped under it (Domain::give_back_tail, protocol 4).
class SlotReaderScope {
 public:
  explicit SlotReaderScope(const Domain& d) : d_(d) {
    // seq_cst: with our seq_cst loads of mapped_slots, against the giver's
    // seq_cst store of mapped_slots and load of slot_readers (Dekker).
    d_.slot_readers.fetch_add(1, std::memory_order_seq_cst);
  }
  ~SlotReaderScope() {
    // Never below zero: a fork child resets the count (walks of threads it
    // lacks), and a walk of its own cut by that fork (a handler that forked
    // inside it) then ends at zero. relaxed: the CAS validates it.
    uint32_t n = d_.slot_readers.load(std::memory_order_relaxed);
    // release: our reads of slot memory come before a giver that sees the count drop.
    while (n != 0 && !d_.slot_readers.compare_exchange_weak(n, n - 1, std::memory_order_release,
                                                            std::memory_order_relaxed)) {
    }
  }
  SlotReaderScope(const SlotReaderScope&) = delete;
  SlotReaderScope& operator=(const SlotReaderScope&) = delete;

 private:
  const Domain& d_;
};

template <class Visitor>
void walk_arenas(const Domain& d, const HeapList* heaps, RemoteLists remote, Visitor& visitor) {
  const SlotReaderScope reading(d);
  uint64_t id = 0;
  // acquire: arena headers and bitmaps are written before their release publication (protocol 6).
  for (const Arena* a = d.arenas.load(std::memory_order_acquire); a != nullptr; a = a->next, ++id) {
    // seq_cst: see SlotReaderScope. Slots past it were given back to the OS.
    const size_t slots = a->mapped_slots.load(std::memory_order_seq_cst);
    const uintptr_t mem_end = slots < a->slot_count ? a->slot_addr(slots) : a->mem_end;
    const ArenaView arena{id, a->base, slots, a->mem_start, mem_end};
    visitor.arena(arena);
    size_t i = 0;
    while (i < slots) {
      if (!a->is_claimed(i)) {
        size_t end = i + 1;
        while (end < slots && !a->is_claimed(end)) ++end;
        visitor.free_slots(arena, i, end - i);
        i = end;
        continue;
      }
      SlotView slot;
      read_slot(d, heaps, *a, i, remote, &slot);
      visitor.slot(arena, slot);
      i += slot.span;
    }
  }
}

}  // namespace shardalloc::core
