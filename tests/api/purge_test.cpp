// Memory goes back to the OS: after a peak, freed segments are purged once
// they have stayed free for the purge delay, and the RSS falls.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "core/domain.h"
#include "core/segment.h"
#include "platform/linux/process_heap.h"
#include "shardalloc/heap.h"
#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/test_support.h"

namespace {

size_t rss_bytes() { return shardtest::proc_memory().rss; }

}  // namespace

TEST(Purge, RssFallsAfterAPeak) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "RSS includes the sanitizer's shadow memory, which is not given back";
#endif
  constexpr size_t kMiB = size_t{1} << 20;
  const size_t before = rss_bytes();
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) {  // 64 huge blocks of 3 MiB, and many small ones
    void* p = shard_malloc(3 * kMiB);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x5a, 3 * kMiB);
    blocks.push_back(p);
  }
  for (int i = 0; i < 200000; ++i) {
    void* p = shard_malloc(200);
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, 200);
    blocks.push_back(p);
  }
  const size_t peak = rss_bytes();
  ASSERT_GT(peak, before + 200 * kMiB);
  for (void* p : blocks) shard_free(p);
  // The default delay is 100 ms: a slot is purged at the second tick after
  // it was freed. Keep the allocator busy (ticks run on its slow paths).
  size_t now = peak;
  for (int round = 0; round < 40 && now > before + 64 * kMiB; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (int i = 0; i < 200; ++i)
      shard_free(shard_malloc(1 * kMiB));  // huge: releases a segment each time
    now = rss_bytes();
  }
  std::printf("[ Purge ] RSS before %zu MiB, peak %zu MiB, after %zu MiB\n", before / kMiB,
              peak / kMiB, now / kMiB);
  EXPECT_LT(now, before + 64 * kMiB) << "peak " << peak / kMiB << " MiB";
}

// A purge delay too large for the clock means never: its deadline saturates.
// (A review set SHARDALLOC_PURGE_DELAY_MS to 2^64 - 1: now + delay wrapped
// to a deadline already past, and every freed slot was purged at once.)
TEST(Purge, ADelayTooLargeForTheClockMeansNever) {
  constexpr size_t kBlock = size_t{3} << 20;
  auto& domain = shardalloc::platform::g_process_domain;
  const uint64_t delay = domain.purge_delay_ms;
  domain.purge_delay_ms = UINT64_MAX;
  EXPECT_EQ(domain.purge_deadline(12345), UINT64_MAX);
  shard_stats before;
  shard_stats_get(&before);
  void* blocks[8];
  for (void*& b : blocks) {
    b = shard_malloc(kBlock);
    ASSERT_NE(b, nullptr);
    std::memset(b, 1, kBlock);
  }
  for (void* b : blocks) shard_free(b);
  for (int round = 0; round < 4; ++round) {  // each release looks at the deadline
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    shard_free(shard_malloc(200000));
  }
  shard_stats after;
  shard_stats_get(&after);
  EXPECT_EQ(after.purged_bytes, before.purged_bytes);
  domain.purge_delay_ms = 100;  // (stretched by the pacing if an earlier test's purges were early)
  EXPECT_EQ(domain.purge_deadline(12345), 12345u + domain.purge_delay());
  EXPECT_GE(domain.purge_delay(), 100u);
  domain.purge_delay_ms = delay;
}

// A huge block that fits in no freed span takes fresh memory: the freed spans
// that wait for their purge are given back at once, up to what it takes (at
// most once per purge delay). ImageMagick freed a 12 and an 18 MB block, then
// took two 27 MB ones: both spans stayed resident beside them until their
// tick (peak RSS 1.34x glibc's). A first-class heap: a domain of its own,
// where blocks placed one after another lie side by side.
TEST(Purge, AHugeBlockThatFitsNoFreedSpanGivesThemBack) {
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "RSS includes the sanitizer's shadow memory";
#endif
  constexpr size_t kMiB = size_t{1} << 20;
  shard_heap* heap = shard_heap_new();
  ASSERT_NE(heap, nullptr);
  auto touched = [heap](size_t bytes) {
    void* p = shard_heap_malloc(heap, bytes);
    if (p != nullptr) std::memset(p, 0x5a, bytes);
    return p;
  };
  // Freed spans of 12 and 18 MiB between live blocks: neither can grow.
  void* left = touched(4 * kMiB);
  ASSERT_NE(left, nullptr);
  auto& domain = *shardalloc::core::segment_of(left)->domain;
  domain.purge_delay_ms = 60000;  // no purge tick during the test
  void* small = touched(12 * kMiB);
  void* mid = touched(4 * kMiB);
  void* large = touched(18 * kMiB);
  void* right = touched(4 * kMiB);
  ASSERT_TRUE(small && mid && large && right);
  EXPECT_LT(uintptr_t(left), uintptr_t(small));
  EXPECT_LT(uintptr_t(small), uintptr_t(mid));
  EXPECT_LT(uintptr_t(mid), uintptr_t(large));
  EXPECT_LT(uintptr_t(large), uintptr_t(right));
  shard_heap_free(heap, small);
  shard_heap_free(heap, large);
  const uint64_t purged_before = domain.purged_bytes.load();
  const size_t rss_before = rss_bytes();
  void* big = touched(40 * kMiB);  // fits in neither span
  ASSERT_NE(big, nullptr);
  const uint64_t purged = domain.purged_bytes.load() - purged_before;
  const size_t rss_after = rss_bytes();
  std::printf("[ Purge ] a 40 MiB block after 30 MiB were freed: RSS +%zd MiB, purged %llu MiB\n",
              (ssize_t(rss_after) - ssize_t(rss_before)) / ssize_t(kMiB),
              (unsigned long long)(purged / kMiB));
  EXPECT_GE(purged, 30 * kMiB);
  EXPECT_LT(rss_after, rss_before + 20 * kMiB);  // +40 without the offset
  // A second such block within the delay leaves the freed span resident: a
  // program replacing huge blocks without pause reuses them a moment later.
  shard_heap_free(heap, mid);
  void* again = touched(48 * kMiB);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(domain.purged_bytes.load(), purged_before + purged);
  shard_heap_destroy(heap);
}

