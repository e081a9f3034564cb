// The C allocation functions of the process, replaced by shardalloc
// (LD_PRELOAD or link). Semantics are glibc's; see docs/override.md.
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include "api/process_alloc.h"

#define SHARD_EXPORT extern "C" __attribute__((visibility("default")))

using namespace shardalloc;

namespace {

constexpr size_t kOsPage = 4096;

int posix_memalign_impl(void** out, size_t align, size_t size) {
  if (align < sizeof(void*) || !core::is_pow2(align)) return EINVAL;
  const int saved = errno;
  void* p = api::process_malloc_aligned(size, align);
  if (p == nullptr) return ENOMEM;
  errno = saved;
  *out = p;
  return 0;
}

void* memalign_impl(size_t align, size_t size) {
  // glibc rounds a non-power-of-two alignment up to the next power of two.
  if (!core::is_pow2(align)) {
    if (align > (size_t{1} << 62)) return api::fail_nomem();
    size_t a = 1;
    while (a < align) a <<= 1;
    align = a;
  }
  return api::process_malloc_aligned(size, align);
}

}  // namespace

SHARD_EXPORT void* malloc(size_t size) { return api::process_malloc(size); }
SHARD_EXPORT void free(void* p) { api::process_free(p); }
SHARD_EXPORT void* calloc(size_t count, size_t size) { return api::process_calloc(count, size); }
SHARD_EXPORT void* realloc(void* p, size_t size) { return api::process_realloc(p, size); }
SHARD_EXPORT void cfree(void* p) { api::process_free(p); }

SHARD_EXPORT void* reallocarray(void* p, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return api::fail_nomem();
  return api::process_realloc(p, total);
}

SHARD_EXPORT int posix_memalign(void** out, size_t align, size_t size) { return posix_memalign_impl(out, align, size); }

// C11 aligned_alloc: glibc accepts any power-of-two alignment; others give EINVAL.
SHARD_EXPORT void* aligned_alloc(size_t align, size_t size) {
  if (!core::is_pow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return api::process_malloc_aligned(size, align);
}

SHARD_EXPORT void* memalign(size_t align, size_t size) { return memalign_impl(align, size); }
SHARD_EXPORT void* valloc(size_t size) { return api::process_malloc_aligned(size, kOsPage); }

SHARD_EXPORT void* pvalloc(size_t size) {
  const size_t rounded = (size + kOsPage - 1) & ~(kOsPage - 1);
  if (rounded < size) return api::fail_nomem();
  return api::process_malloc_aligned(rounded == 0 ? kOsPage : rounded, kOsPage);
}

SHARD_EXPORT size_t malloc_usable_size(void* p) { return api::process_usable_size(p); }

// glibc's internal names, used by some programs and by glibc itself.
SHARD_EXPORT void* __libc_malloc(size_t size) { return api::process_malloc(size); }
SHARD_EXPORT void __libc_free(void* p) { api::process_free(p); }
SHARD_EXPORT void* __libc_calloc(size_t count, size_t size) { return api::process_calloc(count, size); }
SHARD_EXPORT void* __libc_realloc(void* p, size_t size) { return api::process_realloc(p, size); }
SHARD_EXPORT void* __libc_memalign(size_t align, size_t size) { return memalign_impl(align, size); }
SHARD_EXPORT void* __libc_valloc(size_t size) { return valloc(size); }
SHARD_EXPORT void* __libc_pvalloc(size_t size) { return pvalloc(size); }
SHARD_EXPORT int __posix_memalign(void** out, size_t align, size_t size) { return posix_memalign_impl(out, align, size); }
