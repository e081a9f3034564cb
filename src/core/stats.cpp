#include "core/stats.h"

#include "core/domain.h"
#include "core/heap.h"

namespace shardalloc::core {
namespace {

void add_queue(const PageQueue& q, DomainStats* out) {
  for (const Page* page = q.first; page != nullptr; page = page->next) {
    ClassStats& c = out->classes[page->size_class];
    ++c.pages;
    c.live_blocks += page->used;
    c.capacity_blocks += page->reserved;
    out->live_bytes += uint64_t(page->used) * page->block_size;
  }
}

}  // namespace

void collect_stats(const Domain& d, DomainStats* out) {
  *out = DomainStats{};
  // relaxed / acquire as in the domain: statistics only.
  for (const Heap* h = d.heaps.load(std::memory_order_acquire); h != nullptr; h = h->next_in_domain) {
    ++out->heaps;
    if (h->owned.load(std::memory_order_relaxed) != 0) ++out->heaps_owned;
    out->remote_frees += h->remote_frees_collected.load(std::memory_order_relaxed);
    for (const PageQueue& q : h->queues) add_queue(q, out);
    add_queue(h->full, out);
  }
  out->segments_claimed = d.segments_claimed.load(std::memory_order_relaxed);
  out->peak_segments = d.peak_segments.load(std::memory_order_relaxed);
  out->total_bytes = d.total_bytes.load(std::memory_order_relaxed);
  out->purged_bytes = d.purged_bytes.load(std::memory_order_relaxed);
  out->heaps_adopted = d.heaps_adopted.load(std::memory_order_relaxed);
  out->heaps_swept = d.heaps_swept.load(std::memory_order_relaxed);
}

}  // namespace shardalloc::core
