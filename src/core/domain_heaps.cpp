// Heap ownership: adopt, abandon, sweep. See docs/protocols.md (abandon/adopt).
#include <new>

#include "core/domain.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/step.h"

namespace shardalloc::core {
namespace {

bool try_own(Heap* h) {
  uint32_t expected = 0;
  // relaxed pre-check avoids a write to heaps owned by running threads.
  // acquire: we see everything the previous owner wrote before its release.
  return h->owned.load(std::memory_order_relaxed) == 0 &&
         h->owned.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                          std::memory_order_relaxed);
}

}  // namespace

Heap* Domain::acquire_heap() {
  // acquire: heap records are published with release.
  for (Heap* h = heaps.load(std::memory_order_acquire); h != nullptr; h = h->next_in_domain) {
    if (try_own(h)) {
      heaps_adopted.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
      return h;
    }
  }
  Step step;  // no fork leaves a record made but not published
  void* mem = meta_alloc(sizeof(Heap));
  if (mem == nullptr) return nullptr;
  Heap* h = new (mem) Heap();
  h->init(this);
  h->owned.store(1, std::memory_order_relaxed);  // relaxed: not yet visible to anyone
  // relaxed load: the CAS publishes.
  Heap* head = heaps.load(std::memory_order_relaxed);
  do {
    h->next_in_domain = head;
    // release: other threads walking the list see an initialized record.
  } while (
      !heaps.compare_exchange_weak(head, h, std::memory_order_release, std::memory_order_relaxed));
  return h;
}

void Domain::release_heap(Heap* h) {
  Step step;  // no fork leaves a heap half given back (and owned by a thread the child lacks)
  h->collect_all();
  maybe_purge();
  // release: the next owner (acquire CAS) sees all our writes to the heap and its pages.
  h->owned.store(0, std::memory_order_release);
}

void* Domain::alloc_borrowed(size_t size, size_t align) {
  // The domain's first segment may be claimed here (a handler in the
  // process's very first call, a thread's last destructor before any heap).
  // relaxed: written once, before any segment exists; ensure_secret decides a race.
  if (secret.load(std::memory_order_relaxed) == 0) ensure_secret(platform::entropy());
  Step step;  // no fork leaves the borrowed heap owned by a thread the child lacks
  Heap* h = acquire_heap();
  if (h == nullptr) return nullptr;
  void* p = align <= kMinAlign ? h->alloc(size) : h->alloc_aligned(size, align);
  // Given back as it is (no collect: cheap in a handler or a late destructor);
  // the block stays live in the abandoned heap, like any block of an exited
  // thread. release: the next owner's acquire CAS sees our writes (protocol 3).
  h->owned.store(0, std::memory_order_release);
  return p;
}

void Domain::sweep_abandoned() {
  for (Heap* h = heaps.load(std::memory_order_acquire); h != nullptr; h = h->next_in_domain) {
    // relaxed: a hint; heaps without segments have nothing to give back.
    if (h->segment_count.load(std::memory_order_relaxed) == 0) continue;
    Step step;  // no fork between claiming the heap and giving it back
    if (!try_own(h)) continue;
    heaps_swept.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
    release_heap(h);
  }
}

}  // namespace shardalloc::core
