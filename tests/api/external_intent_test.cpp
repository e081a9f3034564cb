// The intents of other allocators' test suites for first-class heaps and
// regions that first_class_heap_test.cpp and the region tests do not check
// yet: mimalloc's heap tests (test/test-api.c) and snmalloc's fixed-region
// tests (src/test/func/fixed_region, fixed_region_remote_dealloc), ported to
// shard_heap_* and shard_region_*. Each test names the outside test it
// derives from and says what it checks; none of their code is used.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "shardalloc/heap.h"
#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"
#include "support/address_space.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

#if defined(SHARDTEST_SANITIZED)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// ---------------------------------------------------------------------------
// mimalloc test/test-api.c, heaps

// "heap-many" (mimalloc issue #1358): a thousand heaps alive at once, each
// with a block, then all destroyed; the process's mappings go back to about
// where they were.
TEST(MimallocHeap, AThousandHeapsAliveAtOnce) {
  const int n = kSanitized ? 200 : 1000;
  shard_heap_destroy(shard_heap_new());  // the process domain's first arena, for good
  const size_t before = mapped_bytes();
  std::vector<shard_heap*> heaps;
  std::vector<void*> blocks;
  for (int i = 0; i < n; ++i) {
    shard_heap* h = shard_heap_new();
    ASSERT_NE(h, nullptr) << "heap " << i << " errno " << errno;
    void* p = shard_heap_malloc(h, 32);
    ASSERT_NE(p, nullptr) << "heap " << i;
    std::memset(p, i & 0xff, 32);
    heaps.push_back(h);
    blocks.push_back(p);
  }
  for (int i = 0; i < n; ++i) {
    auto* b = static_cast<unsigned char*>(blocks[size_t(i)]);
    EXPECT_TRUE(std::all_of(b, b + 32, [&](unsigned char c) { return c == (i & 0xff); })) << i;
    EXPECT_GE(shard_heap_used_bytes(heaps[size_t(i)]), 32u);
  }
  for (shard_heap* h : heaps) shard_heap_destroy(h);
  const size_t after = mapped_bytes();
  EXPECT_LE(after, before + 16 * MiB) << before / MiB << " -> " << after / MiB << " MiB";
}

// "heap-os1" / "heap-os2" (mimalloc, @zoxc's bugs #2 and #3): blocks of 1 MiB
// at 2 MiB alignment (over-aligned, so served apart from the small pages) in
// a heap that is then destroyed with the blocks live: every destroy gives
// all of it back, so 30 such cycles do not grow the mappings.
TEST(MimallocHeap, OverAlignedBlocksGoBackOnDestroy) {
  auto cycle = [](int i) {
    shard_heap* h = shard_heap_new();
    ASSERT_NE(h, nullptr);
    for (int k = 0; k < 10; ++k) {
      auto* p = static_cast<int*>(shard_heap_malloc_aligned(h, MiB, 2 * MiB));
      ASSERT_NE(p, nullptr) << "cycle " << i << " block " << k;
      EXPECT_TRUE(is_aligned(p, 2 * MiB));
      p[0] = 42;
      p[MiB / sizeof(int) - 1] = 43;
    }
    EXPECT_GE(shard_heap_used_bytes(h), 10 * MiB);
    shard_heap_destroy(h);
  };
  for (int i = 0; i < 3; ++i) cycle(i);
  const size_t warm = mapped_bytes();
  for (int i = 3; i < 33; ++i) cycle(i);
  const size_t after = mapped_bytes();
  EXPECT_LE(after, warm + 4 * MiB) << warm / MiB << " -> " << after / MiB << " MiB";
}

// "malloc-large" (mimalloc PR #544) in a first-class heap, whose arenas span
// 64 MiB each: a block of 64 MiB + 8 bytes, by malloc, calloc (zeroed),
// realloc from a small block (contents kept) and at 64 MiB alignment.
TEST(MimallocHeap, BlocksJustAboveAnArenaInAHeap) {
  const size_t n = 64 * MiB + 8;
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  auto* p = static_cast<unsigned char*>(shard_heap_malloc(h, n));
  ASSERT_NE(p, nullptr) << "errno " << errno;
  EXPECT_GE(shard_usable_size(p), n);
  fill_sparse(p, n, 1);
  EXPECT_TRUE(check_sparse(p, n, 1));
  EXPECT_GE(shard_heap_used_bytes(h), n);

  auto* z = static_cast<unsigned char*>(shard_heap_calloc(h, 1, n));
  ASSERT_NE(z, nullptr);
  size_t nonzero = 0;
  for (size_t i = 0; i < n; i += 512) nonzero += z[i] != 0;
  nonzero += z[n - 1] != 0;
  EXPECT_EQ(nonzero, 0u);
  shard_heap_free(h, z);

  auto* s = static_cast<unsigned char*>(shard_heap_malloc(h, 1000));
  ASSERT_NE(s, nullptr);
  fill_with_base(s, 1000, 0x1234567);
  auto* r = static_cast<unsigned char*>(shard_heap_realloc(h, s, n));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(check_with_base(r, 1000, 0x1234567), SIZE_MAX);
  r[n - 1] = 1;

  void* a = shard_heap_malloc_aligned(h, MiB, 64 * MiB);
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(is_aligned(a, 64 * MiB));
  std::memset(a, 3, MiB);

  EXPECT_TRUE(check_sparse(p, n, 1));
  shard_heap_free(h, p);
  shard_heap_free(h, r);
  shard_heap_free(h, a);
  EXPECT_EQ(shard_heap_used_bytes(h), 0u);
  shard_heap_destroy(h);
}

