/* shardalloc: C API over the process heap (memory from the OS).
 *
 * Semantics follow malloc: on failure NULL is returned and errno is set to
 * ENOMEM; shard_free(NULL) is a no-op. Freeing a pointer shardalloc did not
 * hand out, or a block freed twice in a row, prints one line on stderr and
 * aborts. */
#ifndef SHARDALLOC_SHARDALLOC_H
#define SHARDALLOC_SHARDALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every block is 16-aligned (alignof(max_align_t)), whatever its size. */
void* shard_malloc(size_t size);
void* shard_calloc(size_t count, size_t size);
void* shard_realloc(void* ptr, size_t size);
void shard_free(void* ptr);
/* align: any power of two (up to 64 MiB is guaranteed); otherwise NULL, errno = EINVAL. */
void* shard_malloc_aligned(size_t size, size_t align);
/* Bytes usable at ptr (>= the requested size); 0 for NULL. */
size_t shard_usable_size(const void* ptr);
/* Checks every page, free list and block count of the calling thread's heap
 * (in checked builds also every block's canary and every free-list link:
 * docs/reliability.md, "Checked mode"). Returns the number of blocks it
 * looked at (0 before the thread's first allocation, and 0 when called from a
 * signal handler that interrupted an allocator call, or after the thread's
 * exit destructor: the heap may be half updated then). On an inconsistency it
 * prints one line naming it and aborts: the heap is corrupt. */
size_t shard_check_heap(void);
/* Heap profiler (docs/profiling.md), on when the environment sets
 * SHARDALLOC_PROFILE or SHARDALLOC_PROFILE_RATE at start. Writes to fd the
 * live sampled allocations in the collapsed-stack format ("frame;frame;...
 * bytes" lines, outermost frame first, bytes estimated), or the leak report
 * (the same samples by stack, largest first, one frame a line). Return 0, or
 * -1 with errno (ENOTSUP: the profiler is off; a write error's errno). */
int shard_profile_write(int fd);
int shard_profile_leaks_write(int fd);
/* 1 when this library was built in checked mode (SHARDALLOC_CHECKED), else 0. */
int shard_is_checked(void);
/* Guarded sampling (docs/reliability.md, section 7): sets the mean number of
 * bytes allocated by the process heap (malloc, new) per allocation placed in
 * a slot of the guarded pool instead (its own page between inaccessible guard
 * pages; overflows and uses after free of it fault and are reported). Blocks
 * over 4 KiB or aligned to more stay ordinary, and so do samples while the
 * pool's 256 slots are all live. 0 turns it off, the default;
 * SHARD_GUARDED_DEFAULT_RATE is the suggested production rate. Also set by
 * the environment (SHARDALLOC_GUARDED_RATE=N). The call enables it for the
 * calling thread and threads that allocate for the first time later (the
 * environment variable: every thread). Checked builds record the rate but do
 * not sample (they have their own canaries). Returns the previous rate. */
#define SHARD_GUARDED_DEFAULT_RATE (16ull * 1024 * 1024)
unsigned long long shard_guarded_set_rate(unsigned long long rate);

#ifdef __cplusplus
}
#endif

#endif
