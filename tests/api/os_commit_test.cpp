// OS arenas are address space until claims reach them (PageSource::commit,
// platform/linux/os_source.cpp): reserved inaccessible, made readable and
// writable 4 MiB at a time where a claim writes. A process that locks its
// memory (mlockall) or runs under strict overcommit then pays for what the
// allocator uses, not for whole 64 MiB reservations (a locked process held
// 70 MB after three small allocations; docs/override.md).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "shardalloc/heap.h"
#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/test_support.h"

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr uintptr_t kArena = 64 * kMiB;

struct Access {
  size_t accessible = 0;
  size_t inaccessible = 0;
};

// The bytes of [start, end) that /proc/self/maps lists readable, and not.
Access access_of(uintptr_t start, uintptr_t end) {
  Access a;
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return a;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long long lo = 0, hi = 0;
    char perms[8] = {};
    if (std::sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) != 3) continue;
    const uintptr_t from = lo > start ? uintptr_t(lo) : start;
    const uintptr_t to = hi < end ? uintptr_t(hi) : end;
    if (from >= to) continue;
    (perms[0] == 'r' ? a.accessible : a.inaccessible) += to - from;
  }
  std::fclose(f);
  return a;
}

TEST(OsCommit, AnArenaIsAccessibleOnlyWhereClaimsReached) {
  void* p = shard_malloc(100);
  ASSERT_NE(p, nullptr);
  const uintptr_t arena = reinterpret_cast<uintptr_t>(p) & ~(kArena - 1);
  const Access a = access_of(arena, arena + kArena);
  // Its header, metadata and first segments: a chunk or two, not 64 MiB.
  EXPECT_LE(a.accessible, 16 * kMiB);
  EXPECT_GE(a.inaccessible, kArena - 16 * kMiB);
  shard_free(p);
}

TEST(OsCommit, AHugeBlockCommitsItsSpanNotItsArena) {
#ifdef SHARDTEST_SANITIZED
  // The window past the block's first 64 MiB holds the sanitizer's own
  // mappings too (ASan: 75 MB accessible there against our 40 MiB block).
  GTEST_SKIP() << "a sanitizer maps next to the arenas";
#endif
  constexpr size_t kBlock = 40 * kMiB;
  auto* p = static_cast<unsigned char*>(shard_malloc(kBlock));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x5a, kBlock);  // every byte writable
  EXPECT_EQ(p[kBlock - 1], 0x5a);
  // The block's arena is one reserved for huge blocks (256 MiB or more):
  // what it made accessible is about the block, in 4 MiB steps.
  const uintptr_t first = reinterpret_cast<uintptr_t>(p) & ~(kArena - 1);
  const Access a = access_of(first, first + 4 * kArena);
  EXPECT_GE(a.accessible, kBlock);
  EXPECT_LE(a.accessible, kBlock + 16 * kMiB);
  shard_free(p);
}

// Lines of /proc/self/maps: the process's mappings.
size_t mapping_count() {
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return 0;
  size_t lines = 0;
  for (int c; (c = std::fgetc(f)) != EOF;) lines += c == '\n';
  std::fclose(f);
  return lines;
}

// Blocks of a large alignment live side by side: each committed its own
// island of chunks, two mappings apiece, until vm.max_map_count refused
// mprotect, mmap and pthread_create alike (a review: ENOMEM at block 30702
// of 16 MiB alignment). Commits are prefixes of each 64 MiB: two mappings
// per 64 MiB at most.
TEST(OsCommit, AlignedBlocksSideBySideCostFewMappings) {
  constexpr size_t kBlocks = 256;
  static void* blocks[kBlocks];
  const size_t before = mapping_count();
  for (void*& b : blocks) {
    b = shard_malloc_aligned(600 * 1024, 16 * kMiB);
    ASSERT_NE(b, nullptr);
    *static_cast<char*>(b) = 1;
  }
  const size_t grown = mapping_count() - before;
  // 256 blocks of 16 MiB steps span 64 OS arenas' worth: about 2 mappings
  // per 64 MiB (a reservation's rest is one more), against 2 per block.
  EXPECT_LT(grown, kBlocks) << grown << " mappings for " << kBlocks << " blocks";
  for (void* b : blocks) shard_free(b);
}

