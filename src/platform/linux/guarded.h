// Guarded sampling's pool (GWP-ASan style; docs/reliability.md, section 7):
// a run of OS pages reserved once, each slot one page between inaccessible
// guard pages:
//
//   [guard][slot 0][guard][slot 1][guard] ... [slot N-1][guard]
//
// A block sits against the end of its slot, rounded down to its alignment
// (at least 16), so an overflow past the slot faults at once (a zero-size
// block sits at the slot's end itself: any access to it faults); the bytes
// between the size asked for and the slot's end (less than the alignment)
// hold a keyed pattern checked at free. A freed slot is made inaccessible
// (its page dropped) and reused oldest-freed first, so a use after free
// faults until the slot is handed out again. A SIGSEGV / SIGBUS handler,
// installed when the pool is reserved and chained to the previous one,
// turns a fault in the pool into a report naming the bug, the block and
// the allocation and free sites, then aborts.
//
// Which allocations go here: the samples of the process heap's allocation
// trigger (core/heap_sample.cpp), replaced in platform/linux/sampling.cpp
// when the rate is not 0. free, realloc, calloc and malloc_usable_size
// recognise pool pointers on their "not in an arena" paths, which the fast
// paths already branch to for foreign pointers.
//
// Thread safety: every function may be called from any thread at once
// (slot states are claimed by CAS; no lock).
#pragma once
#include <cstddef>
#include <cstdint>

namespace shardalloc::platform {

inline constexpr size_t kGuardedSlots = 256;
inline constexpr size_t kGuardedPage = 4096;
// The largest block (and alignment) a slot takes.
inline constexpr size_t kGuardedMaxSize = kGuardedPage;

// A block of `size` bytes aligned to `align` (a power of two; 0 = 16) in a
// slot of its own; null when size or align is over kGuardedMaxSize, no slot
// is free or the pool cannot be reserved. Reserves the pool on first use.
void* guarded_alloc(size_t size, size_t align);
// True when p lies in the pool (any address of it: slots and guards).
bool guarded_owns(const void* p);
// Frees p (guarded_owns(p)): aborts with a report for a pointer that is not
// a live block's start (double free, interior pointer) or an overwritten
// alignment slack (overflow).
void guarded_free(void* p);
// The same, naming `site` as the allocation / free site in reports (the
// two above name their caller).
void* guarded_alloc_at(size_t size, size_t align, const void* site);
void guarded_free_at(void* p, const void* site);
// The size asked for at p's allocation (p a live pool block).
size_t guarded_usable_size(const void* p);

// In a fork child (fork_gate.cpp): a reservation of the pool that the fork
// cut in another thread is given up, so that the child reserves it again.
void guarded_after_fork_in_child();

// The sampling rate from SHARDALLOC_GUARDED_RATE or shard_guarded_set_rate:
// mean number of bytes allocated (by the process heap) per guarded sample;
// 0 = off (the default).
uint64_t guarded_rate();
void set_guarded_rate(uint64_t rate);

// sampling.cpp: turns the process heap's sampling trigger on when the rate
// is not 0 (not in checked builds): for heaps made from now on, and for
// every existing heap (all_heaps: before other threads start, the options
// constructor) or the calling thread's own (the API, any time).
void guarded_sampling_start(bool all_heaps);
// Frees p, a pool block (guarded_owns(p)), and drops it from the heap
// profile when the profiler recorded it.
void guarded_sample_freed(void* p);

}  // namespace shardalloc::platform
