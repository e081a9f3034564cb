// Shared by the override test programs: is shardalloc really this process's
// malloc? (Run under LD_PRELOAD, a silently ignored preload would otherwise
// make every test pass against glibc.)
#pragma once
#include <dlfcn.h>
#include <malloc.h>

#include <cstdio>
#include <cstdlib>

namespace shardtest {

// True when malloc is shardalloc's: shard_malloc is in the global scope and
// malloc_usable_size shows shardalloc's 112-byte class for a 100-byte request
// (glibc gives 104).
inline bool override_active() {
  if (dlsym(RTLD_DEFAULT, "shard_malloc") == nullptr) return false;
  void* volatile p = std::malloc(100);
  const size_t u = malloc_usable_size(p);
  std::free(p);
  return u == 112;
}

// Exits with status 1 and a message unless the override is active.
inline void require_override(const char* program) {
  if (!override_active()) {
    std::fprintf(stderr, "%s: FAIL: malloc is not shardalloc's (run with LD_PRELOAD=libshardalloc.so)\n", program);
    std::exit(1);
  }
}

}  // namespace shardtest
