#include "core/stats.h"

#include "core/domain.h"
#include "core/heap.h"
#include "core/heap_walk.h"

namespace shardalloc::core {
namespace {

// Adds up the slots of a walk (core/heap_walk.h) by class.
class ClassCounter {
 public:
  explicit ClassCounter(DomainStats* out) : out_(out) {}

  void arena(const ArenaView&) { ++out_->arenas; }
  void free_slots(const ArenaView&, size_t, size_t) {}
  void slot(const ArenaView&, const SlotView& slot) {
    if (slot.kind == SlotKind::kHuge) {
      add(out_->classes[0], 1, slot.huge_live ? 1 : 0, slot.huge_block_size);
      return;
    }
    for (unsigned i = 0; i < slot.page_views; ++i) {
      const PageView& page = slot.pages[i];
      add(out_->classes[page.size_class], page.reserved, page.used, page.block_size);
    }
  }

 private:
  void add(ClassStats& c, uint64_t capacity, uint64_t live, uint64_t block_size) {
    ++c.pages;
    c.capacity_blocks += capacity;
    c.live_blocks += live;
    c.live_bytes += live * block_size;
    out_->live_bytes += live * block_size;
  }

  DomainStats* out_;
};

void count_heaps(const Domain& d, DomainStats* out) {
  for (const Heap* h = HeapList(d).first(); h != nullptr; h = h->next_in_domain) {
    ++out->heaps;
    // relaxed (both loads): statistics; heap records are never freed.
    if (h->owned.load(std::memory_order_relaxed) != 0) ++out->heaps_owned;
    out->remote_frees += h->remote_frees_collected.load(std::memory_order_relaxed);
  }
}

}  // namespace

void collect_stats(const Domain& d, DomainStats* out) {
  *out = DomainStats{};
  count_heaps(d, out);
  ClassCounter counter(out);
  walk_arenas(d, nullptr, RemoteLists::kSkip, counter);
  // relaxed: statistics. Loaded after the walk: every arena it saw is in
  // total_bytes already (added before the arena's release publication).
  out->total_bytes = d.total_bytes.load(std::memory_order_relaxed);
  out->segments_claimed = d.segments_claimed.load(std::memory_order_relaxed);
  out->peak_segments = d.peak_segments.load(std::memory_order_relaxed);
  out->purged_bytes = d.purged_bytes.load(std::memory_order_relaxed);
  out->heaps_adopted = d.heaps_adopted.load(std::memory_order_relaxed);
  out->heaps_swept = d.heaps_swept.load(std::memory_order_relaxed);
}

}  // namespace shardalloc::core
