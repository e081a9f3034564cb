// CPU identity on a bare-metal kernel: each CPU's heap per region.
//
// The kernel says which CPU runs (shard_set_cpu_hook, region.h); each region
// (domain) gets a table of one heap per CPU, allocated from the region's own
// metadata on first use. A CPU acquires its heap on its first call and keeps
// it for good: the CPU is the owner (Heap::owned stays 1), so a call must not
// migrate and must not be re-entered on the same CPU (region.h).
//
// First-class heaps bound to a region (core/first_class.h) are domains too,
// but destroyable: their table lives in the metadata of the region that holds
// the heap's record (the `host`, permanent), not in the heap's own memory, and
// each CPU's slot keeps the generation of the heap it was acquired in. After
// destroy (and maybe reuse of the record by a new heap) the slot's generation
// no longer matches: the CPU acquires a heap in the new incarnation and never
// touches the old one, which went with the memory.
//
// Shared state:
//   g_cpu_hook, g_cpu_count: written by shard_set_cpu_hook before any table
//     exists (the caller's contract: before the first alloc/dealloc); read-only after.
//   g_tables: push-only list of per-domain tables (protocol 6 of
//     docs/protocols.md): a table is fully built before the release CAS that
//     publishes it and is never removed; its `domain` and `next` are immutable.
//   CpuTable::slots()[c]: written and read only by CPU c.
//   Domain::platform_record: the domain's table once found (a cache of the
//     walk: a region made at boot paid for every later region and
//     region-bound heap record at every call, 38 ns -> 4.7 us after 1000).
#include <atomic>

#include "core/domain.h"
#include "core/domain_life.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/lockfree_stack.h"
#include "shardalloc/region.h"

