// Arena slot bitmap: claims, runs across words, alignment, release and purge.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "core/arena.h"
#include "core/bits.h"

using namespace shardalloc::core;

namespace {

struct TestArena {
  explicit TestArena(size_t slots, uintptr_t base = uintptr_t{1} << 40)
      : storage(new uint64_t[Arena::header_bytes(slots) / 8 + 1]),
        arena(Arena::create(storage.get(), base, slots, base, base + slots * kSegmentSize)) {}
  std::unique_ptr<uint64_t[]> storage;
  Arena* arena;
};

}  // namespace

TEST(Arena, ClaimsEverySlotOnceThenFails) {
  TestArena t(130);
  std::vector<bool> seen(130, false);
  for (int i = 0; i < 130; ++i) {
    const size_t idx = t.arena->claim(1, 0, 0);
    ASSERT_LT(idx, 130u);
    ASSERT_FALSE(seen[idx]);
    seen[idx] = true;
    EXPECT_TRUE(t.arena->is_claimed(idx));
  }
  EXPECT_EQ(t.arena->claim(1, 0, 0), SIZE_MAX);
  t.arena->release(77, 1);
  EXPECT_EQ(t.arena->claim(1, 0, 0), 77u);
}

TEST(Arena, RunsCrossWordBoundaries) {
  TestArena t(200);
  ASSERT_EQ(t.arena->claim(60, 0, 0), 0u);
  const size_t run = t.arena->claim(100, 0, 0);
  ASSERT_EQ(run, 60u);  // spans words 0, 1 and 2
  for (size_t i = 60; i < 160; ++i) EXPECT_TRUE(t.arena->is_claimed(i));
  EXPECT_EQ(t.arena->claim(41, 0, 0), SIZE_MAX);
  EXPECT_EQ(t.arena->claim(40, 0, 0), 160u);
  t.arena->release(60, 100);
  EXPECT_EQ(t.arena->claim(100, 0, 0), 60u);
}

TEST(Arena, AlignedClaimsPutTheOffsetSlotOnTheBoundary) {
  TestArena t(256);
  const size_t align = 8 * kSegmentSize;
  for (int i = 0; i < 5; ++i) {
    const size_t idx = t.arena->claim(3, align, 1);
    ASSERT_NE(idx, SIZE_MAX);
    EXPECT_EQ(t.arena->slot_addr(idx + 1) % align, 0u);
  }
}

TEST(Arena, TooLargeOrEmptyRequestsFail) {
  TestArena t(10);
  EXPECT_EQ(t.arena->claim(11, 0, 0), SIZE_MAX);
  EXPECT_EQ(t.arena->claim(0, 0, 0), SIZE_MAX);
}

TEST(Arena, PurgeTicksPurgeOnlySlotsFreeForAWholeTick) {
  TestArena t(64);
  for (int i = 0; i < 10; ++i) ASSERT_NE(t.arena->claim(1, 0, 0), SIZE_MAX);
  t.arena->release(3, 1);
  t.arena->release(5, 2);
  static std::atomic<int> calls;
  calls = 0;
  auto count = [](void*, size_t bytes) {
    EXPECT_EQ(bytes, kSegmentSize);
    ++calls;
  };
  size_t purged = 0;
  // First tick: the slots only just became free; they age.
  EXPECT_EQ(t.arena->purge_tick(count, false, &purged), 3u);
  EXPECT_EQ(purged, 0u);
  // Slot 5 is reused and freed again before the next tick: it must wait a tick more.
  ASSERT_EQ(t.arena->claim(1, 0, 0), 3u);
  t.arena->release(3, 1);
  EXPECT_EQ(t.arena->purge_tick(count, false, &purged), 1u);
  EXPECT_EQ(purged, 2u);  // slots 5 and 6
  EXPECT_EQ(t.arena->purge_tick(count, false, &purged), 0u);
  EXPECT_EQ(purged, 3u);
  EXPECT_EQ(calls.load(), 3);
  EXPECT_FALSE(t.arena->is_claimed(3));
  // Forced purge takes every free dirty slot at once.
  t.arena->release(7, 1);
  EXPECT_EQ(t.arena->purge_tick(count, true, &purged), 0u);
  EXPECT_EQ(purged, 4u);
}

TEST(Arena, ConcurrentClaimsNeverOverlap) {
  TestArena t(512);
  std::vector<std::atomic<int>> owner(512);
  for (auto& o : owner) o = -1;
  std::atomic<bool> bad{false};
  std::vector<std::thread> threads;
  for (int tid = 0; tid < 4; ++tid) {
    threads.emplace_back([&, tid] {
      for (int round = 0; round < 2000; ++round) {
        const size_t n = 1 + (round + tid) % 5;
        const size_t idx = t.arena->claim(n, 0, 0);
        if (idx == SIZE_MAX) continue;
        for (size_t i = idx; i < idx + n; ++i) {
          int expected = -1;
          if (!owner[i].compare_exchange_strong(expected, tid)) bad = true;
        }
        for (size_t i = idx; i < idx + n; ++i) owner[i] = -1;
        t.arena->release(idx, n);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(bad.load());
}
