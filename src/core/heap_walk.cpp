// The checked slot reader behind core/heap_walk.h.
#include "core/heap_walk.h"

#include "core/arena.h"
#include "core/bits.h"
#include "core/heap.h"
#include "core/segment.h"
#include "core/size_class.h"
#include "core/thread_free.h"

namespace shardalloc::core {
namespace {

// The functions marked with this load fields that their owners write with
// plain stores: races by design, on memory that stays mapped (heap_walk.h).
// TSan would report each of them, so these few reader functions are left
// uninstrumented rather than the owners' fast paths made atomic. Not inlined,
// so that no compiler moves their loads into an instrumented caller.
#define SHARD_RACY_READER __attribute__((no_sanitize("thread"), noinline))

// One load of a field another thread writes with plain stores. relaxed: the
// value only has to be one the field held (never torn, never loaded twice
// between its check and its use); the checks of read_slot decide its worth.
template <class T>
SHARD_INLINE T racy_load(const T& field) {
  return __atomic_load_n(&field, __ATOMIC_RELAXED);
}

// A reader's copy of the segment header fields it uses.
struct HeaderCopy {
  uintptr_t cookie;
  const void* domain;
  const void* heap;
  const void* arena;
  size_t span_slots;
  uint8_t kind;
  uint8_t page_shift;
  uint16_t page_count;
  uint16_t used_pages;
};

// A reader's copy of one page header.
struct PageCopy {
  uint8_t in_use;
  uint8_t size_class;
  uint8_t in_full;
  uint32_t used;
  uint32_t capacity;
  uint32_t reserved;
  size_t block_size;
  uintptr_t area;
  uintptr_t thread_free;
  PageKeys keys;
};

SHARD_RACY_READER void copy_header(const Segment& s, HeaderCopy* out) {
  out->cookie = racy_load(s.cookie);
  out->domain = racy_load(s.domain);
  out->heap = racy_load(s.heap);
  out->arena = racy_load(s.arena);
  out->span_slots = racy_load(s.span_slots);
  out->kind =
      racy_load(*reinterpret_cast<const uint8_t*>(&s.kind));  // SegmentKind is a uint8_t enum
  out->page_shift = racy_load(s.page_shift);
  out->page_count = racy_load(s.page_count);
  out->used_pages = racy_load(s.used_pages);
}

SHARD_RACY_READER void copy_page(const Page& p, PageCopy* out) {
  out->in_use = racy_load(p.in_use);
  out->size_class = racy_load(p.size_class);
  out->in_full = racy_load(p.in_full);
  out->used = racy_load(p.used);
  out->capacity = racy_load(p.capacity);
  out->reserved = racy_load(p.reserved);
  out->block_size = racy_load(p.block_size);
  out->area = addr(racy_load(p.area));
  // relaxed: the head is only counted from, through blocks count_remote checks.
  out->thread_free = p.thread_free.load(std::memory_order_relaxed);
  // Checked mode's link keys (plain copy, nothing in unchecked builds): torn
  // keys decode links to garbage, which count_remote stops at.
  out->keys = p.keys;
}

// Whether the segment header still carries `cookie`, loaded after the copy.
// A release clears the cookie before the slot goes back to its arena, so a
// copy that overlapped a release is caught (a release and a new claim of the
// same slot in between are not: the new header has the same cookie; the
// checks on the copy keep what that gives possible).
SHARD_RACY_READER bool cookie_unchanged(const Segment& s, uintptr_t cookie) {
  // acquire fence: the copy's loads are not reordered after this load of the cookie (a seqlock
  // reader's re-check).
  std::atomic_thread_fence(std::memory_order_acquire);
  return racy_load(s.cookie) == cookie;
}

// Blocks on a page's remote-free list, followed only through block starts of
// the page's area and at most `limit` of them: a list that changes under the
// reader gives a wrong count, never a load outside the page.
SHARD_RACY_READER uint32_t count_remote(const PageCopy& p, size_t block_size, uint32_t limit) {
  const uintptr_t end = p.area + size_t{p.reserved} * block_size;
  // Either encoding: a sealed page's head is an offset from its segment (any address of the area
  // finds it).
  uintptr_t b = addr(ThreadFreeWord(p.thread_free).any_head(ptr<const void>(p.area)));
  uint32_t n = 0;
  while (b != 0 && n < limit && b >= p.area && b < end && (b - p.area) % block_size == 0) {
    ++n;
    b = p.keys.decode(addr(racy_load(ptr<const Block>(b)->next)));
  }
  return n;
}

// How segments of a paged kind are cut: as for the largest block they hold.
PageGeometry geometry_of(SlotKind kind) {
  if (kind == SlotKind::kSmall) return geometry_for_block(kSmallBlockMax);
  if (kind == SlotKind::kMedium) return geometry_for_block(kMediumBlockMax);
  return geometry_for_block(kLargeBlockMax);
}

size_t page_bytes(const PageGeometry& g) {
  return g.count == 1 ? kSegmentSize : size_t{1} << g.shift;
}

uint32_t at_most(uint32_t value, uint32_t bound) { return value < bound ? value : bound; }

// The view of page i of the segment at `segment`, cut by g, from its copy:
// false when the copy is not a page in use that fits there (a class of this
// kind, its area where Heap::fresh_page puts it, as many blocks as fit).
bool view_page(uintptr_t segment, const PageGeometry& g, unsigned i, const PageCopy& c,
               bool follow_remote, PageView* out) {
  if (c.in_use != 1 || (c.in_full & ~(Page::kInFullQueue | Page::kHoldsSampled)) != 0 ||
      c.size_class == 0 || c.size_class >= kClassCount)
    return false;
  const size_t block = class_block_size(c.size_class);
  if (c.block_size != block || geometry_for_block(block).kind != g.kind) return false;
  const size_t bytes = page_bytes(g);
  const uintptr_t start = segment + i * bytes + (i == 0 ? kSegmentHeaderSize : 0);
  const uintptr_t end = segment + (i + 1) * bytes;
  if (c.area < start || c.area >= end || c.area % kMinAlign != 0 ||
      c.reserved != (end - c.area) / block) {
    return false;
  }
  out->index = i;
  out->size_class = c.size_class;
  out->block_size = block;
  out->reserved = c.reserved;
  out->capacity = at_most(c.capacity, c.reserved);
  out->used = at_most(c.used, out->capacity);
  out->remote = follow_remote ? count_remote(c, block, out->used) : 0;
  out->full = (c.in_full & Page::kInFullQueue) != 0;
  out->area = c.area;
  return true;
}

bool read_paged(const Segment& s, const HeaderCopy& h, SlotKind kind, const HeapList* heaps,
                bool follow_remote, SlotView* out) {
  const PageGeometry g = geometry_of(kind);
  if (h.span_slots != 1 || h.page_count != g.count || h.page_shift != g.shift) return false;
  out->kind = kind;
  out->page_count = g.count;
  out->used_pages = h.used_pages < g.count ? h.used_pages : g.count;
  out->page_size = page_bytes(g);
  for (unsigned i = 0; i < g.count; ++i) {
    PageCopy page;
    copy_page(s.pages()[i], &page);
    if (view_page(addr(&s), g, i, page, follow_remote, &out->pages[out->page_views]))
      ++out->page_views;
  }
  if (heaps != nullptr) {
    const Heap* heap = nullptr;
    out->heap = heaps->index_of(h.heap, &heap);
    // relaxed: a snapshot figure; heap records are never freed.
    out->heap_abandoned = heap != nullptr && heap->owned.load(std::memory_order_relaxed) == 0;
  }
  return true;
}

bool read_huge(const Segment& s, const HeaderCopy& h, const Arena& a, size_t index, SlotView* out) {
  if (h.span_slots == 0 || h.span_slots > a.slot_count - index || h.page_count != 1) return false;
  PageCopy block;
  copy_page(s.pages()[0], &block);
  const uintptr_t begin = addr(&s) + kSegmentHeaderSize;
  const uintptr_t end = addr(&s) + h.span_slots * kSegmentSize;
  // The block ends at the span's end, or before it where an inaccessible
  // tail gap starts (checked builds' guarded blocks; every build's tail guard slot).
  const bool ends_right = block.block_size != 0 && block.block_size <= end - block.area;
  if (block.area < begin || block.area >= end || block.area % kMinAlign != 0 || !ends_right)
    return false;
  out->kind = SlotKind::kHuge;
  out->span = h.span_slots;
  out->page_count = 1;
  out->used_pages = 1;
  out->huge_block_size = block.block_size;
  // free_huge moves thread_free from 0 to 1 before the release.
  out->huge_live = block.used != 0 && block.thread_free == 0;
  out->huge_area = block.area;
  return true;
}

void reset(size_t index, SlotView* out) {
  out->index = index;
  out->span = 1;
  out->kind = SlotKind::kMeta;
  out->heap = -1;
  out->heap_abandoned = false;
  out->page_count = 0;
  out->used_pages = 0;
  out->page_size = 0;
  out->page_views = 0;
  out->huge_block_size = 0;
  out->huge_live = false;
  out->huge_area = 0;
}

}  // namespace

int64_t HeapList::index_of(const void* candidate, const Heap** found) const {
  int64_t i = 0;
  for (const Heap* h = first_; h != nullptr; h = h->next_in_domain, ++i) {
    if (h == candidate) {
      *found = h;
      return i;
    }
  }
  *found = nullptr;
  return -1;
}

void read_slot(const Domain& d, const HeapList* heaps, const Arena& a, size_t index,
               RemoteLists remote, SlotView* out) {
  reset(index, out);
  const auto* s = ptr<const Segment>(a.slot_addr(index));
  // Claimed, but its slots not committed yet: a claim being set up.
  if (d.source.committed != nullptr && !d.source.committed(s, sizeof(Segment))) return;
  HeaderCopy h;
  copy_header(*s, &h);
  // Not a live header of this domain's arena a: metadata, or a claim being set up or released.
  if (h.cookie != d.cookie_of(s) || h.domain != &d || h.arena != &a) return;
  const auto kind = static_cast<SlotKind>(h.kind);
  bool fits = false;
  if (kind == SlotKind::kHuge) {
    fits = read_huge(*s, h, a, index, out);
  } else if (kind == SlotKind::kSmall || kind == SlotKind::kMedium || kind == SlotKind::kLarge) {
    // Remote-free lists lead into block memory, which (unlike headers) may
    // become inaccessible at any time where the source protects or guards
    // memory (checked mode's huge-block guards, the guard slot: the slot can
    // be released and claimed by a huge block after the copy), or where the
    // program may: a block on the list can be collected, handed out again
    // and have its first page mprotected (adversarial review: SIGSEGV in
    // 5 runs of 5). There they are not followed.
    const bool hides_memory =
        d.source.program_may_protect || d.source.protect != nullptr || d.source.guard != nullptr;
    fits = read_paged(*s, h, kind, heaps, remote == RemoteLists::kCount && !hides_memory, out);
  }
  if (!fits || !cookie_unchanged(*s, h.cookie)) reset(index, out);
}

}  // namespace shardalloc::core
