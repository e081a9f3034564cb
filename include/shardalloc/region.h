/* shardalloc region API: the kernel / embedded interface (ArceOS ByteAllocator shape).
 *
 * A region allocator manages memory handed over by its caller; it never asks
 * the OS for memory. Its whole state (this struct, its heaps, its bitmaps)
 * lives inside the memory it manages.
 *
 * Thread safety: every function may be called from any number of threads at
 * once. alloc and dealloc are lock-free: each thread gets its own heap inside
 * the region on its first call (no extra call needed); blocks freed by another
 * thread go back with one CAS. A thread that exits gives its heap up and a
 * later thread adopts it, so no memory is lost. In a kernel (the freestanding
 * library) it is CPUs rather than threads that get heaps: see
 * shard_set_cpu_hook at the end of this header for what the kernel must
 * guarantee. Hosted, a thread keeps its heaps of the 8 regions (and
 * first-class heaps) it used last at hand; a call into a ninth gives the
 * least recently used one back and takes it again later, at a cost in
 * proportion to that heap's pages (docs/heaps.md): a thread that goes round
 * more than 8 regions pays it at every switch.
 *
 * Accounting (exact whenever no call is in flight; read while calls run,
 * each figure may be off by what those calls move, and is at most the
 * total_bytes of any later read: read used or available first, then total,
 * and total - used never wraps):
 *   total_bytes     = sum of the sizes passed to init and add_memory.
 *   used_bytes      = sum of the `size` arguments of live allocations.
 *   available_bytes = total_bytes - used_bytes - overhead, where overhead is
 *                     metadata (this header, arena bitmaps and a byte per
 *                     slot, heap records,
 *                     segment headers of segments in use, edges lost to
 *                     alignment) plus the rounding of live blocks up to their
 *                     size class. A huge block over n slots (512 KiB
 *                     each) takes n slots less their 2 KiB headers. It is
 *                     an upper bound on what can still be allocated in
 *                     blocks of up to one slot: blocks of one size class
 *                     cannot serve another. A block over n slots needs only
 *                     its first slot's header, so one such block may be up
 *                     to (n - 1) * 2 KiB larger than available_bytes.
 */
#ifndef SHARDALLOC_REGION_H
#define SHARDALLOC_REGION_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shard_region shard_region; /* its state lives inside the memory it manages */

typedef enum shard_status {
  SHARD_OK = 0,
  SHARD_INVALID_PARAM,  /* NULL pointer, zero/too small size, align not a power of two */
  SHARD_MEMORY_OVERLAP, /* add_memory range overlaps memory the region has, or memory another
                           add_memory call is adding at the same time */
  SHARD_NO_MEMORY,      /* request cannot be served now; add memory and retry */
  SHARD_NOT_ALLOCATED   /* dealloc of a pointer this region did not hand out */
} shard_status;

/* Smallest region init accepts, whatever its alignment. */
#define SHARD_REGION_MIN_SIZE ((size_t)1 << 20)
/* The largest cpu_count shard_set_cpu_hook takes: a region's table of CPU
 * heaps (16 bytes a CPU) must fit in one 512 KiB slot of metadata. */
#define SHARD_CPU_COUNT_MAX 32763u

/* Turns [start, start+size) into a region allocator; *out receives it.
 * Any start and size are accepted; memory is aligned internally (a range
 * that ends exactly at the top of the address space, 2^64, leaves its last
 * byte unused: the end is kept as an address; one that wraps past 2^64 is
 * SHARD_INVALID_PARAM). A region lives for the rest of the program: there is
 * no destroy, its memory (all that init and add_memory were given) must stay
 * mapped and must not be used for anything else, a new region included:
 * threads (in a kernel: CPU tables) keep heaps in it, found by its address. */
shard_status shard_region_init(shard_region** out, void* start, size_t size);
/* Hands more memory over. May be called at any time, from any thread, also
 * by several at once (of two calls given overlapping ranges at the same
 * time, at most one takes its range). A range too small to hold one segment
 * is SHARD_INVALID_PARAM, overlapping or not. */
shard_status shard_region_add_memory(shard_region* r, void* start, size_t size);
/* size 0 allocates a minimal block. align: a power of two (0 is taken as 1). */
shard_status shard_region_alloc(shard_region* r, size_t size, size_t align, void** out);
/* size and align as given to alloc. An unknown ptr gives SHARD_NOT_ALLOCATED
 * and changes nothing, but for a block start of a page in use that sits on a
 * free list (freed earlier and not on top of it, or below the page's capacity
 * and never handed out): pages keep no per-block state, so that one is freed
 * again (docs/hostile-input.md R24, R24b). */
