// First-class heaps: record pool, allocation and free with accounting, destroy.
// Records and generations: docs/protocols.md (protocols 6 and 7).
#include "core/first_class.h"

#include <cstddef>
#include <new>
#include <type_traits>

#include "core/bits.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/lockfree_stack.h"
#include "core/step.h"

namespace shardalloc::core {
namespace {

static_assert(std::is_standard_layout_v<FirstClassHeap>,
              "of() casts between a record and its first member");
static_assert(offsetof(FirstClassHeap, life) == 0, "of() relies on `life` being the first member");

// Every record ever made, of every host: push-only, never shrinks (protocol 6).
constinit std::atomic<FirstClassHeap*> g_records{nullptr};

// A new incarnation: a fresh domain, nothing of the previous one kept.
void begin_incarnation(FirstClassHeap* h) {
  new (&h->domain) Domain{};
  h->domain.life = &h->life;
  h->segment_readable = nullptr;
  h->release = nullptr;
  h->span = nullptr;
  h->span_bytes = 0;
  h->span_owner = nullptr;
}

void add_block_bytes(Heap* h, int64_t bytes) {
  owner_add(h->block_bytes, bytes);  // h is the caller's heap: it alone writes the count
}

int64_t block_bytes_of(const void* p) { return int64_t(segment_of(p)->page_of(p)->block_size); }

}  // namespace

FirstClassHeap* FirstClassHeap::claim(Domain* host) {
  // acquire: records are published with release; `host` and `next_record` are immutable.
  for (FirstClassHeap* h = g_records.load(std::memory_order_acquire); h != nullptr;
       h = h->next_record) {
    if (h->life.host == host && h->life.try_claim()) {
      begin_incarnation(h);
      return h;
    }
  }
  void* mem = host->meta_alloc(sizeof(FirstClassHeap));
  if (mem == nullptr) return nullptr;
  auto* h = new (mem) FirstClassHeap{};
  h->life.host = host;
  h->life.try_claim();  // FREE(0) -> LIVE(1); nobody else can see the record yet
  begin_incarnation(h);
  // release (lockfree_stack.h): a thread walking the list sees the record's host and life word.
  push_front(g_records, h, &FirstClassHeap::next_record);
  return h;
}

FirstClassHeap* FirstClassHeap::of(Domain* d) { return reinterpret_cast<FirstClassHeap*>(d->life); }

bool FirstClassHeap::owns(const void* p) const {
  const Segment* s = segment_of(p);
  if (segment_readable != nullptr) {
    // The cookie carries this domain's secret: a header of any other domain (or none) fails it.
    return segment_readable(s) && s->cookie == domain.cookie_of(s);
  }
  return domain.is_live_segment(s);
}

void* FirstClassHeap::alloc(size_t size, size_t align) {
  Heap* h = platform::current_first_class_heap(&domain);
  if (h == nullptr) return nullptr;
  void* p = align <= kMinAlign ? h->alloc(size) : h->alloc_aligned(size, align);
  if (p != nullptr) add_block_bytes(h, block_bytes_of(p));
  return p;
}

void FirstClassHeap::free(void* p) {
  Heap* h = platform::current_first_class_heap(&domain);
  if (h == nullptr) return free_heapless(p);
  add_block_bytes(h, -block_bytes_of(p));  // before the free: a huge block's segment goes with it
  free_block(h, p);
}

void FirstClassHeap::free_heapless(void* p) {
  // relaxed: statistics summed by readers. (Read before the free: a huge block's segment goes with
  // it.)
  domain.heapless_block_bytes.fetch_sub(block_bytes_of(p), std::memory_order_relaxed);
  free_remote(&domain, segment_of(p), p);
}

void* FirstClassHeap::alloc_borrowed(size_t size, size_t align) {
  void* p = domain.alloc_borrowed(size, align);
  // relaxed: statistics summed by readers.
  if (p != nullptr)
    domain.heapless_block_bytes.fetch_add(block_bytes_of(p), std::memory_order_relaxed);
  return p;
}

size_t FirstClassHeap::used_bytes() const {
  // relaxed: each counter is exact when no call is in flight, which is all we promise.
  int64_t sum = domain.heapless_block_bytes.load(std::memory_order_relaxed);
  // acquire: heap records are published with release.
  for (Heap* h = domain.heaps.load(std::memory_order_acquire); h != nullptr;
       h = h->next_in_domain) {
    sum += h->block_bytes.load(std::memory_order_relaxed);
  }
  return sum > 0 ? size_t(sum) : 0;
}

void FirstClassHeap::drop_pins_after_fork() {
  // acquire: records are published with release. Single-threaded: the child's only thread.
  for (FirstClassHeap* h = g_records.load(std::memory_order_acquire); h != nullptr;
       h = h->next_record) {
    h->life.drop_pins();
  }
}

void FirstClassHeap::destroy() {
  Step step;  // no fork leaves the record dying or the memory half given back
  if (!life.begin_destroy()) platform::fatal("use of a destroyed heap", this);
  platform::quiesce_domain(&domain);
  if (release != nullptr) release(this);
  life.end_destroy();
}

}  // namespace shardalloc::core
