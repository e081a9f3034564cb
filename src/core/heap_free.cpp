// Free slow paths: the owner's page bookkeeping and other threads' frees.
// The thread-free / notify protocol is docs/protocols.md.
#include <bit>

#include "core/assert.h"
#include "core/domain.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/lockfree_stack.h"
#include "core/owner_counter.h"
#include "core/remote_batch.h"
#include "core/step.h"

namespace shardalloc::core {

void partial_add(Segment*& head, Segment* s);
void partial_remove(Segment*& head, Segment* s);

void Heap::report_bad_local_free(Page* page, void* p) {
  // A block on top of a free list was just freed: a double free. Otherwise
  // the page holds no live block or p is no block start: not ours.
  if (page->in_use && (p == page->local_free || p == page->free ||
                       p == page->remote_head(std::memory_order_relaxed))) {
    platform::fatal("double free detected", p);
  }
  // Checked mode knows any freed block by its canary (p is a block start of the page here).
  if (kChecked && page->in_use && page->is_handed_block(p) &&
      (*page->canary_of(static_cast<Block*>(p)) == page->keys.canary_freed(addr(p)) ||
       *page->canary_of(static_cast<Block*>(p)) == page->keys.canary_quarantined(addr(p)))) {
    platform::fatal("double free detected", p);
  }
  platform::fatal("free of a pointer that is not allocated", p);
}

Block* aligned_block_of(const Page* page, const void* p) {
  if (!page->has_interior.load(std::memory_order_relaxed) || !page->contains(p)) return nullptr;
  const size_t index = (addr(p) - addr(page->area)) / page->block_size;
  Block* b = ptr<Block>(addr(page->area) + index * page->block_size);
  // Heap::alloc_aligned_body returns align_up(b, align) for a b not aligned
  // so: 0 < offset < align, p a multiple of align, and the block holds
  // size + align - kMinAlign bytes (size >= 1). Some align gives p exactly
  // when p's own alignment (its lowest set bit) exceeds the offset and the
  // smallest such align, the power of two above the offset, fits the block.
  const uintptr_t offset = addr(p) - addr(b);
  const uintptr_t own_align = addr(p) & (0 - addr(p));
  if (offset == 0 || offset >= own_align) return nullptr;
  if (std::bit_ceil(offset + 1) - kMinAlign >= page->block_size) return nullptr;
  return b;
}

Block* handed_block_of(const Page* page, const void* p) {
  Block* b = page->is_block_start(p) ? ptr<Block>(addr(p)) : aligned_block_of(page, p);
  return b != nullptr && page->is_handed_block(b) ? b : nullptr;
}

Block* Heap::interior_block(Page* page, void* p) {
  Block* b = aligned_block_of(page, p);
  if (b == nullptr) platform::fatal("free of a pointer that is not allocated", p);
  return b;
}

size_t usable_of_live_block(void* p) {
  Segment* s = segment_of(p);
  const Page* page = s->page_of(p);
  // relaxed: comparisons only, as in free's own checks.
  const ThreadFreeWord tf = page->load_thread_free(std::memory_order_relaxed);
  if (s->kind == SegmentKind::kHuge) {
    if (p != page->area) platform::fatal("realloc of a pointer that is not allocated", p);
    // A huge block's thread_free is 0 while it is live; free_huge sets it to 1.
    if (tf.raw() != 0) platform::fatal("realloc of a freed block (use after free)", p);
    return page->usable_from(p);
  }
  const Block* b = page->in_use ? handed_block_of(page, p) : nullptr;
  if (b == nullptr) platform::fatal("realloc of a pointer that is not allocated", p);
  if (b == page->peek_local_free() || b == tf.any_head(page)) {
    platform::fatal("realloc of a freed block (use after free)", p);
  }
  return page->usable_from(p);
}

void Heap::free_local_unusual(Page* page, void* p) {
  Block* b = page->is_block_start(p) ? static_cast<Block*>(p) : interior_block(page, p);
  if (!page->owner_may_free(b)) report_bad_local_free(page, p);
  if constexpr (kChecked) disarm_canary(page, b, p);
  push_local(page, b);
}

void Heap::page_freed_slow(Page* page) {
  // The block just freed is on top of local_free.
  if (SHARD_UNLIKELY(page->in_full & Page::kHoldsSampled))
    page->sampled_block_freed(page->local_free);
  if (page->in_full_queue()) move_out_of_full(page);
  if (page->used != 0) return;
  if (stays_when_empty(page)) {
    if (retires_when_empty(page)) retire_page(page);
    return;
  }
  free_page(page);
}

// KiB the heap sets up before a retired page goes back: kRetireAfter pages' worth.
static uint32_t retire_due(const Page* page) {
  return Heap::kRetireAfter * uint32_t((size_t{page->reserved} * page->block_size) >> 10);
}

void Heap::expire_retired() {
  for (uint64_t classes = retired_classes; classes != 0; classes &= classes - 1) {
    const unsigned cls = unsigned(std::countr_zero(classes));
    Page* page = queues[cls].first;
    // Used again, or no longer alone in its class: the ordinary paths decide.
    const bool retiring = page != nullptr && page->used == 0 && stays_when_empty(page);
    if (retiring && claim_clock - page->retired_at < retire_due(page)) continue;  // (wraps)
    retired_classes &= ~(uint64_t{1} << cls);
    if (!retiring) continue;
    expired_classes |= uint64_t{1} << cls;
    free_page(page);
  }
}

void Heap::free_page(Page* page) {
  // relaxed: we only need to know whether a notifier may still touch the
  // page; kNotified is set by a CAS whose block we already collected.
  if (page->load_thread_free(std::memory_order_relaxed).state() == NotifyState::kNotified) return;
  // Only a page with no live block goes; a sealed page always has one (remaining >= 1).
  SHARD_ASSERT(page->in_use && page->used == 0);
  SHARD_ASSERT(page->load_thread_free(std::memory_order_relaxed).state() != NotifyState::kSealed);
  if (SHARD_UNLIKELY(sampling)) forget_page_samples(page);
  queue_remove(queue_of(page), page);
  page->in_full = 0;
  page->in_use = 0;
  page->free = nullptr;
  page->set_local_free(nullptr);
  Segment* s = segment_of_page(page);
  SHARD_ASSERT(s->heap == this && s->used_pages != 0);
  --s->used_pages;
  const bool shared = s->page_count > 1;  // small and medium segments hold several pages
  if (shared) partial_add(partial[partial_index(s->kind)], s);
  if (s->used_pages != 0 && domain->source.purge != nullptr) {
    // The segment stays: its free page keeps its memory (resident), which a
    // sweep gives back once the page has stayed free for the purge delay.
    // (The first sweep that finds it free stamps the time: no clock read here.)
    page->free_since = Page::kFreeUnstamped;
    ++dirty_pages;
  }
  if (s->used_pages == 0) {
    // Its free pages go with the segment (the slot is purged as a whole).
    for (unsigned i = 0; i < s->page_count; ++i) {
      if (s->pages()[i].free_since != 0) {
        s->pages()[i].free_since = 0;
        --dirty_pages;
      }
    }
    if (shared) partial_remove(partial[partial_index(s->kind)], s);
    owner_sub(segment_count, 1u);  // a hint for sweepers
    domain->release_segment(s);
  }
}

void Heap::purge_page(Segment* s, Page* page) {
  const size_t index = size_t(page - s->pages());
  const size_t page_bytes = kSegmentSize / s->page_count;
  // Page 0 starts after the segment header, which stays.
  const uintptr_t start =
      align_up(addr(s) + index * page_bytes + (index == 0 ? kSegmentHeaderSize : 0), kPurgeGrain);
  const uintptr_t end = addr(s) + (index + 1) * page_bytes;
  domain->source.purge(ptr(start), end - start);
  page->free_since = 0;
  --dirty_pages;
  // relaxed: a statistic.
  domain->purged_bytes.fetch_add(end - start, std::memory_order_relaxed);
}

void Heap::purge_free_pages(bool all) {
  if (dirty_pages == 0 || domain->source.now_ms == nullptr) return;
  const uint32_t now = uint32_t(domain->source.now_ms());
  const uint32_t stamp = now > Page::kFreeUnstamped ? now : Page::kFreeUnstamped + 1;
  // Free pages of kept segments are in segments on the partial lists (a
  // segment with a free page and a page in use is on its kind's list).
  for (Segment* head : partial) {
    for (Segment* s = head; s != nullptr; s = s->next_partial) {
      for (unsigned i = 0; i < s->page_count; ++i) {
        Page* page = &s->pages()[i];
        if (page->in_use || page->free_since == 0) continue;
        if (all || (page->free_since != Page::kFreeUnstamped &&
                    now - page->free_since >= domain->purge_delay())) {
          purge_page(s, page);
        } else if (page->free_since == Page::kFreeUnstamped) {
          page->free_since = stamp;  // free at least since now
        }
      }
    }
  }
}

Page* Heap::take_notified() {
  // relaxed: a cheap emptiness test; the exchange below synchronizes.
  if (notified.load(std::memory_order_relaxed) == nullptr) return nullptr;
  // acquire: pairs with the notifiers' release pushes, so next_notified links are visible.
  return notified.exchange(nullptr, std::memory_order_acquire);
}

Page* Heap::next_unnotified(Page*& list) {
  Page* page = list;
  list = page->next_notified;
  // A page on the stack stays kNotified until its owner takes it (protocols 2 and 3).
  SHARD_ASSERT(page->in_use &&
               page->load_thread_free(std::memory_order_relaxed).state() == NotifyState::kNotified);
  // relaxed: only the state bits change; the list head is kept.
  uintptr_t raw = page->thread_free.load(std::memory_order_relaxed);
  while (!page->thread_free.compare_exchange_weak(
      raw, ThreadFreeWord(raw).with_state(NotifyState::kNormal).raw(), std::memory_order_relaxed,
      std::memory_order_relaxed)) {
  }
  return page;
}

void Heap::drain_notified() {
  for (Page* list = take_notified(); list != nullptr;) {
    Page* page = next_unnotified(list);
    if (page->in_full_queue()) move_out_of_full(page);
  }
}

namespace {

SHARD_NOINLINE void free_huge(Segment* s, void* p) {
  Page* page = &s->pages()[0];
  if (p != page->area) platform::fatal("free of a pointer that is not allocated", p);
  if constexpr (kChecked) disarm_canary(page, static_cast<Block*>(p), p);
  if constexpr (kHugeFrontGuardBytes != 0) {
    const auto* guard = ptr<const uintptr_t>(addr(p) - kHugeFrontGuardBytes);
    if (guard[0] != huge_front_guard(s->cookie, 0) || guard[1] != huge_front_guard(s->cookie, 1)) {
      platform::fatal(
          "heap corruption: the bytes before the block were overwritten (buffer underflow), block",
          p);
    }
  }
  if (SHARD_UNLIKELY(page->in_full & Page::kHoldsSampled)) platform::sampled_block_freed(p);
  // Outside the step (a fork does not wait this long): the block is being
  // freed, so its contents no longer matter. (A double free racing with
  // this one may purge a block that reused the span meanwhile, and free it:
  // the same as a double free after reuse, which nothing detects.)
  const bool purged = s->domain->purge_big_huge(s);
  Step step;  // no fork between winning the block and releasing its slots
  uintptr_t expected = 0;
  // acq_rel: the winner of this CAS alone releases the segment; a loser is a double free.
  if (!page->thread_free.compare_exchange_strong(expected, 1, std::memory_order_acq_rel,
                                                 std::memory_order_relaxed)) {
    platform::fatal("double free detected", p);
  }
  if constexpr (kChecked) release_huge_guards(s);
  if (s->tail_guard) {
    // Accessible again (contents kept) before the slot goes back to the arena.
    s->domain->source.guard(ptr(addr(s->slot_end()) - kSegmentSize + kOsPage),
                            kSegmentSize - kOsPage, false);
  }
  s->domain->release_segment(s, purged || s->domain->purge_sparse_huge(s));
}

void push_notified(Heap* heap, Page* page) {
  // seq_cst: release, so the owner's acquire exchange sees next_notified
  // (lockfree_stack.h); and one total order with owned's give-up store and
  // our load of owned after this push (free_notifying; protocol 3: no page
  // left on the stack of a heap nobody owns).
  // Only the push that made the page kNotified puts it on the stack, once.
  SHARD_ASSERT(page->load_thread_free(std::memory_order_relaxed).state() == NotifyState::kNotified);
  push_front(heap->notified, page, &Page::next_notified, std::memory_order_seq_cst);
}

// The pushes of a remote free share one loop (push_remote); a rule says
// which words it pushes into, where their list starts, the word after the
// push, and the CAS's ordering.

// The fast path: a page neither kFull (the free must notify) nor kSealed (it
// must count down).
struct PlainPush {
  // release: our writes to the block (and its next pointer) happen-before the owner's acquire
  // collect.
  static constexpr std::memory_order kOrder = std::memory_order_release;
  static bool accepts(ThreadFreeWord seen) { return (seen.raw() & ThreadFreeWord::kSlowBit) == 0; }
  static Block* head(const Page*, ThreadFreeWord seen) { return seen.head(); }
  static ThreadFreeWord next(const Page*, ThreadFreeWord seen, Block* b) {
    return seen.with_head(b);
  }
};

// A sealed page with live blocks besides b: the push counts down, no step.
struct SealedPush {
  // release: as PlainPush; the acquire collect is that of the page's next owner.
  static constexpr std::memory_order kOrder = std::memory_order_release;
  static bool accepts(ThreadFreeWord seen) {
    return seen.state() == NotifyState::kSealed && seen.remaining() > 1;
  }
  static Block* head(const Page* page, ThreadFreeWord seen) { return seen.sealed_head(page); }
  static ThreadFreeWord next(const Page* page, ThreadFreeWord seen, Block* b) {
    return ThreadFreeWord::sealed(addr(b) - align_down(addr(page), kSegmentSize),
                                  seen.remaining() - 1);
  }
};

// Any state: kFull becomes kNotified (protocol 2); a sealed page counts
// down, and its last live block makes it kNotified (protocol 3). `notify`:
// the push took the duty to put the page on its heap's notified stack.
struct AnyPush {
  // release: as PlainPush. acquire: when we read kFull or kSealed, the owner's release there orders
  // its earlier drain (which read next_notified) before our write of next_notified.
  static constexpr std::memory_order kOrder = std::memory_order_acq_rel;
  bool notify = false;
  static bool accepts(ThreadFreeWord) { return true; }
  static Block* head(const Page* page, ThreadFreeWord seen) { return seen.any_head(page); }
  ThreadFreeWord next(const Page* page, ThreadFreeWord seen, Block* b) {
    switch (seen.state()) {
      case NotifyState::kFull:
        notify = true;
        return ThreadFreeWord(b, NotifyState::kNotified);
      case NotifyState::kSealed:
        notify = !SealedPush::accepts(seen);  // b is the page's last live block
        return notify ? ThreadFreeWord(b, NotifyState::kNotified) : SealedPush::next(page, seen, b);
      default:
        notify = false;
        return PlainPush::next(page, seen, b);
    }
  }
};

// Pushes b (p: the pointer freed) on page's thread_free list as `rule` says;
// false, without a push, when the rule does not take the word it finds.
template <class Rule>
SHARD_INLINE bool push_remote(Page* page, Block* b, const void* p, Rule& rule) {
  // relaxed: the CAS below validates what we read.
  uintptr_t raw = page->thread_free.load(std::memory_order_relaxed);
  for (;;) {
    const ThreadFreeWord seen(raw);
    if (!rule.accepts(seen)) return false;
    Block* head = rule.head(page, seen);
    // An immediate double free: on top of the remote list, or of the owner's local list.
    if (head == b || page->peek_local_free() == b) platform::fatal("double free detected", p);
    page->set_next(b, head);
    // Rule::kOrder: see each rule; failure relaxed: the loop validates again.
    if (page->thread_free.compare_exchange_weak(raw, rule.next(page, seen, b).raw(), Rule::kOrder,
                                                std::memory_order_relaxed)) {
      return true;
    }
  }
}

// A free that may notify: a step (no fork between the CAS that moves the
// page to kNotified and its push on the heap's notified stack, nor between
// claiming an abandoned heap and giving it back).
SHARD_NOINLINE void free_notifying(Segment* s, Page* page, Block* b, const void* p) {
  Step step;
  // Read before the push: once the page is on the stack its owner may free
  // it, and its segment with it. Heap records are never freed (and a heap's
  // domain never changes), so the heap stays ours to touch.
  Heap* heap = s->heap;
  Domain* domain = heap->domain;
  // We moved the page to kNotified: tell its heap. The owner will not free
  // the page while it is kNotified, so touching it here is safe.
  AnyPush rule;
  push_remote(page, b, p, rule);
  if (!rule.notify) return;
  push_notified(heap, page);
  // Protocol 3: a heap nobody owns has nobody to drain the stack; we claim it
  // and give the pages back ourselves (seq_cst: see push_notified).
  if (heap->owned.load(std::memory_order_seq_cst) == 0) domain->reclaim_abandoned(heap);
}

// A free into a page that is kFull or kSealed. Pushes into a sealed page
// that leave blocks out are plain CASes (no step); the one that completes
// the page, and a free into a full page, notify.
SHARD_NOINLINE void free_remote_slow(Segment* s, Page* page, Block* b, const void* p) {
  SealedPush rule;
  if (!push_remote(page, b, p, rule)) free_notifying(s, page, b, p);
}

// Pushes b like one remote free (p: the pointer freed).
SHARD_INLINE void push_remote_block(Segment* s, Page* page, Block* b, const void* p) {
  PlainPush rule;
  if (SHARD_UNLIKELY(!push_remote(page, b, p, rule))) return free_remote_slow(s, page, b, p);
}

// The block p names on a page of a segment the caller does not own: our
// pointers are block starts below capacity (checked without a division), or
// interior only on pages that hand out aligned blocks; those round down to
// their block, which must be below capacity too.
SHARD_INLINE Block* remote_block_of(Page* page, void* p) {
  if (!page->in_use) platform::fatal("free of a pointer that is not allocated", p);
  if (SHARD_LIKELY(page->is_handed_block(p))) return static_cast<Block*>(p);
  Block* b = handed_block_of(page, p);
  if (b == nullptr) platform::fatal("free of a pointer that is not allocated", p);
  return b;
}

// Pushes the chain head..tail of page's blocks (linked by set_next) with one
// CAS, as PlainPush pushes one block; false, having pushed nothing, when the
// page is kFull or kSealed (those frees notify or count, one at a time).
bool push_remote_chain(Page* page, Block* head, Block* tail) {
  // relaxed: the CAS validates what we read.
  uintptr_t raw = page->thread_free.load(std::memory_order_relaxed);
  for (;;) {
    const ThreadFreeWord seen(raw);
    if (!PlainPush::accepts(seen)) return false;
    page->set_next(tail, PlainPush::head(page, seen));
    // release: as PlainPush, for every block of the chain; failure relaxed: the loop validates
    // again.
    if (page->thread_free.compare_exchange_weak(raw, PlainPush::next(page, seen, head).raw(),
                                                PlainPush::kOrder, std::memory_order_relaxed)) {
      return true;
    }
  }
}

}  // namespace

void free_remote(Domain* d, Segment* s, void* p) {
  if (s->cookie != d->cookie_of(s)) return platform::free_foreign(d, s, p);
  if (s->kind == SegmentKind::kHuge) return free_huge(s, p);
  Page* page = s->page_of(p);
  Block* b = remote_block_of(page, p);
  if constexpr (kChecked) disarm_canary(page, b, p);
  push_remote_block(s, page, b, p);
}

namespace {

// Pushes the chain and empties it.
void flush_remote_chain(RemoteChain& chain) {
  Page* const page = chain.page;
  Block* b = chain.head;
  Block* const tail = chain.tail;
  chain = RemoteChain{};
  if (SHARD_LIKELY(push_remote_chain(page, b, tail))) return;
  // The page became full or sealed since the chain started. One block at a
  // time, the first of which may notify, and the rest in one CAS again once
  // the page takes it (a full page is kNotified after the first). Until the
  // last push the page keeps a live block of ours (counted in used, or in a
  // sealed page's remaining), so it stays; after it we touch nothing of it.
  Segment* const s = segment_of_page(page);
  for (;;) {
    const bool last = b == tail;
    Block* next = last ? nullptr : page->next_of(b);
    push_remote_block(s, page, b, b);
    if (last || push_remote_chain(page, next, tail)) return;
    b = next;
  }
}

}  // namespace

void flush_remote_batch(RemoteBatch& batch) {
  for (RemoteChain& chain : batch.chains) {
    if (chain.page != nullptr) flush_remote_chain(chain);
  }
}

void free_remote_batched(Segment* s, void* p, RemoteBatch& batch) {
  SHARD_ASSERT(s->kind != SegmentKind::kHuge);
  if constexpr (kChecked) return free_remote(s->domain, s, p);
  Page* page = s->page_of(p);
  Block* b = remote_block_of(page, p);
  const size_t block_size = page->block_size;
  if (block_size > kRemoteBatchBlockMax) return push_remote_block(s, page, b, p);
  RemoteChain& chain = batch.chains[page->size_class];
  if (page == chain.page) {
    // An immediate double free: on top of our chain.
    if (b == chain.head) platform::fatal("double free detected", p);
    if (chain.count < chain.limit) return chain.link(page, b);
  }
  if (chain.page != nullptr) flush_remote_chain(chain);
  const ThreadFreeWord seen = page->load_thread_free(std::memory_order_relaxed);
  // A sealed page (protocol 3) must see its last free when it is made: a
  // chain would keep the page, every block freed into it and its segment.
  // A full page's first free notifies its owner at once (protocol 2); the
  // frees after it chain into the page, kNotified then.
  if (seen.raw() & ThreadFreeWord::kSlowBit) return push_remote_block(s, page, b, p);
  // An immediate double free, as push_remote checks it.
  if (seen.any_head(page) == b || page->peek_local_free() == b) {
    platform::fatal("double free detected", p);
  }
  const uint32_t limit = uint32_t(kRemoteChainBytes / block_size);
  chain = RemoteChain{page, b, b, 1, limit < kRemoteChainBlocks ? limit : kRemoteChainBlocks};
}

}  // namespace shardalloc::core
