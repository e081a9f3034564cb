// Thread identity on Linux: each thread's heap per domain, cached in TLS, and
// given back (abandoned) by a pthread key destructor when the thread exits.
// No allocation: glibc keeps the values of keys 0-31 in static storage (keys
// from 32 on: see register_thread_exit).
//
// Domains that can be destroyed (first-class heaps, core/first_class.h): a
// cache entry keeps the domain's generation. An entry whose incarnation is
// over (destroyed, or the record reused by a new heap) is dropped without
// touching its heap, which went with the domain's memory; a live one is given
// back under a pin, so destroy waits instead of unmapping under our feet
// (protocol 7 of docs/protocols.md).
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "core/domain_life.h"
#include "core/hooks.h"
#include "core/step.h"
#include "platform/linux/call_guard.h"
#include "platform/linux/heap_profile.h"
#include "platform/linux/os_source.h"
#include "platform/linux/process_heap.h"
#include "platform/linux/region_heaps.h"
#include "platform/linux/remote_batches.h"

// glibc's registration of a thread_local's destructor (weak: other C libraries).
extern "C" int __cxa_thread_atexit_impl(void (*fn)(void*), void* obj, void* dso)
    __attribute__((weak));
extern "C" void* __dso_handle;  // this library's (crtbegin.o)

namespace shardalloc::platform {

constinit core::Domain g_process_domain{.source = kProcessPageSource};
constinit core::Heap g_process_placeholder{&g_process_domain};
constinit core::Heap g_process_busy{&g_process_domain};
constinit thread_local ThreadState tl_thread{};
// Heaps of region domains and first-class heaps this thread uses
// (region_heaps.h), most recently used first; beyond kRegionSlots domains the
// least recently used heap is given back (and re-adopted when needed).
constinit thread_local ThreadHeaps tl_heaps{};

namespace {

pthread_key_t g_exit_key;
bool g_exit_key_made = false;  // written once under g_exit_key_once
pthread_once_t g_exit_key_once = PTHREAD_ONCE_INIT;

// True when slot i holds a heap of a domain incarnation that is over.
bool is_stale(const ThreadHeaps& t, unsigned i) {
  return t.life[i] != nullptr && !t.life[i]->is_current(t.generation[i]);
}

void clear_slot(ThreadHeaps& t, unsigned i) {
  t.domain[i] = nullptr;
  t.heap[i] = nullptr;
  t.life[i] = nullptr;
  t.generation[i] = 0;
}

// Blocks every signal but those a fault raises (SIGSEGV, SIGBUS, SIGFPE,
// SIGILL, SIGTRAP, SIGSYS, SIGABRT: a handler for those must still run) for a scope.
struct AsyncSignalsBlocked {
  sigset_t saved;
  AsyncSignalsBlocked() {
    sigset_t mask;
    sigfillset(&mask);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT})
      sigdelset(&mask, sig);
    pthread_sigmask(SIG_BLOCK, &mask, &saved);
  }
  ~AsyncSignalsBlocked() { pthread_sigmask(SIG_SETMASK, &saved, nullptr); }
  AsyncSignalsBlocked(const AsyncSignalsBlocked&) = delete;
  AsyncSignalsBlocked& operator=(const AsyncSignalsBlocked&) = delete;
};

// Gives back (abandons) the heap in slot i, unless its domain was destroyed,
// and empties the slot.
void give_back(ThreadHeaps& t, unsigned i) {
  core::Domain* d = t.domain[i];
  core::Heap* h = t.heap[i];
  core::DomainLife* life = t.life[i];
  const uint32_t generation = t.generation[i];
  clear_slot(t, i);
  if (h == nullptr) return;
  if (life == nullptr) {
    d->release_heap(h);
    return;
  }
  // The pin keeps destroy from taking the memory while we give the heap back;
  // it fails once the incarnation is over: the heap is gone, nothing to do.
  // A step (a fork waits for it), with asynchronous signals blocked: a fork
  // from a handler never copies a pin of the forking thread itself, so a
  // child drops every pin it finds (FirstClassHeap::drop_pins_after_fork).
  AsyncSignalsBlocked no_handlers;
  core::Step step;
  if (!life->try_pin(generation)) return;
  d->release_heap(h);
  life->unpin();
}