// "zero_aligned_first": an aligned request of size 0 as a thread's first call
// on a heap and on a region (the thread's part of either is made by it).
TEST(MimallocHeap, ZeroSizeAlignedAsAThreadsFirstCall) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  const size_t bytes = 16 * MiB;
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, map_memory(bytes), bytes), SHARD_OK);
  for (size_t align = 16; align <= MiB; align *= 4) {
    std::thread t([&] {
      void* p = shard_heap_malloc_aligned(h, 0, align);
      EXPECT_NE(p, nullptr) << align;
      EXPECT_TRUE(is_aligned(p, align)) << align;
      shard_heap_free(h, p);
      void* q = nullptr;
      EXPECT_EQ(shard_region_alloc(r, 0, align, &q), SHARD_OK) << align;
      EXPECT_TRUE(is_aligned(q, align)) << align;
      EXPECT_EQ(shard_region_dealloc(r, q, 0, align), SHARD_OK) << align;
    });
    t.join();
  }
  EXPECT_EQ(shard_heap_used_bytes(h), 0u);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
  shard_heap_destroy(h);
}

// mimalloc's test-api-fill.c "zeroinit-calloc-large" intent (calloc of used
// memory is zero) at 256 MiB in a first-class heap: a sparse block (two pages
// touched) freed, then shard_heap_calloc of the same size reads zero without
// making the whole block resident (RSS grows by less than 32 MiB). Fails with
// this tree: the reused span is cleared with a memset of all of it (see
// override.external.*.HugeReuse.CallocOfAFreedSparseSpanDoesNotTouchEveryPage).
TEST(MimallocHeap, CallocOfAFreedSparseSpanDoesNotTouchEveryPage) {
  if (kSanitized) GTEST_SKIP() << "RSS includes shadow memory";
  const size_t n = 256 * MiB;
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  auto* p = static_cast<char*>(shard_heap_malloc(h, n));
  ASSERT_NE(p, nullptr);
  p[0] = 1;
  p[n / 2] = 1;
  shard_heap_free(h, p);
  const size_t before = proc_memory().rss;
  auto* q = static_cast<char*>(shard_heap_calloc(h, 1, n));
  ASSERT_NE(q, nullptr);
  const size_t after = proc_memory().rss;
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[n / 2], 0);
  EXPECT_LT(after, before + 32 * MiB) << before / MiB << " -> " << after / MiB << " MiB";
  shard_heap_destroy(h);
}

// ---------------------------------------------------------------------------
// snmalloc src/test/func/fixed_region/fixed_region.cc and
// fixed_region_remote_dealloc/fixed_region_remote_dealloc.cc

// Allocating from a fixed region until it says no: every block lies inside
// the memory handed over, no two overlap, and contents survive; then a
// second thread frees every other block (remote frees) and this one the
// rest; the region is empty again (used 0) and serves at least as many
// blocks of the same sizes a second time.
TEST(SnmallocFixedRegion, FillInsideTheRangeThenFreeRemotelyAndRefill) {
  const size_t bytes = 8 * MiB;
  auto* mem = static_cast<unsigned char*>(map_memory(bytes));
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, mem, bytes), SHARD_OK);
  const uintptr_t lo = reinterpret_cast<uintptr_t>(mem), hi = lo + bytes;
  struct Block {
    void* p;
    size_t size;
  };
  auto fill_up = [&](std::vector<Block>& out) {
    Rng rng(99);
    for (size_t failures = 0; failures < 50;) {
      const size_t size = rng.next() % 8 == 0 ? 600 * KiB : 1 + rng.next() % (64 * KiB);
      void* p = nullptr;
      const shard_status st = shard_region_alloc(r, size, 16, &p);
      if (st == SHARD_NO_MEMORY) {
        ++failures;
        continue;
      }
      ASSERT_EQ(st, SHARD_OK);
      const auto a = reinterpret_cast<uintptr_t>(p);
      ASSERT_TRUE(a >= lo && a + size <= hi) << p << " size " << size;
      fill_sparse(p, size, uint64_t(out.size()));
      out.push_back({p, size});
    }
  };
  std::vector<Block> first;
  fill_up(first);
  ASSERT_GT(first.size(), 20u);
  std::vector<std::pair<uintptr_t, size_t>> spans;
  size_t sum = 0;
  for (const Block& b : first) {
    spans.emplace_back(reinterpret_cast<uintptr_t>(b.p), b.size);
    sum += b.size;
  }
  EXPECT_TRUE(disjoint(spans));
  EXPECT_EQ(shard_region_used_bytes(r), sum);
  for (size_t i = 0; i < first.size(); ++i)
    ASSERT_TRUE(check_sparse(first[i].p, first[i].size, uint64_t(i))) << i;

  std::atomic<int> remote_errors{0};
  std::thread t([&] {
    for (size_t i = 0; i < first.size(); i += 2)
      if (shard_region_dealloc(r, first[i].p, first[i].size, 16) != SHARD_OK) ++remote_errors;
  });
  t.join();
  EXPECT_EQ(remote_errors.load(), 0);
  for (size_t i = 1; i < first.size(); i += 2)
    EXPECT_EQ(shard_region_dealloc(r, first[i].p, first[i].size, 16), SHARD_OK);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);

  std::vector<Block> second;
  fill_up(second);
  EXPECT_GE(second.size(), first.size()) << "the freed memory (remote frees too) is reusable";
  for (const Block& b : second) EXPECT_EQ(shard_region_dealloc(r, b.p, b.size, 16), SHARD_OK);
  EXPECT_EQ(shard_region_used_bytes(r), 0u);
}

}  // namespace
