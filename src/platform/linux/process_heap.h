// The process heap: the OS domain and each thread's heap in it.
#pragma once
#include "core/domain.h"
#include "core/heap.h"
#include "core/remote_batch.h"

namespace shardalloc::platform {

extern constinit core::Domain g_process_domain;
// Before its first allocation a thread's heap is this placeholder.
extern constinit core::Heap g_process_placeholder;

// The heap the malloc family's fast paths use while the thread is in a call
// (platform/linux/call_guard.h): its pages are empty, so allocations reach
// the slow path, and no segment is its, so frees take the remote path; both
// see it and take their interrupted paths.
extern constinit core::Heap g_process_busy;

// What the malloc family's fast paths read of the calling thread, in one TLS
// block (a shared library reaches it with one GOT load).
struct ThreadState {
  // The heap the fast paths use: own_heap, or g_process_busy while the
  // thread is in a call.
  core::Heap* process_heap = &g_process_placeholder;
  // The thread's heap in the process domain (the placeholder before its first allocation).
  core::Heap* own_heap = &g_process_placeholder;
  // The thread's run of frees into one page of another heap
  // (core/remote_batch.h); touched only in a call, pushed at thread exit.
  core::RemoteBatch remote_batch;
};
extern constinit thread_local ThreadState tl_thread;

// Makes the thread's exit run on_thread_exit (thread_heaps.cpp), which
// gives its heaps back and pushes its remote batch.
void ensure_thread_exit();

inline core::Heap* process_heap() { return tl_thread.process_heap; }
inline core::Heap* own_process_heap() { return tl_thread.own_heap; }

}  // namespace shardalloc::platform
