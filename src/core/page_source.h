// Where a domain's memory comes from. The core calls these only on slow paths.
//   OS source (src/platform/linux/os_source.cpp): reserve maps fresh arenas, purge gives pages
//   back. Region source (src/api/region_api.cpp): reserve is null (memory only arrives by
//   add_memory),
//     purge is null (a kernel's memory stays where it is).
#pragma once
#include <cstddef>
#include <cstdint>

namespace shardalloc::core {

struct PageSource {
  // Maps at least `bytes` bytes aligned to `align`; returns null on failure and
  // sets *out_bytes to the size actually mapped. Null function: cannot grow.
  void* (*reserve)(size_t bytes, size_t align, size_t* out_bytes);
  // Tells the source that [p, p+bytes) holds nothing; it may drop the pages
  // (they read back as zero). Returns false when the source refused (locked
  // pages: the range may keep its contents, in part or whole). Null
  // function: nothing to do.
  bool (*purge)(void* p, size_t bytes);
  // Memory from this source reads as zero when first handed out (lets calloc skip a memset).
  bool fresh_is_zero;
  // Milliseconds of a monotonic clock, for purge delays. Null: purge at once.
  uint64_t (*now_ms)();
  // Makes [p, p+bytes) (OS pages) inaccessible, dropping their contents, or
  // accessible again (reading as zero). Checked mode's guard pages around huge
  // blocks and its quarantine of freed ones. Null: no guards.
  void (*protect)(void* p, size_t bytes, bool accessible);
  // Makes [p, p+bytes) (OS pages) inaccessible (on) or accessible again,
  // keeping their contents and residency: no page faults when they are used
  // again. Every build's guard slot after a huge block. Null: no guards.
  void (*guard)(void* p, size_t bytes, bool on) = nullptr;
  // Bytes of [p, p+bytes) (OS pages) that are resident, counted until the
  // count reaches `enough` (a result >= enough: at least that many). Lets a
  // freed huge block that its program touched sparsely be purged at once
  // (Domain::purge_sparse_huge). Null: unknown.
  size_t (*resident)(void* p, size_t bytes, size_t enough) = nullptr;
  // Makes [p, p+bytes) (whole OS pages that read as zero) resident and
  // writable at once where the source can; does nothing where it cannot (the
  // pages read as zero either way). Lets calloc of a zeroed huge block take
  // its pages in one call instead of a fault per page (calloc_clear). Null:
  // not supported.
  void (*populate)(void* p, size_t bytes) = nullptr;
  // The program may make memory it was given inaccessible (mprotect of a
  // page inside a malloc'd block: the guard page of a coroutine stack), so a
  // concurrent statistics walk reads no block memory (core/heap_walk.h). OS
  // memory: true. A kernel's regions: false.
  bool program_may_protect = false;
  // Unmaps [p, p+bytes) (an arena's tail of free slots, from a
  // kArenaReleaseGrain boundary to the arena's end; or a whole reservation,
  // Domain::tails_could_make_room's probe): the address space goes back to
  // the OS when it refused more (an address-space limit,
  // Domain::give_back_tail). Null: never (regions, and
  // first-class heaps, whose frees look arenas up by address).
  void (*release)(void* p, size_t bytes) = nullptr;
  // Makes [p, p+bytes) of a reserved arena usable: reserve hands out
  // address space only (inaccessible), and every byte the core writes was
  // committed first: an arena's header and metadata when it is added, a
  // span's slots when they are claimed. Commits are never undone (a tail
  // given back goes whole). False: refused (the OS's memory-lock or
  // commit limit), nothing written. Null: the memory is usable as it comes
  // (regions).
  bool (*commit)(void* p, size_t bytes) = nullptr;
  // Whether [p, p+bytes) was committed, for readers that look at a slot
  // without a claim on it (statistics walks, pointer checks). Null: always.
  bool (*committed)(const void* p, size_t bytes) = nullptr;
  // Unmaps [p, p+bytes), a whole reservation `reserve` returned that was
  // never published (add_memory refused it: its header's commit): nothing
  // can point into it, so every source that reserves may give it back,
  // first-class heaps' too (whose `release` is null). Null: kept.
  void (*unreserve)(void* p, size_t bytes) = nullptr;
};

}  // namespace shardalloc::core