namespace shardalloc::platform {
namespace {

// A CPU's heap in a domain, and for a first-class heap's domain the
// generation it belongs to.
struct CpuSlot {
  core::Heap* heap;
  uint32_t generation;
};

// A table header, followed in the same allocation by g_cpu_count slots.
struct CpuTable {
  core::Domain* domain;
  CpuTable* next;
  CpuSlot* slots() { return reinterpret_cast<CpuSlot*>(this + 1); }
};

constexpr size_t table_bytes(unsigned cpus) { return sizeof(CpuTable) + cpus * sizeof(CpuSlot); }
static_assert(core::align_up(table_bytes(SHARD_CPU_COUNT_MAX), 64) <= core::Domain::kMetaAllocMax &&
                  core::align_up(table_bytes(SHARD_CPU_COUNT_MAX + 1), 64) >
                      core::Domain::kMetaAllocMax,
              "SHARD_CPU_COUNT_MAX (region.h): the most CPUs whose table a slot of metadata holds");

std::atomic<unsigned (*)()> g_cpu_hook{nullptr};
std::atomic<unsigned> g_cpu_count{1};
std::atomic<CpuTable*> g_tables{nullptr};

CpuTable* find_table(CpuTable* t, const core::Domain* d) {
  while (t != nullptr && t->domain != d) t = t->next;
  return t;
}

// The table of d from the list, published when it has none yet: from d's
// metadata, or for a first-class heap from its host's (which outlives every
// destroy). Null when out of memory.
CpuTable* find_or_publish_table(core::Domain* d) {
  // acquire: pairs with the release CAS that published each table.
  CpuTable* head = g_tables.load(std::memory_order_acquire);
  if (CpuTable* t = find_table(head, d)) return t;
  core::Domain* meta = d->life != nullptr ? d->life->host : d;
  // relaxed: fixed before the first table exists.
  auto* mine = static_cast<CpuTable*>(
      meta->meta_alloc(table_bytes(g_cpu_count.load(std::memory_order_relaxed))));
  if (mine == nullptr) return nullptr;
  mine->domain = d;  // meta_alloc zeroed the heap slots
  for (;;) {
    // release (core/lockfree_stack.h): the table's fields are visible to whoever finds it.
    // acquire on failure: we walk the tables pushed meanwhile.
    if (core::try_push_front(g_tables, head, mine, &CpuTable::next, std::memory_order_release,
                             std::memory_order_acquire))
      return mine;
    // Another CPU may have published d's table first: use that one. Ours
    // stays unused in the metadata: table_bytes (16 bytes a CPU) for each
    // CPU that lost the race, once per domain (a known limit, kernel.md).
    if (CpuTable* t = find_table(head, d)) return t;
  }
}

// The table of d: the one d keeps, else from the list (kept from then on).
CpuTable* table_of(core::Domain* d) {
  // acquire: pairs with the release store below (the table's fields).
  if (void* kept = d->platform_record.load(std::memory_order_acquire))
    return static_cast<CpuTable*>(kept);
  CpuTable* t = find_or_publish_table(d);
  // release: a CPU that reads the kept table sees its fields. (Racing CPUs
  // store the same table: a domain has one in the list.)
  if (t != nullptr) d->platform_record.store(t, std::memory_order_release);
  return t;
}

// The calling CPU's slot in d's table; null when out of memory.
SHARD_INLINE CpuSlot* cpu_slot(core::Domain* d) {
  // relaxed: both are set before any CPU but the boot CPU calls (region.h).
  unsigned (*hook)() = g_cpu_hook.load(std::memory_order_relaxed);
  const unsigned cpu = hook != nullptr ? hook() : 0;
  if (SHARD_UNLIKELY(cpu >= g_cpu_count.load(std::memory_order_relaxed))) {
    fatal("current_cpu() returned an id >= cpu_count",
          reinterpret_cast<const void*>(uintptr_t(cpu)));
  }
  CpuTable* t = table_of(d);
  if (SHARD_UNLIKELY(t == nullptr)) return nullptr;
  return &t->slots()[cpu];
}

}  // namespace

core::Heap* current_heap(core::Domain* d) {
  CpuSlot* slot = cpu_slot(d);
  if (SHARD_UNLIKELY(slot == nullptr)) return nullptr;
  if (SHARD_LIKELY(slot->heap != nullptr)) return slot->heap;
  slot->heap = d->acquire_heap();  // adopts a heap nobody owns or makes one; null if out of memory
  return slot->heap;
}

core::Heap* current_first_class_heap(core::Domain* d) {
  CpuSlot* slot = cpu_slot(d);
  if (SHARD_UNLIKELY(slot == nullptr)) return nullptr;
  const uint32_t generation = d->life->generation();
  if (SHARD_LIKELY(slot->heap != nullptr && slot->generation == generation)) return slot->heap;
  // No heap yet, or one of an earlier heap on this record (gone with its memory).
  slot->heap = d->acquire_heap();
  slot->generation = generation;
  return slot->heap;
}

}  // namespace shardalloc::platform

extern "C" __attribute__((visibility("default"))) shard_status shard_set_cpu_hook(
    unsigned (*current_cpu)(void), unsigned cpu_count) {
  using namespace shardalloc::platform;
  if (cpu_count == 0 || cpu_count > SHARD_CPU_COUNT_MAX ||
      (current_cpu == nullptr && cpu_count != 1))
    return SHARD_INVALID_PARAM;
  // acquire: see whether a table (and with it a CPU's heap) already exists.
  if (g_tables.load(std::memory_order_acquire) != nullptr) {
    // Too late to change; the same settings again are harmless.
    const bool same = g_cpu_hook.load(std::memory_order_relaxed) == current_cpu &&
                      g_cpu_count.load(std::memory_order_relaxed) == cpu_count;
    return same ? SHARD_OK : SHARD_INVALID_PARAM;
  }
  // relaxed: the kernel starts its other CPUs (a release/acquire of its own) after this call.
  g_cpu_count.store(cpu_count, std::memory_order_relaxed);
  g_cpu_hook.store(current_cpu, std::memory_order_relaxed);
  return SHARD_OK;
}