shard_status shard_region_dealloc(shard_region* r, void* ptr, size_t size, size_t align);
size_t shard_region_total_bytes(const shard_region* r);
size_t shard_region_used_bytes(const shard_region* r);
size_t shard_region_available_bytes(const shard_region* r);
/* Gives back to r what the calling thread's (in a kernel: CPU's) heap there
 * keeps: the empty pages it holds for reuse, and every page whose blocks
 * other threads freed. Only a heap's owner can take remote frees back into
 * its pages, so a thread whose blocks others free while it allocates nothing
 * holds them: used_bytes reads 0 while another thread gets SHARD_NO_MEMORY.
 * A thread that runs out asks every other heap of r to give back; each does
 * at its next allocation that needs a new page (hosted: at most once per
 * 10 ms per heap, so that a thread retrying a failed allocation in a loop
 * does not slow every other one down; a later slow path answers). An idle CPU does at this
 * call: a kernel makes it from its idle loop, or from an interrupt it sends
 * every CPU when an allocation fails. SHARD_OK; SHARD_INVALID_PARAM for a
 * NULL r; a call from a signal handler that interrupted a call into r (or
 * one with no heap to be had) gives nothing back and returns SHARD_OK. */
shard_status shard_region_collect(shard_region* r);
/* Checks the calling thread's (in a kernel: CPU's) heap in r the way
 * shard_check_heap does; returns the blocks it looked at, 0 for a NULL r,
 * when no heap can be had, and where shard_check_heap returns 0. On an inconsistency it reports
 * through the fatal path (stderr + abort when hosted, the fatal hook in a kernel). */
size_t shard_region_check_heap(shard_region* r);

/* ---- Kernels: the bare-metal platform -----------------------------------
 * The two functions below exist only in the freestanding library
 * (libshardalloc_freestanding.a, src/platform/bare/; see docs/kernel.md).
 * Hosted builds tell threads apart themselves and do not define them.
 *
 * CPUs instead of threads: each CPU gets its own heap in each region on its
 * first alloc or dealloc there, and keeps it (CPU heaps are never given up).
 * The kernel says which CPU is running:
 *   current_cpu  returns the calling CPU's id, in [0, cpu_count). It runs on
 *                every alloc and dealloc, so it must be cheap (read a per-CPU
 *                register), must not call shardalloc, and must work wherever
 *                alloc and dealloc are called. NULL: every call is CPU 0
 *                (cpu_count must then be 1).
 *   cpu_count    the number of possible CPU ids, CPUs that may come online
 *                later included. An id >= cpu_count is a fatal error.
 * Call it once, before the first alloc or dealloc on any region (before
 * starting the secondary CPUs is simplest). Until then every call counts as
 * CPU 0, which is right only for a kernel that runs on one CPU. Returns
 * SHARD_INVALID_PARAM for cpu_count 0 or above SHARD_CPU_COUNT_MAX, for a
 * NULL hook with cpu_count > 1, and for new settings once CPU heaps exist
 * (the same settings give SHARD_OK).
 *
 * What the kernel must guarantee for each alloc and dealloc call (a CPU's
 * heap has no lock: the CPU is its owner):
 *   - no migration: the call runs on one CPU from entry to return;
 *   - no reentry: no other shardalloc call starts on that CPU before it
 *     returns (from an interrupt or exception handler, or another thread
 *     scheduled onto the CPU).
 * So: in a preemptible kernel, disable preemption around each call; if
 * interrupt handlers allocate or free, disable local interrupts around each
 * call as well (what a kernel's spin_lock_irqsave around a global allocator
 * does, minus the lock). Preemption and migration between calls are fine, a
 * block may be freed on any CPU, and calls on different CPUs never wait for
 * each other. Breaking either rule corrupts that CPU's heap, undetected. */
shard_status shard_set_cpu_hook(unsigned (*current_cpu)(void), unsigned cpu_count);

/* Called on a fatal error (a double free that slipped past dealloc's checks,
 * a CPU id out of range): `what` says what went wrong, `ptr` which pointer
 * (or value). It must not return; if it does, or if none is set, the CPU
 * executes a trap instruction (__builtin_trap) forever. */
void shard_set_fatal_hook(void (*fatal)(const char* what, const void* ptr));

#ifdef __cplusplus
}
#endif

#endif
