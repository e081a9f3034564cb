// The process heap's malloc family, shared by the shard_* C API and the
// malloc / operator new override. Hosted only (uses errno).
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "core/bits.h"
#include "core/calloc_clear.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/realloc_copy.h"
#include "core/realloc_growth.h"
#include "platform/linux/call_guard.h"
#include "platform/linux/errno_kept.h"
#include "platform/linux/guarded.h"
#include "platform/linux/os_heaps.h"
#include "platform/linux/os_source.h"
#include "platform/linux/process_heap.h"
#include "platform/linux/zero_blocks.h"

namespace shardalloc::api {

SHARD_INLINE void* fail_nomem() {
  errno = ENOMEM;
  return nullptr;
}

// Entry points run in a call (platform/linux/call_guard.h): a signal handler
// that interrupts one and calls malloc or free takes the interrupted paths
// below. The fast paths clear the flag themselves; every out-of-line path
// they tail-call clears it before it returns.

// The interrupted path of an allocation: the calling thread may be half-way
// through its own heap, so this touches only lock-free shared state.
SHARD_NOINLINE inline void* interrupted_malloc(size_t size, size_t align) {
  if (SHARD_UNLIKELY(size > core::kMaxRequest || align > core::kMaxRequest)) return fail_nomem();
  void* p = platform::g_process_domain.alloc_borrowed(size, align);
  if (SHARD_UNLIKELY(p == nullptr)) return fail_nomem();
  return p;
}

// Leaves the call with p, an allocation's result (null: ENOMEM).
SHARD_INLINE void* leave_call_with(void* p) {
  platform::leave_call();
  if (SHARD_UNLIKELY(p == nullptr)) return fail_nomem();
  return p;
}

// Runs in a call that h (the heap the fast path read) entered; leaves it.
// h == g_process_busy: the call is a signal handler's that interrupted one.
SHARD_NOINLINE inline void* process_alloc_in_call(core::Heap* h, size_t size, size_t align) {
  if (SHARD_UNLIKELY(h == &platform::g_process_busy)) return interrupted_malloc(size, align);
  h = platform::own_process_heap();
  void* p = nullptr;
  if (SHARD_LIKELY(size <= core::kMaxRequest && align <= core::kMaxRequest)) {
    p = align <= core::kMinAlign ? h->alloc(size) : h->alloc_aligned(size, align);
  }
  return leave_call_with(p);
}

// Every allocation but a direct-size block popped from its page: out of line,
// so that the fast path needs no stack frame and tail-calls it.
SHARD_NOINLINE inline void* process_alloc_general(size_t size, size_t align) {
  core::Heap* h = platform::process_heap();
  platform::enter_call();
  return process_alloc_in_call(h, size, align);
}

// size <= kLargeBlockMax (no alignment, ordinary builds), in a call that h
// entered, whose fast path found no block: the heap's slow path at once (the
// general path would try the same fast path again first); leaves the call.
// h is the heap the fast path read: the thread's own (maybe its placeholder,
// which alloc_slow replaces), or g_process_busy in a signal handler.
SHARD_NOINLINE inline void* process_alloc_missed(core::Heap* h, size_t size) {
  if (SHARD_UNLIKELY(h == &platform::g_process_busy)) return interrupted_malloc(size, 0);
  return leave_call_with(h->alloc_slow(size));
}

// kDirectSizeMax < size <= kLargeBlockMax, in a call: a block of the first
// page of its class's queue (the page the slow path keeps in front), else the
// general path. Out of line, and size first (malloc has it in that register),
// so that malloc's small path keeps its instructions.
// (g_process_busy and a thread's placeholder heap have empty queues.)
SHARD_NOINLINE inline void* process_alloc_queued(size_t size, core::Heap* h) {
  if (core::Block* b = h->alloc_queued_fast(size)) {
    platform::leave_call_to(h);
    return b;
  }
  return process_alloc_missed(h, size);
}

SHARD_INLINE void* process_malloc(size_t size) {
  // Checked builds: a zero-size block faults on any access.
  if (core::kChecked && SHARD_UNLIKELY(size == 0)) {
    if (void* z = platform::zero_block_alloc()) return z;
  }
  core::Heap* h = platform::process_heap();
  // (Checked builds take the general path, which arms the block's canary.)
  if (SHARD_LIKELY(!core::kChecked && size <= core::kDirectSizeMax)) {
    platform::enter_call();
    // In a signal handler that interrupted a call, h is g_process_busy: its
    // pages are empty, so this pops nothing.
    if (core::Block* b = h->alloc_small_fast(size)) {
      platform::leave_call_to(h);
      return b;
    }
    return process_alloc_missed(h, size);
  } else {
    platform::enter_call();
    if (!core::kChecked && size <= core::kLargeBlockMax) return process_alloc_queued(size, h);
  }
  return process_alloc_in_call(h, size, 0);
}

// malloc's fast path alone: a block popped from the page of a direct size
// (ordinary builds), or null, the call left either way. For entry points
// that have a general path of their own (calloc, operator new): they
// tail-call it, so that their fast path calls nothing and needs no stack
// frame. (A signal handler that interrupted a call pops nothing:
// g_process_busy's pages are empty.)
SHARD_INLINE core::Block* process_malloc_popped(size_t size) {
  if (core::kChecked || size > core::kDirectSizeMax) return nullptr;
  core::Heap* h = platform::process_heap();
  platform::enter_call();
  core::Block* b = h->alloc_small_fast(size);
  platform::leave_call_to(h);
  return b;
}

// free of null (a no-op) or of a pointer outside our arenas (checked builds:
// maybe a zero-size block).
SHARD_NOINLINE inline void process_free_unowned(void* p) {
  if (p == nullptr) return;
  if (core::kChecked && platform::zero_block_owns(p)) return platform::zero_block_free(p);
  if (platform::guarded_owns(p)) return platform::guarded_sample_freed(p);
  platform::fatal("free of a pointer that is not allocated", p);
}

// The rest of a local free whose block is pushed; leaves the call.
SHARD_NOINLINE inline void process_page_freed(core::Heap* h, core::Page* page) {
  h->page_freed_slow(page);
  platform::leave_call();
}

// A local free with anything unusual (checked mode: every one); leaves the call.
SHARD_NOINLINE inline void process_free_local_general(core::Heap* h, core::Segment* s, void* p) {
  h->free_local(s, p);
  platform::leave_call();
}

// Any free of an owned pointer in a checked build: through the thread's
// quarantine (Heap::free_checked), which also checks how p was allocated
// against `kind` and `size` (operator delete; SIZE_MAX: unsized).
SHARD_NOINLINE inline void process_free_checked(void* p, core::AllocKind kind, size_t size) {
  core::Heap* h = platform::process_heap();
  // A signal handler that interrupted a call: the remote path, no quarantine.
  if (h == &platform::g_process_busy)
    return core::free_remote(&platform::g_process_domain, core::segment_of(p), p);
  platform::enter_call();
  h->free_checked(p, kind, size);
  platform::leave_call();
}

// The part of process_free_remote that calls out, in a call; leaves it.
SHARD_NOINLINE inline void process_free_remote_unbatched(core::Heap* h, core::Segment* s, void* p) {
  core::RemoteBatch* batch = platform::tl_thread.remote_batch;
  if (SHARD_UNLIKELY(batch == nullptr)) batch = platform::first_remote_batch();
  if (SHARD_LIKELY(batch != &platform::g_no_remote_batch)) {
    core::free_remote_batched(s, p, *batch);
  } else {
    core::free_remote(&platform::g_process_domain, s, p);
  }
  platform::leave_call_to(h);
}

// A free of another heap's block, of a huge block or of a first-class heap's
// block. A block of another heap of the process domain goes through the
// thread's remote batch (core/remote_batch.h), in a call. The rest, and a
// signal handler's free (h is g_process_busy, which leaves the batch alone),
// take free_remote, which touches only lock-free shared state (and
// free_foreign guards the heap cache), so it needs no call.
SHARD_NOINLINE inline void process_free_remote(core::Heap* h, core::Segment* s, void* p) {
  core::Domain* d = &platform::g_process_domain;
  if (h == &platform::g_process_busy || s->cookie != d->cookie_of(s) ||
      s->kind == core::SegmentKind::kHuge) {
    return core::free_remote(d, s, p);
  }
  platform::enter_call();
  // The common case calls nothing, so it needs no stack frame: a block that
  // joins its class's chain. (g_no_remote_batch's chains hold no page and
  // have no room: append takes nothing there.)
  core::RemoteBatch* batch = platform::tl_thread.remote_batch;
  if (SHARD_LIKELY(batch != nullptr) && core::append_remote_batched(s, p, *batch)) {
    return platform::leave_call_to(h);
  }
  return process_free_remote_unbatched(h, s, p);
}

SHARD_INLINE void process_free(void* p) {
  // Null is not owned either (no arena starts at address 0), so one test
  // sends both to the cold path.
  if (SHARD_UNLIKELY(!platform::os_owns(p))) return process_free_unowned(p);
  if constexpr (core::kChecked) return process_free_checked(p, core::AllocKind::kMalloc, SIZE_MAX);
  core::Heap* h = platform::process_heap();
  core::Segment* s = core::segment_of(p);
  // Another heap's block, a huge block, or any block while the thread is in
  // a call (a signal handler's free: h is g_process_busy, which owns no segment).
  if (SHARD_UNLIKELY(s->heap != h)) return process_free_remote(h, s, p);
  platform::enter_call();
  core::Page* page = s->page_of(p);
  core::Block* b = static_cast<core::Block*>(p);
  if (SHARD_UNLIKELY(!page->owner_may_free(b))) return process_free_local_general(h, s, p);
  if (SHARD_UNLIKELY(h->push_local_fast(page, b))) return process_page_freed(h, page);
  platform::leave_call_to(h);
}

// operator delete: free, and in checked builds a check that p was allocated
// by the matching operator new (`kind`) with `size` bytes (SIZE_MAX: unsized).
SHARD_INLINE void process_free_as(void* p, core::AllocKind kind, size_t size) {
  if constexpr (!core::kChecked) return process_free(p);
  if (SHARD_UNLIKELY(!platform::os_owns(p))) return process_free_unowned(p);
  process_free_checked(p, kind, size);
}

// operator new: checked builds record which one allocated p.
SHARD_INLINE void* process_tag(void* p, core::AllocKind kind) {
  if (core::kChecked && p != nullptr && platform::os_owns(p)) core::set_alloc_kind(p, kind);
  return p;
}

inline void* process_malloc_aligned(size_t size, size_t align) {
  return process_alloc_general(size, align);
}

// calloc of `total` bytes but a direct size's popped block.
SHARD_NOINLINE inline void* process_calloc_general(size_t total) {
  void* p = process_malloc(total);
  if (p == nullptr || (core::kChecked && total == 0)) return p;
  // (A guarded sample is not in an arena: calloc_clear cannot look at it.)
  if (platform::os_owns(p)) {
    core::calloc_clear(p, total);
  } else {
    __builtin_memset(p, 0, total);
  }
  return p;
}

inline void* process_calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return fail_nomem();
  // A block of a small page: always cleared (calloc_clear's first case).
  if (core::Block* b = process_malloc_popped(total)) return __builtin_memset(b, 0, total);
  return process_calloc_general(total);
}

