// Pushes onto a lock-free singly linked stack: an atomic head pointer that
// any thread may push on, and that readers walk from an acquire load (lists
// that only grow: arenas, heap records, per-CPU tables) or take whole by an
// acquire exchange (a heap's notified pages).
//
// Ordering, once for every user: the node's link (and every field the pusher
// wrote before) is written before the CAS that makes the node the head, and
// that CAS is a release; a reader that loads the head with acquire, or takes
// the list by an acquire exchange, therefore sees the fields of every node it
// reaches (each later push's release CAS read the earlier head: a release
// sequence). The first load and a failed CAS are relaxed: the CAS validates
// what was read, and only the link, which is written again, depends on it.
// A caller may ask for more than release (seq_cst, to order the push with
// other seq_cst operations); a caller that reads the nodes it lost the race
// to passes acquire for the failure.
#pragma once
#include <atomic>

#include "core/bits.h"

namespace shardalloc::core {

// One attempt: links node in front of `seen` (the head as last read) and
// makes it the head if it still is `seen`. On failure `seen` is the head now.
template <typename T>
SHARD_INLINE bool try_push_front(std::atomic<T*>& head, T*& seen, T* node, T* T::*link,
                                 std::memory_order success = std::memory_order_release,
                                 std::memory_order failure = std::memory_order_relaxed) {
  node->*link = seen;
  return head.compare_exchange_weak(seen, node, success, failure);
}

// Pushes node on the stack whose top is `head`.
template <typename T>
SHARD_INLINE void push_front(std::atomic<T*>& head, T* node, T* T::*link,
                             std::memory_order success = std::memory_order_release) {
  T* seen = head.load(std::memory_order_relaxed);  // relaxed: the CAS validates it
  while (!try_push_front(head, seen, node, link, success)) {
  }
}

}  // namespace shardalloc::core
