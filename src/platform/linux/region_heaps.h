// The calling thread's heaps in region domains and first-class heaps (thread_heaps.cpp), most
// recently used first, exposed so that the region API finds the heap of the
// region it used last with one TLS load and one compare, without a call.
// Only for builds over the Linux platform (SHARDALLOC_PLATFORM_LINUX); others
// go through platform::current_heap.
#pragma once
#include "core/bits.h"
#include "core/domain.h"
#include "core/domain_life.h"
#include "core/heap.h"

namespace shardalloc::platform {

inline constexpr unsigned kRegionSlots = 8;

// Slots of region domains and first-class heaps. A first-class heap's slot
// also keeps the domain's lifetime record and the generation its heap belongs
// to (core/domain_life.h); a region's has a null `life` (it lives for ever).
struct ThreadHeaps {
  core::Domain* domain[kRegionSlots];
  core::Heap* heap[kRegionSlots];
  core::DomainLife* life[kRegionSlots];
  uint32_t generation[kRegionSlots];
  bool exit_registered;
};

extern constinit thread_local ThreadHeaps tl_heaps;

// The heap of region domain d when d is the region this thread used last,
// else null (then current_heap(d) has the answer).
SHARD_INLINE core::Heap* last_region_heap(const core::Domain* d) {
  const ThreadHeaps& t = tl_heaps;
  return t.domain[0] == d ? t.heap[0] : nullptr;
}

}  // namespace shardalloc::platform
