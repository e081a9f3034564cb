// What first-class heaps need from a bare-metal platform: there is no other
// domain a stray free could belong to, no thread ever gives a CPU heap back
// (so destroy has nothing to wait for), and no errno.
#include "core/hooks.h"

namespace shardalloc::platform {

void free_foreign(const core::Domain*, core::Segment*, void* p) { fatal("free of a pointer that is not allocated", p); }

void quiesce_domain(core::Domain*) {}

void report_failure(Failure) {}

}  // namespace shardalloc::platform
