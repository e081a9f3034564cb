// Heap set-up, the full collection done when a thread abandons its heap or
// another thread sweeps an abandoned one, and the sealed pages of abandoned
// heaps (protocol 3 of docs/protocols.md).
#include "core/assert.h"
#include "core/domain.h"
#include "core/heap.h"

namespace shardalloc::core {

void Heap::init(Domain* d) {
  domain = d;
  placeholder = false;
  sampling = d->sample_allocations.load(std::memory_order_relaxed);  // relaxed: see domain.h
  for (auto& p : direct) p = &g_empty_page;
  for (auto& q : queues) q = PageQueue{};
  full = PageQueue{};
  for (auto& p : partial) p = nullptr;
}

void Heap::collect_all() {
  if constexpr (kChecked) flush_quarantine();
  drain_notified();
  for_each_page([this](Page* page) {
    // Blocks handed but not allocated go back to the budget; charged again when handed.
    if (SHARD_UNLIKELY(sampling)) forget_page_samples(page);
    count_remote_frees(page->collect());
    if (page->in_full_queue() && page->free != nullptr) move_out_of_full(page);
    if (page->used == 0) free_page(page);
  });
  for (auto& p : direct) p = &g_empty_page;
}

bool Heap::seal(Page* page) {
  SHARD_ASSERT(page->in_use);
  for (;;) {
    count_remote_frees(page->collect());
    if (page->used == 0) return false;
    // relaxed: the CAS below validates what we read.
    uintptr_t raw = page->thread_free.load(std::memory_order_relaxed);
    const ThreadFreeWord seen(raw);
    // kNotified: its notifier pushes it on `notified`, where we (or whoever
    // owns the heap next) take it. A sealed page's list was just taken.
    if (seen.state() == NotifyState::kNotified) return true;
    if (seen.any_head(page) != nullptr) continue;  // frees arrived meanwhile: collect them too
    // The owner's lists are empty now: used counts exactly the blocks the program holds.
    SHARD_ASSERT(page->local_free == nullptr && page->used <= page->capacity);
    // release: the freer that completes the page (its CAS acquires) writes
    // next_notified after our earlier drain read it (as kFull, protocol 2).
    // On failure a free got in first: collect it and try again.
    if (page->thread_free.compare_exchange_weak(raw, ThreadFreeWord::sealed(0, page->used).raw(),
                                                std::memory_order_release,
                                                std::memory_order_relaxed)) {
      ++sealed_pages;
      return true;
    }
  }
}

void Heap::seal_or_free(Page* page) {
  if (!seal(page)) {
    free_page(page);
  } else if (page->in_full_queue() && page->free != nullptr) {
    move_out_of_full(page);  // it has room: the next owner finds it in its class queue
  }
}

void Heap::abandon_pages(bool sweeping) {
  // Checked mode: the quarantined blocks are freed first (as collect_all does);
  // a sealed page would otherwise count them live, and nobody frees them again.
  if constexpr (kChecked) flush_quarantine();
  drain_notified();
  for_each_page([this](Page* page) {
    // A cut's blocks go back on the page's list first: sealed without
    // them, they would be neither live nor free (docs/profiling.md).
    if (SHARD_UNLIKELY(sampling)) forget_page_samples(page);
    seal_or_free(page);
  });
  for (auto& p : direct) p = &g_empty_page;
  // Abandoned: no page left in a class queue or the full queue is plain
  // kNormal or kFull; each is sealed, or kNotified (on its way to `notified`).
  if constexpr (kChecked) {
    for_each_page([](Page* page) {
      const NotifyState st = page->load_thread_free(std::memory_order_relaxed).state();
      SHARD_ASSERT(st == NotifyState::kSealed || st == NotifyState::kNotified);
    });
  }
  // Nobody has owned the heap for a while (up to a sweep interval): give back
  // the memory of pages that have been free for the purge delay.
  if (sweeping) purge_free_pages(false);
}

void Heap::unseal_all() {
  // Pages sealed by the heap's earlier owners (a page that completed since
  // is counted but no longer sealed): none, nothing to walk.
  if (sealed_pages == 0) return;
  sealed_pages = 0;
  for_each_page([this](Page* page) {
    // relaxed: the CAS below validates what we read.
    uintptr_t raw = page->thread_free.load(std::memory_order_relaxed);
    while (ThreadFreeWord(raw).state() == NotifyState::kSealed) {
      // The list stays, as a plain one (collected as usual later). A page
      // in the full queue becomes kFull again (protocol 2), or kNormal with
      // blocks waiting, and then leaves the full queue.
      Block* head = ThreadFreeWord(raw).sealed_head(page);
      const bool parked = page->in_full_queue() && head == nullptr && page->free == nullptr;
      // release: as move_to_full's kFull (a notifier that reads it writes
      // next_notified after our reads of it). On failure a free got in: retry.
      // A parked page is one with no free block at all: it stays in the full queue.
      SHARD_ASSERT(!parked || page->local_free == nullptr);
      if (page->thread_free.compare_exchange_weak(
              raw, ThreadFreeWord(head, parked ? NotifyState::kFull : NotifyState::kNormal).raw(),
              std::memory_order_release, std::memory_order_relaxed)) {
        if (page->in_full_queue() && !parked) move_out_of_full(page);
        break;
      }
    }
  });
}

void Heap::reclaim_notified() {
  for (Page* list = take_notified(); list != nullptr;) {
    Page* page = next_unnotified(list);
    if (seal(page)) {
      if (page->in_full_queue() && page->free != nullptr) move_out_of_full(page);
      continue;
    }
    // No live block left. Freeing the page gives memory back only when its
    // segment goes back with it: then every page of the segment goes;
    // otherwise the page stays whole (its blocks on its free list, out of
    // the full queue), for the heap's next owner to allocate from at once.
    Segment* s = segment_of_page(page);
    if (segment_is_empty(s)) {
      // The pages first: the free of the last one releases the segment,
      // whose header we must not read after that.
      Page* pages[kSmallPagesPerSegment];
      unsigned n = 0;
      for (unsigned i = 0; i < s->page_count; ++i) {
        if (s->pages()[i].in_use) pages[n++] = &s->pages()[i];
      }
      for (unsigned i = 0; i < n; ++i) {
        SHARD_ASSERT(pages[i]->used == 0);
        free_page(pages[i]);
      }
    } else if (page->in_full_queue()) {
      move_out_of_full(page);
    }
  }
}

bool Heap::segment_is_empty(const Segment* s) const {
  for (unsigned i = 0; i < s->page_count; ++i) {
    if (s->pages()[i].in_use && s->pages()[i].used != 0) return false;
  }
  return true;
}

}  // namespace shardalloc::core
