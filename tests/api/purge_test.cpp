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
#include "platform/linux/process_heap.h"
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
  domain.purge_delay_ms = 100;
  EXPECT_EQ(domain.purge_deadline(12345), 12445u);
  domain.purge_delay_ms = delay;
}
