// Call stacks for the heap profiler and guarded sampling (docs/profiling.md,
// "Stack capture"): libgcc's unwinder, with a cache of verified stacks in
// front of it on x86-64.
#pragma once
#include <cstdint>

namespace shardalloc::platform {

// The deepest stack capture_stack returns.
constexpr int kStackMaxFrames = 48;

// Makes the unwinder ready: loads libgcc_s (dlopen allocates, so call it
// outside any allocator call, before the first capture). Idempotent.
void stack_walk_start();

// Up to max (<= kStackMaxFrames) return addresses of the calling stack,
// innermost first: frames[0] is the return address into capture_stack's
// caller. Returns the count. Not reentrant on one thread (the caller keeps
// a signal handler that interrupts it from calling it again).
int capture_stack(void** frames, int max);

// Whether pc is an address of libshardalloc itself: known (after
// stack_walk_start) when it is a shared object apart from the program, as an
// address range found at start, so that the question asks the loader
// nothing (its lock may be held for ever in a fork child of a thread that
// was inside dlopen). Linked into the program, its frames cannot be told
// from the program's: own_module_known() is false.
bool own_module_known();
bool own_frame(uintptr_t pc);

// For tests: captures served from the cache, and full walks.
uint64_t stack_walk_cache_hits();
uint64_t stack_walk_full_walks();

}  // namespace shardalloc::platform
