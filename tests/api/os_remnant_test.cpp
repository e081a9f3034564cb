// What an OS arena keeps when its free tail goes back to the OS (an
// address-space limit refused more; Domain::give_back_tail): its first 4 MiB
// chunk (the header and 7 slots), not its first 64 MiB. g_os_arena_map marks
// chunks, so the rest of the arena's 64 MiB entry reads as not ours: a
// mapping the kernel places there is foreign, and a free of it stops as "not
// allocated". (Each arena a growing block left behind kept 64 MiB for good:
// 383 MiB served of 700 MiB allowed; docs/reliability.md section 8.)
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "platform/linux/os_source.h"
#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/address_space.h"
#include "support/test_support.h"

namespace {

namespace platform = shardalloc::platform;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kChunk = platform::kCommitChunk;
constexpr size_t kArena = size_t{64} * kMiB;

char* at(void* base, size_t offset) { return static_cast<char*>(base) + offset; }

// A readable (not PROT_NONE) anonymous mapping exactly at `where`, or null
// when something is mapped there (MAP_FIXED_NOREPLACE; an older kernel that
// takes it as a hint maps elsewhere: given back, null too).
void* map_exactly_at(void* where, size_t bytes) {
  void* p = mmap(where, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (p != where) {
    munmap(p, bytes);
    return nullptr;
  }
  return p;
}

TEST(OsRemnant, ATailGoesBackChunkByChunkAndTheFirstChunkStaysOurs) {
  size_t got = 0;
  void* arena = platform::os_reserve(kArena, kArena, &got);
  ASSERT_NE(arena, nullptr);
  ASSERT_EQ(got, kArena);
  EXPECT_TRUE(platform::os_owns(arena));
  EXPECT_TRUE(platform::os_owns(at(arena, kArena - 1)));
  ASSERT_TRUE(platform::os_commit(arena, 2 * kChunk));

  platform::os_release(at(arena, kChunk), kArena - kChunk);
  EXPECT_TRUE(platform::os_owns(arena));
  EXPECT_TRUE(platform::os_owns(at(arena, kChunk - 1)));
  EXPECT_FALSE(platform::os_owns(at(arena, kChunk)));
  EXPECT_FALSE(platform::os_owns(at(arena, kArena - 1)));
  EXPECT_TRUE(platform::os_committed(arena, kChunk));
  EXPECT_FALSE(platform::os_committed(at(arena, kChunk), 1));  // it was, before its release

  // The released chunks are the OS's again: a foreign mapping fits there and
  // is not ours; the first chunk keeps its contents.
  at(arena, 0)[0] = 7;
  void* foreign = map_exactly_at(at(arena, kChunk), kArena - kChunk);
  ASSERT_NE(foreign, nullptr);
  EXPECT_FALSE(platform::os_owns(foreign));
  EXPECT_FALSE(platform::os_owns(at(foreign, kArena - kChunk - 1)));
  EXPECT_EQ(at(arena, 0)[0], 7);
  munmap(foreign, kArena - kChunk);

  platform::os_release(arena, kChunk);
  EXPECT_FALSE(platform::os_owns(arena));
  EXPECT_FALSE(platform::os_committed(arena, 1));
}

// A commit in the first chunk of an entry whose other chunks went back
// neither reports nor makes them accessible: a commit makes a prefix of its
// entry's chunks accessible (one mprotect), up to the end of its range.
TEST(OsRemnant, ACommitAfterAReleaseStaysInsideTheRemnant) {
  size_t got = 0;
  void* arena = platform::os_reserve(kArena, kArena, &got);
  ASSERT_NE(arena, nullptr);
  platform::os_release(at(arena, kChunk), kArena - kChunk);
  // A foreign inaccessible mapping where the committed chunk was.
  void* foreign = map_exactly_at(at(arena, kChunk), kChunk);
  ASSERT_NE(foreign, nullptr);
  ASSERT_EQ(mprotect(foreign, kChunk, PROT_NONE), 0);

  ASSERT_TRUE(platform::os_commit(at(arena, kChunk - kMiB), kMiB));
  EXPECT_TRUE(platform::os_committed(arena, kChunk));
  EXPECT_FALSE(platform::os_committed(foreign, 1));
  // Still inaccessible (/proc/self/maps lists the permissions).
  const std::string perms = shardtest::perms_at(foreign);
  const bool still_none = perms.size() >= 2 && perms[0] == '-' && perms[1] == '-';
  EXPECT_TRUE(still_none) << "the remnant's commit reached the foreign mapping";
  munmap(foreign, kChunk);
  platform::os_release(arena, kChunk);
}

// In a child: a freed 300 MiB block's arena, whose tail went back for a 400
// MiB block under an address-space limit (room for no new arena of 448 MiB
// beside the freed one, but for one once its tail went back). Returns the
// arena; exits 2-5 when a step fails.
void* arena_grown_past_under_a_limit() {
  void* first = shard_malloc(300 * kMiB);
  if (first == nullptr) std::_Exit(2);
  void* arena = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(first) & ~(kArena - 1));
  shard_free(first);
  rlimit lim{};
  if (getrlimit(RLIMIT_AS, &lim) != 0) std::_Exit(3);
  lim.rlim_cur = rlim_t(shardtest::proc_memory().vm + 260 * kMiB);
  if (setrlimit(RLIMIT_AS, &lim) != 0) std::_Exit(4);
  void* second = shard_malloc(400 * kMiB);
  if (second == nullptr) std::_Exit(5);
  shard_free(second);
  return arena;
}

// The process heap under an address-space limit: a freed 300 MiB block's
// arena gives its tail back for a 400 MiB one, and keeps one chunk; the rest
// of its first 64 MiB is free for the kernel to map, and a free of such a
// foreign block is refused.
void remnant_of_a_grown_arena() {
  void* arena = arena_grown_past_under_a_limit();
  char* foreign = static_cast<char*>(map_exactly_at(at(arena, kChunk), kArena - kChunk));
  if (foreign == nullptr) std::_Exit(6);  // the arena kept more than its first chunk
  foreign[0] = 1;
  shard_free(foreign + kChunk);
  std::_Exit(7);
}
TEST(OsRemnantDeath, AGrownArenaKeepsOneChunkAndAFreeInTheRestIsRefused) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "an address-space limit leaves a sanitizer's shadow memory no room";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(remnant_of_a_grown_arena(), "not allocated");
}

