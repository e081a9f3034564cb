// The process heap's malloc family, shared by the shard_* C API and the
// malloc / operator new override. Hosted only (uses errno).
#pragma once
#include <cerrno>
#include <cstddef>

#include "core/bits.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "platform/linux/os_source.h"
#include "platform/linux/process_heap.h"

namespace shardalloc::api {

SHARD_INLINE void* fail_nomem() {
  errno = ENOMEM;
  return nullptr;
}

// Everything but a direct-size block popped from its page: out of line, so
// that the fast path needs no stack frame and tail-calls it.
SHARD_NOINLINE inline void* process_malloc_slow(core::Heap* h, size_t size) {
  if (SHARD_UNLIKELY(size > core::kMaxRequest)) return fail_nomem();
  void* p = h->alloc(size);
  if (SHARD_UNLIKELY(p == nullptr)) return fail_nomem();
  return p;
}

SHARD_INLINE void* process_malloc(size_t size) {
  core::Heap* h = platform::process_heap();
  // (Checked builds take the slow path, which arms the block's canary.)
  if (SHARD_LIKELY(!core::kChecked && size <= core::kDirectSizeMax)) {
    if (core::Block* b = h->alloc_small_fast(size)) return b;
  }
  return process_malloc_slow(h, size);
}

// free of null (a no-op) or of a pointer outside our arenas.
SHARD_NOINLINE inline void process_free_unowned(void* p) {
  if (p != nullptr) platform::fatal("free of a pointer that is not allocated", p);
}

SHARD_INLINE void process_free(void* p) {
  // Null is not owned either (no arena starts at address 0), so one test
  // sends both to the cold path.
  if (SHARD_UNLIKELY(!platform::os_owns(p))) return process_free_unowned(p);
  core::free_block(platform::process_heap(), p);
}

inline void* process_malloc_aligned(size_t size, size_t align) {
  if (SHARD_UNLIKELY(size > core::kMaxRequest || align > core::kMaxRequest)) return fail_nomem();
  void* p = platform::process_heap()->alloc_aligned(size, align);
  if (SHARD_UNLIKELY(p == nullptr)) return fail_nomem();
  return p;
}

inline void* process_calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail_nomem();
  void* p = process_malloc(total);
  if (p != nullptr && !core::is_fresh_zero(p)) __builtin_memset(p, 0, total);
  return p;
}

inline size_t process_usable_size(const void* p) {
  if (p == nullptr) return 0;
  if (!platform::os_owns(p)) platform::fatal("usable size of a pointer that is not allocated", p);
  return core::usable_size(p);
}

// realloc(p, 0) frees p and returns NULL, as glibc does.
inline void* process_realloc(void* p, size_t size) {
  if (p == nullptr) return process_malloc(size);
  if (size == 0) {
    process_free(p);
    return nullptr;
  }
  const size_t usable = process_usable_size(p);
  // Shrinking by less than half keeps the block.
  if (size <= usable && size >= usable / 2) return p;
  void* q = process_malloc(size);
  if (q == nullptr) return nullptr;
  __builtin_memcpy(q, p, size < usable ? size : usable);
  process_free(p);
  return q;
}

}  // namespace shardalloc::api
