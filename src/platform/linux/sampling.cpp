// The hosted side of the core's allocation sampling (core/hooks.h): where a
// sampled allocation of the process heap goes. Today one consumer, the heap
// profiler, records it. A consumer that replaces sampled allocations (a
// guarded allocator, issue 17) plugs in here: it returns its own pointer
// instead of `block` (the core then frees block), with *tracked false, and
// must make free of its pointers reach it (docs/profiling.md, "Consumers").
#include <cstdint>

#include "core/hooks.h"
#include "platform/linux/heap_profile.h"
#include "platform/linux/process_heap.h"

namespace shardalloc::platform {
namespace {

// Per thread: a xorshift64* generator for the gaps, seeded on first use.
constinit thread_local uint64_t tl_gap_state = 0;

uint64_t rate_now = 512 * 1024;

}  // namespace

void set_sample_rate(uint64_t rate) { rate_now = rate == 0 ? 1 : rate; }

long long sample_interval() {
  uint64_t x = tl_gap_state;
  if (x == 0) x = entropy() ^ uint64_t(reinterpret_cast<uintptr_t>(&tl_gap_state)) ^ 1;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  tl_gap_state = x;
  const uint64_t r = x * 0x2545F4914F6CDD1Dull;
  const double u = (double((r >> 11) + 1)) * (1.0 / 9007199254740992.0);  // (0, 1]
  return (long long)sample_gap(rate_now, u);
}

void* sampled_alloc(core::Heap* h, void* block, size_t size, size_t block_bytes, bool* tracked) {
  // Only the thread's own heap in the process domain: a signal handler that
  // interrupted a call allocates from a borrowed heap, where the stack walk
  // is not safe; those samples are skipped.
  *tracked = h == own_process_heap() && heap_profile_record(block, size, block_bytes);
  return block;
}

bool sampled_block_freed(void* block) { return heap_profile_forget(block); }

}  // namespace shardalloc::platform
