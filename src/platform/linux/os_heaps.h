// First-class heaps over OS memory (shard_heap_new): creation, teardown
// (every arena unmapped), and shard_free of their blocks (free_foreign).
#pragma once
#include "core/first_class.h"

namespace shardalloc::platform {

// A new first-class heap whose arenas come from the OS, mapped on first use.
// Its record lives in the process domain's metadata. Null when no record can
// be had (the process domain is out of memory).
core::FirstClassHeap* os_heap_new();

// True when p, in segment s (not a live segment of the process domain), is
// in a live first-class heap over OS memory (s lies in an OS arena).
bool os_heap_owns(core::Segment* s, void* p);

}  // namespace shardalloc::platform
