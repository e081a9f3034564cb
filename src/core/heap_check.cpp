// Heap::check: a heap-wide invariant check the owner may run at any time
// (shard_check_heap, shard_region_check_heap). It reads only the owner's own
// structures, plus snapshots of the thread_free stacks, whose blocks stay put
// until their owner (the caller) collects them. Checked builds also verify
// every canary and decode every link with the page's keys.
#include "core/checked.h"
#include "core/domain.h"
#include "core/heap.h"
#include "core/hooks.h"

namespace shardalloc::core {
namespace {

// The most blocks a page can hold: a small page of the smallest blocks.
constexpr size_t kMaxPageBlocks = kSmallPageSize / kMinAlign;

// One bit per block of a page: which blocks the free lists hold (1 KiB of stack).
struct BlockSet {
  uint64_t bits[kMaxPageBlocks / 64] = {};
  // Marks block `index`; false when it was already marked.
  bool add(size_t index) {
    const uint64_t bit = uint64_t{1} << (index % 64);
    if (bits[index / 64] & bit) return false;
    bits[index / 64] |= bit;
    return true;
  }
  bool has(size_t index) const { return (bits[index / 64] >> (index % 64)) & 1; }
};

[[noreturn]] void corrupt(const char* what, const void* where) { platform::fatal(what, where); }

size_t block_index(const Page& page, const void* b) {
  return (addr(b) - addr(page.area)) / page.block_size;
}

// Walks one free list of the page, marking its blocks. Returns its length.
size_t walk_list(const Page& page, const Block* head, BlockSet& listed) {
  size_t n = 0;
  for (const Block* b = head; b != nullptr; b = page.peek_next(b), ++n) {
    if (!page.is_handed_block(b))
      corrupt("heap check: a free list links to something that is no block of its page", b);
    if (!listed.add(block_index(page, b)))
      corrupt("heap check: a block is on the free lists twice (double free)", b);
    if (kChecked && *page.canary_of(b) != page.keys.canary_freed(addr(b))) {
      corrupt("heap check: a freed block was written to (use after free), block", b);
    }
  }
  return n;
}

// Checked builds: whether the canary of block b, read as `seen` (live), has
// changed since. A remote free from a thread with a quarantine of its own
// swaps the canary, then fills the block (its slack too) with poison: a check
// that read the canary before the swap and the slack after the fill found
// "overflowed" blocks that were only freed (within a second on one core,
// with another thread freeing this heap's blocks during the checks).
// acquire: pairs with the release fence before the poison in Heap::free_checked.
// (maybe_unused: ordinary builds discard its one call, in an if constexpr.)
[[maybe_unused]] bool freed_meanwhile(const Page& page, const Block* b, uint64_t seen) {
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  return __atomic_load_n(page.canary_of(b), __ATOMIC_RELAXED) != seen;
}

// Checked builds: every block not on a free list is live, and its canary
// says so (or says quarantined, or freed: a remote free may be between its
// canary swap and its push).
void check_live_canaries(const Page& page, const BlockSet& listed) {
  if constexpr (kChecked) {
    for (size_t i = 0; i < page.capacity; ++i) {
      if (listed.has(i)) continue;
      const Block* b = ptr<Block>(addr(page.area) + i * page.block_size);
      // relaxed: a racing remote free may swap it; both values are accepted.
      const uint64_t canary = __atomic_load_n(page.canary_of(b), __ATOMIC_RELAXED);
      const bool live = canary == page.keys.canary_live(addr(b));
      if ((!live && canary != page.keys.canary_freed(addr(b)) &&
           canary != page.keys.canary_quarantined(addr(b)) &&
           canary != page.keys.canary_evicted(addr(b))) ||
          (live && !live_block_intact(&page, b) && !freed_meanwhile(page, b, canary))) {
        corrupt(
            "heap check: the bytes after a live block were overwritten (buffer overflow), block",
            b);
      }
    }
  } else {
    (void)page, (void)listed;
  }
}

void check_segment(const Domain& d, const Heap* owner, const Segment* s) {
  if (s->cookie != d.cookie_of(s))
    corrupt("heap check: a segment header was overwritten, segment", s);
  if (s->heap != owner)
    corrupt("heap check: a page of this heap sits in a segment it does not own, segment", s);
  unsigned in_use = 0;
  for (unsigned i = 0; i < s->page_count; ++i) in_use += s->pages()[i].in_use;
  if (in_use != s->used_pages)
    corrupt("heap check: a segment miscounts its pages in use, segment", s);
}

// aside: the blocks the allocation sampler keeps off the page's free list (or null).
size_t check_page(const Domain& d, const Heap* owner, const Page& page, const Block* aside) {
  const auto* s = ptr<const Segment>(align_down(addr(&page), kSegmentSize));
  check_segment(d, owner, s);
  if (!page.in_use) corrupt("heap check: a queued page is not in use, page", &page);
  if (page.block_size != class_block_size(page.size_class) || page.capacity > page.reserved ||
      page.reserved > kMaxPageBlocks) {
    corrupt("heap check: a page header was overwritten, page", &page);
  }
  BlockSet listed;
  const size_t free_count = walk_list(page, page.free, listed) +
                            walk_list(page, page.local_free, listed) +
                            walk_list(page, aside, listed);
  // acquire: pairs with the remote freers' release pushes, so their links are visible.
  const size_t remote_count = walk_list(page, page.remote_head(std::memory_order_acquire), listed);
  if (free_count + page.used != page.capacity || remote_count > page.used) {
    corrupt("heap check: a page's block counts do not add up (lost or doubled block), page", &page);
  }
  check_live_canaries(page, listed);
  return page.capacity;
}

}  // namespace

size_t Heap::check() const {
  if (placeholder) return 0;
  if (g_empty_page.free != nullptr || g_empty_page.used != 0)
    corrupt("heap check: the shared empty page was written to", &g_empty_page);
  size_t blocks = 0;
  if constexpr (kChecked) check_quarantine();
  for (unsigned q = 0; q <= kClassCount; ++q) {
    const PageQueue& queue = q == kClassCount ? full : queues[q];
    const Page* prev = nullptr;
    for (const Page* page = queue.first; page != nullptr; prev = page, page = page->next) {
      if (page->prev != prev) corrupt("heap check: a page queue's links disagree, page", page);
      if (page->in_full_queue() != (q == kClassCount) ||
          (q < kClassCount && page->size_class != q)) {
        corrupt("heap check: a page sits in the wrong queue, page", page);
      }
      const SampleCut* cut = cut_of(page);
      blocks += check_page(*domain, this, *page, cut != nullptr ? cut->rest : nullptr);
    }
    if (queue.last != prev) corrupt("heap check: a page queue's last link is wrong, queue", &queue);
  }
  for (size_t w = 0; w < kDirectSlots; ++w) {
    const Page* page = direct[w];
    if (page != &g_empty_page && (!page->in_use || page->size_class != kDirectClass.cls[w] ||
                                  segment_of_page(page)->heap != this)) {
      corrupt("heap check: the direct table points at a wrong page, slot", &direct[w]);
    }
  }
  for (const Segment* s : partial) {
    for (const Segment* prev = nullptr; s != nullptr; prev = s, s = s->next_partial) {
      if (s->prev_partial != prev || !s->in_partial_list || s->used_pages >= s->page_count) {
        corrupt("heap check: the list of segments with free pages is damaged, segment", s);
      }
      check_segment(*domain, this, s);
    }
  }
  return blocks;
}

}  // namespace shardalloc::core
