// shard_heap_* : allocation, free and destroy of first-class heaps
// (include/shardalloc/heap.h), whatever their memory. Freestanding: errors
// reach the caller through platform::report_failure (errno on Linux).
// The constructors: os_heap_api.cpp (hosted), region_heap_api.cpp.
#include "shardalloc/heap.h"

#include "api/call_guard.h"
#include "api/export.h"
#include "core/bits.h"
#include "core/calloc_clear.h"
#include "core/first_class.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/realloc_copy.h"
#include "core/realloc_growth.h"

using namespace shardalloc;

namespace {

core::FirstClassHeap* record_of(shard_heap* h) {
  return reinterpret_cast<core::FirstClassHeap*>(h);
}
const core::FirstClassHeap* record_of(const shard_heap* h) {
  return reinterpret_cast<const core::FirstClassHeap*>(h);
}

void* fail(platform::Failure f) {
  platform::report_failure(f);
  return nullptr;
}

// The live record behind h; stops on a destroyed one (no call on a heap may
// race with its destroy, so a plain check is enough).
SHARD_INLINE core::FirstClassHeap* live(shard_heap* h) {
  core::FirstClassHeap* fch = record_of(h);
  if (SHARD_UNLIKELY(!fch->is_live())) platform::fatal("use of a destroyed heap", h);
  return fch;
}

// The live record and p checked to be in one of its segments.
core::FirstClassHeap* owner_of(shard_heap* h, void* p) {
  if (h == nullptr) platform::fatal("free of a pointer that is not allocated", p);
  core::FirstClassHeap* fch = live(h);
  if (SHARD_UNLIKELY(!fch->owns(p))) platform::fatal("free of a pointer that is not allocated", p);
  return fch;
}

void* heap_alloc(shard_heap* h, size_t size, size_t align) {
  if (h == nullptr) return fail(platform::Failure::kInvalidArgument);
  core::FirstClassHeap* fch = live(h);
  if (SHARD_UNLIKELY(size > core::kMaxRequest || align > core::kMaxRequest)) {
    return fail(platform::Failure::kNoMemory);
  }
  void* p;
  if (SHARD_UNLIKELY(platform::in_call())) {
    p = fch->alloc_borrowed(size, align);  // a signal handler interrupted a call (api/call_guard.h)
  } else {
    platform::CallScope call;
    p = fch->alloc(size, align);
  }
  if (SHARD_UNLIKELY(p == nullptr)) return fail(platform::Failure::kNoMemory);
  return p;
}

void heap_free(core::FirstClassHeap* fch, void* p) {
  if (SHARD_UNLIKELY(platform::in_call())) return fch->free_heapless(p);  // as in heap_alloc
  platform::CallScope call;
  fch->free(p);
}

}  // namespace

SHARD_EXPORT void* shard_heap_malloc(shard_heap* h, size_t size) { return heap_alloc(h, size, 0); }

SHARD_EXPORT void* shard_heap_malloc_aligned(shard_heap* h, size_t size, size_t align) {
  if (!core::is_pow2(align)) return fail(platform::Failure::kInvalidArgument);
  return heap_alloc(h, size, align);
}

SHARD_EXPORT void* shard_heap_calloc(shard_heap* h, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    return h == nullptr ? fail(platform::Failure::kInvalidArgument)
                        : fail(platform::Failure::kNoMemory);
  }
  void* p = heap_alloc(h, total, 0);
  if (p != nullptr) core::calloc_clear(p, total);
  return p;
}

SHARD_EXPORT void shard_heap_free(shard_heap* h, void* p) {
  if (p == nullptr) return;
  heap_free(owner_of(h, p), p);
}

// realloc(p, 0) frees p and returns NULL, as shard_realloc does.
SHARD_EXPORT void* shard_heap_realloc(shard_heap* h, void* p, size_t size) {
  if (p == nullptr) return heap_alloc(h, size, 0);
  core::FirstClassHeap* fch = owner_of(h, p);
  if (size == 0) {
    heap_free(fch, p);
    return nullptr;
  }
  // p must be a live block before it is kept or copied (heaps.md); checked
  // builds then read the size asked for, as usable_size does.
  const size_t live_usable = core::usable_of_live_block(p);
  const size_t usable = core::kChecked ? core::usable_size(p) : live_usable;
  if (core::realloc_keeps(p, size, usable, true)) return p;
  void* q = heap_alloc(h, size, 0);
  if (q == nullptr) return nullptr;
  core::copy_to_moved_block(q, p, size < usable ? size : usable);
  heap_free(fch, p);
  return q;
}

SHARD_EXPORT void shard_heap_destroy(shard_heap* h) {
  if (h == nullptr) return;
  record_of(h)->destroy();
}

SHARD_EXPORT size_t shard_heap_used_bytes(const shard_heap* h) {
  if (h == nullptr) return 0;
  const core::FirstClassHeap* fch = record_of(h);
  if (SHARD_UNLIKELY(!fch->is_live())) platform::fatal("use of a destroyed heap", h);
  return fch->used_bytes();
}