void on_thread_exit(void*) {
  // Already in a call: the thread ends inside one, cut off by an asynchronous
  // pthread_cancel or a pthread_exit from a signal handler that interrupted
  // it, so its heaps, heap cache and remote batch may be half updated. Giving
  // them back would hand that to the next adopter (a review's program: an
  // exiting thread spun for ever in Page::take_sealed_list, checked builds
  // reported use after free in other threads); they stay the dead thread's,
  // a leak, as with no exit hook. (Also a second run of this destructor,
  // which finds nothing left to give back.)
  // A step the thread ended in (in a call, or in a path that needs none,
  // such as a huge block's free) never ends: later forks must not wait for
  // it (a review's program: every fork waited 200-400 ms from then on).
  drop_steps_of_ending_thread();
  // Its table lock, maybe held: also outside a call (shard_profile_write's
  // snapshot; test AdversarialDeath.ThreadsExitingFromAHandlerInsideShard...).
  heap_profile_thread_ended_in_call();
  if (in_call()) return;
  // In a call: a signal handler's free meanwhile must not reorder the slots
  // behind the loop (it takes the interrupted path instead).
  CallScope call;
  // Before the heaps: a block of the batch may be of a page of one of them.
  core::RemoteBatch* batch = tl_thread.remote_batch;
  tl_thread.remote_batch = nullptr;
  if (batch != nullptr && batch != &g_no_remote_batch) {
    core::flush_remote_batch(*batch);
    release_remote_batch(batch);
  }
  ThreadHeaps& t = tl_heaps;
  for (unsigned i = 0; i < kRegionSlots; ++i) give_back(t, i);
  core::Heap* h = tl_thread.own_heap;
  // From now on the thread caches no heap: every later call (a later key
  // destructor's, a signal handler's) takes the interrupted paths, which
  // borrow a heap or free like a remote thread, so no heap can stay owned by
  // the thread once it is gone. (The scope's end makes g_process_busy the
  // fast paths' heap too.)
  tl_thread.own_heap = &g_process_busy;
  if (!h->placeholder) g_process_domain.release_heap(h);
}

// Every key taken (PTHREAD_KEYS_MAX): threads then keep their heaps when
// they exit (a leak, as with no exit hook), rather than setting a key that
// is not ours (g_exit_key would read 0: another library's key).
void create_exit_key() { g_exit_key_made = pthread_key_create(&g_exit_key, &on_thread_exit) == 0; }

// glibc: the values of keys 0-31 live in the thread descriptor; those of
// later keys in blocks of 32 that pthread_setspecific callocs per thread.
constexpr pthread_key_t kStaticKeys = 32;

void register_thread_exit() {
  ThreadHeaps& t = tl_heaps;
  if (t.exit_registered) return;
  pthread_once(&g_exit_key_once, &create_exit_key);
  // Any non-null value makes the destructor run (once: after it the thread
  // acquires no heap, see on_thread_exit).
  if (g_exit_key_made) pthread_setspecific(g_exit_key, &t);
  t.exit_registered = true;
  // A program that made 32 keys before its first allocation leaves ours in a
  // block that pthread_setspecific callocs. When the thread's first
  // allocation is that calloc, made by the program's own pthread_setspecific
  // on a key of the same block, ours (nested in it) callocs a block too, and
  // the outer call then installs its block over ours: the registration is
  // lost and the heap stays owned for good (snmalloc's multi_setspecific;
  // 200 such threads kept 200 heaps and 400 segments). So there the exit is
  // also registered as a thread_local destructor would be, which glibc
  // lists without such a race (its calloc, nested here too, comes before it
  // reads the list head). on_thread_exit runs twice then (thread_local
  // destructors first), which does nothing the second time. Not for the
  // main thread: those destructors run at exit(), before atexit handlers.
  if (g_exit_key_made && g_exit_key >= kStaticKeys && __cxa_thread_atexit_impl != nullptr &&
      getpid() != gettid()) {
    __cxa_thread_atexit_impl(&on_thread_exit, &t, &__dso_handle);
  }
}

core::Heap* acquire_process_heap() {
  // Before the heap: a thread cancelled asynchronously inside acquire_heap
  // (steps, an adoption) must still run on_thread_exit, which then finds it
  // died in a call (a review's program: 180 of 300 threads cancelled early
  // had no exit hook, and every later fork waited 200 ms for their steps).
  register_thread_exit();
  g_process_domain.ensure_secret(entropy());
  core::Heap* h = g_process_domain.acquire_heap();
  if (h == nullptr) return nullptr;
  tl_thread.own_heap = h;  // in a call: leaving it makes h the fast paths' heap
  return h;
}

