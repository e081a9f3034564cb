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
  // The thread's chains of frees into other heaps' pages (core/remote_batch.h,
  // a record of remote_batches.h): null until its first remote free; touched
  // only in a call; pushed and given back at thread exit.
  core::RemoteBatch* remote_batch = nullptr;
};
extern constinit thread_local ThreadState tl_thread;

// In a call: claims a remote-batch record for the calling thread and makes
// its exit push and give it back (thread_heaps.cpp); when none is free,
// g_no_remote_batch, which the thread keeps (its remote frees are pushed one
// at a time).
core::RemoteBatch* first_remote_batch();
extern constinit core::RemoteBatch g_no_remote_batch;

inline core::Heap* process_heap() { return tl_thread.process_heap; }
inline core::Heap* own_process_heap() { return tl_thread.own_heap; }

}  // namespace shardalloc::platform
