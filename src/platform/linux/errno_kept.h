// Keeps errno as it was for its scope. The allocator's system calls (advice,
// unmapping, getrandom) and retried allocations run inside malloc, free,
// calloc and realloc, which leave errno alone when they succeed.
#pragma once
#include <cerrno>

namespace shardalloc::platform {

struct ErrnoKept {
  int saved = errno;
  ~ErrnoKept() { errno = saved; }
};

}  // namespace shardalloc::platform
