#include "platform/linux/os_heaps.h"

#include "core/arena.h"
#include "core/bits.h"
#include "core/hooks.h"
#include "core/segment.h"
#include "core/step.h"
#include "platform/linux/call_guard.h"
#include "platform/linux/options.h"
#include "platform/linux/os_source.h"
#include "platform/linux/process_heap.h"

namespace shardalloc::platform {
namespace {

// True when every byte of [p, p+bytes) lies in an OS arena and was
// committed, so it may be read.
bool readable(const void* p, size_t bytes) {
  return os_owns(p) && os_owns(static_cast<const char*>(p) + bytes - 1) && os_committed(p, bytes);
}

bool segment_in_os_arena(const void* s) { return readable(s, sizeof(core::Segment)); }

void release_os_arenas(core::FirstClassHeap* h) {
  // acquire: see the headers of published arenas. No other thread touches
  // the domain any more (destroy's precondition, pins drained).
  core::Arena* a = h->domain.arenas.load(std::memory_order_acquire);
  while (a != nullptr) {
    // The header lies inside the arena: read it before the unmap.
    core::Arena* next = a->next;
    const uintptr_t start = a->mem_start;
    const uintptr_t end = a->mem_end;
    os_release(core::ptr(start), end - start);
    a = next;
  }
}

}  // namespace

core::FirstClassHeap* os_heap_new() {
  core::Step step;  // no fork leaves a record claimed but never handed out
  g_process_domain.ensure_secret(entropy());  // the record may claim the domain's first segment
  core::FirstClassHeap* h = core::FirstClassHeap::claim(&g_process_domain);
  if (h == nullptr) return nullptr;
  h->domain.source = kOsPageSource;
  if (options().huge_guards) h->domain.source.guard = &os_guard;
  h->domain.purge_delay_ms = options().purge_delay_ms;
  h->domain.calloc_populate_max = options().calloc_populate_max;
  h->domain.ensure_secret(entropy() ^ core::addr(h));
  h->segment_readable = &segment_in_os_arena;
  h->release = &release_os_arenas;
  return h;
}

namespace {

// The live first-class heap over OS memory whose segment s holds p, or null.
// Every header read below is of memory first checked to lie in an OS arena;
// the heap's own owns() (the segment's cookie against the heap's secret) decides.
core::FirstClassHeap* os_heap_owning(core::Segment* s, void* p) {
  if (!readable(s, sizeof(core::Segment))) return nullptr;
  core::Domain* d = s->domain;
  if (!readable(d, sizeof(core::Domain)) || core::addr(d) % alignof(core::Domain) != 0)
    return nullptr;
  core::DomainLife* life = d->life;
  if (life == nullptr || !readable(life, sizeof(core::FirstClassHeap)) ||
      core::addr(life) % 64 != 0)
    return nullptr;
  core::FirstClassHeap* h = core::FirstClassHeap::of(d);
  return &h->domain == d && h->is_live() && h->owns(p) ? h : nullptr;
}

}  // namespace

bool os_heap_owns(core::Segment* s, void* p) { return os_heap_owning(s, p) != nullptr; }

// Reached from a free into the process domain (shard_free, free) of a
// pointer whose segment is not the process domain's. The heap's free uses
// the thread's heap cache: in a call (a signal handler interrupted one,
// platform/linux/call_guard.h), it frees without it.
void free_foreign(const core::Domain*, core::Segment* s, void* p) {
  core::FirstClassHeap* h = os_heap_owning(s, p);
  if (h == nullptr) fatal("free of a pointer that is not allocated", p);
  if (in_call()) return h->free_heapless(p);
  CallScope call;
  h->free(p);
}

}  // namespace shardalloc::platform
