// Heap ownership: adopt, abandon, sweep. See docs/protocols.md (abandon/adopt).
#include <new>

#include "core/assert.h"
#include "core/domain.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/lockfree_stack.h"
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

Heap* Domain::adopt(Heap* h) {
  heaps_adopted.fetch_add(1, std::memory_order_relaxed);        // relaxed: a statistic
  SHARD_ASSERT(h->owned.load(std::memory_order_relaxed) == 1);  // relaxed: our own claim
  h->unseal_all();  // we allocate from it: no page may stay sealed
  return h;
}

Heap* Domain::acquire_heap() {
  // The unowned heap that holds the most segments: its free pages serve us
  // before we claim new ones, and the others' segments drain meanwhile
  // (their pages come back as their blocks are freed, protocol 3), so the
  // memory of exited threads gathers in few heaps.
  Heap* best = nullptr;
  uint32_t most = 0;
  // acquire: heap records are published with release.
  for (Heap* h = heaps.load(std::memory_order_acquire); h != nullptr; h = h->next_in_domain) {
    // relaxed: hints; try_own decides.
    if (h->owned.load(std::memory_order_relaxed) != 0 || h->for_borrowing) continue;
    const uint32_t n = h->segment_count.load(std::memory_order_relaxed);
    if (best == nullptr || n > most) {
      best = h;
      most = n;
    }
  }
  if (best != nullptr && try_own(best)) return adopt(best);
  // Lost it: the first heap nobody owns, else a new one.
  // acquire: as above.
  for (Heap* h = heaps.load(std::memory_order_acquire); h != nullptr; h = h->next_in_domain) {
    if (!h->for_borrowing && try_own(h)) return adopt(h);
  }
  return make_heap(false);
}

Heap* Domain::make_heap(bool for_borrowing) {
  Step step;  // no fork leaves a record made but not published
  void* mem = meta_alloc(sizeof(Heap));
  if (mem == nullptr) return nullptr;
  Heap* h = new (mem) Heap();
  h->init(this);
  h->for_borrowing = for_borrowing;
  h->owned.store(1, std::memory_order_relaxed);  // relaxed: not yet visible to anyone
  // release (lockfree_stack.h): other threads walking the list see an initialized record.
  push_front(heaps, h, &Heap::next_in_domain);
  return h;
}

Heap* Domain::acquire_borrow_heap() {
  // One heap for every borrow: its pages hold only borrowed blocks, so the
  // unseal and seal around a borrow cost those few pages. (Borrowing the
  // abandoned heap with the most segments cost the pages of an exited
  // thread's whole heap at every call: a review measured 0.2 us per malloc
  // in a key destructor after the exit hook, 371 us with a 1 GiB heap left.)
  // acquire: the record's fields, published by make_heap's push.
  Heap* h = borrow_heap.load(std::memory_order_acquire);
  if (h != nullptr) return try_own(h) ? adopt(h) : acquire_heap();
  h = make_heap(true);
  if (h == nullptr) return nullptr;
  // release: publishes the record (already on the list) to later borrowers.
  // First borrows at once: each loser's heap stays borrow-only, unused but
  // for sweeps (a heap record per loser, only at the domain's first borrows).
  Heap* none = nullptr;
  borrow_heap.compare_exchange_strong(none, h, std::memory_order_release,
                                      std::memory_order_relaxed);
  return h;
}

void Domain::release_heap(Heap* h, bool sweeping) {
  Step step;  // no fork leaves a heap half given back (and owned by a thread the child lacks)
  h->abandon_pages(sweeping);
  run_due_maintenance();
  give_up(h);
}

void Domain::give_up(Heap* h) {
  SHARD_ASSERT(h->owned.load(std::memory_order_relaxed) == 1);  // relaxed: we own it
  for (;;) {
    // seq_cst: release, so the next owner (acquire CAS) sees all our writes to
    // the heap and its pages; and one total order with the notifiers' pushes
    // and their load of owned (free_notifying): a page pushed on the stack
    // after our load below finds owned == 0 and the notifier reclaims it.
    h->owned.store(0, std::memory_order_seq_cst);
    // seq_cst: see above. Empty: nothing waits, or its notifier takes it.
    if (h->notified.load(std::memory_order_seq_cst) == nullptr) return;
    // Pages were pushed while we owned the heap: their notifiers saw it
    // owned and left them to us. A failed claim means another thread owns it
    // now and will drain the stack.
    if (!try_own(h)) return;
    h->reclaim_notified();
  }
}

void Domain::reclaim_abandoned(Heap* h) {
  Step step;                // no fork between claiming the heap and giving it back
  if (!try_own(h)) return;  // its owner (or a releaser's last look) drains the stack
  h->reclaim_notified();
  give_up(h);
}

void* Domain::alloc_borrowed(size_t size, size_t align) {
  // The domain's first segment may be claimed here (a handler in the
  // process's very first call, a thread's last destructor before any heap).
  // relaxed: written once, before any segment exists; ensure_secret decides a race.
  if (secret.load(std::memory_order_relaxed) == 0) ensure_secret(platform::entropy());
  Step step;  // no fork leaves the borrowed heap owned by a thread the child lacks
  Heap* h = acquire_borrow_heap();
  if (h == nullptr) return nullptr;
  void* p = align <= kMinAlign ? h->alloc(size) : h->alloc_aligned(size, align);
  // The block stays live in the abandoned heap, like any block of an exited
  // thread. Adopting it unsealed the heap's pages: seal them again (else
  // frees into them no longer count down and their pages never come back,
  // protocol 3) and give the heap up with give_up's look at `notified` (a
  // page completed while we owned it waits there).
  h->abandon_pages(false);
  give_up(h);
  return p;
}

void Domain::sweep_abandoned() {
  for (Heap* h = heaps.load(std::memory_order_acquire); h != nullptr; h = h->next_in_domain) {
    // relaxed: a hint; heaps without segments have nothing to give back.
    if (h->segment_count.load(std::memory_order_relaxed) == 0) continue;
    Step step;  // no fork between claiming the heap and giving it back
    if (!try_own(h)) continue;
    heaps_swept.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
    release_heap(h, true);  // collects its (sealed) pages: frees empty ones, seals the rest
  }
}

}  // namespace shardalloc::core
