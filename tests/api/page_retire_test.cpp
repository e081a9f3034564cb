// Retired pages (Heap::retire_page): an empty page of medium or large blocks
// that is its class's only page stays while the class is in use, and goes
// back to its segment once the heap has set up twice its size in other
// memory, so that a thread keeps no 512 KiB page per class it used once.
// Counted with a first-class heap's own statistics (its own domain: nothing
// else allocates there).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <thread>

#include "core/checked.h"
#include "shardalloc/heap.h"
#include "shardalloc/stats.h"

namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kLargeBlock = 64 * kKiB;  // a large class: one 512 KiB page per segment
constexpr size_t kSegmentBytes = 512 * kKiB;

// The segment (for a large class: the page) holding p.
uintptr_t segment_of(const void* p) {
  return reinterpret_cast<uintptr_t>(p) & ~(kSegmentBytes - 1);
}

uint64_t segments(const shard_heap* h) {
  shard_stats st{};
  EXPECT_EQ(shard_heap_stats(h, &st), SHARD_OK);
  return st.segments;
}

// Allocates and frees a large block (its page, empty, retires); returns where it was.
void* free_a_large_block(shard_heap* h) {
  void* p = shard_heap_malloc(h, kLargeBlock);
  EXPECT_NE(p, nullptr);
  shard_heap_free(h, p);
  return p;
}

struct HeapGuard {
  shard_heap* h = shard_heap_new();
  ~HeapGuard() { shard_heap_destroy(h); }
};

}  // namespace

TEST(PageRetire, AnEmptyLargePageGoesBackWhenTheHeapSetsUpMoreMemory) {
  if (shardalloc::core::kChecked) GTEST_SKIP() << "checked builds hold a freed block in quarantine";
  HeapGuard g;
  ASSERT_NE(g.h, nullptr);
  void* block = shard_heap_malloc(g.h, kLargeBlock);
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kLargeBlock);
  const uint64_t with_page = segments(g.h);
  shard_heap_free(g.h, block);
  EXPECT_EQ(segments(g.h), with_page) << "the class's only page stays when it empties";
  // A huge block of two slots (1 MiB set up: twice the page's blocks) frees
  // the retired page first; its slot can then hold part of the huge span.
  void* huge = shard_heap_malloc(g.h, 600 * kKiB);
  ASSERT_NE(huge, nullptr);
  std::memset(huge, 2, 600 * kKiB);
  EXPECT_EQ(segments(g.h), with_page - 1 + 2) << "the large page's segment went back";
  shard_heap_free(g.h, huge);
}

TEST(PageRetire, APageInUseOneBlockAtATimeStays) {
  HeapGuard g;
  ASSERT_NE(g.h, nullptr);
  void* first = free_a_large_block(g.h);
  shard_heap_free(g.h, shard_heap_malloc(g.h, 100));  // the small blocks' segment, set up once
  const uint64_t before = segments(g.h);
  for (int i = 0; i < 1000; ++i) {
    void* p = shard_heap_malloc(g.h, kLargeBlock);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(segment_of(p), segment_of(first))
        << "round " << i << ": the page was given up and set up again";
    std::memset(p, i, 64);
    // Small blocks in between set up no memory: the large page stays.
    void* small = shard_heap_malloc(g.h, 100);
    ASSERT_NE(small, nullptr);
    shard_heap_free(g.h, p);
    shard_heap_free(g.h, small);
  }
  EXPECT_EQ(segments(g.h), before);
}

TEST(PageRetire, ARetiredPageUsedAgainIsNotFreedUnderItsBlocks) {
  // Retire a page, use it again, then set up huge blocks of many times its
  // size: the page holds a live block and stays.
  HeapGuard g;
  ASSERT_NE(g.h, nullptr);
  void* a = free_a_large_block(g.h);
  void* live = shard_heap_malloc(g.h, kLargeBlock);
  ASSERT_EQ(segment_of(live), segment_of(a));
  std::memset(live, 0x5a, kLargeBlock);
  void* huge[4];
  for (void*& p : huge) {
    p = shard_heap_malloc(g.h, 900 * kKiB);
    ASSERT_NE(p, nullptr);
    std::memset(p, 3, 900 * kKiB);
  }
  for (size_t i = 0; i < kLargeBlock; ++i) ASSERT_EQ(static_cast<unsigned char*>(live)[i], 0x5a);
  for (void* p : huge) shard_heap_free(g.h, p);
  shard_heap_free(g.h, live);
}

TEST(PageRetire, AHeapTakenOverWithARetiredClassAndNoPageSetsUpMemory) {
  // A thread retires a page and exits: its heap frees the empty page, the
  // class's retire mark stays, and the next thread that takes the heap over
  // finds the class without a page when it sets up a huge block.
  HeapGuard g;
  ASSERT_NE(g.h, nullptr);
  for (int round = 0; round < 8; ++round) {
    std::thread([&] {
      void* p = shard_heap_malloc(g.h, kLargeBlock);
      ASSERT_NE(p, nullptr);
      std::memset(p, 1, kLargeBlock);
      shard_heap_free(g.h, p);
    }).join();
    std::thread([&] {
      void* huge = shard_heap_malloc(g.h, 2048 * kKiB);
      ASSERT_NE(huge, nullptr);
      std::memset(huge, 2, 2048 * kKiB);
      void* large = shard_heap_malloc(g.h, kLargeBlock);
      ASSERT_NE(large, nullptr);
      shard_heap_free(g.h, large);
      shard_heap_free(g.h, huge);
    }).join();
  }
}

TEST(PageRetire, AClassUsedInTurnWithHugeBlocksKeepsItsPage) {
  // A block of a large class and a huge block in turn: the huge block's
  // setup retires the class's page, which the next turn sets up again. After
  // one such turn the class keeps its page (no page given back and set up at
  // every turn).
  if (shardalloc::core::kChecked) GTEST_SKIP() << "checked builds hold a freed block in quarantine";
  HeapGuard g;
  ASSERT_NE(g.h, nullptr);
  free_a_large_block(g.h);
  const uint64_t with_page = segments(g.h);
  for (int turn = 0; turn < 4; ++turn) {
    void* block = shard_heap_malloc(g.h, kLargeBlock);
    ASSERT_NE(block, nullptr);
    std::memset(block, turn, kLargeBlock);
    shard_heap_free(g.h, block);
    void* huge = shard_heap_malloc(g.h, 600 * kKiB);
    ASSERT_NE(huge, nullptr);
    if (turn > 0) {
      EXPECT_EQ(segments(g.h), with_page + 2) << "turn " << turn << ": the page went";
    }
    shard_heap_free(g.h, huge);
  }
}