inline size_t process_usable_size(const void* p) {
  if (p == nullptr) return 0;
  if (core::kChecked && platform::zero_block_owns(p)) return 0;
  if (!platform::os_owns(p)) {
    if (platform::guarded_owns(p)) return platform::guarded_usable_size(p);
    platform::fatal("usable size of a pointer that is not allocated", p);
  }
  return core::usable_size(p);
}

// s is a segment of the process domain (not of a first-class heap).
SHARD_INLINE bool in_process_domain(const core::Segment* s) {
  return s->cookie == platform::g_process_domain.cookie_of(s);
}

// realloc in ordinary builds (checked builds check more, in usable_size):
// p must be a live block as free would find it (core::usable_of_live_block):
// a block start or an aligned allocation's pointer of a block handed out,
// not on top of its page's local or remote free list, nor a huge block
// already freed whose slots are not in use again; else the program stops
// instead of copying, keeping or freeing it twice (docs/reliability.md,
// section 6; an interior pointer whose new size fits was returned as it
// was: hostile-input.md C25). A few loads, on no fast path. Returns the
// bytes usable at p.
inline size_t realloc_live_usable(void* p) {
  core::Segment* s = core::segment_of(p);
  if (!in_process_domain(s) && !platform::os_heap_owns(s, p)) {
    platform::fatal("realloc of a pointer that is not allocated", p);
  }
  return core::usable_of_live_block(p);
}

