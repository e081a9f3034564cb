// os_reserve's exact-size path (map_exact_aligned: the over-map by the
// alignment was refused, an address-space limit) on a kernel whose
// MAP_FIXED_NOREPLACE is Linux 4.17's and 4.18's: refused (EEXIST) only when
// a mapping holds the requested start, while a mapping that begins further
// inside the range is replaced as MAP_FIXED would (fixed in 4.19 by
// 7aa867dd8970, "don't clobber partially overlapping VMA with
// MAP_FIXED_NOREPLACE"). The move to the aligned address below the exact
// mapping covers up to 64 MiB the kernel did not choose, where a thread's
// stack, a library, the guarded pool or the program's own mapping may
// begin. (An older arena's remnant lies at an entry's start: only at the
// aligned address itself, which even that kernel refuses; the kernel's
// placement of the exact mapping, free, covers every later entry start.)
//
// The kernel is emulated by interposing mmap (this executable's definition
// wins over libc's for the static library's calls, as in
// tests/guarded/guarded_fork_test.cpp): while armed it refuses the over-map
// (the limit), places the exact mapping at a chosen unaligned address, and
// gives MAP_FIXED_NOREPLACE 4.17's check. Not with sanitizers (they
// intercept mmap themselves).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "platform/linux/os_source.h"
#include "support/address_space.h"
#include "support/test_support.h"

namespace {

namespace platform = shardalloc::platform;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kArena = size_t{64} * kMiB;

std::atomic<bool> g_armed{false};
std::atomic<size_t> g_refused_len{0};  // an mmap(nullptr, this) is refused (ENOMEM)
std::atomic<size_t> g_placed_len{0};   // an mmap(nullptr, this) is placed at g_place_at
std::atomic<uintptr_t> g_place_at{0};

void* raw_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  return reinterpret_cast<void*>(syscall(SYS_mmap, addr, len, prot, flags, fd, off));
}

[[maybe_unused]] bool page_mapped(uintptr_t a) {  // (unused with sanitizers)
  unsigned char v = 0;
  return mincore(reinterpret_cast<void*>(a & ~uintptr_t{4095}), 4096, &v) == 0 || errno != ENOMEM;
}

}  // namespace

#ifndef SHARDTEST_SANITIZED
extern "C" void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (g_armed.load()) {
    if (addr == nullptr && len == g_refused_len.load()) {
      errno = ENOMEM;
      return MAP_FAILED;
    }
    if (addr == nullptr && len == g_placed_len.load()) {
      return raw_mmap(reinterpret_cast<void*>(g_place_at.load()), len, prot,
                      flags | MAP_FIXED_NOREPLACE, fd, off);
    }
    if ((flags & MAP_FIXED_NOREPLACE) != 0) {
      // 4.17: find_vma(addr) && vma->vm_start <= addr -> EEXIST; else MAP_FIXED.
      if (page_mapped(reinterpret_cast<uintptr_t>(addr))) {
        errno = EEXIST;
        return MAP_FAILED;
      }
      flags = (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED;
    }
  }
  return raw_mmap(addr, len, prot, flags, fd, off);
}
#endif