// Moves the entry of slot i to the front (slots 0..i-1 move back one).
core::Heap* move_to_front(ThreadHeaps& t, unsigned i) {
  core::Domain* d = t.domain[i];
  core::Heap* h = t.heap[i];
  core::DomainLife* life = t.life[i];
  const uint32_t generation = t.generation[i];
  for (; i > 0; --i) {
    t.domain[i] = t.domain[i - 1];
    t.heap[i] = t.heap[i - 1];
    t.life[i] = t.life[i - 1];
    t.generation[i] = t.generation[i - 1];
  }
  t.domain[0] = d;
  t.heap[0] = h;
  t.life[0] = life;
  t.generation[0] = generation;
  return h;
}

// A slot for a new entry: an empty one, else one whose domain is gone, else
// the least recently used (its heap given back).
unsigned free_slot(ThreadHeaps& t) {
  for (unsigned i = 0; i < kRegionSlots; ++i) {
    if (t.domain[i] == nullptr) return i;
  }
  for (unsigned i = 0; i < kRegionSlots; ++i) {
    if (is_stale(t, i)) {
      clear_slot(t, i);
      return i;
    }
  }
  give_back(t, kRegionSlots - 1);
  return kRegionSlots - 1;
}

// Acquires a heap in d and caches it in front.
SHARD_NOINLINE core::Heap* acquire_cached_heap(ThreadHeaps& t, core::Domain* d) {
  register_thread_exit();  // before the heap, as in acquire_process_heap
  core::Heap* h = d->acquire_heap();
  if (h == nullptr) return nullptr;
  const unsigned slot = free_slot(t);
  t.domain[slot] = d;
  t.heap[slot] = h;
  t.life[slot] = d->life;
  t.generation[slot] = d->life != nullptr ? d->life->generation() : 0;
  return move_to_front(t, slot);
}

SHARD_NOINLINE core::Heap* current_heap_slow(core::Domain* d) {
  if (d == &g_process_domain) {
    core::Heap* h = tl_thread.own_heap;
    return h->placeholder ? acquire_process_heap() : h;
  }
  // A region's entry is never stale (a first-class heap's domain, which
  // lives in a record, is never a region's): the domain alone decides.
  ThreadHeaps& t = tl_heaps;
  for (unsigned i = 1; i < kRegionSlots; ++i) {
    if (t.domain[i] == d) return move_to_front(t, i);
  }
  return acquire_cached_heap(t, d);
}

// A first-class heap's domain missed in the cache (or hit an entry of an
// earlier incarnation): drops such entries, then acquires.
SHARD_NOINLINE core::Heap* first_class_miss(core::Domain* d) {
  ThreadHeaps& t = tl_heaps;
  for (unsigned i = 0; i < kRegionSlots; ++i) {
    if (t.domain[i] == d) clear_slot(t, i);  // stale: its heap went with the memory
  }
  return acquire_cached_heap(t, d);
}

}  // namespace

constinit core::RemoteBatch g_no_remote_batch{};

core::RemoteBatch* first_remote_batch() {
  core::RemoteBatch* batch = claim_remote_batch(reinterpret_cast<uintptr_t>(&tl_thread));
  if (batch == nullptr) batch = &g_no_remote_batch;  // not claimed again by this thread
  register_thread_exit();
  tl_thread.remote_batch = batch;
  return batch;
}

core::Heap* current_heap(core::Domain* d) {
  // The domain used last sits in slot 0 (the process domain never has a slot).
  ThreadHeaps& t = tl_heaps;
  if (SHARD_LIKELY(t.domain[0] == d)) return t.heap[0];
  return current_heap_slow(d);
}

core::Heap* current_first_class_heap(core::Domain* d) {
  ThreadHeaps& t = tl_heaps;
  unsigned i = 0;
  while (i < kRegionSlots && t.domain[i] != d) ++i;
  // An entry of d always has its `life` (d's) and a heap.
  if (SHARD_LIKELY(i < kRegionSlots) && SHARD_LIKELY(t.life[i]->is_current(t.generation[i]))) {
    return i == 0 ? t.heap[0] : move_to_front(t, i);
  }
  return first_class_miss(d);
}

void quiesce_domain(core::Domain* d) {
  // Pins are held only while a thread gives one heap back: short, and never
  // waiting for anything; yield so that the holder gets to run.
  while (d->life->pinned()) sched_yield();
}

}  // namespace shardalloc::platform