// realloc(p, 0) frees p and returns NULL, as glibc does.
inline void* process_realloc(void* p, size_t size) {
  if (p == nullptr) return process_malloc(size);
  if (size == 0) {
    process_free(p);
    return nullptr;
  }
  const bool os_owned = platform::os_owns(p);
  const bool in_segment = !core::kChecked && os_owned;
  const size_t usable = in_segment ? realloc_live_usable(p) : process_usable_size(p);
  // An OS heap's block always moves into the process heap (heap.h), even
  // when it fits: kept, it would go with its heap's destroy. (Checked builds
  // too: their in-place growth below would keep it.)
  const bool moves_out = os_owned && !in_process_domain(core::segment_of(p));
  if (!moves_out && core::realloc_keeps(p, size, usable, in_segment)) return p;
  if constexpr (core::kChecked) {
    // A huge block grows in place into the room its last move left (below):
    // moved to the exact size at every call, a block grown a few bytes a call
    // was copied whole at every call (PHP's `$s .= "x"` never finished).
    if (!moves_out && size > usable && os_owned && core::resize_huge_in_place(p, size)) {
      return p;
    }
  }
  // A huge block that grows moves with room to grow again (core/realloc_growth.h).
  const size_t want = core::realloc_move_size(size, usable);
  void* q;
  if (want == size) {
    q = process_malloc(size);
  } else {
    {
      const platform::ErrnoKept kept;  // a realloc that succeeds leaves errno alone
      q = process_malloc(want);
    }
    if (SHARD_LIKELY(q != nullptr)) {
      // Checked builds: the block's size is `size`, its room slack filled
      // with the pattern (checked at free, and where a later realloc grows
      // into it); the room is written, so none of it goes back.
      if constexpr (core::kChecked) {
        core::resize_huge_in_place(q, size);
      } else {
        core::release_room(q, size);
      }
    } else {
      q = process_malloc(size);
    }
  }
  if (q == nullptr) return nullptr;
  core::copy_to_moved_block(q, p, size < usable ? size : usable);
  process_free(p);
  return q;
}

}  // namespace shardalloc::api
