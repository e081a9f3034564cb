// Thread identity on Linux: each thread's heap per domain, cached in TLS, and
// given back (abandoned) by a pthread key destructor when the thread exits.
// No allocation: pthread keys below PTHREAD_KEYS_MAX use static storage.
#include <pthread.h>

#include "core/hooks.h"
#include "platform/linux/os_source.h"
#include "platform/linux/process_heap.h"
#include "platform/linux/region_heaps.h"

namespace shardalloc::platform {

constinit core::Domain g_process_domain{.source = kOsPageSource};
constinit core::Heap g_process_placeholder{&g_process_domain};
constinit thread_local core::Heap* tl_process_heap = &g_process_placeholder;
// Heaps of region domains this thread uses (region_heaps.h), most recently
// used first; beyond kRegionSlots regions the least recently used heap is
// given back (and re-adopted when needed).
constinit thread_local ThreadHeaps tl_heaps{};

namespace {

pthread_key_t g_exit_key;
pthread_once_t g_exit_key_once = PTHREAD_ONCE_INIT;

void on_thread_exit(void*) {
  ThreadHeaps& t = tl_heaps;
  t.exit_registered = false;
  for (unsigned i = 0; i < kRegionSlots; ++i) {
    if (t.heap[i] != nullptr) t.domain[i]->release_heap(t.heap[i]);
    t.heap[i] = nullptr;
    t.domain[i] = nullptr;
  }
  core::Heap* h = tl_process_heap;
  tl_process_heap = &g_process_placeholder;
  if (!h->placeholder) g_process_domain.release_heap(h);
}

void create_exit_key() { pthread_key_create(&g_exit_key, &on_thread_exit); }

void register_thread_exit() {
  ThreadHeaps& t = tl_heaps;
  if (t.exit_registered) return;
  pthread_once(&g_exit_key_once, &create_exit_key);
  // Any non-null value makes the destructor run; it runs again if a later
  // destructor allocates and registers once more.
  pthread_setspecific(g_exit_key, &t);
  t.exit_registered = true;
}

core::Heap* acquire_process_heap() {
  g_process_domain.ensure_secret(entropy());
  core::Heap* h = g_process_domain.acquire_heap();
  if (h == nullptr) return nullptr;
  tl_process_heap = h;
  register_thread_exit();
  return h;
}

}  // namespace

namespace {

// Moves slot i to the front (slots 0..i-1 move back one).
void move_to_front(ThreadHeaps& t, unsigned i, core::Domain* d, core::Heap* h) {
  for (; i > 0; --i) {
    t.domain[i] = t.domain[i - 1];
    t.heap[i] = t.heap[i - 1];
  }
  t.domain[0] = d;
  t.heap[0] = h;
}

SHARD_NOINLINE core::Heap* current_heap_slow(core::Domain* d) {
  if (d == &g_process_domain) {
    core::Heap* h = tl_process_heap;
    return h->placeholder ? acquire_process_heap() : h;
  }
  ThreadHeaps& t = tl_heaps;
  for (unsigned i = 1; i < kRegionSlots; ++i) {
    if (t.domain[i] == d) {
      core::Heap* h = t.heap[i];
      move_to_front(t, i, d, h);
      return h;
    }
  }
  core::Heap* h = d->acquire_heap();
  if (h == nullptr) return nullptr;
  unsigned slot = kRegionSlots - 1;
  for (unsigned i = 0; i < kRegionSlots; ++i) {
    if (t.domain[i] == nullptr) {
      slot = i;
      break;
    }
  }
  if (t.domain[slot] != nullptr) t.domain[slot]->release_heap(t.heap[slot]);  // the least recently used
  move_to_front(t, slot, d, h);
  register_thread_exit();
  return h;
}

}  // namespace

core::Heap* current_heap(core::Domain* d) {
  // The region used last sits in slot 0 (the process domain never has a slot).
  ThreadHeaps& t = tl_heaps;
  if (SHARD_LIKELY(t.domain[0] == d)) return t.heap[0];
  return current_heap_slow(d);
}

}  // namespace shardalloc::platform
