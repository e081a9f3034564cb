// Shared by the override test programs: is shardalloc really this process's
// malloc? (Run under LD_PRELOAD, a silently ignored preload would otherwise
// make every test pass against glibc.)
#pragma once
#include <dlfcn.h>
#include <malloc.h>

#include <cstdio>
#include <cstdlib>

namespace shardtest {

// True when the shardalloc loaded through `handle` was built in checked mode
// (SHARDALLOC_CHECKED), whose malloc_usable_size is the size asked for.
inline bool library_is_checked(void* handle = RTLD_DEFAULT) {
  auto* is_checked = reinterpret_cast<int (*)()>(dlsym(handle, "shard_is_checked"));
  return is_checked != nullptr && is_checked() != 0;
}

// malloc_usable_size(malloc(201)) under shardalloc: its 224-byte class (201,
// the size asked for, in checked builds). glibc gives 216.
inline constexpr size_t kProbeRequest = 201;
inline size_t probe_usable(bool checked) { return checked ? 201 : 224; }

// True when malloc is shardalloc's: shard_malloc is in the global scope and
// malloc_usable_size shows shardalloc's size class for the probe request.
inline bool override_active() {
  if (dlsym(RTLD_DEFAULT, "shard_malloc") == nullptr) return false;
  void* volatile p = std::malloc(kProbeRequest);
  const size_t u = malloc_usable_size(p);
  std::free(p);
  return u == probe_usable(library_is_checked());
}

// Exits with status 1 and a message unless the override is active.
inline void require_override(const char* program) {
  if (!override_active()) {
    std::fprintf(stderr,
                 "%s: FAIL: malloc is not shardalloc's (run with LD_PRELOAD=libshardalloc.so)\n",
                 program);
    std::exit(1);
  }
}

}  // namespace shardtest
