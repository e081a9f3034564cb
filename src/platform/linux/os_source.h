// The OS page source: arenas mapped with mmap, purged with madvise.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/checked.h"
#include "core/config.h"
#include "core/page_source.h"

namespace shardalloc::platform {

void* os_reserve(size_t bytes, size_t align, size_t* out_bytes);
bool os_purge(void* p, size_t bytes);
uint64_t os_now_ms();
void os_protect(void* p, size_t bytes, bool accessible);
void os_guard(void* p, size_t bytes, bool on);
size_t os_resident(void* p, size_t bytes, size_t enough);
void os_populate(void* p, size_t bytes);
// Unmaps an arena os_reserve returned (destroy of a first-class heap), or an
// arena's tail of free slots from a chunk boundary (PageSource::release): its
// chunks' bits in g_os_arena_map and g_os_commit_map go first, so a later
// free of a stale pointer into it stops as "not allocated" instead of
// reading unmapped memory. The entry's other chunks stay as they were.
void os_release(void* p, size_t bytes);
// Commits (PageSource::commit) in chunks of kCommitChunk, each made
// readable and writable once (mprotect) and marked in g_os_commit_map.
bool os_commit(void* p, size_t bytes);
bool os_committed(const void* p, size_t bytes);
// madvise(MADV_NOHUGEPAGE) of a mapping of our own (p page-aligned), errno
// kept (a kernel without THP refuses it inside a malloc that succeeds): for
// sparse tables, where THP "always" would make 2 MiB resident at a word's
// first touch.
void os_advise_no_huge_pages(void* p, size_t bytes);

// (guard: set by SHARDALLOC_HUGE_GUARDS=1, platform/linux/options.h.)
// protect: checked builds only, its one user.
inline constexpr core::PageSource kOsPageSource{&os_reserve,
                                                &os_purge,
                                                true,
                                                &os_now_ms,
                                                core::kChecked ? &os_protect : nullptr,
                                                nullptr,
                                                &os_resident,
                                                &os_populate,
                                                /*program_may_protect=*/true,
                                                /*release=*/nullptr,
                                                &os_commit,
                                                &os_committed,
                                                &os_release};

// The process heap's: also gives free arena tails back when the OS refuses
// more address space (Domain::give_back_tail). Not first-class heaps':
// their frees find arenas by address (Domain::arena_of), unguarded by the
// walkers' count.
inline constexpr core::PageSource kProcessPageSource = [] {
  core::PageSource s = kOsPageSource;
  s.release = &os_release;
  return s;
}();

// The user address space the maps below cover: 48 bits on arm64, whose
// kernels with 48-bit addresses place mmap results up to 2^48 (x86-64 and
// riscv64 map below 2^47 unless asked for more). os_reserve refuses a
// mapping past it rather than index the maps out of bounds.
#if defined(__aarch64__)
inline constexpr unsigned kUserAddressBits = 48;
#else
inline constexpr unsigned kUserAddressBits = 47;
#endif
inline constexpr size_t kArenaMapEntries =
    (uintptr_t{1} << kUserAddressBits) >> core::kOsArenaShift;

// Both maps hold one bit per kCommitChunk, in an entry per kOsArenaSize.
// The chunk is the core's release grain: a tail given back
// (Domain::give_back_tail) is whole chunks, and so is what stays.
inline constexpr unsigned kCommitChunkShift = core::kArenaReleaseGrainShift;  // 4 MiB
inline constexpr size_t kCommitChunk = size_t{1} << kCommitChunkShift;
static_assert(kCommitChunk == core::kArenaReleaseGrain, "released tails are whole chunks");
inline constexpr size_t kChunksPerArena = core::kOsArenaSize / kCommitChunk;
static_assert(kChunksPerArena <= 16, "an arena's chunks fit a uint16_t map entry");

// A bit per chunk of the user address space, 64 chunks (4 entries) to a
// word: set where an OS arena's chunk is mapped. free() rejects foreign
// pointers with one load and a bit test (the same instructions as a byte
// per entry but one; a uint16_t per entry took four more: a review measured
// 46 -> 51 instructions a local free). Arenas are kOsArenaSize-aligned
// multiples of it, so no two share an entry; a tail given back clears its
// chunks only, and the rest of the entry (the arena's first chunk, its
// header) stays ours. A foreign mapping the kernel places in the freed
// chunks (the program's, a guarded sample) reads as not ours. Chunk 0
// stays clear (mmap never maps address 0, see vm.mmap_min_addr, so no arena
// starts there): os_owns(nullptr) is false.
inline constexpr unsigned kEntriesPerMapWord = 64 / kChunksPerArena;
inline constexpr size_t kArenaMapWords = kArenaMapEntries / kEntriesPerMapWord;
static_assert(64 % kChunksPerArena == 0 && kArenaMapEntries % kEntriesPerMapWord == 0,
              "map words hold whole entries");
extern uint64_t g_os_arena_map[kArenaMapWords];
// Entry `entry`'s chunk bits in g_os_arena_map (bit i: its chunk i), and
// their place in its word.
inline unsigned arena_map_shift(uintptr_t entry) {
  return unsigned(entry % kEntriesPerMapWord) * kChunksPerArena;
}
inline uint16_t arena_map_entry(uintptr_t entry) {
  // relaxed: a snapshot for checks, as os_owns's load.
  const uint64_t word =
      __atomic_load_n(&g_os_arena_map[entry / kEntriesPerMapWord], __ATOMIC_RELAXED);
  return uint16_t(word >> arena_map_shift(entry));
}

// Set once os_commit has made the chunk readable and writable; cleared only
// with the chunk's release (os_release).
extern uint16_t g_os_commit_map[kArenaMapEntries];

// p's chunk's bit in a map entry.
inline uint16_t chunk_bit(uintptr_t p) {
  return uint16_t(1u << ((p >> kCommitChunkShift) & (kChunksPerArena - 1)));
}

inline bool os_owns(const void* p) {
  const uintptr_t chunk = reinterpret_cast<uintptr_t>(p) >> kCommitChunkShift;
  const uintptr_t word = chunk / 64;
  // relaxed: a pointer into an arena was received after the arena's publication (release).
  return word < kArenaMapWords &&
         ((__atomic_load_n(&g_os_arena_map[word], __ATOMIC_RELAXED) >> (chunk % 64)) & 1) != 0;
}

}  // namespace shardalloc::platform
