// Counters only their owner writes (a heap's statistics and hints), read by
// any thread.
#pragma once
#include <atomic>

#include "core/bits.h"

namespace shardalloc::core {

// Adds `delta` to (owner_sub: takes it from) a counter that only the calling
// thread writes. A relaxed load and store, no read-modify-write: with one
// writer no update is lost, and the atomic store gives readers untorn values;
// they order nothing else by it (statistics summed relaxed, sweepers' hints).
template <typename T>
SHARD_INLINE void owner_add(std::atomic<T>& counter, T delta) {
  counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
}
template <typename T>
SHARD_INLINE void owner_sub(std::atomic<T>& counter, T delta) {
  counter.store(counter.load(std::memory_order_relaxed) - delta, std::memory_order_relaxed);
}

}  // namespace shardalloc::core
