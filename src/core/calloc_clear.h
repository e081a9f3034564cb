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
inline void calloc_clear(void* p, size_t bytes) {
  const Segment* s = segment_of(p);
  if (s->kind != SegmentKind::kHuge || !s->zeroed) {
    __builtin_memset(p, 0, bytes);
    return;
  }
  const Domain* d = s->domain;
  const uintptr_t start = align_up(addr(p), kOsPage);
  const uintptr_t end = align_down(addr(p) + bytes, kOsPage);
  if (d->source.populate != nullptr && bytes <= d->calloc_populate_max && start < end) {
    d->source.populate(ptr(start), end - start);
  }
}

}  // namespace shardalloc::core
