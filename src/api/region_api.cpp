// The region API: a domain over memory its caller hands over. Freestanding.
#include "shardalloc/region.h"

#include <new>

#include "api/call_guard.h"
#include "api/export.h"
#include "api/region_record.h"
#include "core/bits.h"
#include "core/domain.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/step.h"
#ifdef SHARDALLOC_PLATFORM_LINUX
#include "platform/linux/os_source.h"
#include "platform/linux/region_heaps.h"
#endif

using namespace shardalloc;
using core::addr;

namespace {

constexpr core::PageSource kRegionSource{nullptr, nullptr, false, nullptr, nullptr, nullptr};

// The fast paths' heap: the calling thread's heap in region r when it is at
// hand without a call (the region this thread used last), else null; the
// general paths then ask platform::current_heap. Kernels (the bare platform)
// always ask it. Called in a call (api/call_guard.h), so that a signal
// handler cannot change the cache between this look-up and the heap's use.
SHARD_INLINE core::Heap* heap_at_hand(shard_region* r) {
#ifdef SHARDALLOC_PLATFORM_LINUX
  return platform::last_region_heap(&r->domain);
#else
  return platform::current_heap(&r->domain);
#endif
}

// Bytes of the live block p sits in (the class size, or a huge block's span).
size_t block_bytes_of(const void* p) { return core::segment_of(p)->page_of(p)->block_size; }

void account(core::Heap* h, int64_t used, int64_t block) { h->account_region(used, block); }

// Checked mode: a block freed since (or never handed out) carries the freed
// canary, so any double free is told apart, not only one on top of a list.
bool canary_says_live(const core::Page* page, const core::Block* b) {
  if constexpr (!core::kChecked) return true;
  // relaxed: a hint for a clear status; the free's exchange decides races.
  return __atomic_load_n(page->canary_of(b), __ATOMIC_RELAXED) != page->keys.canary_freed(addr(b));
}

// The block p is the start of, in a live segment of this region (or, for
// aligned allocations, the block p is the aligned start of), when it is not on
// top of a free list. Null for a pointer we never handed out or one just
// freed: those get SHARD_NOT_ALLOCATED instead of corrupting the lists.
// `current` is the caller's heap (may be null). Sets *usable to the bytes
// from p to the block's end.
core::Block* live_block(core::Domain& d, const core::Heap* current, void* p, size_t align,
                        size_t* usable) {
  core::Segment* s = core::segment_of(p);
  if (!d.is_live_segment(s)) return nullptr;
  core::Page* page = s->page_of(p);
  if (!page->in_use || !page->contains(p)) return nullptr;
  if (s->kind == core::SegmentKind::kHuge) {
    if (p != page->area || !canary_says_live(page, static_cast<core::Block*>(p))) return nullptr;
    *usable = page->block_size - core::kCanaryBytes;
    return static_cast<core::Block*>(p);
  }
  core::Block* b = page->block_of(p);
  if (!page->may_free(b, s->heap == current)) return nullptr;
  // An aligned allocation hands out exactly the first `align` boundary of its block.
  if (b != p && addr(p) != core::align_up(addr(b), align == 0 ? 1 : align)) return nullptr;
  if (!canary_says_live(page, b)) return nullptr;
  *usable = page->block_size - size_t(addr(p) - addr(b)) - core::kCanaryBytes;
  return b;
}

}  // namespace

SHARD_EXPORT shard_status shard_region_init(shard_region** out, void* start, size_t size) {
  if (out == nullptr || start == nullptr || size < SHARD_REGION_MIN_SIZE)
    return SHARD_INVALID_PARAM;
  core::Domain::ArenaPlan plan;
  if (!core::Domain::plan_arena(start, size, sizeof(shard_region), &plan))
    return SHARD_INVALID_PARAM;
  auto* r = new (core::ptr(plan.reserved)) shard_region{};
  r->domain.source = kRegionSource;
#ifdef SHARDALLOC_PLATFORM_LINUX
  r->domain.request_clock_ms = &platform::os_now_ms;  // paces collect requests (domain.h)
#endif
  r->domain.ensure_secret(platform::entropy() ^ addr(r));
  r->domain.add_arena(plan);
  *out = r;
  return SHARD_OK;
}