// After a grown arena's tail went back, the program maps the rest of its
// first 64 MiB inaccessible (PROT_NONE: any read of it by the allocator
// faults). Statistics, a snapshot, a fork's child walking both, small and
// huge allocations (the remnant's slots and their commits) never touch it;
// then `how` is tried on a pointer into it and must stop as "not allocated"
// (realloc: through its usable-size check).
enum class Probe { kRealloc, kUsableSize };
void walks_skip_a_foreign_mapping_in_the_remnant(Probe how) {
  void* arena = arena_grown_past_under_a_limit();
  void* foreign = map_exactly_at(at(arena, kChunk), kArena - kChunk);
  if (foreign == nullptr) std::_Exit(6);
  if (mprotect(foreign, kArena - kChunk, PROT_NONE) != 0) std::_Exit(7);
  // The remnant's slots: small blocks and a few 1-2 slot spans land there.
  void* blocks[64];
  for (size_t i = 0; i < 64; ++i) {
    blocks[i] = shard_malloc(i % 4 == 0 ? 600 * 1024 : 64);
    if (blocks[i] == nullptr) std::_Exit(8);
  }
  shard_stats st{};
  shard_stats_get(&st);
  static char snap[1 << 20];
  if (shard_heap_snapshot(snap, sizeof snap) == 0) std::_Exit(9);
  const pid_t pid = fork();
  if (pid == 0) {
    shard_stats_get(&st);
    shard_heap_snapshot(snap, sizeof snap);
    void* p = shard_malloc(100);
    shard_free(p);
    std::_Exit(0);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    std::_Exit(10);
  for (void* b : blocks) shard_free(b);
  char* inside = static_cast<char*>(foreign) + kChunk;
  switch (how) {
    case Probe::kRealloc:
      shard_realloc(inside, 64);
      break;
    case Probe::kUsableSize:
      shard_usable_size(inside);
      break;
  }
  std::_Exit(11);
}
TEST(OsRemnantDeath, WalksSkipAForeignMappingInTheRemnantAndReallocRefusesIt) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "an address-space limit leaves a sanitizer's shadow memory no room";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(walks_skip_a_foreign_mapping_in_the_remnant(Probe::kRealloc), "not allocated");
}
TEST(OsRemnantDeath, WalksSkipAForeignMappingInTheRemnantAndUsableSizeRefusesIt) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "an address-space limit leaves a sanitizer's shadow memory no room";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(walks_skip_a_foreign_mapping_in_the_remnant(Probe::kUsableSize), "not allocated");
}

// Near an address-space limit, an arena is mapped at its exact size and
// moved to an aligned address (os_reserve's map_exact_aligned) when the
// extra alignment an over-map takes is refused: 128 MiB aligned to 64 MiB
// with 160 MiB of room (an over-map needs 192). Exit code 0: reserved,
// aligned, and usable once committed.
void exact_reservation_under_a_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_AS, &lim) != 0) std::_Exit(3);
  lim.rlim_cur = rlim_t(shardtest::proc_memory().vm + 160 * kMiB);
  if (setrlimit(RLIMIT_AS, &lim) != 0) std::_Exit(4);
  size_t got = 0;
  void* arena = platform::os_reserve(128 * kMiB, kArena, &got);
  if (arena == nullptr) std::_Exit(5);
  if (reinterpret_cast<uintptr_t>(arena) % kArena != 0 || got != 128 * kMiB) std::_Exit(6);
  if (!platform::os_commit(arena, kChunk)) std::_Exit(7);
  static_cast<char*>(arena)[kChunk - 1] = 1;
  platform::os_release(arena, got);
  std::_Exit(0);
}
TEST(OsRemnantDeath, AnArenaIsReservedAtItsExactSizeNearTheLimit) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "an address-space limit leaves a sanitizer's shadow memory no room";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(exact_reservation_under_a_limit(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
