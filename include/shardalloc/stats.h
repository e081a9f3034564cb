/* shardalloc introspection: statistics and heap snapshots.
 *
 * Statistics are a snapshot per size class of one domain: the process heap
 * (memory from the OS, what shard_malloc and the malloc override use), one
 * region, or one first-class heap. Nothing here allocates: every function is
 * safe inside a malloc hook, a signal-free at-exit handler, or a kernel (the
 * freestanding library has the region and first-class heap functions and
 * the buffer snapshots of regions; snapshots to a file descriptor and the
 * process heap's functions are hosted only).
 *
 * "Live" counts blocks handed out and not yet collected back by their page's
 * owner: a block freed by another thread stays live until the owning heap
 * collects it (its next allocation slow path, or when the heap is swept).
 * Checked builds (shard_is_checked()): a block freed to the process heap
 * waits in its thread's quarantine (up to 256 blocks, 8 MiB) before its real
 * free, and stays live until then (its page still holds it; the thread's
 * later frees push it out, and its exit empties the quarantine). Requests
 * take the class of size + 16 there (the trailer), so shard_size_class
 * reports a larger class than in ordinary builds.
 *
 * Quiescent domain (no thread allocating, freeing or exiting in it during the
 * call): every figure is exact, and a snapshot agrees with the statistics
 * (its pages' `used` plus its live huge blocks make live_blocks).
 *
 * Concurrent readers: any of these functions may run while other threads
 * allocate, free, exit, adopt or sweep heaps in the same domain, and while
 * slots are purged. The reader never crashes, takes no lock and adds no work
 * to those threads, never loops, and only reads memory that stays mapped (for a
 * first-class heap: not during its destroy, which no call on it may overlap).
 * What it may see:
 *   - Each page's figures are copied at their own moment, so the per-class
 *     figures mix moments of the walk: a page that changes meanwhile is
 *     counted as it was at some recent moment, and a page or huge block that
 *     is being set up or released as the reader passes may be missing (a
 *     snapshot shows its slot as kind=meta). Rarely, when a slot is released
 *     and claimed again while its header is copied, one page's figures may
 *     combine two moments (torn).
 *   - Every figure is still a possible one: class indices are in range and
 *     block_size comes from the class table; per class live_blocks <=
 *     capacity_blocks and live_bytes = live_blocks * block_size; the totals
 *     are the sums over the classes; heaps_owned <= heaps and
 *     heaps_abandoned = heaps - heaps_owned; every page and huge block lies
 *     in the domain's arenas (pages <= 8 per reserved slot, live_bytes <=
 *     reserved_bytes). In a snapshot: every slot appears once, remote <=
 *     used <= capacity <= reserved per page, heap ids name heap lines of the
 *     same snapshot (or -1), and the text always ends with its end line.
 *   - The counters (segments, peak_segments, reserved_bytes, remote_frees,
 *     purged_bytes, heaps_adopted, heaps_swept) are each a value they had
 *     during the call, loaded one by one: stale by the time the call returns,
 *     and not consistent with each other or with the per-class figures.
 * JSON and snapshot text are always well-formed and complete.
 *
 * See docs/introspection.md for the JSON and snapshot formats. */
#ifndef SHARDALLOC_STATS_H
#define SHARDALLOC_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "shardalloc/heap.h"
#include "shardalloc/region.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Room for the size classes: classes[1 .. class_count-1] are the classes of
 * this build (16 B up to 128 KiB; their number may change between versions,
 * the room does not); classes[0] holds huge blocks (larger requests, or
 * alignments a page cannot serve), each in segments of its own. */
#define SHARD_STATS_MAX_CLASSES 64

typedef struct shard_class_stats {
  uint64_t block_size;      /* bytes per block; 0 for index 0 (huge blocks vary) */
  uint64_t pages;           /* pages of this class held by heaps (huge: segments) */
  uint64_t live_blocks;     /* blocks handed out, not yet collected back */
  uint64_t live_bytes;      /* live blocks times their block size */
  uint64_t capacity_blocks; /* blocks the pages can hold */
} shard_class_stats;

