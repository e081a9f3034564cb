// shard_* : the C API over the process heap.
#include "shardalloc/shardalloc.h"

#include "api/export.h"
#include "api/process_alloc.h"

using namespace shardalloc;

SHARD_EXPORT void* shard_malloc(size_t size) { return api::process_malloc(size); }
SHARD_EXPORT void* shard_calloc(size_t count, size_t size) {
  return api::process_calloc(count, size);
}
SHARD_EXPORT void* shard_realloc(void* p, size_t size) { return api::process_realloc(p, size); }
SHARD_EXPORT void shard_free(void* p) { api::process_free(p); }
SHARD_EXPORT size_t shard_usable_size(const void* p) { return api::process_usable_size(p); }

SHARD_EXPORT void* shard_malloc_aligned(size_t size, size_t align) {
  if (!core::is_pow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return api::process_malloc_aligned(size, align);
}

SHARD_EXPORT size_t shard_check_heap(void) {
  // In a call (a signal handler that interrupted one, or after the thread's
  // exit destructor) the heap may be half updated: nothing is checked.
  if (platform::in_call()) return 0;
  platform::CallScope call;  // a signal handler's free meanwhile must not change what check() walks
  return platform::own_process_heap()->check();
}

SHARD_EXPORT int shard_is_checked(void) { return core::kChecked ? 1 : 0; }

SHARD_EXPORT unsigned long long shard_guarded_set_rate(unsigned long long rate) {
  const uint64_t previous = platform::guarded_rate();
  platform::set_guarded_rate(rate);
  platform::guarded_sampling_start(false);
  return previous;
}
