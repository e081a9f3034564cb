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
 * later thread adopts it, so no memory is lost.
 *
 * Accounting (exact whenever no call is in flight):
 *   total_bytes     = sum of the sizes passed to init and add_memory.
 *   used_bytes      = sum of the `size` arguments of live allocations.
 *   available_bytes = total_bytes - used_bytes - overhead, where overhead is
 *                     metadata (this header, arena bitmaps, heap records,
 *                     segment headers of segments in use, edges lost to
 *                     alignment) plus the rounding of live blocks up to their
 *                     size class. It is an upper bound on what can still be
 *                     allocated: blocks of one size class cannot serve another.
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
  SHARD_MEMORY_OVERLAP, /* add_memory range overlaps memory the region already has */
  SHARD_NO_MEMORY,      /* request cannot be served now; add memory and retry */
  SHARD_NOT_ALLOCATED   /* dealloc of a pointer this region did not hand out */
} shard_status;

/* Smallest region init accepts, whatever its alignment. */
#define SHARD_REGION_MIN_SIZE ((size_t)1 << 20)

/* Turns [start, start+size) into a region allocator; *out receives it.
 * Any start and size are accepted; memory is aligned internally. */
shard_status shard_region_init(shard_region** out, void* start, size_t size);
/* Hands more memory over. May be called at any time, from any thread. */
shard_status shard_region_add_memory(shard_region* r, void* start, size_t size);
/* size 0 allocates a minimal block. align: a power of two (0 is taken as 1). */
shard_status shard_region_alloc(shard_region* r, size_t size, size_t align, void** out);
/* size and align as given to alloc. An unknown ptr gives SHARD_NOT_ALLOCATED and changes nothing. */
shard_status shard_region_dealloc(shard_region* r, void* ptr, size_t size, size_t align);
size_t shard_region_total_bytes(const shard_region* r);
size_t shard_region_used_bytes(const shard_region* r);
size_t shard_region_available_bytes(const shard_region* r);

#ifdef __cplusplus
}
#endif

#endif
