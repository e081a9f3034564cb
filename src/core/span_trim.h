// Giving back the pages of a huge block's span that its block does not use:
// the room realloc adds (realloc_growth.h) and, at a claim, what earlier
// tenants of a reused span left resident past the new block's end.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/arena.h"
#include "core/bits.h"
#include "core/config.h"
#include "core/domain.h"
#include "core/segment.h"

namespace shardalloc::core {

// Purges [start, end) of huge segment s's span (start OS-page aligned) and
// caps its slots' resident hints to match. False when the purge was refused
// (locked pages: they stay, and so do the hints).
inline bool purge_span_from(Segment* s, uintptr_t start, uintptr_t end) {
  if (!s->domain->source.purge(ptr(start), end - start)) return false;
  // relaxed: a statistic (shard_stats.purged_bytes counts every give-back).
  s->domain->purged_bytes.fetch_add(end - start, std::memory_order_relaxed);
  for (uintptr_t slot = align_down(start, kSegmentSize); slot < end; slot += kSegmentSize) {
    const size_t kept = slot < start ? start - slot : 0;
    s->arena->cap_resident(s->arena->slot_index(slot), resident_units_of(kept));
  }
  return true;
}

// A huge block of at most this many slots that reuses a span purges what
// earlier tenants left resident past its end, at its claim, when that tail
// waited free through a purge tick (its slot's aged bit). A dirty slot
// keeps every page any tenant touched, so with sizes that vary (a Java
// program's direct buffers of 4 KiB to 1 MiB) each slot drifted to its
// largest tenant's extent: 1.36 GB peak RSS against 1.24 with the trim. A
// tail freed since the last tick is left alone: a program that alternates
// a large and a small block on one span (a review: 1.9 MB, then 600 KB, in
// a loop) purged and faulted back 1.3 MB at every pair, 525k faults
// against 785. A block of more slots was placed where the most of it is
// resident (Arena::find_reusing), and a program that replaces multi-MiB
// buffers of varying sizes would purge and fault in megabytes at every claim.
inline constexpr size_t kTrimSpanMax = 4;
// Less than this past the block's end is left alone (one purge call costs
// about what faulting 16 pages in does).
inline constexpr size_t kTrimMin = 64 * 1024;

// s was just claimed for a huge block whose first `written` bytes (from the
// span's start) its tenant uses: purges the resident rest of its `slots`
// slots, where earlier tenants left kTrimMin or more and it has waited
// through a purge tick.
inline void trim_reused_span(Segment* s, size_t slots, size_t written) {
  if (s->zeroed || slots > kTrimSpanMax || s->domain->source.purge == nullptr) return;
  const Arena* a = s->arena;
  const size_t first = a->slot_index(addr(s));
  uintptr_t resident_end = 0;
  for (size_t k = 0; k < slots; ++k) {
    const unsigned units = a->resident_units(first + k);
    if (units != 0) resident_end = addr(s) + k * kSegmentSize + units * kResidentUnit;
  }
  const uintptr_t start = align_up(addr(s) + written, kOsPage);
  if (resident_end <= start || resident_end - start < kTrimMin) return;
  // The tail's last slot waited free through a tick (the others, if any, were freed with it).
  if (!a->was_aged(a->slot_index(resident_end - 1))) return;
  purge_span_from(s, start, resident_end);
}

}  // namespace shardalloc::core
