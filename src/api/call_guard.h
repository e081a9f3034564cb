// The entry points' reentry guard (platform/linux/call_guard.h) for the
// sources built for every platform (region and first-class heap APIs).
// Kernels (the bare platform) have no signals: a kernel must not re-enter
// the allocator on the CPU it interrupted (region.h), so the guard is empty.
#pragma once
#ifdef SHARDALLOC_PLATFORM_LINUX
#include "platform/linux/call_guard.h"
#else
#include "core/bits.h"

namespace shardalloc::platform {

SHARD_INLINE constexpr bool in_call() { return false; }
SHARD_INLINE void enter_call() {}
SHARD_INLINE void leave_call() {}
struct CallScope {
  CallScope() {}  // user-provided: a scope variable of this type is not "unused"
};

}  // namespace shardalloc::platform
#endif
