// OS arenas are address space until claims reach them (PageSource::commit,
// platform/linux/os_source.cpp): reserved inaccessible, made readable and
// writable 4 MiB at a time where a claim writes. A process that locks its
// memory (mlockall) or runs under strict overcommit then pays for what the
// allocator uses, not for whole 64 MiB reservations (a locked process held
// 70 MB after three small allocations; docs/override.md).
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"

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

}  // namespace
