// Async-signal safety of the allocator's entry points (docs/protocols.md,
// "Signal handlers").
//
// A thread is *in a call* while it runs an entry point of the malloc family,
// the region API or a first-class heap: it may be half-way through its own
// heap's lists and counters or its heap cache (thread_heaps.cpp). The thread's
// process heap pointer, which the malloc fast paths read anyway, then points
// to g_process_busy. A signal handler that interrupts the call and calls the
// allocator again finds it there and takes that entry point's *interrupted
// path*, which touches only state that is shared lock-free anyway: a free is
// pushed like a remote free, an allocation borrows a heap of the domain
// (Domain::alloc_borrowed). So every entry point is async-signal-safe, at the
// price of two TLS stores per call (no atomic RMW, no fence instruction: the
// handler runs on the same thread, so compiler ordering is all it needs).
#pragma once
#include <atomic>

#include "core/bits.h"
#include "platform/linux/process_heap.h"

namespace shardalloc::platform {

SHARD_INLINE bool in_call() { return tl_thread.process_heap == &g_process_busy; }
SHARD_INLINE void enter_call() {
  // The signal fence orders (for a handler on this thread, which is all that
  // reads it) the switch before any heap write of the call.
  tl_thread.process_heap = &g_process_busy;
  std::atomic_signal_fence(std::memory_order_seq_cst);
}
// Leaves a call whose own heap is h (the fast paths know it).
SHARD_INLINE void leave_call_to(core::Heap* h) {
  // Every heap write of the call comes before the switch back.
  std::atomic_signal_fence(std::memory_order_seq_cst);
  tl_thread.process_heap = h;
}
SHARD_INLINE void leave_call() { leave_call_to(tl_thread.own_heap); }

// Sets the flag for a scope that the flag was clear on entry to.
struct CallScope {
  CallScope() { enter_call(); }
  ~CallScope() { leave_call(); }
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;
};

// Pushes the calling thread's remote batch (core/remote_batch.h), so that
// what the thread reads of the process heap (statistics, snapshots) counts
// its own frees. Not in a signal handler that interrupted a call (the batch
// may be half linked) nor after the thread's exit destructor (it is empty).
inline void push_own_remote_batch() {
  if (in_call() || tl_thread.remote_batch == nullptr) return;
  CallScope call;
  core::flush_remote_batch(*tl_thread.remote_batch);
}

}  // namespace shardalloc::platform
