// The process heap: the OS domain and each thread's heap in it.
#pragma once
#include "core/domain.h"
#include "core/heap.h"

namespace shardalloc::platform {

extern constinit core::Domain g_process_domain;
// Before its first allocation a thread's heap is this placeholder.
extern constinit core::Heap g_process_placeholder;
extern constinit thread_local core::Heap* tl_process_heap;

inline core::Heap* process_heap() { return tl_process_heap; }

}  // namespace shardalloc::platform
