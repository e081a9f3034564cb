// The calling thread's heaps in region domains (thread_heaps.cpp), most
// recently used first, exposed so that the region API finds the heap of the
// region it used last with one TLS load and one compare, without a call.
// Only for builds over the Linux platform (SHARDALLOC_PLATFORM_LINUX); others
// go through platform::current_heap.
#pragma once
#include "core/bits.h"
#include "core/domain.h"
#include "core/heap.h"

namespace shardalloc::platform {

inline constexpr unsigned kRegionSlots = 8;

struct ThreadHeaps {
  core::Domain* domain[kRegionSlots];
  core::Heap* heap[kRegionSlots];
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