// The purge delay follows the program's reuse (core/purge_pacing.h): slots
// a tick purged that the program claims back, fresh, make the next ones
// wait twice as long; slots left alone after a purge bring it back. A Java
// program that freed its direct buffers a gigabyte at a time and claimed
// them back over the next half second had most of them purged first (3x
// glibc's page faults). A first-class heap: a domain of its own, its
// delay set short for the test.
TEST(Purge, SlotsClaimedBackSoonAfterTheirPurgeMakeTheNextOnesWaitLonger) {
  constexpr size_t kMiB = size_t{1} << 20;
  constexpr uint64_t kDelay = 20;
  shard_heap* heap = shard_heap_new();
  ASSERT_NE(heap, nullptr);
  void* blocks[16];
  auto fill = [&] {
    for (void*& b : blocks) {
      b = shard_heap_malloc(heap, kMiB);
      ASSERT_NE(b, nullptr);
      std::memset(b, 0x5a, kMiB);
    }
  };
  fill();
  auto& domain = *shardalloc::core::segment_of(blocks[0])->domain;
  domain.purge_delay_ms = kDelay;
  // Ticks run from allocation slow paths and releases; here, by hand.
  auto tick_until = [&](auto done) {
    for (int i = 0; i < 300 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      domain.run_due_maintenance();
    }
    return done();
  };
  const uint64_t purged_before = domain.purged_bytes.load();
  for (void* b : blocks) shard_heap_free(heap, b);
  ASSERT_TRUE(tick_until([&] { return domain.purged_bytes.load() > purged_before; }));
  EXPECT_EQ(domain.purge_delay(), kDelay);
  fill();  // back on fresh slots: the purge was early
  EXPECT_EQ(domain.purge_delay(), 2 * kDelay);
  // Freed again and left alone: purged, then a later tick (a release arms
  // one) ends the review with nothing claimed back.
  const uint64_t purged_again = domain.purged_bytes.load();
  for (void* b : blocks) shard_heap_free(heap, b);
  ASSERT_TRUE(tick_until([&] { return domain.purged_bytes.load() > purged_again; }));
  ASSERT_TRUE(tick_until([&] {
    shard_heap_free(heap, shard_heap_malloc(heap, 200 * 1024));
    return domain.purge_delay() == kDelay;
  }));
  shard_heap_destroy(heap);
}

// purged_bytes counts every give-back: realloc's room purged off a dirty
// span it moved onto (release_room, through purge_span_from) was missing
// (a review: RSS fell by 780 KiB, purged_bytes stayed).
TEST(Purge, ReallocsRoomGivenBackCountsInPurgedBytes) {
  // Checked builds fill the room with their slack pattern: none goes back.
  if (shard_is_checked()) GTEST_SKIP() << "checked builds write the room";
  constexpr size_t kMiB = size_t{1} << 20;
  auto purged = [] {
    shard_stats s;
    shard_stats_get(&s);
    return s.purged_bytes;
  };
  char* big = static_cast<char*>(shard_malloc(24 * kMiB));
  ASSERT_NE(big, nullptr);
  std::memset(big, 1, 24 * kMiB);
  shard_free(big);  // a dirty span, resident until a tick
  const uint64_t before = purged();
  char* q = static_cast<char*>(shard_malloc(4 * kMiB));
  ASSERT_NE(q, nullptr);
  std::memset(q, 2, 4 * kMiB);
  // Moves with room; the room not written goes back.
  q = static_cast<char*>(shard_realloc(q, 4 * kMiB + 600 * 1024));
  ASSERT_NE(q, nullptr);
  EXPECT_GE(purged() - before, 64u * 1024);
  shard_free(q);
}
