// Transparent huge pages (os_source.cpp, advise_huge_pages): every mapping
// of an OS arena is advised MADV_NOHUGEPAGE unless SHARDALLOC_HUGE_PAGES=1
// asks for MADV_HUGEPAGE, and so are the sparse lookup tables (the arena
// and commit maps in .bss, the zero-size blocks' bitmap). Where THP is on
// for every mapping (enabled = always), a fault in a 2 MiB range took a
// huge page whatever the program used of it: bench/run --quick's peak RSS
// geomean went from 0.97x mimalloc's to 1.34x, malloc-large from 14.5 MiB
// to 467 (docs/benchmarks.md, "Transparent huge pages").
//
// The advice shows as a flag of the mapping in /proc/self/smaps ("nh",
// "hg"). Where the kernel has no THP, or an emulator (qemu-user) takes the
// advice without passing it on, a mapping of the test's own shows no flag
// after the same advice: the tests skip there.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/checked.h"
#include "platform/linux/os_source.h"
#include "shardalloc/shardalloc.h"
#include "support/address_space.h"
#include "support/test_support.h"

namespace {

namespace platform = shardalloc::platform;
using shardtest::advice_shows;
using shardtest::has_flag;
using shardtest::vm_flags_at;

constexpr size_t kMiB = size_t{1} << 20;

#define SKIP_UNLESS_ADVICE_SHOWS()                                                      \
  if (!advice_shows()) {                                                                \
    GTEST_SKIP() << "no THP here, or the advice is not passed on (qemu-user): no flag"; \
  }

TEST(OsHugePages, SmallAndHugeBlocksLieInArenasAdvisedNoHugePages) {
  SKIP_UNLESS_ADVICE_SHOWS();
  void* small = shard_malloc(100);
  void* medium = shard_malloc(200 * 1024);
  void* huge = shard_malloc(40 * kMiB);
  ASSERT_NE(small, nullptr);
  ASSERT_NE(medium, nullptr);
  ASSERT_NE(huge, nullptr);
  std::memset(huge, 1, 40 * kMiB);  // faulted in: still no huge page by advice
  for (void* p : {small, medium, huge, static_cast<void*>(static_cast<char*>(huge) + 39 * kMiB)}) {
    const std::string flags = vm_flags_at(p);
    EXPECT_TRUE(has_flag(flags, "nh")) << p << ":" << flags;
    EXPECT_FALSE(has_flag(flags, "hg")) << p << ":" << flags;
  }
  shard_free(huge);
  shard_free(medium);
  shard_free(small);
}

constexpr size_t kArena = 64 * kMiB;

// An OS arena of kArena bytes with its first `chunks` chunks committed.
char* committed_arena(size_t chunks) {
  size_t got = 0;
  void* arena = platform::os_reserve(kArena, kArena, &got);
  if (arena == nullptr) return nullptr;
  EXPECT_TRUE(has_flag(vm_flags_at(arena), "nh")) << "before the first commit";
  if (!platform::os_commit(arena, chunks * platform::kCommitChunk)) return nullptr;
  return static_cast<char*>(arena);
}

TEST(OsHugePages, AFreshArenaIsAdvisedBeforeItsFirstCommit) {
  SKIP_UNLESS_ADVICE_SHOWS();
  char* arena = committed_arena(1);
  ASSERT_NE(arena, nullptr);
  // mprotect split the mapping: both parts keep the flag.
  EXPECT_TRUE(has_flag(vm_flags_at(arena), "nh"));
  EXPECT_TRUE(has_flag(vm_flags_at(arena + kArena - 1), "nh"));
  platform::os_release(arena, kArena);
}

TEST(OsHugePages, AMappingMadeInPlaceByProtectIsAdvisedAgain) {
  SKIP_UNLESS_ADVICE_SHOWS();
  char* arena = committed_arena(2);
  ASSERT_NE(arena, nullptr);
  char* inside = arena + platform::kCommitChunk;
  platform::os_protect(inside, 2 * kMiB, /*accessible=*/false);  // a new mapping in place
  EXPECT_TRUE(has_flag(vm_flags_at(inside), "nh")) << vm_flags_at(inside);
  platform::os_protect(inside, 2 * kMiB, /*accessible=*/true);
  EXPECT_TRUE(has_flag(vm_flags_at(inside), "nh")) << vm_flags_at(inside);
  platform::os_release(arena, kArena);
}

TEST(OsHugePages, TheLookupMapsInBssAreAdvisedNoHugePagesAtStart) {
  SKIP_UNLESS_ADVICE_SHOWS();
  // No allocation first: a free() reads the maps before any arena exists
  // (without the huge zero page, that read faults in a huge page), so they
  // are advised at start-up as well as at the first reservation. (ctest
  // runs each test alone: nothing of this library allocated before.)
  const char* maps = reinterpret_cast<const char*>(platform::g_os_arena_map);
  const char* commits = reinterpret_cast<const char*>(platform::g_os_commit_map);
  const size_t map_bytes = sizeof platform::g_os_arena_map;
  const size_t commit_bytes = sizeof platform::g_os_commit_map;
  // Both ends and the middle of each table, past the partial pages at its ends.
  for (const char* p : {maps + 4096, maps + map_bytes / 2, maps + map_bytes - 4097, commits + 4096,
                        commits + commit_bytes / 2, commits + commit_bytes - 4097}) {
    EXPECT_TRUE(has_flag(vm_flags_at(p), "nh")) << static_cast<const void*>(p);
  }
}

TEST(OsHugePages, TheZeroSizeBlocksRegionAndItsBitmapAreAdvisedNoHugePages) {
  if (!shardalloc::core::kChecked) GTEST_SKIP() << "zero-size blocks of their own: checked builds";
  SKIP_UNLESS_ADVICE_SHOWS();
  void* z = shard_malloc(0);
  ASSERT_NE(z, nullptr);
  // The region (256 MiB of inaccessible blocks) and, after it, the bitmap.
  EXPECT_TRUE(has_flag(vm_flags_at(z), "nh")) << vm_flags_at(z);
  const char* bitmap = static_cast<char*>(z) + (size_t{256} << 20);
  EXPECT_TRUE(has_flag(vm_flags_at(bitmap), "nh")) << vm_flags_at(bitmap);
  shard_free(z);
}

// SHARDALLOC_HUGE_PAGES=1 is read at the first arena's reservation, at the
// start of the process: a child started with it set.
void huge_pages_asked_for() {
  void* p = shard_malloc(100);
  void* huge = shard_malloc(40 * kMiB);
  if (p == nullptr || huge == nullptr) std::_Exit(2);
  const bool advised = has_flag(vm_flags_at(p), "hg") && has_flag(vm_flags_at(huge), "hg") &&
                       !has_flag(vm_flags_at(huge), "nh");
  std::_Exit(advised ? 0 : 3);
}

TEST(OsHugePagesDeath, SHARDALLOC_HUGE_PAGESAsksForHugePages) {
  SKIP_UNLESS_ADVICE_SHOWS();
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // re-executed: the variable is read at start
  setenv("SHARDALLOC_HUGE_PAGES", "1", 1);
  EXPECT_EXIT(huge_pages_asked_for(), ::testing::ExitedWithCode(0), "");
  unsetenv("SHARDALLOC_HUGE_PAGES");
}

}  // namespace
