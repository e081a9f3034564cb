#include "platform/linux/os_source.h"

#include <sys/mman.h>
#include <unistd.h>

#include <time.h>
#include <atomic>
#include <bit>
#include <cerrno>

#include "core/bits.h"
#include "core/segment.h"
#include "platform/linux/errno_kept.h"
#include "platform/linux/line_writer.h"
#include "platform/linux/options.h"

namespace shardalloc::platform {

uint64_t g_os_arena_map[kArenaMapWords];
uint16_t g_os_commit_map[kArenaMapEntries];

namespace {

// Address space only: nothing is readable or writable until os_commit. A
// process that locks its memory (mlockall MCL_FUTURE) then has only what
// the allocator committed made resident, not whole reservations; a strict
// overcommit policy charges only that too.
void* map_anonymous(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

uint16_t* commit_word(uintptr_t chunk) { return &g_os_commit_map[chunk >> core::kOsArenaShift]; }
bool chunk_committed(uintptr_t chunk) {
  // acquire: pairs with os_commit's release, after its mprotect returned.
  return (__atomic_load_n(commit_word(chunk), __ATOMIC_ACQUIRE) & chunk_bit(chunk)) != 0;
}

// Calls f(entry index, bits of its chunks inside the range) for each map
// entry that [start, end) (whole chunks) overlaps.
template <class F>
void for_each_entry(uintptr_t start, uintptr_t end, F f) {
  for (uintptr_t from = start; from < end;) {
    const uintptr_t entry_end = core::align_down(from, core::kOsArenaSize) + core::kOsArenaSize;
    const uintptr_t to = end < entry_end ? end : entry_end;
    const size_t first = (from >> kCommitChunkShift) & (kChunksPerArena - 1);
    const size_t count = (to - from) >> kCommitChunkShift;
    const uint16_t bits = uint16_t(((1u << count) - 1) << first);
    f(from >> core::kOsArenaShift, bits);
    from = to;
  }
}

// Over-maps by `align`, then trims both ends to the aligned middle. 0: refused.
uintptr_t map_trimmed(size_t bytes, size_t align) {
  void* raw = map_anonymous(bytes + align);
  if (raw == nullptr) return 0;
  const uintptr_t start = core::addr(raw);
  const uintptr_t aligned = core::align_up(start, align);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t tail = start + bytes + align - (aligned + bytes);
  if (tail > 0) munmap(core::ptr(aligned + bytes), tail);
  return aligned;
}

// Under an address-space limit (ulimit -v) the extra `align` of
// map_trimmed can be what the OS refuses: the exact size is mapped where the
// OS places it, then moved to the aligned address below it, which is free
// in a top-down layout. Asked for as a hint, which every kernel takes only
// when the whole range is free (and the guard gaps beside it): if another
// thread mapped there meanwhile, or anything lies between the aligned
// address and the OS's placement (a thread's stack, a library, the guarded
// pool, the program's own mapping; an arena's remnant, at the aligned
// address itself), the mapping lands elsewhere and is given back (kept if
// it happens to be aligned). Not MAP_FIXED_NOREPLACE: Linux 4.17 and 4.18
// (before 7aa867dd8970, 4.19) refused it only for a mapping holding the
// range's start, and replaced one that began further in (test
// api.OsReserveOldKernel.*). 0: refused.
uintptr_t map_exact_aligned(size_t bytes, size_t align) {
  void* raw = map_anonymous(bytes);
  if (raw == nullptr) return 0;
  if (core::addr(raw) % align == 0) return core::addr(raw);
  munmap(raw, bytes);
  const uintptr_t below = core::align_down(core::addr(raw), align);
  if (below == 0) return 0;
  void* p =
      mmap(core::ptr(below), bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return 0;
  if (core::addr(p) % align != 0) {
    munmap(p, bytes);
    return 0;
  }
  return core::addr(p);
}

// madvise, errno kept; p is page-aligned (the kernel rounds bytes up).
void advise(void* p, size_t bytes, int advice) {
  const ErrnoKept kept;
  madvise(p, bytes, advice);
}

// The two maps are sparse lookup tables of 4 MiB each in .bss: a process
// touches a few of their words. Where transparent huge pages are on for
// every mapping (enabled = always), the first touch of a word made 2 MiB
// resident. Advised before the first write (here, before os_reserve's; and
// at start-up, before a free's read: without the kernel's huge zero page
// a read fault takes a huge page too). One range over both tables: two
// calls left the page between them unadvised, two mappings more.
void advise_maps_no_huge_pages() {
  static std::atomic<bool> advised{false};
  // relaxed: the advice is idempotent; two threads may both give it.
  if (advised.load(std::memory_order_relaxed)) return;
  const uintptr_t page = uintptr_t(getpagesize());
  const uintptr_t maps = core::addr(g_os_arena_map), commits = core::addr(g_os_commit_map);
  const uintptr_t start = maps < commits ? maps : commits;
  const uintptr_t end = maps + sizeof g_os_arena_map > commits + sizeof g_os_commit_map
                            ? maps + sizeof g_os_arena_map
                            : commits + sizeof g_os_commit_map;
  // The whole pages inside: the pages at the ends hold other data.
  const uintptr_t from = core::align_up(start, page), to = core::align_down(end, page);
  if (to > from) advise(core::ptr(from), to - from, MADV_NOHUGEPAGE);
  advised.store(true, std::memory_order_relaxed);
}

// Runs before main (a free() that reads the maps before any arena exists).
__attribute__((constructor(101))) void advise_maps_at_start() { advise_maps_no_huge_pages(); }

// Transparent huge pages on an arena's mappings: none unless the program
// asks (SHARDALLOC_HUGE_PAGES=1, then MADV_HUGEPAGE). Where they are on for
// every mapping (enabled = always, the default of several distributions),
// a fault in a 2 MiB range took a huge page whatever the program used of
// it, and a purge of a segment or a page split it, for khugepaged to
// collapse again: bench/run --quick's peak RSS geomean went from 0.97x
// mimalloc's (madvise) to 1.34x, malloc-large from 14.5 to 467 MiB
// (docs/benchmarks.md, "Transparent huge pages"). The advice is a flag of
// the mapping: mprotect's splits keep it; a mapping made in place
// (os_protect) needs it again.
void advise_huge_pages(void* p, size_t bytes) {
  advise(p, bytes, huge_pages_wanted() ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
}

}  // namespace

void os_advise_no_huge_pages(void* p, size_t bytes) { advise(p, bytes, MADV_NOHUGEPAGE); }

void* os_reserve(size_t bytes, size_t align, size_t* out_bytes) {
  advise_maps_no_huge_pages();
  if (bytes + align < bytes) return nullptr;
  uintptr_t aligned = map_trimmed(bytes, align);
  if (aligned == 0) aligned = map_exact_aligned(bytes, align);
  if (aligned == 0) return nullptr;
  // Past what g_os_arena_map covers (a kernel with a larger user address
  // space than kUserAddressBits): refused, as if the OS had no room.
  if ((aligned + bytes - 1) >> kUserAddressBits != 0) {
    munmap(core::ptr(aligned), bytes);
    return nullptr;
  }
  for_each_entry(aligned, aligned + bytes, [](uintptr_t entry, uint16_t chunks) {
    // relaxed: the arena is published to other threads by the domain's release CAS;
    // a free of a pointer into it must have received that pointer after publication.
    __atomic_fetch_or(&g_os_arena_map[entry / kEntriesPerMapWord],
                      uint64_t{chunks} << arena_map_shift(entry), __ATOMIC_RELAXED);
  });
  advise_huge_pages(core::ptr(aligned), bytes);
  *out_bytes = bytes;
  if (options().verbose) {
    LineWriter()
        .text("shardalloc: reserved an OS arena of ")
        .num(bytes >> 20)
        .text(" MiB at ")
        .hex(aligned)
        .flush();
  }
  return core::ptr(aligned);
}

// madvise fails (EINVAL) on locked pages (mlock, mlockall, mlock2
// MLOCK_ONFAULT), which keep their contents: the caller must not count them clean.
bool os_purge(void* p, size_t bytes) {
  const ErrnoKept kept;
  return madvise(p, bytes, MADV_DONTNEED) == 0;
}

void os_release(void* p, size_t bytes) {
  const ErrnoKept kept;  // munmap of an arena's middle fails at vm.max_map_count
  const uintptr_t start = core::addr(p);
  // Cleared before munmap: once the range is unmapped, a new arena may be
  // mapped there and set them. Only the range's chunks: the entry's others
  // may stay ours (a tail's arena keeps its first chunk), and a claim there
  // may commit meanwhile, hence fetch_and, not a store.
  for_each_entry(start, start + bytes, [](uintptr_t entry, uint16_t chunks) {
    // relaxed: only frees of pointers into these chunks read their bits, and
    // none may be in flight (destroy's precondition; a tail's slots are free).
    __atomic_fetch_and(&g_os_arena_map[entry / kEntriesPerMapWord],
                       ~(uint64_t{chunks} << arena_map_shift(entry)), __ATOMIC_RELAXED);
    // relaxed: no reader looks at these chunks any more (walks stop at
    // mapped_slots, claims never reach a given-back tail); os_commit's
    // acquire loads pair with its own release stores, which this leaves alone.
    __atomic_fetch_and(&g_os_commit_map[entry], uint16_t(~chunks), __ATOMIC_RELAXED);
  });
  munmap(p, bytes);
  if (options().verbose) {
    LineWriter()
        .text("shardalloc: released an OS arena of ")
        .num(bytes >> 20)
        .text(" MiB at ")
        .hex(start)
        .flush();
  }
}

namespace {

// Whether the kernel's pages are the core's kOsPage. Guards are cut at 4 KiB
// boundaries; on a 16 or 64 KiB page kernel some of those calls would fail
// (EINVAL) and others not, leaving inaccessible pieces behind a release.
// There both hooks do nothing: no guard pages, consistently.
bool pages_are_4k() {
  // relaxed: every thread computes the same value; 0 means not yet known.
  static std::atomic<long> page_size{0};
  long size = page_size.load(std::memory_order_relaxed);
  if (size == 0) {
    size = sysconf(_SC_PAGESIZE);
    page_size.store(size, std::memory_order_relaxed);
  }
  return size == long{core::kOsPage};
}

}  // namespace

// Both keep errno: they run inside free and malloc (checked builds'
// quarantine of huge blocks; SHARDALLOC_HUGE_GUARDS), and fail with ENOMEM
// when splitting a mapping would pass vm.max_map_count. The range then stays
// accessible, as before (unguarded; a write to a quarantined block there
// goes unnoticed).
void os_protect(void* p, size_t bytes, bool accessible) {
  if (!pages_are_4k()) return;
  const ErrnoKept kept;
  if (accessible) {
    mprotect(p, bytes, PROT_READ | PROT_WRITE);
    return;
  }
  // A fresh inaccessible mapping in place: the old pages are dropped with it.
  if (mmap(p, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) !=
      MAP_FAILED) {
    advise_huge_pages(p, bytes);
  }
}

bool os_commit(void* p, size_t bytes) {
  const uintptr_t end = core::align_up(core::addr(p) + bytes, kCommitChunk);
  // Slots used before are committed: answered from the bits alone.
  uintptr_t missing = core::align_down(core::addr(p), kCommitChunk);
  while (missing < end && chunk_committed(missing)) missing += kCommitChunk;
  if (missing == end) return true;
  // From the lowest chunk of missing's kOsArenaSize entry not committed yet:
  // an entry's commits are a prefix, so it is at most one accessible mapping
  // and one inaccessible one. (Committing only the range, blocks of 16 MiB
  // alignment each left an accessible island, two mappings apiece, until
  // vm.max_map_count (65530) failed mprotect, mmap and pthread_create; a
  // review: ENOMEM at block 30702.) One call for the whole range: a refusal
  // (a commit limit) within one inaccessible mapping changes nothing, where
  // a call per entry left the entries before the refused one charged.
  const uintptr_t entry = core::align_down(missing, core::kOsArenaSize);
  // acquire: pairs with the release below, after an mprotect returned.
  const uint16_t bits = __atomic_load_n(commit_word(entry), __ATOMIC_ACQUIRE);
  uintptr_t from = entry + size_t(std::countr_one(bits)) * kCommitChunk;
  if (from > missing) from = missing;
  {
    // Two threads may make the same chunks accessible: the second call changes nothing.
    const ErrnoKept kept;
    if (mprotect(core::ptr(from), end - from, PROT_READ | PROT_WRITE) != 0) return false;
  }
  for (uintptr_t chunk = from; chunk < end; chunk += kCommitChunk) {
    // release: a reader that sees the bit may read the chunk.
    __atomic_fetch_or(commit_word(chunk), chunk_bit(chunk), __ATOMIC_RELEASE);
  }
  return true;
}

bool os_committed(const void* p, size_t bytes) {
  const uintptr_t end = core::addr(p) + bytes;
  for (uintptr_t chunk = core::align_down(core::addr(p), kCommitChunk); chunk < end;
       chunk += kCommitChunk) {
    if (!chunk_committed(chunk)) return false;
  }
  return true;
}

void os_guard(void* p, size_t bytes, bool on) {
  if (!pages_are_4k()) return;
  const ErrnoKept kept;
  mprotect(p, bytes, on ? PROT_NONE : PROT_READ | PROT_WRITE);
}

size_t os_resident(void* p, size_t bytes, size_t enough) {
  // mincore in chunks of kChunkPages: a small stack buffer (a signal
  // handler's free may run on a small alternate stack), and the count can
  // stop early. An error (cannot happen on our own mapped arenas) counts the
  // chunk as resident: the caller then keeps the memory, as before.
  // errno kept: realloc's copy, calloc and free call this on success paths,
  // and on a kernel whose pages are larger than 4 KiB (arm64 16 or 64 KiB)
  // mincore refuses the 4 KiB-aligned start with EINVAL.
  const ErrnoKept kept;
  constexpr size_t kChunkPages = 1024;
  unsigned char vec[kChunkPages];
  const uintptr_t start = core::align_down(core::addr(p), core::kOsPage);
  const uintptr_t end = core::align_up(core::addr(p) + bytes, core::kOsPage);
  size_t resident = 0;
  for (uintptr_t a = start; a < end && resident < enough; a += kChunkPages * core::kOsPage) {
    const size_t pages =
        (end - a) / core::kOsPage < kChunkPages ? (end - a) / core::kOsPage : kChunkPages;
    if (mincore(core::ptr(a), pages * core::kOsPage, vec) != 0) {
      resident += pages * core::kOsPage;
      continue;
    }
    for (size_t i = 0; i < pages; ++i) resident += (vec[i] & 1) * core::kOsPage;
  }
  return resident;
}

// MADV_POPULATE_WRITE (Linux 5.14): the kernel faults the pages in writable,
// zeroed once, in one call. On an older kernel (EINVAL: not asked again), or
// without the memory (ENOMEM), the pages stay as they were: they read as zero
// anyway and fault in when touched. calloc succeeds either way, so errno is
// left as it was.
void os_populate(void* p, size_t bytes) {
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;
#endif
  // relaxed: a hint; a thread that misses the store asks once more.
  static std::atomic<bool> unsupported{false};
  if (unsupported.load(std::memory_order_relaxed)) return;
  const ErrnoKept kept;
  if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0 && errno == EINVAL) {
    unsupported.store(true, std::memory_order_relaxed);
  }
}

uint64_t os_now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

}  // namespace shardalloc::platform
