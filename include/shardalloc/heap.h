/* shardalloc first-class heaps: heaps you create, allocate from on any
 * thread, and destroy at once with every block still in them (arena style).
 * See docs/heaps.md.
 *
 * Two kinds, one handle type:
 *   shard_heap_new()                memory from the OS (hosted library only)
 *   shard_heap_new_in_region(r, n)  memory taken from region r as one block
 *                                   (hosted and freestanding libraries)
 *
 * Thread safety: any number of threads may call any function on the same
 * heap at once, except destroy. malloc and free are lock-free: each thread
 * allocates from its own part of the heap (made on its first call there) and
 * any thread may free any block of the heap.
 *
 * Destroy: shard_heap_destroy(h) frees every block of h at once and gives all
 * of h's memory back (an OS heap's arenas are unmapped; a region-bound heap's
 * block goes back to its region). It does not walk the blocks. The caller
 * guarantees that no other call on h is in flight while it runs, and that no
 * block of h is used (read, written or freed) afterwards. Threads that used h
 * may go on running, or exit, at any time (during destroy too). The handle is
 * invalid afterwards; a later shard_heap_new may hand out the same handle
 * value for a new heap. A call on a destroyed handle that no new heap has
 * reused stops with "use of a destroyed heap".
 *
 * Errors: a request that cannot be served returns NULL with errno = ENOMEM
 * (no memory left, size or alignment above 2^62, calloc overflow); a bad
 * argument returns NULL with errno = EINVAL (NULL heap or region, alignment
 * not a power of two, a region span below SHARD_HEAP_REGION_MIN_BYTES). The
 * freestanding library returns the same NULLs and has no errno. A pointer
 * that is not a live block of h, given to shard_heap_free or
 * shard_heap_realloc, stops the program: one line on stderr
 * ("shardalloc: fatal: free of a pointer that is not allocated (pointer 0x...)"),
 * then abort() (in a kernel: the fatal hook of region.h); shard_heap_realloc
 * says "realloc of a pointer that is not allocated", or "realloc of a freed
 * block (use after free)" for a block on top of its page's free lists. A
 * block freed twice in a row stops it as "double free detected". (Pages keep
 * no per-block state: some stale pointers are not caught, docs/heaps.md.)
 *
 * Blocks and the process heap's functions: a block of an OS heap may also be
 * freed with shard_free (or free() under the malloc override); it goes back
 * to its heap. shard_usable_size works on it; shard_realloc moves it into the
 * process heap, always (also when the new size fits). Blocks of a
 * region-bound heap are freed only by shard_heap_free (or destroy):
 * shard_free stops ("not allocated") and shard_region_dealloc returns
 * SHARD_NOT_ALLOCATED for them. */
#ifndef SHARDALLOC_HEAP_H
#define SHARDALLOC_HEAP_H

#include <stddef.h>

#include "shardalloc/region.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shard_heap shard_heap;

/* The smallest span shard_heap_new_in_region takes from a region. */
#define SHARD_HEAP_REGION_MIN_BYTES ((size_t)1 << 20)

/* A new heap over OS memory. Its arenas (64 MiB of address space each; only
 * pages in use are resident) are mapped when allocations need them; an
 * allocation the OS refuses memory for returns NULL (ENOMEM). NULL + ENOMEM
 * when not even the heap's record can be had. Hosted library only. */
shard_heap* shard_heap_new(void);

/* A new heap over `bytes` bytes taken from region r as one block
 * (shard_region_alloc(r, bytes, 1, ...)), which counts as used in r until
 * destroy gives it back. The first 512 KiB segment slot of the block holds
 * the heap's metadata; the rest serves blocks. The heap never grows: once it
 * is full its allocations return NULL (ENOMEM). NULL + EINVAL for a NULL r or
 * bytes < SHARD_HEAP_REGION_MIN_BYTES; NULL + ENOMEM when r cannot serve it. */
shard_heap* shard_heap_new_in_region(shard_region* r, size_t bytes);

/* Frees every block of h and gives its memory back (see above for the
 * preconditions). NULL: nothing. */
void shard_heap_destroy(shard_heap* h);

/* malloc semantics within h: size 0 gives a unique minimal block; every
 * block is 16-aligned (alignof(max_align_t)). */
void* shard_heap_malloc(shard_heap* h, size_t size);
void* shard_heap_calloc(shard_heap* h, size_t count, size_t size);
/* align: any power of two (up to 64 MiB is guaranteed in an OS heap; a
 * region-bound heap serves what its span can hold); else NULL + EINVAL. */
void* shard_heap_malloc_aligned(shard_heap* h, size_t size, size_t align);
/* realloc semantics within h: NULL p allocates; size 0 frees p and returns
 * NULL; on failure NULL (ENOMEM) and p is untouched. The new block is in h. */
void* shard_heap_realloc(shard_heap* h, void* ptr, size_t size);
/* Frees a block of h, from any thread. NULL ptr: nothing. */
void shard_heap_free(shard_heap* h, void* ptr);

/* Sum of the block sizes of h's live blocks (each >= the size asked for);
 * 0 for NULL. Exact when no call on h is in flight; blocks freed by other
 * threads count as freed at once. */
size_t shard_heap_used_bytes(const shard_heap* h);

#ifdef __cplusplus
}
#endif

#endif
