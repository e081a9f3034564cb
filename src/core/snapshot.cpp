#include "core/snapshot.h"

#include "core/config.h"
#include "core/domain.h"
#include "core/heap.h"
#include "core/heap_walk.h"
#include "core/size_class.h"

namespace shardalloc::core {
namespace {

const char* kind_name(SlotKind kind) {
  switch (kind) {
    case SlotKind::kSmall:
      return "small";
    case SlotKind::kMedium:
      return "medium";
    case SlotKind::kLarge:
      return "large";
    case SlotKind::kHuge:
      return "huge";
    case SlotKind::kMeta:
      break;
  }
  return "meta";
}

void write_header(TextOut& o, const Domain& d, const char* domain_name, uint64_t pid) {
  o.text("shardalloc-snapshot 1").text_field("domain", domain_name).field("pid", pid);
  o.field("segment_size", kSegmentSize).field("small_page_size", kSmallPageSize);
  o.field("pages_per_small_segment", kSmallPagesPerSegment).field("classes", kClassCount);
  // relaxed: statistics.
  o.field("reserved_bytes", d.total_bytes.load(std::memory_order_relaxed));
  o.field("segments", d.segments_claimed.load(std::memory_order_relaxed));
  o.field("peak_segments", d.peak_segments.load(std::memory_order_relaxed)).end_line();
}

// One line per heap record, numbered in list order; returns how many.
uint64_t write_heaps(TextOut& o, const HeapList& heaps) {
  uint64_t id = 0;
  for (const Heap* h = heaps.first(); h != nullptr; h = h->next_in_domain, ++id) {
    // relaxed: snapshot figures; heap records are never freed.
    const bool owned = h->owned.load(std::memory_order_relaxed) != 0;
    o.text("heap")
        .field("id", id)
        .hex_field("addr", addr(h))
        .field("owned", owned)
        .field("abandoned", !owned);
    o.field("segments", h->segment_count.load(std::memory_order_relaxed)).end_line();
  }
  return id;
}

// Writes the arena, free, slot and page records of a walk (core/heap_walk.h).
class SlotWriter {
 public:
  explicit SlotWriter(TextOut& o) : o_(o) {}

  void arena(const ArenaView& a) {
    o_.text("arena").field("id", a.id).hex_field("base", a.base).field("slots", a.slot_count);
    o_.hex_field("mem_start", a.mem_start).hex_field("mem_end", a.mem_end).end_line();
    ++arenas_;
    slots_ += a.slot_count;
  }
  void free_slots(const ArenaView& a, size_t first, size_t count) {
    o_.text("free").field("arena", a.id).field("slot", first).field("count", count).end_line();
  }
  void slot(const ArenaView& a, const SlotView& s) {
    o_.text("slot")
        .field("arena", a.id)
        .field("slot", s.index)
        .text_field("kind", kind_name(s.kind));
    o_.field("span", s.span);
    if (s.kind == SlotKind::kHuge) {
      o_.field("block_size", s.huge_block_size)
          .field("used", s.huge_live)
          .hex_field("area", s.huge_area);
    } else if (s.kind != SlotKind::kMeta) {
      o_.signed_field("heap", s.heap)
          .field("abandoned", s.heap_abandoned)
          .field("page_count", s.page_count);
      o_.field("used_pages", s.used_pages).field("page_size", s.page_size);
    }
    o_.end_line();
    for (unsigned i = 0; i < s.page_views; ++i) page(a, s, s.pages[i]);
  }

  uint64_t arenas() const { return arenas_; }
  uint64_t slots() const { return slots_; }

 private:
  void page(const ArenaView& a, const SlotView& s, const PageView& p) {
    o_.text("page").field("arena", a.id).field("slot", s.index).field("index", p.index);
    o_.field("class", p.size_class).field("block_size", p.block_size);
    o_.field("used", p.used)
        .field("remote", p.remote)
        .field("capacity", p.capacity)
        .field("reserved", p.reserved);
    o_.field("full", p.full).hex_field("area", p.area).end_line();
  }

  TextOut& o_;
  uint64_t arenas_ = 0;
  uint64_t slots_ = 0;
};

}  // namespace

void write_snapshot(TextOut& out, const Domain& d, const char* domain_name, uint64_t pid) {
  write_header(out, d, domain_name, pid);
  const HeapList heaps(d);
  const uint64_t heap_count = write_heaps(out, heaps);
  SlotWriter slots(out);
  walk_arenas(d, &heaps, RemoteLists::kCount, slots);
  out.text("end")
      .field("heaps", heap_count)
      .field("arenas", slots.arenas())
      .field("slots", slots.slots())
      .end_line();
}

}  // namespace shardalloc::core
