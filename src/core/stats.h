// A domain's statistics by size class, from the checked walk of
// core/heap_walk.h: safe on any thread while others allocate and free
// (approximate then, every figure a possible one), exact when the domain is
// quiescent.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/size_class.h"

namespace shardalloc::core {

struct Domain;

struct ClassStats {
  uint64_t pages = 0;            // huge blocks: one per block
  uint64_t live_blocks = 0;      // handed out and not yet collected back
  uint64_t live_bytes = 0;       // live blocks times their block size
  uint64_t capacity_blocks = 0;  // blocks the pages hold
};

struct DomainStats {
  ClassStats classes[kClassCount];  // index 0: huge blocks
  uint64_t live_bytes = 0;          // over every class, huge blocks included
  uint64_t arenas = 0;
  uint64_t heaps = 0;
  uint64_t heaps_owned = 0;
  uint64_t segments_claimed = 0;  // in slots
  uint64_t peak_segments = 0;
  uint64_t total_bytes = 0;   // reserved or handed over
  uint64_t remote_frees = 0;  // collected by the owning heaps so far
  uint64_t purged_bytes = 0;
  uint64_t heaps_adopted = 0;
  uint64_t heaps_swept = 0;
};

// Every heap record of d (owners, remote frees) and every claimed slot of
// its arenas (pages by class, huge blocks).
void collect_stats(const Domain& d, DomainStats* out);

}  // namespace shardalloc::core
