// The C allocation functions of the process, replaced by shardalloc
// (LD_PRELOAD or link). Semantics are glibc's; see docs/override.md.
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "api/export.h"
#include "api/process_alloc.h"

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

// glibc's _mid_memalign: an alignment above SIZE_MAX / 2 + 1 (2^63) cannot be
// rounded up to a power of two and is EINVAL (glibc's tst-memalign checks
// memalign(-1, pagesize)); any other alignment that is not a power of two
// is rounded up to the next one, and one that cannot be served (2^63, or
// 2^62 + 1 rounded up to it) is ENOMEM, as a size that cannot be.
void* memalign_impl(size_t align, size_t size) {
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return nullptr;
  }
  return api::process_malloc_aligned(size, std::bit_ceil(align));
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

SHARD_EXPORT int posix_memalign(void** out, size_t align, size_t size) {
  return posix_memalign_impl(out, align, size);
}

// aligned_alloc: an alignment that is not a power of two (0 included) is
// EINVAL, as C17 (DR 460) asks and glibc does since 2.38. glibc 2.36 (Debian
// 12) still treats aligned_alloc as memalign and rounds such an alignment up;
// the two agree on every power of two and on the impossible alignments above
// 2^63 (EINVAL).
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
SHARD_EXPORT void* __libc_calloc(size_t count, size_t size) {
  return api::process_calloc(count, size);
}
SHARD_EXPORT void* __libc_realloc(void* p, size_t size) { return api::process_realloc(p, size); }
SHARD_EXPORT void* __libc_memalign(size_t align, size_t size) { return memalign_impl(align, size); }
SHARD_EXPORT void* __libc_valloc(size_t size) { return valloc(size); }
SHARD_EXPORT void* __libc_pvalloc(size_t size) { return pvalloc(size); }
SHARD_EXPORT int __posix_memalign(void** out, size_t align, size_t size) {
  return posix_memalign_impl(out, align, size);
}
