// The region API: a domain over memory its caller hands over. Freestanding.
#include "shardalloc/region.h"

#include <new>

#include "api/region_record.h"
#include "core/bits.h"
#include "core/domain.h"
#include "core/heap.h"
#include "core/hooks.h"

#define SHARD_EXPORT extern "C" __attribute__((visibility("default")))

using namespace shardalloc;
using core::addr;

namespace {

constexpr core::PageSource kRegionSource{nullptr, nullptr, false, nullptr};

// Bytes of the live block p sits in (the class size, or a huge block's span).
size_t block_bytes_of(const void* p) { return core::segment_of(p)->page_of(p)->block_size; }


void account(core::Heap* h, int64_t used, int64_t block) {
  // relaxed load + store: the owner is the only writer; readers sum relaxed values.
  h->used_bytes.store(h->used_bytes.load(std::memory_order_relaxed) + used, std::memory_order_relaxed);
  h->block_bytes.store(h->block_bytes.load(std::memory_order_relaxed) + block, std::memory_order_relaxed);
}

// The block p is the start of, in a live segment of this region (or, for
// aligned allocations, the block p is the aligned start of), when it is not on
// top of a free list. Null for a pointer we never handed out or one just
// freed: those get SHARD_NOT_ALLOCATED instead of corrupting the lists.
// `current` is the caller's heap (may be null). Sets *usable to the bytes
// from p to the block's end.
core::Block* live_block(core::Domain& d, const core::Heap* current, void* p, size_t align, size_t* usable) {
  core::Segment* s = core::segment_of(p);
  if (!d.is_live_segment(s)) return nullptr;
  core::Page* page = s->page_of(p);
  if (!page->in_use || !page->contains(p)) return nullptr;
  if (s->kind == core::SegmentKind::kHuge) {
    *usable = page->block_size;
    return p == page->area ? static_cast<core::Block*>(p) : nullptr;
  }
  core::Block* b = page->block_of(p);
  if (!page->is_block_start(b)) return nullptr;
  // An aligned allocation hands out exactly the first `align` boundary of its block.
  if (b != p && addr(p) != core::align_up(addr(b), align == 0 ? 1 : align)) return nullptr;
  // relaxed: only compared; a racing free of the same block is the caller's bug.
  if (page->load_thread_free(std::memory_order_relaxed).head() == b) return nullptr;
  if (s->heap == current && (b == page->free || b == page->local_free || page->used == 0)) return nullptr;
  *usable = page->block_size - size_t(addr(p) - addr(b));
  return b;
}

}  // namespace

SHARD_EXPORT shard_status shard_region_init(shard_region** out, void* start, size_t size) {
  if (out == nullptr || start == nullptr || size < SHARD_REGION_MIN_SIZE) return SHARD_INVALID_PARAM;
  core::Domain::ArenaPlan plan;
  if (!core::Domain::plan_arena(start, size, sizeof(shard_region), &plan)) return SHARD_INVALID_PARAM;
  auto* r = new (core::ptr(plan.reserved)) shard_region{};
  r->domain.source = kRegionSource;
  r->domain.ensure_secret(platform::entropy() ^ addr(r));
  r->domain.add_arena(plan);
  *out = r;
  return SHARD_OK;
}

SHARD_EXPORT shard_status shard_region_add_memory(shard_region* r, void* start, size_t size) {
  if (r == nullptr || start == nullptr || size == 0 || addr(start) + size < addr(start)) return SHARD_INVALID_PARAM;
  if (r->domain.overlaps(addr(start), addr(start) + size)) return SHARD_MEMORY_OVERLAP;
  if (!r->domain.add_memory(start, size)) return SHARD_INVALID_PARAM;  // too small to hold one segment
  return SHARD_OK;
}

SHARD_EXPORT shard_status shard_region_alloc(shard_region* r, size_t size, size_t align, void** out) {
  if (r == nullptr || out == nullptr) return SHARD_INVALID_PARAM;
  if (align == 0) align = 1;
  if (!core::is_pow2(align)) return SHARD_INVALID_PARAM;
  if (size > core::kMaxRequest || align > core::kMaxRequest) return SHARD_NO_MEMORY;
  core::Heap* h = platform::current_heap(&r->domain);
  if (h == nullptr) return SHARD_NO_MEMORY;
  void* p = align <= core::kMinAlign ? h->alloc(size) : h->alloc_aligned(size, align);
  if (p == nullptr) return SHARD_NO_MEMORY;
  account(h, int64_t(size), int64_t(block_bytes_of(p)));
  *out = p;
  return SHARD_OK;
}

SHARD_EXPORT shard_status shard_region_dealloc(shard_region* r, void* p, size_t size, size_t align) {
  if (r == nullptr || p == nullptr) return SHARD_INVALID_PARAM;
  core::Heap* h = platform::current_heap(&r->domain);
  size_t usable = 0;
  core::Block* b = live_block(r->domain, h, p, align, &usable);
  if (b == nullptr) return SHARD_NOT_ALLOCATED;
  if (size > usable) return SHARD_INVALID_PARAM;
  core::Segment* s = core::segment_of(p);
  core::Page* page = s->page_of(p);
  const int64_t block = int64_t(page->block_size);
  if (h == nullptr) {
    // relaxed: statistics summed by readers.
    r->domain.heapless_used_bytes.fetch_sub(int64_t(size), std::memory_order_relaxed);
    r->domain.heapless_block_bytes.fetch_sub(block, std::memory_order_relaxed);
    core::free_remote(&r->domain, core::segment_of(p), p);
    return SHARD_OK;
  }
  account(h, -int64_t(size), -block);
  // live_block made every check free_local would make: push directly.
  if (s->heap == h) {
    h->push_local(page, b);
  } else {
    core::free_remote(&r->domain, s, p);
  }
  return SHARD_OK;
}

namespace {

struct Totals {
  int64_t used = 0;
  int64_t block = 0;
};

Totals sum_heaps(const core::Domain& d) {
  // relaxed: each counter is exact when no call is in flight, which is all we promise.
  Totals t{d.heapless_used_bytes.load(std::memory_order_relaxed), d.heapless_block_bytes.load(std::memory_order_relaxed)};
  for (core::Heap* h = d.heaps.load(std::memory_order_acquire); h != nullptr; h = h->next_in_domain) {
    t.used += h->used_bytes.load(std::memory_order_relaxed);
    t.block += h->block_bytes.load(std::memory_order_relaxed);
  }
  return t;
}

}  // namespace

SHARD_EXPORT size_t shard_region_total_bytes(const shard_region* r) {
  return r == nullptr ? 0 : r->domain.total_bytes.load(std::memory_order_relaxed);
}

SHARD_EXPORT size_t shard_region_used_bytes(const shard_region* r) {
  if (r == nullptr) return 0;
  const int64_t used = sum_heaps(r->domain).used;
  return used > 0 ? size_t(used) : 0;
}

SHARD_EXPORT size_t shard_region_available_bytes(const shard_region* r) {
  if (r == nullptr) return 0;
  const size_t total = r->domain.total_bytes.load(std::memory_order_relaxed);
  const size_t overhead = r->domain.overhead_bytes.load(std::memory_order_relaxed);
  const int64_t blocks = sum_heaps(r->domain).block;
  const size_t taken = overhead + (blocks > 0 ? size_t(blocks) : 0);
  return taken < total ? total - taken : 0;
}
