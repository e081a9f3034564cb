// calloc's zeroing of a block malloc just returned: what it may skip on
// memory that reads as zero, and how it takes such memory's pages.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/bits.h"
#include "core/domain.h"
#include "core/segment.h"

namespace shardalloc::core {

// calloc's zeroing of p, a block of `bytes` just allocated. A huge block on
// slots that read as zero (fresh or purged) is not written. Up to the
// domain's calloc_populate_max (kDefaultCallocPopulateMax, 1 MiB, unless the
// platform sets it) its whole pages are made resident at once
// (PageSource::populate): a program that reads calloc'd memory before it
// writes it would otherwise fault twice a page (the shared zero page, then a
// copy on write, whose TLB flush interrupts every CPU the process runs on:
// mstress, docs/benchmarks.md). Larger blocks stay untouched, so that a big
// sparse table costs only the pages its program uses.
//
// A larger huge block on a freed span that is still dirty (not purged yet)
// is cleared by a purge of its whole pages when fewer than half of them are
// resident: a memset would make every page resident (a review: calloc of
// 256 MiB over a freed span of two touched pages, RSS + 256 MiB; of 1 TiB,
// killed for want of memory), where the purge drops the few that are and
// the rest stay untouched, as on fresh memory. Mostly resident: the memset
// is cheaper than faulting the pages in again.
// Whether fewer than half of the pages of [p, p + bytes) are resident, where
// the source can tell and can purge (a region cannot: no).
inline bool mostly_not_resident(const Domain* d, const void* p, size_t bytes) {
  if (d->source.purge == nullptr || d->source.resident == nullptr) return false;
  const size_t half = bytes / 2;
  return d->source.resident(const_cast<void*>(p), bytes, half) < half;
}
inline bool calloc_clear_by_purge(const Domain* d, uintptr_t start, uintptr_t end) {
  return mostly_not_resident(d, ptr(start), end - start) &&
         d->source.purge(ptr(start), end - start);
}

inline void calloc_clear(void* p, size_t bytes) {
  const Segment* s = segment_of(p);
  if (s->kind != SegmentKind::kHuge) {
    __builtin_memset(p, 0, bytes);
    return;
  }
  const Domain* d = s->domain;
  const uintptr_t start = align_up(addr(p), kOsPage);
  const uintptr_t end = align_down(addr(p) + bytes, kOsPage);
  if (!s->zeroed) {
    if (bytes <= d->calloc_populate_max || start >= end || !calloc_clear_by_purge(d, start, end)) {
      __builtin_memset(p, 0, bytes);
      return;
    }
    // The partial pages at either end (the purge took the whole ones).
    __builtin_memset(p, 0, start - addr(p));
    __builtin_memset(ptr(end), 0, addr(p) + bytes - end);
    return;
  }
  if (d->source.populate != nullptr && bytes <= d->calloc_populate_max && start < end) {
    d->source.populate(ptr(start), end - start);
  }
}

}  // namespace shardalloc::core