SHARD_EXPORT shard_status shard_region_add_memory(shard_region* r, void* start, size_t size) {
  if (r == nullptr || start == nullptr || size == 0 || addr(start) + size < addr(start))
    return SHARD_INVALID_PARAM;
  // Too small to hold one segment: refused before its range is published
  // (a concurrent call that overlaps it is not refused for it).
  core::Domain::ArenaPlan plan;
  if (!core::Domain::plan_arena(start, size, 0, &plan)) return SHARD_INVALID_PARAM;
  // Protocol 11: the range is published before a byte of it is written, and
  // checked against the other calls' ranges before the arenas (a call that
  // ended meanwhile has its arena published before its range goes). A step
  // (a fork waits for it, mostly); records a fork child copies from calls of
  // threads it lacks read as free there (RangeClaims: fork generation).
  core::Step step;
  const uintptr_t end = addr(start) + size;
  const core::RangeClaims::Claim claim = r->adding.publish(addr(start), end);
  shard_status status = SHARD_OK;
  if (r->adding.overlaps_another(claim, addr(start), end) || r->domain.overlaps(addr(start), end)) {
    status = SHARD_MEMORY_OVERLAP;
  } else {
    r->domain.add_arena(plan);
  }
  r->adding.give_back(claim);
  return status;
}

namespace {

// Entry points run in a call (api/call_guard.h); a signal handler's call
// that interrupted one takes the interrupted paths: an allocation from a
// borrowed heap, a free pushed like a remote one, both accounted to the
// domain's heapless counters. The fast paths below enter the call themselves;
// every out-of-line path they tail-call leaves it.

// An allocation in a call, from the calling thread's heap.
shard_status alloc_in_call(shard_region* r, size_t size, size_t align, void** out) {
  core::Heap* h = platform::current_heap(&r->domain);
  if (h == nullptr) return SHARD_NO_MEMORY;
  void* p = align <= core::kMinAlign ? h->alloc(size) : h->alloc_aligned(size, align);
  if (p == nullptr) return SHARD_NO_MEMORY;
  account(h, int64_t(size), int64_t(block_bytes_of(p)));
  *out = p;
  return SHARD_OK;
}

shard_status alloc_interrupted(shard_region* r, size_t size, size_t align, void** out) {
  void* p = r->domain.alloc_borrowed(size, align);
  if (p == nullptr) return SHARD_NO_MEMORY;
  // relaxed: statistics summed by readers.
  r->domain.heapless_used_bytes.fetch_add(int64_t(size), std::memory_order_relaxed);
  r->domain.heapless_block_bytes.fetch_add(int64_t(block_bytes_of(p)), std::memory_order_relaxed);
  *out = p;
  return SHARD_OK;
}

// Everything but the fast paths below, out of line so that those need no
// stack frame.
SHARD_NOINLINE shard_status alloc_general(shard_region* r, size_t size, size_t align, void** out) {
  if (out == nullptr) return SHARD_INVALID_PARAM;
  if (align == 0) align = 1;
  if (!core::is_pow2(align)) return SHARD_INVALID_PARAM;
  if (size > core::kMaxRequest || align > core::kMaxRequest) return SHARD_NO_MEMORY;
  if (platform::in_call()) return alloc_interrupted(r, size, align, out);
  platform::CallScope call;
  return alloc_in_call(r, size, align, out);
}

// A free. h: the caller's heap in r, null when it has none or must not use
// it (interrupted); then the free is pushed like a remote one.
shard_status dealloc_with(shard_region* r, core::Heap* h, void* p, size_t size, size_t align) {
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
    if constexpr (core::kChecked) core::disarm_canary(page, b, p);
    h->push_local(page, b);
  } else {
    core::free_remote(&r->domain, s, p);
  }
  return SHARD_OK;
}

SHARD_NOINLINE shard_status dealloc_general(shard_region* r, void* p, size_t size, size_t align) {
  if (platform::in_call()) return dealloc_with(r, nullptr, p, size, align);
  platform::CallScope call;
  return dealloc_with(r, platform::current_heap(&r->domain), p, size, align);
}

// The rest of a local dealloc whose block is pushed; leaves the call.
SHARD_NOINLINE shard_status dealloc_page_freed(core::Heap* h, core::Page* page) {
  h->page_freed_slow(page);
  platform::leave_call();
  return SHARD_OK;
}

// shard_region_alloc's fast path for kDirectSizeMax < size <= kLargeBlockMax
// (align <= kMinAlign, h the caller's heap), in a call; leaves it.
SHARD_NOINLINE shard_status alloc_queued(shard_region* r, core::Heap* h, size_t size, void** out) {
  shard_status status = SHARD_OK;
  core::Page* page = h->queues[core::queued_class_of(size)].first;
  core::Block* b = page != nullptr ? page->pop_free() : nullptr;
  if (b != nullptr) {
    account(h, int64_t(size), int64_t(page->block_size));
    *out = b;
  } else {
    status = alloc_in_call(r, size, core::kMinAlign, out);
  }
  platform::leave_call();
  return status;
}

// Alignments the fast path serves: 0 and the powers of two up to kMinAlign,
// which every block has (bit i set for i).
constexpr unsigned kSmallAlignBits =
    (1u << 0) | (1u << 1) | (1u << 2) | (1u << 4) | (1u << 8) | (1u << 16);
static_assert(core::kMinAlign == 16, "kSmallAlignBits lists the alignments up to kMinAlign");

}  // namespace