TEST(OsCommit, StatisticsWalkTheArenasWithTheirUncommittedSlots) {
  // The walk reads a header only where the slot was committed (a claim
  // being set up is skipped): it must not fault on the reserved rest.
  void* p = shard_malloc(1000);
  ASSERT_NE(p, nullptr);
  shard_stats s;
  std::memset(&s, 0, sizeof s);
  shard_stats_get(&s);
  EXPECT_GE(s.live_blocks, 1u);
  EXPECT_GE(s.segments, 1u);
  static char snapshot[1 << 20];
  const size_t n = shard_heap_snapshot(snapshot, sizeof snapshot);
  EXPECT_GT(n, 0u);
  shard_free(p);
}

// A field of /proc/self/status in kB ("VmSize:", "VmData:"), read without
// allocating (the tests below run with allocations refused).
long status_kb(const char* key) {
  static char buf[8192];
  const int fd = open("/proc/self/status", O_RDONLY);
  if (fd < 0) return -1;
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  const char* at = std::strstr(buf, key);
  return at == nullptr ? -1 : std::atol(at + std::strlen(key));
}

// RLIMIT_DATA counts what mprotect makes writable (private), not PROT_NONE
// reservations: the commit limit of vm.overcommit_memory=2, in one process.
void limit_data_to(size_t bytes) {
  rlimit lim{};
  getrlimit(RLIMIT_DATA, &lim);
  lim.rlim_cur = bytes;
  setrlimit(RLIMIT_DATA, &lim);
}

// A first-class OS heap whose growth is refused at the new arena's header
// commit gives the reservation back: its source has no `release` (frees find
// its arenas by address), and each refused malloc kept 512 MiB of address
// space (and their g_os_arena_map entries) for good, past the heap's destroy.
void first_class_refused_growth() {
  shard_heap* h = shard_heap_new();
  void* first = shard_heap_malloc(h, 100);
  if (first == nullptr) std::_Exit(2);
  limit_data_to(size_t(status_kb("VmData:")) * 1024);
  const long before = status_kb("VmSize:");
  for (int i = 0; i < 20; ++i) {
    if (shard_heap_malloc(h, 100 * kMiB) != nullptr) std::_Exit(3);
  }
  const long grown_mib = (status_kb("VmSize:") - before) / 1024;
  std::_Exit(grown_mib < 256 ? 0 : 1);
}
TEST(OsCommitDeath, AFirstClassHeapsRefusedGrowthGivesItsReservationBack) {
  EXPECT_EXIT(first_class_refused_growth(), ::testing::ExitedWithCode(0), "");
}

// A commit limit counts what a freed block committed (a purge drops pages,
// not the commit): a refused commit gives free arena tails back before it
// fails. 1000 MiB freed, then 1500 MiB under 2200 MiB: ENOMEM, nothing live.
void larger_block_after_a_free_under_a_commit_limit() {
  void* warm = shard_malloc(100);
  if (warm == nullptr) std::_Exit(2);
  limit_data_to(size_t(status_kb("VmData:")) * 1024 + 2200 * kMiB);
  void* a = shard_malloc(1000 * kMiB);
  if (a == nullptr) std::_Exit(3);
  std::memset(a, 1, 1000 * kMiB);
  shard_free(a);
  void* b = shard_malloc(1500 * kMiB);
  std::_Exit(b != nullptr ? 0 : 1);
}
TEST(OsCommitDeath, ARefusedCommitGivesBackWhatFreeTailsCommitted) {
  EXPECT_EXIT(larger_block_after_a_free_under_a_commit_limit(), ::testing::ExitedWithCode(0), "");
}

// The same when the limit refuses even the new arena's header: two freed
// 500 MiB blocks (an arena each), then 800 MiB, which fits neither, with
// 1 MiB of the limit left.
void new_arena_after_frees_under_a_commit_limit() {
  void* a = shard_malloc(500 * kMiB);
  void* b = shard_malloc(500 * kMiB);
  if (a == nullptr || b == nullptr) std::_Exit(2);
  std::memset(a, 1, 500 * kMiB);
  std::memset(b, 1, 500 * kMiB);
  shard_free(a);
  shard_free(b);
  limit_data_to(size_t(status_kb("VmData:")) * 1024 + kMiB);
  void* c = shard_malloc(800 * kMiB);
  std::_Exit(c != nullptr ? 0 : 1);
}
TEST(OsCommitDeath, ARefusedArenaHeaderCommitGivesBackWhatFreeTailsCommitted) {
  EXPECT_EXIT(new_arena_after_frees_under_a_commit_limit(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
