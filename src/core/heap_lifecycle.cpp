// Heap set-up, and the full collection done when a thread abandons its heap
// or another thread sweeps an abandoned one.
#include "core/domain.h"
#include "core/heap.h"

namespace shardalloc::core {

void Heap::init(Domain* d) {
  domain = d;
  placeholder = false;
  sampling = d->sample_allocations;
  for (auto& p : direct) p = &g_empty_page;
  for (auto& q : queues) q = PageQueue{};
  full = PageQueue{};
  for (auto& p : partial) p = nullptr;
}

void Heap::collect_all() {
  if constexpr (kChecked) flush_quarantine();
  drain_notified();
  for (unsigned cls = 0; cls <= kClassCount; ++cls) {
    PageQueue& q = cls == kClassCount ? full : queues[cls];
    Page* page = q.first;
    while (page != nullptr) {
      Page* next = page->next;
      // Blocks handed but not allocated go back to the budget; charged again when handed.
      if (SHARD_UNLIKELY(sampling)) forget_page_samples(page);
      count_remote_frees(page->collect());
      if (page->in_full_queue() && page->free != nullptr) move_out_of_full(page);
      if (page->used == 0) free_page(page);
      page = next;
    }
  }
  for (auto& p : direct) p = &g_empty_page;
}

}  // namespace shardalloc::core
