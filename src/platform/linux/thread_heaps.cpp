// Thread identity on Linux: each thread's heap per domain, cached in TLS, and
// given back (abandoned) by a pthread key destructor when the thread exits.
// No allocation: pthread keys below PTHREAD_KEYS_MAX use static storage.
#include <pthread.h>

#include "core/hooks.h"
#include "platform/linux/os_source.h"
#include "platform/linux/process_heap.h"

namespace shardalloc::platform {

constinit core::Domain g_process_domain{.source = kOsPageSource};
constinit core::Heap g_process_placeholder{&g_process_domain};
constinit thread_local core::Heap* tl_process_heap = &g_process_placeholder;

namespace {

// Heaps of region domains this thread uses; beyond this many regions the
// least recently added heap is given back (and re-adopted when needed).
constexpr unsigned kRegionSlots = 8;

struct ThreadHeaps {
  core::Domain* domain[kRegionSlots];
  core::Heap* heap[kRegionSlots];
  unsigned victim;
  bool exit_registered;
};

thread_local ThreadHeaps tl_heaps;
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

core::Heap* current_heap(core::Domain* d) {
  if (d == &g_process_domain) {
    core::Heap* h = tl_process_heap;
    return h->placeholder ? acquire_process_heap() : h;
  }
  ThreadHeaps& t = tl_heaps;
  for (unsigned i = 0; i < kRegionSlots; ++i) {
    if (t.domain[i] == d) return t.heap[i];
  }
  core::Heap* h = d->acquire_heap();
  if (h == nullptr) return nullptr;
  unsigned slot = kRegionSlots;
  for (unsigned i = 0; i < kRegionSlots && slot == kRegionSlots; ++i) {
    if (t.domain[i] == nullptr) slot = i;
  }
  if (slot == kRegionSlots) {
    slot = t.victim;
    t.victim = (t.victim + 1) % kRegionSlots;
    t.domain[slot]->release_heap(t.heap[slot]);
  }
  t.domain[slot] = d;
  t.heap[slot] = h;
  register_thread_exit();
  return h;
}

}  // namespace shardalloc::platform