namespace {

using shardtest::perms_at;

// A mapping (the program's, here; an older arena's remnant alike) that
// begins 8 MiB into the 64 MiB-aligned entry below the exact mapping's
// place: os_reserve must not map over it, whatever it returns.
// os_reserve of one 64 MiB arena on the emulated kernel: the over-map
// (64 + 64 MiB) refused, the exact mapping placed at `place_at`. *got: the
// bytes reserved.
void* reserve_placed_at(uintptr_t place_at, size_t* got) {
  g_refused_len.store(2 * kArena);
  g_placed_len.store(kArena);
  g_place_at.store(place_at);
  g_armed.store(true);
  void* arena = platform::os_reserve(kArena, kArena, got);
  g_armed.store(false);
  return arena;
}

TEST(OsReserveOldKernel, TheMoveToTheAlignedAddressBelowReplacesNothing) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "sanitizers intercept mmap themselves";
#endif
  // 192 MiB of free address space, 64 MiB-aligned at b.
  void* probe =
      raw_mmap(nullptr, 3 * kArena, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(probe, MAP_FAILED);
  const uintptr_t b = (reinterpret_cast<uintptr_t>(probe) + kArena - 1) & ~(kArena - 1);
  munmap(probe, 3 * kArena);

  char* victim = static_cast<char*>(
      raw_mmap(reinterpret_cast<void*>(b + 8 * kMiB), 4 * kMiB, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
  ASSERT_EQ(victim, reinterpret_cast<char*>(b + 8 * kMiB));
  std::memset(victim, 0x5a, 4 * kMiB);

  // The exact 64 MiB placed at b + 16 MiB.
  size_t got = 0;
  void* arena = reserve_placed_at(b + 16 * kMiB, &got);

  const auto start = reinterpret_cast<uintptr_t>(arena);
  const auto v = reinterpret_cast<uintptr_t>(victim);
  const bool overlaps = arena != nullptr && start < v + 4 * kMiB && v < start + got;
  EXPECT_FALSE(overlaps) << "os_reserve returned " << arena << ", over the mapping at "
                         << static_cast<void*>(victim);
  EXPECT_EQ(perms_at(victim).substr(0, 2), "rw") << "the program's mapping was replaced";
  if (arena != nullptr) {
    EXPECT_EQ(start % kArena, 0u);
    platform::os_release(arena, got);
  }
  if (perms_at(victim).substr(0, 2) == "rw") {
    EXPECT_EQ(victim[0], 0x5a);
    EXPECT_EQ(victim[4 * kMiB - 1], 0x5a);
  }
  munmap(victim, 4 * kMiB);
}

// The entry below the exact mapping's place holds an older arena's remnant
// (its first chunk, at the entry's start: the move would make the two
// arenas share the entry, and os_reserve's fetch_or, a later os_release's
// fetch_and and os_commit's prefix would mix their bits). The remnant stays
// as it was: mapped, its contents, its bits (it holds the aligned address
// itself, which even the emulated 4.17 refuses).
TEST(OsReserveOldKernel, ARemnantInTheEntryBelowKeepsItsChunkAndBits) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "sanitizers intercept mmap themselves";
#endif
  size_t got = 0;
  char* old_arena = static_cast<char*>(platform::os_reserve(2 * kArena, kArena, &got));
  ASSERT_NE(old_arena, nullptr);
  ASSERT_TRUE(platform::os_commit(old_arena, kMiB));
  old_arena[0] = 42;
  const size_t chunk = platform::kCommitChunk;
  platform::os_release(old_arena + chunk, 2 * kArena - chunk);  // its tail went back
  const uintptr_t e = reinterpret_cast<uintptr_t>(old_arena);
  const size_t entry = e >> 26;
  ASSERT_EQ(platform::arena_map_entry(entry), 1u);
  ASSERT_EQ(platform::g_os_commit_map[entry], 1u);

  // The exact mapping placed 8 MiB into the remnant's entry.
  size_t got2 = 0;
  void* arena = reserve_placed_at(e + 8 * kMiB, &got2);

  EXPECT_NE(arena, static_cast<void*>(old_arena)) << "two arenas share an entry";
  EXPECT_EQ(perms_at(old_arena).substr(0, 2), "rw") << "the remnant was replaced";
  EXPECT_EQ(platform::arena_map_entry(entry), 1u);
  EXPECT_EQ(platform::g_os_commit_map[entry], 1u);
  if (perms_at(old_arena).substr(0, 2) == "rw") {
    EXPECT_EQ(old_arena[0], 42);
  }
  // A commit in the remnant stays there.
  EXPECT_TRUE(platform::os_commit(old_arena + kMiB, kMiB));
  EXPECT_EQ(platform::g_os_commit_map[entry], 1u);
  if (arena != nullptr && arena != old_arena) platform::os_release(arena, got2);
  platform::os_release(old_arena, chunk);
}

}  // namespace