typedef struct shard_stats {
  uint64_t class_count; /* entries of classes[] in use (huge + every size class) */
  shard_class_stats classes[SHARD_STATS_MAX_CLASSES];
  uint64_t live_blocks; /* sums over classes, huge blocks included */
  uint64_t live_bytes;
  uint64_t pages;
  uint64_t segments;       /* 512 KiB slots claimed now (segments, huge spans, metadata) */
  uint64_t peak_segments;  /* most slots claimed at once */
  uint64_t segment_size;   /* bytes per slot (512 KiB) */
  uint64_t peak_bytes;     /* peak_segments * segment_size */
  uint64_t reserved_bytes; /* reserved from the OS, or handed over to the region */
  uint64_t arenas;
  uint64_t heaps;           /* heap records (one per thread that allocated, reused) */
  uint64_t heaps_owned;     /* owned by a live thread */
  uint64_t heaps_abandoned; /* given up by an exited thread, waiting for adoption; also the
                               heap that allocations of signal handlers and late destructors
                               borrow, once one was made (never adopted) */
  /* Counters since the page source was set up: */
  uint64_t remote_frees;  /* blocks freed by a thread other than their heap's owner, counted
                             when the owner collects them (huge blocks not included) */
  uint64_t purged_bytes;  /* bytes given back to the OS (madvise); 0 for a region */
  uint64_t heaps_adopted; /* abandoned heaps taken over by a new thread (reclaimed whole) */
  uint64_t heaps_swept;   /* abandoned heaps collected by a sweep (their empty pages reclaimed) */
} shard_stats;

/* The class index (into shard_stats.classes) a request of size bytes is
 * served from; 0 for huge requests. */
unsigned shard_size_class(size_t size);

/* Statistics of the process heap. out may not be NULL. */
void shard_stats_get(shard_stats* out);
/* Statistics of a region: SHARD_INVALID_PARAM when r or out is NULL. */
shard_status shard_region_stats(const shard_region* r, shard_stats* out);
/* Statistics of a first-class heap (heap.h): SHARD_INVALID_PARAM when h or
 * out is NULL. reserved_bytes is what its arenas span (OS arenas, or the
 * block taken from its region). */
shard_status shard_heap_stats(const shard_heap* h, shard_stats* out);

/* Writes *s as one JSON object into buf (snprintf semantics: at most len bytes
 * including a terminating NUL, which is always written when len > 0) and
 * returns the length of the whole JSON text, without the NUL. A return value
 * >= len means buf was too small. No allocation. */
size_t shard_stats_to_json(const shard_stats* s, char* buf, size_t len);
/* shard_stats_get + shard_stats_to_json. */
size_t shard_stats_json(char* buf, size_t len);
/* shard_region_stats + shard_stats_to_json; 0 (and "" in buf) when r is NULL. */
size_t shard_region_stats_json(const shard_region* r, char* buf, size_t len);

/* Heap snapshot: every arena, every slot (segment kind, owning heap, whether
 * that heap is abandoned), every page (size class, used / capacity / reserved
 * blocks) as line-based text (format in docs/introspection.md). Render it with
 * tools/shardalloc-heapmap. No allocation.
 *
 * shard_heap_snapshot_write: the process heap to a file descriptor; 0 on
 * success, -1 on a write error (errno set). */
int shard_heap_snapshot_write(int fd);
/* The process heap into buf, snprintf semantics as shard_stats_to_json. */
size_t shard_heap_snapshot(char* buf, size_t len);
/* The same for a region: -1 / 0 when r is NULL. */
int shard_region_heap_snapshot_write(const shard_region* r, int fd);
size_t shard_region_heap_snapshot(const shard_region* r, char* buf, size_t len);

/* Environment: SHARDALLOC_SNAPSHOT=path writes a snapshot of the process heap
 * to path at exit ("%p" in path is replaced by the process id). */

#ifdef __cplusplus
}
#endif

#endif
