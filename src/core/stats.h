// A snapshot of a domain's memory, by size class. Exact when no other thread
// is allocating; approximate (never crashing) while threads run.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/size_class.h"

namespace shardalloc::core {

struct Domain;

struct ClassStats {
  uint64_t pages = 0;
  uint64_t live_blocks = 0;  // handed out and not yet collected back
  uint64_t capacity_blocks = 0;
};

struct DomainStats {
  ClassStats classes[kClassCount];  // index 0: huge blocks
  uint64_t heaps = 0;
  uint64_t heaps_owned = 0;
  uint64_t segments_claimed = 0;  // in slots
  uint64_t peak_segments = 0;
  uint64_t total_bytes = 0;       // reserved or handed over
  uint64_t live_bytes = 0;        // sum over live blocks of their block size
  uint64_t remote_frees = 0;      // collected by the owning heaps so far
  uint64_t purged_bytes = 0;
  uint64_t heaps_adopted = 0;
  uint64_t heaps_swept = 0;
};

// Walks every heap of d. Huge blocks are not in any heap and are counted
// from the segment totals only.
void collect_stats(const Domain& d, DomainStats* out);

}  // namespace shardalloc::core