SHARD_EXPORT shard_status shard_region_alloc(shard_region* r, size_t size, size_t align,
                                             void** out) {
  if (r == nullptr) return SHARD_INVALID_PARAM;
  // Fast path: a block with at most kMinAlign alignment, popped from the page
  // Heap::alloc's fast path would pop it from (sizes above kDirectSizeMax in
  // alloc_queued, out of line).
  // (Checked builds take the general path, which arms the block's canary.)
  if (SHARD_LIKELY(!core::kChecked && align <= core::kMinAlign &&
                   ((kSmallAlignBits >> align) & 1) != 0 && out != nullptr &&
                   !platform::in_call())) {
    platform::enter_call();
    core::Heap* h = heap_at_hand(r);
    if (SHARD_LIKELY(h != nullptr)) {
      if (SHARD_LIKELY(size <= core::kDirectSizeMax)) {
        core::Page* page = h->direct[core::direct_slot_of(size)];
        if (core::Block* b = page->pop_free()) {
          account(h, int64_t(size), int64_t(page->block_size));
          *out = b;
          platform::leave_call();
          return SHARD_OK;
        }
      } else if (size <= core::kLargeBlockMax) {
        return alloc_queued(r, h, size, out);
      }
    }
    platform::leave_call();
  }
  return alloc_general(r, size, align, out);
}

SHARD_EXPORT shard_status shard_region_dealloc(shard_region* r, void* p, size_t size,
                                               size_t align) {
  if (r == nullptr || p == nullptr) return SHARD_INVALID_PARAM;
  // Fast paths: a block start in a live segment of this region, with the
  // checks live_block makes for that case, then the push free_local makes,
  // or free_remote for a page of another heap (Heap::free_sized_fast).
  // (Checked builds take the general path, which reads and swaps the canary.)
  if (SHARD_LIKELY(!core::kChecked && !platform::in_call())) {
    platform::enter_call();
    core::Heap* h = heap_at_hand(r);
    core::Segment* s = core::segment_of(p);
    if (SHARD_LIKELY(h != nullptr && r->domain.is_live_segment(s))) {
      core::Page* page = nullptr;
      switch (h->free_sized_fast(s, p, size, &page)) {
        case core::Heap::FastFree::kDone:
          platform::leave_call();
          return SHARD_OK;
        case core::Heap::FastFree::kPageFreed:
          return dealloc_page_freed(h, page);
        case core::Heap::FastFree::kNotTaken:
          break;
      }
    }
    platform::leave_call();
  }
  return dealloc_general(r, p, size, align);
}

namespace {

struct Totals {
  int64_t used = 0;
  int64_t block = 0;
};

Totals sum_heaps(const core::Domain& d) {
  // relaxed: each counter is exact when no call is in flight, which is all we promise.
  Totals t{d.heapless_used_bytes.load(std::memory_order_relaxed),
           d.heapless_block_bytes.load(std::memory_order_relaxed)};
  for (core::Heap* h = d.heaps.load(std::memory_order_acquire); h != nullptr;
       h = h->next_in_domain) {
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
  // Read while calls run, the sum of per-heap counts can overshoot either
  // way (a heap that only frees counts negative; read before the heap that
  // allocated, what was freed between the two reads counts twice): a
  // review read 1.1 GB used in an 8 MiB region. Within [0, total] at least,
  // with the total read here, which is at most any later read of it (total
  // only grows): a caller that reads total after used never wraps.
  const size_t total = r->domain.total_bytes.load(std::memory_order_relaxed);
  return used <= 0 ? 0 : size_t(used) < total ? size_t(used) : total;
}

SHARD_EXPORT size_t shard_region_available_bytes(const shard_region* r) {
  if (r == nullptr) return 0;
  const size_t total = r->domain.total_bytes.load(std::memory_order_relaxed);
  const size_t overhead = r->domain.overhead_bytes.load(std::memory_order_relaxed);
  const int64_t blocks = sum_heaps(r->domain).block;
  const size_t taken = overhead + (blocks > 0 ? size_t(blocks) : 0);
  return taken < total ? total - taken : 0;
}

SHARD_EXPORT shard_status shard_region_collect(shard_region* r) {
  if (r == nullptr) return SHARD_INVALID_PARAM;
  if (platform::in_call()) return SHARD_OK;  // the interrupted call owns the heap's lists
  platform::CallScope call;
  core::Heap* h = platform::current_heap(&r->domain);
  if (h != nullptr) h->collect_all();
  return SHARD_OK;
}

SHARD_EXPORT size_t shard_region_check_heap(shard_region* r) {
  if (r == nullptr) return 0;
  if (platform::in_call()) return 0;  // as shard_check_heap
  platform::CallScope call;  // a signal handler's free meanwhile must not change what check() walks
  const core::Heap* h = platform::current_heap(&r->domain);
  return h == nullptr ? 0 : h->check();
}
