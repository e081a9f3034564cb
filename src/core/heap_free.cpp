// Free slow paths: the owner's page bookkeeping and other threads' frees.
// The thread-free / notify protocol is docs/protocols.md.
#include "core/domain.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/step.h"

namespace shardalloc::core {

void partial_add(Segment*& head, Segment* s);
void partial_remove(Segment*& head, Segment* s);

void Heap::report_bad_local_free(Page* page, void* p) {
  // A block on top of a free list was just freed: a double free. Otherwise
  // the page holds no live block or p is no block start: not ours.
  if (page->in_use && (p == page->local_free || p == page->free ||
                       p == page->load_thread_free(std::memory_order_relaxed).head())) {
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

Block* Heap::interior_block(Page* page, void* p) {
  if (!page->has_interior.load(std::memory_order_relaxed) || !page->contains(p)) {
    platform::fatal("free of a pointer that is not allocated", p);
  }
  const size_t index = (addr(p) - addr(page->area)) / page->block_size;
  return ptr<Block>(addr(page->area) + index * page->block_size);
}

void Heap::free_local_unusual(Page* page, void* p) {
  Block* b = page->is_block_start(p) ? static_cast<Block*>(p) : interior_block(page, p);
  if (b == page->local_free || page->used == 0 ||
      b ==
          page->load_thread_free(std::memory_order_relaxed).head()) {  // relaxed: a comparison only
    report_bad_local_free(page, p);
  }
  if constexpr (kChecked) disarm_canary(page, b, p);
  push_local(page, b);
}

void Heap::page_freed_slow(Page* page) {
  // The block just freed is on top of local_free.
  if (SHARD_UNLIKELY(page->in_full & Page::kHoldsSampled))
    page->sampled_block_freed(page->local_free);
  if (page->in_full_queue()) move_out_of_full(page);
  if (page->used != 0) return;
  const PageQueue& q = queues[page->size_class];
  // The only page of its class stays, so alloc/free of one block does not
  // claim and release a page every time.
  if (q.first == page && page->next == nullptr) return;
  free_page(page);
}

void Heap::free_page(Page* page) {
  // relaxed: we only need to know whether a notifier may still touch the
  // page; kNotified is set by a CAS whose block we already collected.
  if (page->load_thread_free(std::memory_order_relaxed).state() == NotifyState::kNotified) return;
  if (SHARD_UNLIKELY(sampling)) forget_page_samples(page);
  queue_remove(queue_of(page), page);
  page->in_full = 0;
  page->in_use = 0;
  page->free = nullptr;
  page->set_local_free(nullptr);
  Segment* s = ptr<Segment>(align_down(addr(page), kSegmentSize));
  --s->used_pages;
  const bool shared = s->page_count > 1;  // small and medium segments hold several pages
  if (shared) partial_add(partial[partial_index(s->kind)], s);
  if (s->used_pages == 0) {
    if (shared) partial_remove(partial[partial_index(s->kind)], s);
    // relaxed: a hint for sweepers.
    segment_count.store(segment_count.load(std::memory_order_relaxed) - 1,
                        std::memory_order_relaxed);
    domain->release_segment(s);
  }
}

void Heap::drain_notified() {
  // relaxed: a cheap emptiness test; the exchange below synchronizes.
  if (notified.load(std::memory_order_relaxed) == nullptr) return;
  // acquire: pairs with the notifiers' release pushes, so next_notified links are visible.
  Page* list = notified.exchange(nullptr, std::memory_order_acquire);
  while (list != nullptr) {
    Page* page = list;
    list = page->next_notified;
    // relaxed: only the state bits change; the list head is kept.
    uintptr_t raw = page->thread_free.load(std::memory_order_relaxed);
    while (!page->thread_free.compare_exchange_weak(
        raw, ThreadFreeWord(raw).with_state(NotifyState::kNormal).raw(), std::memory_order_relaxed,
        std::memory_order_relaxed)) {
    }
    if (page->in_full_queue()) move_out_of_full(page);
  }
}

namespace {

SHARD_NOINLINE void free_huge(Segment* s, void* p) {
  Page* page = &s->pages[0];
  if (p != page->area) platform::fatal("free of a pointer that is not allocated", p);
  if constexpr (kChecked) disarm_canary(page, static_cast<Block*>(p), p);
  if (SHARD_UNLIKELY(page->in_full & Page::kHoldsSampled)) platform::sampled_block_freed(p);
  Step step;  // no fork between winning the block and releasing its slots
  uintptr_t expected = 0;
  // acq_rel: the winner of this CAS alone releases the segment; a loser is a double free.
  if (!page->thread_free.compare_exchange_strong(expected, 1, std::memory_order_acq_rel,
                                                 std::memory_order_relaxed)) {
    platform::fatal("double free detected", p);
  }
  if constexpr (kChecked) release_huge_guards(s);
  s->domain->release_segment(s);
}

void push_notified(Heap* heap, Page* page) {
  // relaxed load: the CAS below publishes.
  Page* head = heap->notified.load(std::memory_order_relaxed);
  do {
    page->next_notified = head;
    // release: the owner's acquire exchange then sees next_notified.
  } while (!heap->notified.compare_exchange_weak(head, page, std::memory_order_release,
                                                 std::memory_order_relaxed));
}

}  // namespace

namespace {

// Pushes b (p: the pointer freed) on page's thread_free list; returns the
// state the push replaced, moving kFull to kNotified. With stop_at_full, a
// page found kFull is left alone and kFull returned without a push.
SHARD_INLINE NotifyState push_thread_free(Page* page, Block* b, const void* p, bool stop_at_full) {
  // relaxed: the CAS below validates what we read.
  uintptr_t raw = page->thread_free.load(std::memory_order_relaxed);
  for (;;) {
    const ThreadFreeWord seen(raw);
    if (stop_at_full && seen.state() == NotifyState::kFull) return NotifyState::kFull;
    // An immediate double free: on top of the remote list, or of the owner's local list.
    if (seen.head() == b || page->peek_local_free() == b)
      platform::fatal("double free detected", p);
    page->set_next(b, seen.head());
    const NotifyState next =
        seen.state() == NotifyState::kFull ? NotifyState::kNotified : seen.state();
    // release: our writes to the block (and its next pointer) happen-before the owner's acquire
    // collect. acquire: when we read kFull, the owner's release there orders its earlier drain
    // (which read next_notified) before our write of next_notified.
    if (page->thread_free.compare_exchange_weak(raw, ThreadFreeWord(b, next).raw(),
                                                std::memory_order_acq_rel,
                                                std::memory_order_relaxed)) {
      return seen.state();
    }
  }
}

// The push into a page found full: a step (no fork between the CAS that
// moves the page to kNotified and its push on the heap's notified stack).
SHARD_NOINLINE void free_into_full_page(Segment* s, Page* page, Block* b, const void* p) {
  Step step;
  // We moved the page from kFull to kNotified: tell its heap. The owner will
  // not free the page while it is kNotified, so touching it here is safe.
  if (push_thread_free(page, b, p, false) == NotifyState::kFull) push_notified(s->heap, page);
}

}  // namespace

void free_remote(Domain* d, Segment* s, void* p) {
  if (s->cookie != d->cookie_of(s)) return platform::free_foreign(d, s, p);
  if (s->kind == SegmentKind::kHuge) return free_huge(s, p);
  Page* page = s->page_of(p);
  if (!page->in_use) platform::fatal("free of a pointer that is not allocated", p);
  // Our pointers are block starts (checked without a division), or interior
  // only on pages that hand out aligned blocks; those round down to their block.
  Block* b = static_cast<Block*>(p);
  if (SHARD_UNLIKELY(!page->is_block_start(p))) b = Heap::interior_block(page, p);
  if constexpr (kChecked) disarm_canary(page, b, p);
  if (SHARD_UNLIKELY(push_thread_free(page, b, p, true) == NotifyState::kFull)) {
    return free_into_full_page(s, page, b, p);
  }
}

}  // namespace shardalloc::core
