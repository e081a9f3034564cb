// What first-class heaps need from a bare-metal platform: there is no other
// domain a stray free could belong to, no thread ever gives a CPU heap back
// (so destroy has nothing to wait for), no errno, and no fork.
#include "core/hooks.h"

namespace shardalloc::platform {

void free_foreign(const core::Domain*, core::Segment*, void* p) {
  fatal("free of a pointer that is not allocated", p);
}

void quiesce_domain(core::Domain*) {}

void report_failure(Failure) {}

// No domain samples its allocations on bare metal (no profiler to record them).
long long sample_interval() { return 1LL << 62; }
void* sampled_alloc(core::Heap*, void* block, size_t, size_t, size_t, bool* tracked) {
  *tracked = false;
  return block;
}
bool sampled_block_freed(void*) { return false; }

// A kernel does not fork: steps need no gate.
uint32_t enter_step() { return 0; }
void leave_step(uint32_t) {}
uint32_t fork_generation() { return 0; }
void drop_steps_of_ending_thread() {}

}  // namespace shardalloc::platform
