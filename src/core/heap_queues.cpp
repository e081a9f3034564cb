// Page queues and the direct table: owner-only bookkeeping of a heap.
#include "core/assert.h"
#include "core/heap.h"

namespace shardalloc::core {

// Queue invariants (owner): a page in use sits in exactly one queue, its
// class queue or (in_full) the full queue; first and last are null together.
void Heap::queue_push_front(PageQueue& q, Page* page) {
  SHARD_ASSERT(page->in_use && &q == &queue_of(page) && q.first != page);
  SHARD_ASSERT((q.first == nullptr) == (q.last == nullptr));
  page->prev = nullptr;
  page->next = q.first;
  if (q.first != nullptr)
    q.first->prev = page;
  else
    q.last = page;
  q.first = page;
}

void Heap::queue_push_back(PageQueue& q, Page* page) {
  SHARD_ASSERT(page->in_use && &q == &queue_of(page) && q.last != page);
  SHARD_ASSERT((q.first == nullptr) == (q.last == nullptr));
  page->next = nullptr;
  page->prev = q.last;
  if (q.last != nullptr)
    q.last->next = page;
  else
    q.first = page;
  q.last = page;
}

void Heap::queue_remove(PageQueue& q, Page* page) {
  SHARD_ASSERT(&q == &queue_of(page));
  SHARD_ASSERT(page->prev != nullptr ? page->prev->next == page : q.first == page);
  SHARD_ASSERT(page->next != nullptr ? page->next->prev == page : q.last == page);
  if (page->prev != nullptr)
    page->prev->next = page->next;
  else
    q.first = page->next;
  if (page->next != nullptr)
    page->next->prev = page->prev;
  else
    q.last = page->prev;
  page->next = page->prev = nullptr;
  // The direct table must never point at a page that left its class queue.
  if (&q != &full && q.first != nullptr)
    set_direct(page->size_class, q.first);
  else if (&q != &full)
    set_direct(page->size_class, &g_empty_page);
}

void Heap::set_direct(unsigned cls, Page* page) {
  // The direct table points at the empty page or at a page in use of the class, not full.
  SHARD_ASSERT(page == &g_empty_page ||
               (page->in_use && page->size_class == cls && !page->in_full_queue()));
  const size_t block = class_block_size(cls);
  if (block > kDirectSizeMax) return;
  const size_t hi = direct_slot_of(block);
  // The class's slots are only ever written together (here, or all slots at
  // once): the last one tells them all. The slow path finds the page it had
  // more often than not (collect refilled it).
  if (direct[hi] == page) return;
  const size_t lo = cls == 1 ? 0 : direct_slot_of(class_block_size(cls - 1)) + 1;
  for (size_t w = lo; w <= hi; ++w) direct[w] = page;
}

bool Heap::move_to_full(Page* page) {
  // relaxed: the state bits carry no data; blocks are handed over by collect's acquire.
  uintptr_t raw = page->thread_free.load(std::memory_order_relaxed);
  const ThreadFreeWord seen(raw);
  // Not full yet, and an owner that allocates has no sealed page (protocol 3).
  SHARD_ASSERT(!page->in_full_queue() && seen.state() != NotifyState::kFull &&
               seen.state() != NotifyState::kSealed);
  if (seen.state() == NotifyState::kNormal) {
    if (seen.head() != nullptr) return false;  // remote frees arrived: collect them instead
    // release: the notifier that reads kFull (and fences acquire) then writes
    // next_notified after our drain's reads of it. On failure a remote free got
    // in first; the caller collects it.
    if (!page->thread_free.compare_exchange_strong(
            raw, ThreadFreeWord(nullptr, NotifyState::kFull).raw(), std::memory_order_release,
            std::memory_order_relaxed)) {
      return false;
    }
  }
  // kNotified: a notification is already on its way; the drain moves the page back.
  queue_remove(queues[page->size_class], page);
  page->in_full |= Page::kInFullQueue;
  queue_push_back(full, page);
  return true;
}

void Heap::move_out_of_full(Page* page) {
  SHARD_ASSERT(page->in_full_queue());
  // relaxed: as in move_to_full.
  uintptr_t raw = page->thread_free.load(std::memory_order_relaxed);
  while (ThreadFreeWord(raw).state() == NotifyState::kFull &&
         !page->thread_free.compare_exchange_weak(
             raw, ThreadFreeWord(raw).with_state(NotifyState::kNormal).raw(),
             std::memory_order_relaxed, std::memory_order_relaxed)) {
  }
  queue_remove(full, page);
  page->in_full &= uint8_t(~Page::kInFullQueue);
  queue_push_back(queues[page->size_class], page);
  if (queues[page->size_class].first == page) set_direct(page->size_class, page);
}

}  // namespace shardalloc::core
